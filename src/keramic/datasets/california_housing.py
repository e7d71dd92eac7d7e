"""California housing prices (`keras.datasets.california_housing`): 20,640 districts with 8
features (or the first 600 with `version="small"`), fetched once from Keras's copy and cached.

>>> (x_train, y_train), (x_test, y_test) = keramic.datasets.california_housing.load_data()
>>> x_train.shape
(16512, 8)
"""

import numpy as np

from keramic.datasets._common import shuffle_and_split
from keramic.utils.file_utils import get_file

ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/california_housing.npz"
SHA256 = "1a2e3a52e0398de6463aebe6f4a8da34fb21fbb6b934cf88c3425e766f2a1a6f"


def load_data(
    version="large",
    path="california_housing.npz",
    test_split=0.2,
    seed=113,
    *,
    origin=ORIGIN,
    file_hash=SHA256,
    cache_dir=None,
):
    """`(x_train, y_train), (x_test, y_test)`: features (n, 8) and median house values (n,)."""
    if not 0 <= test_split < 1:
        raise ValueError(f"test_split must be in [0, 1); got {test_split}.")
    if version not in ("small", "large"):
        raise ValueError(f"version must be 'small' or 'large'; got {version!r}.")
    local = get_file(path, origin=origin, file_hash=file_hash, cache_dir=cache_dir)
    with np.load(local, allow_pickle=False) as archive:
        x, y = archive["x"], archive["y"]
    if version == "small":
        x, y = x[:600], y[:600]
    return shuffle_and_split(x, y, test_split, seed)
