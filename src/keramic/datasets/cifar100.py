"""CIFAR-100 (`keras.datasets.cifar100`): 60,000 32x32 colour images in 100 fine classes grouped
into 20 coarse ones, fetched once from the CIFAR site and cached; read without `pickle`.

>>> (x_train, y_train), (x_test, y_test) = keramic.datasets.cifar100.load_data(label_mode="coarse")
"""

import os

import numpy as np

from keramic.datasets._cifar import load_batch
from keramic.utils.file_utils import get_file

ORIGIN = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
SHA256 = "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"


def load_data(label_mode="fine", *, origin=ORIGIN, file_hash=SHA256, cache_dir=None):
    """`(x_train, y_train), (x_test, y_test)`: uint8 images (n, 32, 32, 3), labels (n, 1) of the
    "fine" (100) or "coarse" (20) classes."""
    if label_mode not in ("fine", "coarse"):
        raise ValueError(f"label_mode must be 'fine' or 'coarse'; got {label_mode!r}.")
    root = get_file("cifar-100-python-target", origin=origin, file_hash=file_hash, cache_dir=cache_dir, extract=True)
    folder = os.path.join(root, "cifar-100-python")
    x_train, y_train = load_batch(os.path.join(folder, "train"), label_key=f"{label_mode}_labels")
    x_test, y_test = load_batch(os.path.join(folder, "test"), label_key=f"{label_mode}_labels")
    y_train = np.reshape(y_train, (len(y_train), 1))
    y_test = np.reshape(y_test, (len(y_test), 1))
    return (x_train.transpose(0, 2, 3, 1), y_train), (x_test.transpose(0, 2, 3, 1), y_test)
