"""Read one CIFAR batch file (a Python 2 pickle of a dict) through `safe_pickle`."""

import os

import numpy as np

from keramic.datasets.safe_pickle import read_pickled_arrays
from keramic.errors import DataDownloadError


def load_batch(fpath, label_key="labels"):
    """`(data, labels)` of one batch: uint8 images (n, 3, 32, 32) and the labels as a list."""
    with open(fpath, "rb") as f:
        batch = read_pickled_arrays(f.read(), os.fspath(fpath))
    if not isinstance(batch, dict):
        raise DataDownloadError(f"{fpath} is not a CIFAR batch: it holds a {type(batch).__name__}, not a dict.")
    batch = {key.decode("utf8") if isinstance(key, bytes) else key: value for key, value in batch.items()}
    missing = [key for key in ("data", label_key) if key not in batch]
    if missing:
        raise DataDownloadError(f"{fpath} is not a CIFAR batch: it lacks {', '.join(missing)}.")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataDownloadError(f"{fpath}: expected `data` of shape (n, 3072), found {getattr(data, 'shape', data)!r}.")
    return data.reshape(data.shape[0], 3, 32, 32), batch[label_key]
