"""String-tensor stand-ins: torch has no string dtype, so string layers take Python lists or numpy
arrays of `str`/`bytes` and work on numpy object arrays of `str`."""

import numpy as np
import torch


def as_array(data) -> np.ndarray:
    """`data` as a numpy array: strings as an object array of `str` (bytes decoded as UTF-8), numbers as they are."""
    if isinstance(data, torch.Tensor):
        return data.detach().cpu().numpy()
    array = np.asarray(data, dtype=object if _holds_strings(data) else None)
    if array.dtype.kind in "USO":
        return np.vectorize(_to_str, otypes=[object])(array) if array.size else array.astype(object)
    return array


def _holds_strings(data) -> bool:
    if isinstance(data, np.ndarray):
        return data.dtype.kind in "USO"
    probe = data
    while isinstance(probe, (list, tuple)) and probe:
        probe = probe[0]
    return isinstance(probe, (str, bytes))


def _to_str(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value if isinstance(value, str) else str(value)


def to_bytes(value) -> bytes:
    """The bytes TensorFlow hashes for a value: UTF-8 for strings, decimal text for integers."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return str(int(value)).encode("ascii")
