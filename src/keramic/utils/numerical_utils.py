"""`keras.utils.normalize`: scale rows to unit norm."""

import numpy as np
import torch


def normalize(x, axis=-1, order=2):
    """`x` divided by its `order`-norm along `axis` (zero norms stay zero). NumPy in, NumPy out.

    >>> normalize(np.array([[3.0, 4.0]]))
    array([[0.6, 0.8]])
    """
    if isinstance(x, torch.Tensor):
        from keramic.ops.nn import normalize as ops_normalize

        return ops_normalize(x, axis=axis, order=order)
    x = np.asarray(x)
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return x / np.expand_dims(norm, axis)
