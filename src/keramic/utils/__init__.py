"""Helpers from `keras.utils`: seeding, file download, one-hot labels."""

import numpy as np

from keramic.backend import set_random_seed
from keramic.training.progress import Progbar
from keramic.utils.file_utils import get_file


def to_categorical(y, num_classes=None):
    """Integer class labels -> one-hot float64 rows (numpy), as `keras.utils.to_categorical`.

    A trailing axis of size 1 is dropped first; `num_classes` defaults to `max(y) + 1`.

    >>> to_categorical([0, 2])
    array([[1., 0., 0.],
           [0., 0., 1.]])
    """
    y = np.asarray(y, dtype="int64")
    shape = y.shape[:-1] if y.ndim > 1 and y.shape[-1] == 1 else y.shape
    y = y.reshape(-1)
    if not num_classes:
        num_classes = int(np.max(y)) + 1
    one_hot = np.zeros((y.size, num_classes))
    one_hot[np.arange(y.size), y] = 1
    return one_hot.reshape(shape + (num_classes,))


__all__ = ["Progbar", "get_file", "set_random_seed", "to_categorical"]
