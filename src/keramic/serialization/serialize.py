"""Object <-> config dict in Keras 3's envelope form (`module`, `class_name`, `config`, ...).

Classes are only ever found in keramic's own registry and in registered custom objects; the
`module` written in a file is a hint for the namespace, never something to import.
"""

import contextlib
import functools
import math
import numbers
import threading
import types
from typing import Any

import numpy as np
import torch

from keramic.errors import (
    ConfigArgumentError,
    ConfigError,
    KeramicError,
    NotAModelError,
    UnknownObjectError,
    UnsafeDeserializationError,
)
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


# Levels of dicts and lists a config may nest. Keras configs nest 3-4 levels per nested model (a
# tested one nests 13 in all); Python's recursion limit would otherwise decide, with a RecursionError.
MAX_CONFIG_DEPTH = 100

# Arguments that count or size something: a positive int, a list of them, or None. Checked before a
# constructor runs, so a file's NaN, "3" or -2 is named here instead of failing deep in a build.
SIZE_ARGUMENTS = frozenset(
    (
        "units", "filters", "kernel_size", "strides", "pool_size", "dilation_rate", "num_heads",
        "key_dim", "value_dim", "input_dim", "output_dim", "depth_multiplier", "groups", "size",
    )
)  # fmt: skip

# Arguments that name an object of one kind, by their name's ending: a name, a config of that
# kind, or None. A file's `kernel_initializer: {"class_name": "Dense"}` is refused here by name.
KIND_ARGUMENTS = {
    "activation": "keras.activations",
    "_initializer": "keras.initializers",
    "_regularizer": "keras.regularizers",
    "_constraint": "keras.constraints",
}

# Failures of a constructor or a build on bad arguments; anything else (KeyboardInterrupt,
# MemoryError, keramic's own errors) passes through unchanged.
ARGUMENT_FAILURES = (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError, OverflowError, ZeroDivisionError)


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


def implicit_arguments_recorded() -> bool:
    """False inside `legacy_graph_form()`: graph configs then leave out what Keras fills in itself."""
    return getattr(_state, "legacy_graph_form", None) is None


def for_tf_keras() -> bool:
    """True inside `legacy_graph_form(for_tf_keras=True)`: graphs tf.keras 2 would compute differently
    are refused (`Keras2FormError`)."""
    return getattr(_state, "legacy_graph_form", None) == "tf.keras"


@contextlib.contextmanager
def legacy_graph_form(for_tf_keras: bool = True):
    """Serialize graphs for a legacy `.h5` file: without the `training` / `mask` arguments Keras 3
    fills in, and so without the op nodes that only compute those masks. tf.keras 2 recorded none
    and recomputes them; Keras 3 recomputes them too, and reads no op node from a `.h5`."""
    previous = getattr(_state, "legacy_graph_form", None)
    _state.legacy_graph_form = "tf.keras" if for_tf_keras else "keras"
    try:
        yield
    finally:
        _state.legacy_graph_form = previous


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
    if isinstance(obj, (list, tuple)):  # a tuple stays a tuple in memory, as in Keras (JSON makes it a list)
        items = [serialize_keras_object(item) for item in obj]
        return tuple(items) if isinstance(obj, tuple) else items
    if isinstance(obj, dict):
        return {key: serialize_keras_object(value) for key, value in obj.items()}
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
        if obj.__name__ == "<lambda>":
            raise ConfigError("A Python lambda cannot be serialized outside a Lambda layer; use a named, registered function instead.")
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
    for key, value in (("registered_name", registered_name), ("module", config.get("module"))):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"The '{key}' of '{class_name}' must be a string, got {value!r:.100}.")
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


def check_config_depth(config: Any, max_depth: int = MAX_CONFIG_DEPTH) -> None:
    """Refuse a config nested deeper than `max_depth` dicts and lists, walking it without recursion."""
    stack = [(config, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise ConfigError(f"The config nests more than {max_depth} levels of dicts and lists; no model config is that deep.")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))


@contextlib.contextmanager
def bounded_config(config: Any):
    """Check `config`'s depth once, at the outermost deserialization; nested calls inside skip it."""
    if getattr(_state, "depth_checked", False):
        yield
        return
    if isinstance(config, (dict, list, tuple)):
        check_config_depth(config)
    _state.depth_checked = True
    try:
        yield
    finally:
        _state.depth_checked = False


