"""Ready-made datasets (`keras.datasets`): each downloaded once from Keras's source, hash-checked
and cached; `digits` ships with keramic. Pickled archives are read without `pickle`."""

from keramic.datasets import (
    boston_housing,
    california_housing,
    cifar10,
    cifar100,
    digits,
    fashion_mnist,
    imdb,
    mnist,
    reuters,
)

__all__ = [
    "boston_housing",
    "california_housing",
    "cifar10",
    "cifar100",
    "digits",
    "fashion_mnist",
    "imdb",
    "mnist",
    "reuters",
]
