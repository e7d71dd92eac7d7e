"""CIFAR-10 (`keras.datasets.cifar10`): 60,000 32x32 colour images in 10 classes, fetched once
from the CIFAR site and cached. The batches are Python pickles: they are read by keramic's
restricted reader (`safe_pickle`), never by `pickle`.

>>> (x_train, y_train), (x_test, y_test) = keramic.datasets.cifar10.load_data()
>>> x_train.shape, y_train.shape
((50000, 32, 32, 3), (50000, 1))
"""

import os

import numpy as np

from keramic.datasets._cifar import load_batch
from keramic.utils.file_utils import get_file

ORIGIN = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"


def load_data(*, origin=ORIGIN, file_hash=SHA256, cache_dir=None):
    """`(x_train, y_train), (x_test, y_test)`: uint8 images (n, 32, 32, 3), uint8 labels (n, 1)."""
    root = get_file("cifar-10-batches-py-target", origin=origin, file_hash=file_hash, cache_dir=cache_dir, extract=True)
    folder = os.path.join(root, "cifar-10-batches-py")
    parts = [load_batch(os.path.join(folder, f"data_batch_{i}")) for i in range(1, 6)]
    x_train = np.concatenate([data for data, _ in parts]).astype("uint8")
    y_train = np.concatenate([np.asarray(labels) for _, labels in parts]).astype("uint8")
    x_test, y_test = load_batch(os.path.join(folder, "test_batch"))
    y_train = y_train.reshape(len(y_train), 1)
    y_test = np.reshape(y_test, (len(y_test), 1)).astype(y_train.dtype)
    return (x_train.transpose(0, 2, 3, 1), y_train), (x_test.astype(x_train.dtype).transpose(0, 2, 3, 1), y_test)