def _is_size(value):
    return value is None or (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1)


def _check_size_arguments(class_name, inner):
    for argument in SIZE_ARGUMENTS.intersection(inner):
        value = inner[argument]
        if _is_size(value) or (isinstance(value, (list, tuple)) and value and all(_is_size(v) and v is not None for v in value)):
            continue
        raise ConfigArgumentError(
            f"{class_name} '{inner.get('name', '?')}': argument '{argument}' must be a positive integer (or a list of them), got {value!r}."
        )


@functools.lru_cache(maxsize=4096)
def _kind_of(argument):
    return next((namespace for ending, namespace in KIND_ARGUMENTS.items() if argument.endswith(ending)), None)


def _wrong_kind(value, namespace, custom_objects):
    """Why `value` cannot stand for an object of `namespace`, or None when it can (or is left to the lookup)."""
    if isinstance(value, (bool, int, float, list, tuple)):
        return f"a {type(value).__name__} value"
    if not isinstance(value, dict):
        return None  # an object given in code (an initializer instance, a callable)
    class_name = value.get("class_name")
    if namespace == "keras.activations" or not isinstance(class_name, str) or class_name in ("function", "__lambda__"):
        return None  # any callable may be an activation (a layer too); functions are looked up as such
    if registry.get_registered_object(value.get("registered_name") or class_name, custom_objects) is not None:
        return None
    if registry.find_public(class_name, [namespace]) is None and _resolve_class(value, custom_objects, ()) is not None:
        return f"the config of a {class_name}"
    return None


def _check_kind_arguments(class_name, inner, custom_objects):
    for argument, value in inner.items():
        namespace = _kind_of(argument)
        if namespace is None or value is None or isinstance(value, str):
            continue
        problem = _wrong_kind(value, namespace, custom_objects)
        if problem:
            raise ConfigArgumentError(
                f"{class_name} '{inner.get('name', '?')}': argument '{argument}' must name one of {namespace} "
                f"(a name, its config or None), got {problem}: {value!r:.100}."
            )


def _culprit(inner, error):
    """The argument an error is most likely about: one the message quotes, else a NaN or infinite one."""
    message = str(error)
    for key in inner:
        if f"'{key}'" in message:
            return key
    for key, value in inner.items():
        if isinstance(value, float) and not math.isfinite(value):
            return key
    return None


def argument_error(class_name: str, name: Any, inner: dict, error: BaseException) -> ConfigArgumentError:
    """The typed error for an object that failed to build from its config, naming it and the argument."""
    argument = _culprit(inner, error) if isinstance(inner, dict) else None
    where = f"argument '{argument}' = {inner[argument]!r}: " if argument is not None else ""
    return ConfigArgumentError(f"{class_name} '{name}' cannot be built from its config: {where}{type(error).__name__}: {error}")


@contextlib.contextmanager
def model_expected():
    """Within this scope the next object deserialized must be a model: a model loader's promise
    that it returns a model or raises. Set by `load_model` around a format's loader, so a file whose
    top level is a layer, a callback, a loss, an optimizer or a function is refused before anything
    is built.

    >>> with model_expected():
    ...     model = deserialize_keras_object(config)
    """
    previous = getattr(_state, "model_expected", False)
    _state.model_expected = True
    try:
        yield
    finally:
        _state.model_expected = previous


def describe_config(config: Any) -> str:
    """What a config holds, in a few words, for an error that refuses it."""
    if isinstance(config, dict) and isinstance(config.get("class_name"), str):
        return f"the config of a {config['class_name']}"
    if isinstance(config, dict):
        return f"a dict with keys {sorted(map(str, config))[:10]}"
    return f"a {type(config).__name__}"


def loads_as_model(cls_or_obj: Any) -> bool:
    """True for what a model loader returns: models, and the few layers Keras's `load_model` also
    returns (a class sets `_loads_as_model`, as `FeatureSpace` does)."""
    return callable(getattr(cls_or_obj, "compile_from_config", None)) or getattr(cls_or_obj, "_loads_as_model", False)


