"""Keras's automatic config: a custom layer without `get_config` is saved by its constructor arguments.

Keras records the arguments a layer was constructed with, defaults included, and returns them from
the default `get_config` when every value is a plain JSON value (str, int, float, bool, None, in
lists, tuples and dicts). Anything else makes `get_config` raise `NotImplementedError`, so the user
writes their own. A subclassed `Model` records no arguments at all (Keras's `Model.__new__` does not
pass them on): its automatic config holds only its constructor's defaults.
"""

import inspect
from typing import Any

from keramic.errors import NoConfigError

_PLAIN_TYPES = (str, int, float, bool, type(None))

_HOW_TO_FIX = (
    "Write a `get_config()` that returns `{**super().get_config(), <each constructor argument>: value}` "
    "(and a `from_config()` if the arguments need rebuilding)."
)


def _is_plain(value) -> bool:
    """True for JSON-like values Keras trusts to an automatic config."""
    if isinstance(value, dict):
        return all(_is_plain(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return all(_is_plain(item) for item in value)
    return isinstance(value, _PLAIN_TYPES)


def constructor_arguments(cls: type[Any], args: tuple, kwargs: dict) -> dict:
    """The arguments `cls(*args, **kwargs)` was given, defaults filled in, as Keras records them.

    Raises NoConfigError (a NotImplementedError), with the fix, when they cannot be recorded.
    """
    signature = inspect.signature(cls.__init__)
    parameters = list(signature.parameters.values())
    try:
        bound = signature.bind(None, *args, **kwargs)
    except TypeError:
        raise NoConfigError(
            f"{cls.__name__} cannot build its config from its constructor arguments (a required argument "
            f"has no default). {_HOW_TO_FIX}"
        ) from None
    if any(p.kind is p.POSITIONAL_ONLY for p in parameters[1:]):
        raise NoConfigError(
            f"{cls.__name__}.__init__ takes positional-only arguments, which a config cannot pass back. {_HOW_TO_FIX}"
        )
    bound.apply_defaults()
    recorded = dict(bound.arguments)
    recorded.pop(parameters[0].name)
    variadic_keywords = next((p.name for p in parameters if p.kind is p.VAR_KEYWORD), None)
    if variadic_keywords is not None:
        recorded.update(recorded.pop(variadic_keywords))
    recorded.pop("name", None)
    variadic_positional = next((p.name for p in parameters if p.kind is p.VAR_POSITIONAL), None)
    if variadic_positional is not None and recorded.pop(variadic_positional):
        raise NoConfigError(
            f"{cls.__name__} was given variadic positional arguments (*args), which a config cannot pass back. "
            f"{_HOW_TO_FIX}"
        )
    if not _is_plain(recorded):
        raise NoConfigError(
            f"{cls.__name__} was constructed with argument values that are not plain JSON values "
            f"(str, int, float, bool, None, or lists, tuples and dicts of them). {_HOW_TO_FIX}"
        )
    return recorded


def keeps_name(cls: type[Any]) -> bool:
    """Whether the constructor takes `name` back (a `name` parameter, or `**kwargs` by that name)."""
    parameters = inspect.signature(cls.__init__).parameters
    return "name" in parameters or ("kwargs" in parameters and parameters["kwargs"].kind is inspect.Parameter.VAR_KEYWORD)
