"""`keras.layers.serialize` / `deserialize`: a layer <-> its Keras config envelope."""

from typing import Any

from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object


@keras_export("keras.layers")
def serialize(layer: Any) -> dict:
    """The layer's Keras config envelope (`module`, `class_name`, `config`, ...).

    >>> serialize(keramic.layers.Dense(2))["class_name"]
    'Dense'
    """
    return serialize_keras_object(layer)


@keras_export("keras.layers")
def deserialize(config: dict, custom_objects: dict | None = None) -> Any:
    """A new layer from a config envelope; bare class names are looked up among `keras.layers`.

    >>> deserialize({"class_name": "Dense", "config": {"units": 2}}).units
    2
    """
    return deserialize_keras_object(config, namespaces=["keras.layers"], custom_objects=custom_objects)
