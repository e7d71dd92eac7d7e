"""Dtype helpers of `keras.ops`: Keras's promotion (`result_type`) and the dtype of any input."""

import numpy as np
import torch

from keramic import backend
from keramic.backend import promote_types, result_type  # noqa: F401  (result_type: keras.ops.result_type)


def standardize_dtype(dtype):
    """Any dtype spelling (also Python `int`/`float`/`bool`) -> Keras's name."""
    if dtype is int:
        return "int32"  # as Keras on torch
    if dtype is float:
        return "float32"
    if dtype is bool:
        return "bool"
    return backend.standardize_dtype(dtype)


def is_float_dtype(dtype):
    return standardize_dtype(dtype).startswith(("float", "bfloat"))


def dtype_of(x):
    """Keras dtype name of a tensor, array or Python value (scalars: int32 and floatx())."""
    if isinstance(x, torch.Tensor):
        return backend.standardize_dtype(x.dtype)
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int):
        return "int32"
    if isinstance(x, float):
        return backend.floatx()
    if isinstance(x, complex):
        return "complex64"
    if hasattr(x, "dtype"):
        return standardize_dtype(x.dtype)
    array = np.asarray(x)
    if array.dtype == np.float64:
        return backend.floatx()
    if array.dtype == np.int64:
        return "int32"
    if array.dtype == np.complex128:
        return "complex64"
    return standardize_dtype(array.dtype)
