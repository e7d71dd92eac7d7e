"""`keras.utils.legacy`: Keras 2's `{"class_name", "config"}` serialization, for old code paths.

Unlike Keras 3's form there is no `module` / `registered_name`: the reader must say where
classes come from (`module_objects`, `custom_objects` or the registered custom objects). Nothing
is ever imported by name.
"""

import inspect
from typing import Any

from keramic.errors import UnknownObjectError
from keramic.serialization.registry import get_registered_name, get_registered_object


def serialize_keras_object(instance: Any) -> Any:
    """`{"class_name": ..., "config": get_config()}` for objects, the registered name for functions."""
    if instance is None:
        return None
    if hasattr(instance, "get_config"):
        return {"class_name": get_registered_name(type(instance)), "config": instance.get_config()}
    if hasattr(instance, "__name__"):
        return get_registered_name(instance)
    raise ValueError(f"Cannot serialize {instance!r}: it has neither `get_config()` nor a name.")


def _lookup(name, module_objects, custom_objects, printable_module_name):
    """Keras 2's order: `custom_objects`, then custom-object scopes and registrations, then `module_objects`."""
    found = get_registered_object(name, custom_objects)
    if found is None:
        found = (module_objects or {}).get(name)
    if found is None:
        raise UnknownObjectError(f"Unknown {printable_module_name}: '{name}'. Pass it in `custom_objects` "
                                 "or register it with `keras.saving.register_keras_serializable()`.")
    return found


def deserialize_keras_object(identifier, module_objects=None, custom_objects=None, printable_module_name="object"):
    """The object a Keras 2 config (or bare name) describes, looked up only in the given tables."""
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        if "class_name" not in identifier or "config" not in identifier:
            raise ValueError(f"Improper config format for {printable_module_name}: {identifier!r}.")
        cls = _lookup(identifier["class_name"], module_objects, custom_objects, printable_module_name)
        config = identifier["config"]
        if "custom_objects" in inspect.signature(cls.from_config).parameters:
            return cls.from_config(config, custom_objects=dict(custom_objects or {}))
        return cls.from_config(config)
    if isinstance(identifier, str):
        found = _lookup(identifier, module_objects, custom_objects, printable_module_name)
        return found() if inspect.isclass(found) else found
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret serialized {printable_module_name}: {identifier!r}.")
