"""The UCI 8x8 handwritten digits, shipped inside keramic so examples and tests run offline.

1797 images of 8x8 cells holding 0..16 (on-pixels counted over 4x4 blocks of a 32x32 bitmap),
labels 0..9. Data by E. Alpaydin and C. Kaynak, UCI Machine Learning Repository, CC BY 4.0;
see `data/digits.LICENSE.txt`.

>>> (x_train, y_train), (x_test, y_test) = keramic.datasets.digits.load_data()
>>> x_train.shape, x_test.shape
((1437, 8, 8), (360, 8, 8))
"""

from importlib import resources

import numpy as np

_SHAPES = {"images": ((1797, 8, 8), np.uint8), "labels": ((1797,), np.uint8)}


def _read():
    resource = resources.files(__package__).joinpath("data/digits.npz")
    with resource.open("rb") as f, np.load(f, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in _SHAPES}
    for name, (shape, dtype) in _SHAPES.items():
        if arrays[name].shape != shape or arrays[name].dtype != dtype:
            raise ValueError(f"keramic's shipped digits.npz is damaged: '{name}' is not {dtype.__name__} {shape}.")
    return arrays["images"], arrays["labels"]


def load_data(test_split=0.2, seed=113):
    """Return `(x_train, y_train), (x_test, y_test)`: uint8 images (n, 8, 8) and uint8 labels.

    The samples are shuffled with `seed` before the last `test_split` fraction is held out, so
    the same arguments always give the same split.
    """
    if not 0.0 <= test_split < 1.0:
        raise ValueError(f"test_split must be in [0, 1), got {test_split!r}.")
    images, labels = _read()
    order = np.random.default_rng(seed).permutation(len(labels))
    images, labels = images[order], labels[order]
    n_train = int(len(labels) * (1.0 - test_split))
    return (images[:n_train], labels[:n_train]), (images[n_train:], labels[n_train:])
