"""Object <-> config dict in Keras 3's envelope form (`module`, `class_name`, `config`, ...).

Classes are only ever found in keramic's own registry and in registered custom objects; the
`module` written in a file is a hint for the namespace, never something to import.
"""

import contextlib
import threading
import types

import numpy as np
import torch

from keramic.errors import ConfigError, UnknownObjectError, UnsafeDeserializationError
from keramic.serialization import registry

_state = threading.local()

# Namespaces searched for a plain function name stored as {"class_name": "function"}.
FUNCTION_NAMESPACES = (
    "keras.activations",
    "keras.constraints",
    "keras.initializers",
    "keras.losses",
    "keras.metrics",
    "keras.optimizers",
    "keras.regularizers",
)


def in_safe_mode():
    """True unless an enclosing `safe_mode_scope(False)` allows code from files."""
    value = getattr(_state, "safe_mode", None)
    return True if value is None else value


@contextlib.contextmanager
def safe_mode_scope(safe_mode):
    """Set safe mode for nested deserialization; `None` keeps the enclosing value."""
    previous = getattr(_state, "safe_mode", None)
    if safe_mode is not None:
        _state.safe_mode = bool(safe_mode)
    try:
        yield
    finally:
        _state.safe_mode = previous


def _function_name(fn):
    registered = registry._REGISTERED_NAMES.get(fn)
    if registered:
        return registered
    return getattr(fn, "_keras_public_name", None) or fn.__name__


