"""Saving and serialization: configs, registries, formats (`keramic.saving`)."""

from keramic.saving.api import load_model, load_weights, save_model, save_weights
from keramic.saving.file_editor import KerasFileEditor
from keramic.serialization.public import deserialize_keras_object
from keramic.serialization.registry import (
    CustomObjectScope,
    custom_object_scope,
    get_custom_objects,
    get_registered_name,
    get_registered_object,
    register_keras_serializable,
)
from keramic.serialization.serialize import serialize_keras_object

__all__ = [
    "CustomObjectScope",
    "KerasFileEditor",
    "custom_object_scope",
    "deserialize_keras_object",
    "get_custom_objects",
    "get_registered_name",
    "get_registered_object",
    "load_model",
    "load_weights",
    "register_keras_serializable",
    "save_model",
    "save_weights",
    "serialize_keras_object",
]
