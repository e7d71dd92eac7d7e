"""`keras.saving.deserialize_keras_object` as users call it, with Keras's signature and values.

keramic's own loaders resolve bare names in a namespace ("relu" in activations); the public
function, like Keras's, treats a string as data unless it names a custom object (or one of the
`module_objects` given), so `compile_from_config` hooks get back the `"accuracy"` they saved.
"""

from typing import Any

from keramic.serialization import registry
from keramic.serialization import serialize as _serialize


def deserialize_keras_object(config: Any, custom_objects: dict | None = None, safe_mode: bool | None = None, **kwargs) -> Any:
    """Rebuild what `serialize_keras_object` wrote; plain values (strings included) come back as given.

    >>> deserialize_keras_object(["accuracy", {"class_name": "Dense", "config": {"units": 2}}])
    ['accuracy', <Dense name=dense, built=False>]
    """
    module_objects = kwargs.pop("module_objects", None)
    if kwargs:
        raise TypeError(f"deserialize_keras_object() got unexpected keyword arguments: {sorted(kwargs)}.")
    _serialize.check_config_depth(config)  # before recursing here, as the loaders do
    return _deserialize(config, custom_objects, safe_mode, module_objects)


def _deserialize(config, custom_objects, safe_mode, module_objects):
    if isinstance(config, str):
        found = registry.get_registered_object(config, custom_objects)
        if found is None and module_objects is not None:
            found = module_objects.get(config)
            if isinstance(found, type):
                return found()
        return config if found is None else found
    if isinstance(config, (list, tuple)):
        return [_deserialize(item, custom_objects, safe_mode, module_objects) for item in config]
    if isinstance(config, dict) and not ("class_name" in config and "config" in config):
        return {key: _deserialize(value, custom_objects, safe_mode, None) for key, value in config.items()}
    return _serialize.deserialize_keras_object(config, custom_objects=custom_objects, safe_mode=safe_mode)
