"""The installed keramic's version, for file metadata.

Read from the package metadata rather than `keramic.__version__`: importing the package root from
here would tie saving to the whole public API (models, layers, training) in one import circle.
"""

import functools
import importlib.metadata


@functools.cache
def keramic_version() -> str:
    """keramic's version string, e.g. "0.1.0"."""
    return importlib.metadata.version("keramic")