def _check_is_model(config, custom_objects):
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise NotAModelError(f"Expected a model config ({{'class_name': ..., 'config': ...}}), got {type(config).__name__}.")
    class_name = config["class_name"]
    if class_name == "function" and isinstance(config.get("config"), str) and _resolve_function(config["config"], custom_objects, None) is None:
        raise _unknown("function", config["config"], config)
    if class_name == "function" or class_name.startswith("__"):
        raise NotAModelError(f"The config's top level is a {class_name.strip('_')} value, not a model; a model loader only returns models.")
    found = _resolve_class(config, custom_objects, ("keras", "keras.models"))
    if found is None:
        raise _unknown("class", class_name, config)
    if not (isinstance(found, type) and loads_as_model(found)):
        kind = f"{found.__module__}.{found.__name__}" if isinstance(found, type) else "a function"
        raise NotAModelError(f"The config's top level is {class_name} ({kind}), not a model; a model loader only returns models.")


def deserialize_model(config: Any, custom_objects: dict | None = None, safe_mode: bool | None = None) -> Any:
    """Build a model from its config; a config whose top level is not a model is refused first.

    >>> model = deserialize_model(json.loads(model.to_json()))
    """
    with model_expected():
        return deserialize_keras_object(config, ("keras", "keras.models"), custom_objects, safe_mode)


def deserialize_keras_object(config, namespaces=None, custom_objects=None, safe_mode=None):
    """Build the object a config describes (the inverse of `serialize_keras_object`).

    `namespaces` lists the Keras namespaces a bare name is looked up in first
    (e.g. `("keras.initializers",)`).
    """
    with bounded_config(config):
        if getattr(_state, "model_expected", False):
            _state.model_expected = False  # only the outermost object: nested ones are layers
            with registry.custom_object_scope(custom_objects):
                _check_is_model(config, custom_objects)
        return _deserialize(config, namespaces, custom_objects, safe_mode)


def _deserialize(config, namespaces, custom_objects, safe_mode):
    if config is None or isinstance(config, (bool, int, float)):
        return config
    if isinstance(config, str):
        found = _resolve_function(config, custom_objects, namespaces)
        if found is None:
            raise _unknown("object", config, config)
        return found() if isinstance(found, type) else found
    if isinstance(config, (list, tuple)):
        return [_deserialize(c, namespaces, custom_objects, safe_mode) for c in config]
    if not isinstance(config, dict):
        raise ConfigError(f"Cannot deserialize {config!r}: expected a dict, list, string or number.")
    if "class_name" not in config:
        return {k: _deserialize(v, None, custom_objects, safe_mode) for k, v in config.items()}
    class_name = config["class_name"]
    if not isinstance(class_name, str):
        raise ConfigError(f"'class_name' must be a string, got {class_name!r}.")
    inner = config.get("config")
    with safe_mode_scope(safe_mode), registry.custom_object_scope(custom_objects):
        if class_name in ("__numpy__", "__tensor__", "__bytes__", "__slice__"):
            try:
                return _plain_value(class_name, inner)
            except ARGUMENT_FAILURES as error:
                raise ConfigError(f"A '{class_name}' value cannot be read from {inner!r:.200}: {error}") from error
        if class_name == "__ellipsis__":
            return Ellipsis
        if class_name == "__lambda__":
            raise UnsafeDeserializationError(
                "Requested the deserialization of a Python lambda. keramic never runs code "
                "stored in a file; define the function in code and register it instead."
            )
        if class_name == "function":
            if not isinstance(inner, str):
                raise ConfigError(f"A function's config must be its name, got {inner!r:.100}.")
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
        _check_size_arguments(class_name, inner)
        _check_kind_arguments(class_name, inner, custom_objects)
        try:
            return _build(cls, config, inner)
        except (ConfigArgumentError, NotAModelError, UnknownObjectError, UnsafeDeserializationError):
            raise
        except ConfigError as error:  # raised without the name of the object being built
            raise argument_error(class_name, inner.get("name", "?"), inner, error) from error
        except KeramicError:
            raise
        except ARGUMENT_FAILURES as error:
            raise argument_error(class_name, inner.get("name", "?"), inner, error) from error


def _plain_value(class_name, inner):
    if class_name == "__numpy__":
        return np.array(inner["value"], dtype=inner.get("dtype"))
    if class_name == "__tensor__":
        return torch.tensor(np.array(inner["value"], dtype=inner.get("dtype")))
    if class_name == "__bytes__":
        return inner["value"].encode("utf-8")
    return slice(inner["start"], inner["stop"], inner["step"])


def _build(cls, config, inner):
    """Construct, then build and compile as the envelope says."""
    obj = cls.from_config(inner) if hasattr(cls, "from_config") else cls(**inner)
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
