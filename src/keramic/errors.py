"""One exception hierarchy for keramic: every error a user sees names what and where."""

import contextlib
import struct
import zipfile
from typing import Iterator


class KeramicError(Exception):
    """Base class of every error keramic raises on purpose."""


class ConfigError(KeramicError, ValueError):
    """A config (dict, JSON) is malformed or names something that cannot be built."""


class Keras2FormError(ConfigError):
    """A graph the Keras 2 config form cannot express, or would make tf.keras 2 compute differently
    (several positional call inputs, dict model inputs/outputs, nested call structures, masks merged
    by tf.keras 2's other rules): such files keep Keras 3's form."""


class UnknownObjectError(ConfigError, TypeError):
    """A config names a class or function that is neither built in nor registered."""


class UnsafeDeserializationError(ConfigError):
    """Loading would run code from a file; only allowed with `safe_mode=False`."""


class ShapeMismatchError(KeramicError, ValueError):
    """A value's shape disagrees with the variable or layer it is meant for."""


class NotBuiltError(KeramicError, ValueError):
    """An operation needs a built layer or model (call it once or `build` it first)."""


class NotCompiledError(KeramicError, ValueError, RuntimeError):
    """Training or evaluating a model that was never compiled: a ValueError, as Keras raises (and a
    RuntimeError, as keramic raised before)."""


class DataDownloadError(KeramicError, OSError):
    """A dataset could not be fetched or failed its checksum."""


class WeightsMismatchError(KeramicError, ValueError):
    """A weights file and a model disagree (missing, unexpected or differently shaped variables)."""


class FileFormatError(KeramicError, ValueError):
    """A file is not in the format its name or contents claim, or is damaged."""


class ExportError(KeramicError, ValueError):
    """A model (or one of its layers) cannot be written as an ONNX graph."""


class ConfigArgumentError(ConfigError, TypeError):
    """An object in a config cannot be built from the arguments it gives (a wrong type, a NaN, a
    negative size, an unknown keyword). Also a `TypeError`, as Keras raises for bad arguments."""


class NotAModelError(ConfigError, TypeError):
    """A model loader was given the config of something that is not a model (a layer, a callback,
    a loss, an optimizer, a function): it returns a model or raises this."""


class NoConfigError(ConfigError, NotImplementedError):
    """A custom layer or model without `get_config` whose constructor arguments cannot make its
    config automatically. Also a `NotImplementedError`, as Keras raises for it."""


def naming_source(error: KeramicError, source: str) -> KeramicError:
    """The same error (same class) with `source` (a file, "JSON string") leading its message, unless
    the message names it already."""
    message = str(error)
    if source in message:
        return error
    return type(error)(f"{source}: {message}")


# What damaged input makes Python, h5py and zipfile raise deep inside a loader.
_RAW_FAILURES = (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError, OverflowError, EOFError)


@contextlib.contextmanager
def typed_errors(source: str) -> Iterator[None]:
    """Let only keramic errors naming `source` (a file, "JSON string") out of a loader.

    Raw failures of damaged input (a `KeyError` on a missing entry, a `RecursionError`, h5py's
    plain `OSError`s without an errno, `zipfile.BadZipFile`) become a `FileFormatError` naming
    `source`, the original kept as its cause; a real OS error (missing file, no permission) passes.

    >>> with typed_errors(path):
    ...     model = row.load(path)
    """
    try:
        yield
    except KeramicError as error:
        renamed = naming_source(error, source)
        if renamed is error:
            raise
        raise renamed from error.__cause__
    except (*_RAW_FAILURES, zipfile.BadZipFile, struct.error) as error:
        raise FileFormatError(f"{source}: damaged or invalid content ({type(error).__name__}: {error})") from error
    except OSError as error:
        if type(error) is not OSError or error.errno is not None:
            raise  # a missing file, no permission, a full disk: the system's own answer
        raise FileFormatError(f"{source}: damaged or invalid content ({error})") from error
