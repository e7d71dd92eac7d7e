"""Fashion-MNIST (`keras.datasets.fashion_mnist`): 70,000 28x28 greyscale images of 10 clothing
classes in the IDX format, fetched once from Keras's copy and cached.

Data: Zalando SE, MIT license.

>>> (x_train, y_train), (x_test, y_test) = keramic.datasets.fashion_mnist.load_data()
>>> x_train.shape, x_train.dtype
((60000, 28, 28), dtype('uint8'))
"""

import gzip
import os

import numpy as np

from keramic.errors import DataDownloadError
from keramic.utils.file_utils import get_file

BASE_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)


def load_data(*, base_url=BASE_URL, cache_dir=None):
    """`(x_train, y_train), (x_test, y_test)`: uint8 images (n, 28, 28) and uint8 labels (n,).

    Keras publishes no checksums for these four files; each is checked as an IDX file instead.
    """
    paths = [
        get_file(name, origin=base_url + name, cache_dir=cache_dir, cache_subdir=os.path.join("datasets", "fashion-mnist"))
        for name in FILES
    ]
    y_train = _read_idx(paths[0], magic=2049)
    x_train = _read_idx(paths[1], magic=2051).reshape(len(y_train), 28, 28)
    y_test = _read_idx(paths[2], magic=2049)
    x_test = _read_idx(paths[3], magic=2051).reshape(len(y_test), 28, 28)
    return (x_train, y_train), (x_test, y_test)


def _read_idx(path, magic):
    """The uint8 payload of a gzipped IDX file, after checking its magic number and declared size."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    dims = 1 if magic == 2049 else 3
    header = 4 + 4 * dims
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise DataDownloadError(f"{path} is not an IDX file with magic number {magic}.")
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    payload = np.frombuffer(raw, np.uint8, offset=header)
    if payload.size != int(np.prod(shape)):
        raise DataDownloadError(f"{path}: the header declares {shape} values but the file holds {payload.size}.")
    return payload
