"""Saving and serialization: configs, registries, formats (`keramic.saving`)."""

from keramic.serialization.registry import (
    CustomObjectScope,
    custom_object_scope,
    get_custom_objects,
    get_registered_name,
    get_registered_object,
    register_keras_serializable,
)
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object
from keramic.saving.api import load_model, load_weights, save_model, save_weights
