"""MNIST handwritten digits (`keras.datasets.mnist`), fetched once from Keras's copy and cached.

Data: Yann LeCun, Corinna Cortes and Christopher J.C. Burges, licensed CC BY-SA 3.0.

>>> (x_train, y_train), (x_test, y_test) = keramic.datasets.mnist.load_data()
>>> x_train.shape, x_train.dtype
((60000, 28, 28), dtype('uint8'))
"""

import numpy as np

from keramic.errors import DataDownloadError
from keramic.utils.file_utils import get_file

ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_data(path="mnist.npz", *, origin=ORIGIN, file_hash=SHA256, cache_dir=None):
    """Return `(x_train, y_train), (x_test, y_test)` as uint8 arrays of shapes (60000, 28, 28),
    (60000,), (10000, 28, 28), (10000,).

    `path` is the file name inside `<cache_dir>/datasets` (default `~/.keramic`, or
    `$KERAMIC_HOME`). Offline, copy `mnist.npz` there by hand.
    """
    local = get_file(path, origin=origin, file_hash=file_hash, cache_dir=cache_dir)
    with np.load(local, allow_pickle=False) as archive:
        missing = [key for key in _KEYS if key not in archive.files]
        if missing:
            raise DataDownloadError(f"{local} is not an MNIST archive: it lacks {', '.join(missing)}.")
        x_train, y_train, x_test, y_test = (archive[key] for key in _KEYS)
    return (x_train, y_train), (x_test, y_test)
