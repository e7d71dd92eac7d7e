"""Inputs of `keras.ops` -> torch tensors, with Keras's dtype defaults for Python values."""

import numpy as np
import torch

from keramic import backend
from keramic.ops.dtypes import dtype_of, standardize_dtype


def to_tensor(x, dtype=None):
    """A tensor on keramic's device. NumPy arrays keep their dtype; Python ints become int32
    and floats `floatx()`, as in Keras."""
    if isinstance(x, torch.Tensor):
        if dtype is not None:
            x = x.to(backend.torch_dtype(dtype))
        return x if x.device == backend.get_device() else x.to(backend.get_device())
    if isinstance(x, (bool, int, float, complex)):
        return torch.tensor(x, dtype=backend.torch_dtype(dtype or dtype_of(x)), device=backend.get_device())
    if isinstance(x, (list, tuple)) and any(isinstance(item, torch.Tensor) for item in x):
        # Stacked, not read through NumPy: the items may require grad (e.g. `ops.sum(model.losses)`).
        tensor = torch.stack([to_tensor(item) for item in x])
    else:
        if dtype is None and not isinstance(x, (np.ndarray, np.generic)):
            dtype = dtype_of(x)
        array = np.asarray(x)
        if array.dtype == object:
            raise TypeError(f"Cannot convert {type(x).__name__} of mixed objects to a tensor: {x!r}")
        tensor = _from_numpy(array)
        if dtype is None and array.dtype.name in ("uint16", "uint32"):  # as Keras's torch backend: int32 / int64
            dtype = array.dtype.name
    if dtype is not None:
        tensor = tensor.to(backend.torch_dtype(dtype))
    return tensor.to(backend.get_device())


def _from_numpy(array):
    """A tensor copy of `array`; ml_dtypes' bfloat16 (which torch cannot read) crosses as raw bits."""
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(np.array(array.view(np.int16), copy=True)).view(torch.bfloat16)
    return torch.from_numpy(np.array(array, copy=True))


def torch_dtype(dtype):
    return backend.torch_dtype(standardize_dtype(dtype))
