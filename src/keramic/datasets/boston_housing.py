"""Boston housing prices (`keras.datasets.boston_housing`): 506 samples of 13 features, fetched
once from Keras's copy and cached.

>>> (x_train, y_train), (x_test, y_test) = keramic.datasets.boston_housing.load_data()
>>> x_train.shape
(404, 13)
"""

import numpy as np

from keramic.datasets._common import shuffle_and_split
from keramic.utils.file_utils import get_file

ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/boston_housing.npz"
SHA256 = "f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5"


def load_data(path="boston_housing.npz", test_split=0.2, seed=113, *, origin=ORIGIN, file_hash=SHA256, cache_dir=None):
    """`(x_train, y_train), (x_test, y_test)`: float64 features (n, 13) and prices (n,), shuffled
    with `seed` and split at `1 - test_split`, as Keras does."""
    if not 0 <= test_split < 1:
        raise ValueError(f"test_split must be in [0, 1); got {test_split}.")
    local = get_file(path, origin=origin, file_hash=file_hash, cache_dir=cache_dir)
    with np.load(local, allow_pickle=False) as archive:
        x, y = archive["x"], archive["y"]
    return shuffle_and_split(x, y, test_split, seed)
