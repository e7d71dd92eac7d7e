"""Where names in a config are resolved: keramic's public objects and user-registered ones.

Only objects in these tables can be built from a file; nothing is ever imported by a module
name taken from a file.
"""

import collections
import contextlib
import threading
import weakref
from typing import Any

# namespace ("keras.layers") -> {public name -> object}
_PUBLIC: dict[str, dict[str, Any]] = {}
# "package>Name" -> object, filled by register_keras_serializable
_REGISTERED: dict[str, Any] = {}
# object -> "package>Name": the decorator's names first, then the `package>Name` under which an
# object that was never decorated was found while loading (in `custom_objects`, a scope or
# `get_custom_objects()`), so that saving it again writes the name the file used.
_DECORATED_NAMES: dict[Any, str] = {}
_LOADED_NAMES: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()
_REGISTERED_NAMES: collections.ChainMap = collections.ChainMap(_DECORATED_NAMES, _LOADED_NAMES)
_scope = threading.local()


def keras_export(namespace, name=None):
    """Decorator: publish a class or function under a Keras namespace such as `keras.layers`."""

    def decorate(obj):
        public_name = name or obj.__name__
        _PUBLIC.setdefault(namespace, {})[public_name] = obj
        if not hasattr(obj, "_keras_namespace") or obj.__dict__.get("_keras_namespace") is None:
            try:
                obj._keras_namespace = namespace
                obj._keras_public_name = public_name
            except (AttributeError, TypeError):
                pass
        return obj

    return decorate


def public_objects(namespace):
    return _PUBLIC.get(namespace, {})


def find_public(name, namespaces=None):
    """Look `name` up in the given namespaces (all of them when None)."""
    for namespace in namespaces or list(_PUBLIC):
        obj = _PUBLIC.get(namespace, {}).get(name)
        if obj is not None:
            return obj
    return None


def register_keras_serializable(package="Custom", name=None):
    """Register a custom class or function so configs can name it as `package>Name`.

    >>> @register_keras_serializable("mypkg")
    ... class Scale(keramic.layers.Layer): ...
    """
    if ">" in package:
        raise ValueError(f"package must not contain '>': {package!r}")

    def decorate(obj):
        key = f"{package}>{name or obj.__name__}"
        if isinstance(obj, type) and not hasattr(obj, "get_config"):
            raise ValueError("Cannot register a class that does not have a get_config() method.")
        _REGISTERED[key] = obj
        _DECORATED_NAMES[obj] = key
        return obj

    return decorate


def get_registered_name(obj):
    """The `package>Name` key of a registered object, else its plain name."""
    return _REGISTERED_NAMES.get(obj, getattr(obj, "__name__", type(obj).__name__))


def get_registered_object(name, custom_objects=None, module_objects=None):
    """Resolve a name from the active scopes, `custom_objects`, `module_objects` and the global registry."""
    for scope in reversed(getattr(_scope, "stack", [])):
        if name in scope:
            return _remember_name(scope[name], name)
    if custom_objects and name in custom_objects:
        return _remember_name(custom_objects[name], name)
    if module_objects and name in module_objects:
        return module_objects[name]
    return _remember_name(_REGISTERED.get(name), name)


def _remember_name(obj, name):
    """Note the `package>Name` an undecorated object was found under (see `_LOADED_NAMES`)."""
    if obj is not None and ">" in name:
        try:
            if obj not in _DECORATED_NAMES:
                _LOADED_NAMES[obj] = name
        except TypeError:  # unhashable, or no weak reference (a builtin): it keeps its plain name
            pass
    return obj


def find_by_suffix(name, custom_objects=None):
    """Keras' compatibility fallback: a bare `foo` matches a registered key ending in `>foo`."""
    tables = [*getattr(_scope, "stack", []), custom_objects or {}, _REGISTERED]
    for table in tables:
        for key, obj in table.items():
            if key.endswith(">" + name):
                return _remember_name(obj, key)
    return None


@contextlib.contextmanager
def custom_object_scope(*scopes):
    """Make custom objects resolvable by name inside a `with` block."""
    merged = {}
    for scope in scopes:
        merged.update(scope or {})
    stack = getattr(_scope, "stack", None)
    if stack is None:
        stack = _scope.stack = []
    stack.append(merged)
    try:
        yield
    finally:
        stack.pop()


CustomObjectScope = custom_object_scope


def get_custom_objects():
    """The global registry, as Keras exposes it (a live dict)."""
    return _REGISTERED
