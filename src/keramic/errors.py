"""One exception hierarchy for keramic: every error a user sees names what and where."""


class KeramicError(Exception):
    """Base class of every error keramic raises on purpose."""


class ConfigError(KeramicError, ValueError):
    """A config (dict, JSON) is malformed or names something that cannot be built."""


class UnknownObjectError(ConfigError, TypeError):
    """A config names a class or function that is neither built in nor registered."""


class UnsafeDeserializationError(ConfigError):
    """Loading would run code from a file; only allowed with `safe_mode=False`."""


class ShapeMismatchError(KeramicError, ValueError):
    """A value's shape disagrees with the variable or layer it is meant for."""


class NotBuiltError(KeramicError, ValueError):
    """An operation needs a built layer or model (call it once or `build` it first)."""


class DataDownloadError(KeramicError, OSError):
    """A dataset could not be fetched or failed its checksum."""


class WeightsMismatchError(KeramicError, ValueError):
    """A weights file and a model disagree (missing, unexpected or differently shaped variables)."""


class FileFormatError(KeramicError, ValueError):
    """A file is not in the format its name or contents claim, or is damaged."""


class ExportError(KeramicError, ValueError):
    """A model (or one of its layers) cannot be written as an ONNX graph."""
