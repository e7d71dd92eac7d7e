"""`clone_model`: a new model with the same architecture and fresh weights."""

from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object


def clone_model(model, custom_objects=None):
    """Rebuild `model` from its config (new layers, newly initialised weights, not compiled)."""
    config = serialize_keras_object(model)
    config.pop("compile_config", None)
    return deserialize_keras_object(config, ("keras", "keras.models"), custom_objects)
