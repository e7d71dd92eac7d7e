"""Reuters newswire topics (`keras.datasets.reuters`): 11,228 newswires as word-index sequences
labelled with one of 46 topics, fetched once from Keras's copy and cached; the pickled object
array is read with keramic's restricted reader (`safe_pickle`), never with `pickle`.

>>> (x_train, y_train), (x_test, y_test) = keramic.datasets.reuters.load_data(num_words=10000)
"""

import json

import numpy as np

from keramic.datasets import _common
from keramic.datasets.safe_pickle import load_npz
from keramic.utils.file_utils import get_file

ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/reuters.npz"
SHA256 = "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916"
WORD_INDEX_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/reuters_word_index.json"
WORD_INDEX_MD5 = "4d44cc38712099c9e383dc6e5f11a921"
_LABEL_NAMES = (
    "cocoa", "grain", "veg-oil", "earn", "acq", "wheat", "copper", "housing", "money-supply", "coffee",
    "sugar", "trade", "reserves", "ship", "cotton", "carcass", "crude", "nat-gas", "cpi", "money-fx",
    "interest", "gnp", "meal-feed", "alum", "oilseed", "gold", "tin", "strategic-metal", "livestock",
    "retail", "ipi", "iron-steel", "rubber", "heat", "jobs", "lei", "bop", "zinc", "orange", "pet-chem",
    "dlr", "gas", "silver", "wpi", "hog", "lead",
)  # fmt: skip


def load_data(
    path="reuters.npz",
    num_words=None,
    skip_top=0,
    maxlen=None,
    test_split=0.2,
    seed=113,
    start_char=1,
    oov_char=2,
    index_from=3,
    *,
    origin=ORIGIN,
    file_hash=SHA256,
    cache_dir=None,
):
    """`(x_train, y_train), (x_test, y_test)`: object arrays of word-index lists and topic labels,
    shuffled with `seed` and split at `1 - test_split` (word handling as `imdb.load_data`)."""
    local = get_file(path, origin=origin, file_hash=file_hash, cache_dir=cache_dir)
    arrays = load_npz(local)
    xs, labels = arrays["x"], arrays["y"]
    indices = np.arange(len(xs))
    np.random.RandomState(seed).shuffle(indices)
    xs, labels = _common.shift_words(xs[indices], start_char, index_from), labels[indices]
    if maxlen:
        xs, labels = _common.drop_long(maxlen, xs, labels)
    xs = _common.limit_vocabulary(xs, num_words, skip_top, oov_char)
    cut = int(len(xs) * (1 - test_split))
    return (
        (_common.as_object_array(xs[:cut]), np.array(labels[:cut])),
        (_common.as_object_array(xs[cut:]), np.array(labels[cut:])),
    )


def get_word_index(path="reuters_word_index.json", *, origin=WORD_INDEX_ORIGIN, file_hash=WORD_INDEX_MD5, cache_dir=None):
    """The word -> index dictionary (index before the `index_from` offset)."""
    local = get_file(path, origin=origin, file_hash=file_hash, cache_dir=cache_dir)
    with open(local, encoding="utf-8") as f:
        return json.load(f)


def get_label_names():
    """The 46 topic names, in label order."""
    return _LABEL_NAMES
