"""IMDB movie reviews (`keras.datasets.imdb`): 50,000 reviews as word-index sequences with a
sentiment label, fetched once from Keras's copy and cached. The sequences are a pickled object
array; keramic reads it with its restricted reader (`safe_pickle`), never with `pickle`.

>>> (x_train, y_train), (x_test, y_test) = keramic.datasets.imdb.load_data(num_words=10000)
"""

import json

import numpy as np

from keramic.datasets import _common
from keramic.datasets.safe_pickle import load_npz
from keramic.utils.file_utils import get_file

ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb.npz"
SHA256 = "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"
WORD_INDEX_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb_word_index.json"
WORD_INDEX_MD5 = "bfafd718b763782e994055a2d397834f"


def load_data(
    path="imdb.npz",
    num_words=None,
    skip_top=0,
    maxlen=None,
    seed=113,
    start_char=1,
    oov_char=2,
    index_from=3,
    *,
    origin=ORIGIN,
    file_hash=SHA256,
    cache_dir=None,
    **kwargs,
):
    """`(x_train, y_train), (x_test, y_test)`: object arrays of word-index lists and int labels.

    Each split is shuffled with `seed`; indices are offset by `index_from` after a `start_char`;
    words outside `[skip_top, num_words)` become `oov_char`; `maxlen` drops longer reviews.
    """
    if kwargs:
        raise TypeError(f"Unrecognized keyword arguments: {sorted(kwargs)}.")
    local = get_file(path, origin=origin, file_hash=file_hash, cache_dir=cache_dir)
    arrays = load_npz(local)
    rng = np.random.RandomState(seed)
    splits = []
    for x_key, y_key in (("x_train", "y_train"), ("x_test", "y_test")):
        x, labels = arrays[x_key], arrays[y_key]
        indices = np.arange(len(x))
        rng.shuffle(indices)
        splits.append((_common.shift_words(x[indices], start_char, index_from), labels[indices]))
    (x_train, labels_train), (x_test, labels_test) = splits
    if maxlen:
        x_train, labels_train = _common.drop_long(maxlen, x_train, labels_train)
        x_test, labels_test = _common.drop_long(maxlen, x_test, labels_test)
        if not x_train or not x_test:
            raise ValueError(f"No sequence is shorter than maxlen={maxlen}; increase maxlen.")
    sequences = _common.limit_vocabulary(x_train + x_test, num_words, skip_top, oov_char)
    labels = np.concatenate([labels_train, labels_test])
    cut = len(x_train)
    return (
        (_common.as_object_array(sequences[:cut]), labels[:cut]),
        (_common.as_object_array(sequences[cut:]), labels[cut:]),
    )


def get_word_index(path="imdb_word_index.json", *, origin=WORD_INDEX_ORIGIN, file_hash=WORD_INDEX_MD5, cache_dir=None):
    """The word -> index dictionary (index before the `index_from` offset)."""
    local = get_file(path, origin=origin, file_hash=file_hash, cache_dir=cache_dir)
    with open(local, encoding="utf-8") as f:
        return json.load(f)
