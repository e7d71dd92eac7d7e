"""`clone_model`: a new model with the same architecture and fresh weights."""

from keramic.saving.formats import keras2_config
from keramic.serialization.serialize import deserialize_model, serialize_keras_object


def clone_model(model, custom_objects=None):
    """Rebuild `model` from its config (new layers, newly initialised weights, not compiled).

    The config passes the translation every loader applies (`keras2_config`), so a model whose
    custom layers still return Keras 2 spellings in `get_config` clones like one loaded from a file.

    >>> twin = clone_model(model)
    """
    config = serialize_keras_object(model)
    config.pop("compile_config", None)
    return deserialize_model(keras2_config.convert_model_config(config), custom_objects)