def serialize_keras_object(obj):
    """Turn an object into JSON-ready data in Keras 3's form."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        if obj.ndim == 0:
            return obj.item()
        return {"class_name": "__numpy__", "config": {"value": obj.tolist(), "dtype": str(obj.dtype)}}
    if isinstance(obj, torch.Tensor):
        value = obj.detach().cpu()
        return {
            "class_name": "__tensor__",
            "config": {"value": value.tolist(), "dtype": str(value.dtype).replace("torch.", "")},
        }
    if isinstance(obj, bytes):
        return {"class_name": "__bytes__", "config": {"value": obj.decode("utf-8")}}
    if isinstance(obj, slice):
        return {"class_name": "__slice__", "config": {"start": obj.start, "stop": obj.stop, "step": obj.step}}
    if obj is Ellipsis:
        return {"class_name": "__ellipsis__", "config": {}}
    if isinstance(obj, (list, tuple)):
        return [serialize_keras_object(item) for item in obj]
    if isinstance(obj, dict):
        return {key: serialize_keras_object(value) for key, value in obj.items()}
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
        if obj.__name__ == "<lambda>":
            raise ConfigError(
                "A Python lambda cannot be serialized outside a Lambda layer; use a named, "
                "registered function instead."
            )
        return {
            "module": "builtins",
            "class_name": "function",
            "config": _function_name(obj),
            "registered_name": "function",
        }
    if hasattr(obj, "get_config"):
        return serialize_object_envelope(obj)
    raise ConfigError(f"Cannot serialize {obj!r} of type {type(obj).__name__}: it has no get_config().")


def serialize_object_envelope(obj):
    """The `{module, class_name, config, registered_name, ...}` envelope of one object."""
    cls = type(obj)
    registered = registry._REGISTERED_NAMES.get(cls)
    if registered is not None:
        module = None if cls.__module__ == "__main__" else cls.__module__
        class_name = cls.__name__
    elif cls.__dict__.get("_keras_namespace"):
        module = cls._keras_namespace
        class_name = cls._keras_public_name
        registered = cls.__dict__.get("_keras_registered_name")
    else:
        module = None if cls.__module__ == "__main__" else cls.__module__
        class_name = cls.__name__
        registered = cls.__name__
    envelope = {
        "module": module,
        "class_name": class_name,
        "config": serialize_keras_object(obj.get_config()),
        "registered_name": registered,
    }
    get_build_config = getattr(obj, "get_build_config", None)
    if get_build_config is not None:
        build_config = get_build_config()
        if build_config is not None:
            envelope["build_config"] = serialize_keras_object(build_config)
    get_compile_config = getattr(obj, "get_compile_config", None)
    if get_compile_config is not None:
        envelope["compile_config"] = serialize_keras_object(get_compile_config() or {})
    return envelope


def _resolve_class(config, custom_objects, namespaces):
    class_name = config["class_name"]
    registered_name = config.get("registered_name") or class_name
    found = registry.get_registered_object(registered_name, custom_objects)
    if found is None and registered_name != class_name:
        found = registry.get_registered_object(class_name, custom_objects)
    if found is not None:
        return found
    module = config.get("module") or ""
    search = []
    if module.startswith("keras"):
        search.append(module)
    search.extend(namespaces or ())
    found = registry.find_public(class_name, search) if search else None
    if found is None and (module.startswith("keras") or not module):
        # `keras.src.*` modules and Keras 2 configs without a module: any public namespace.
        found = registry.find_public(class_name)
    return found


def _resolve_function(name, custom_objects, namespaces):
    found = registry.get_registered_object(name, custom_objects)
    if found is None:
        found = registry.find_public(name, list(namespaces or FUNCTION_NAMESPACES))
    if found is None:
        found = registry.find_by_suffix(name, custom_objects)
    return found


def _unknown(kind, name, config):
    return UnknownObjectError(
        f"Could not locate {kind} '{name}'. Custom classes and functions must be registered with "
        f"`@keramic.saving.register_keras_serializable()` (and imported before loading) or passed "
        f"in `custom_objects={{'{name}': ...}}`. Full object config: {config}"
    )


def deserialize_keras_object(config, namespaces=None, custom_objects=None, safe_mode=None):
    """Build the object a config describes (the inverse of `serialize_keras_object`).

    `namespaces` lists the Keras namespaces a bare name is looked up in first
    (e.g. `("keras.initializers",)`).
    """
    if config is None or isinstance(config, (bool, int, float)):
        return config
    if isinstance(config, str):
        found = _resolve_function(config, custom_objects, namespaces)
        if found is None:
            raise _unknown("object", config, config)
        return found() if isinstance(found, type) else found
    if isinstance(config, (list, tuple)):
        return [deserialize_keras_object(c, namespaces, custom_objects, safe_mode) for c in config]
    if not isinstance(config, dict):
        raise ConfigError(f"Cannot deserialize {config!r}: expected a dict, list, string or number.")
    if "class_name" not in config:
        return {k: deserialize_keras_object(v, None, custom_objects, safe_mode) for k, v in config.items()}
    class_name = config["class_name"]
    inner = config.get("config")
    with safe_mode_scope(safe_mode), registry.custom_object_scope(custom_objects):
        if class_name == "__numpy__":
            return np.array(inner["value"], dtype=inner.get("dtype"))
        if class_name == "__tensor__":
            return torch.tensor(np.array(inner["value"], dtype=inner.get("dtype")))
        if class_name == "__bytes__":
            return inner["value"].encode("utf-8")
        if class_name == "__slice__":
            return slice(inner["start"], inner["stop"], inner["step"])
        if class_name == "__ellipsis__":
            return Ellipsis
        if class_name == "__lambda__":
            raise UnsafeDeserializationError(
                "Requested the deserialization of a Python lambda. keramic never runs code "
                "stored in a file; define the function in code and register it instead."
            )
        if class_name == "function":
            found = _resolve_function(inner, custom_objects, namespaces)
            if found is None:
                raise _unknown("function", inner, config)
            return found
        if class_name == "__keras_tensor__":
            raise ConfigError("A symbolic tensor can only be read inside a Functional model config.")
        cls = _resolve_class(config, custom_objects, namespaces)
        if cls is None:
            raise _unknown("class", class_name, config)
        if not isinstance(cls, type):
            return cls
        if not isinstance(inner, dict):
            raise ConfigError(f"The config of '{class_name}' must be a dict, got {type(inner).__name__}.")
        if hasattr(cls, "from_config"):
            obj = cls.from_config(inner)
        else:
            obj = cls(**inner)
        build_config = config.get("build_config")
        if build_config and hasattr(obj, "build_from_config") and not getattr(obj, "built", True):
            obj.build_from_config(build_config)
        compile_config = config.get("compile_config")
        if compile_config and hasattr(obj, "compile_from_config"):
            obj.compile_from_config(compile_config)
        return obj


def get_object(identifier, namespace, kind, custom_objects=None):
    """Shared `get()` of activations, initializers, ...: accept None, a name, a config or an object."""
    if identifier is None or not isinstance(identifier, (str, dict)):
        return identifier
    if isinstance(identifier, dict):
        return deserialize_keras_object(identifier, (namespace,), custom_objects)
    found = registry.get_registered_object(identifier, custom_objects)
    if found is None:
        found = registry.public_objects(namespace).get(identifier)
    if found is None:
        raise UnknownObjectError(f"Unknown {kind}: '{identifier}'.")
    return found() if isinstance(found, type) else found
