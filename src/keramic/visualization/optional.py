"""Plotting and box drawing need matplotlib / OpenCV, which keramic does not require: import them on first use."""

import importlib
from types import ModuleType


def require(module: str, function: str, install: str) -> ModuleType:
    """`module` imported, or Keras's kind of ImportError telling which package `function` needs."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"`{function}` requires the `{install}` package: install it with `pip install {install}`.") from None
