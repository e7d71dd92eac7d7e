"""Steps shared by several `keras.datasets` loaders: a seeded shuffle-and-split, and the word-index
remapping of the imdb and reuters sequences, done exactly as Keras does them."""

import numpy as np


def shuffle_and_split(x, y, test_split, seed):
    """Shuffle with `np.random.RandomState(seed)`, then keep the first `1 - test_split` for training."""
    if not 0 <= test_split < 1:
        raise ValueError(f"test_split must be in [0, 1); got {test_split}.")
    indices = np.arange(len(x))
    np.random.RandomState(seed).shuffle(indices)
    x, y = x[indices], y[indices]
    cut = int(len(x) * (1 - test_split))
    return (np.array(x[:cut]), np.array(y[:cut])), (np.array(x[cut:]), np.array(y[cut:]))


def shift_words(sequences, start_char, index_from):
    """Prepend `start_char` (when not None) and offset every word index by `index_from`."""
    if start_char is not None:
        return [[start_char] + [w + index_from for w in x] for x in sequences]
    if index_from:
        return [[w + index_from for w in x] for x in sequences]
    return [list(x) for x in sequences]


def drop_long(maxlen, sequences, labels):
    """Keep the (sequence, label) pairs whose sequence is shorter than `maxlen`."""
    kept = [(x, y) for x, y in zip(sequences, labels) if len(x) < maxlen]
    return [x for x, _ in kept], [y for _, y in kept]


def limit_vocabulary(sequences, num_words, skip_top, oov_char):
    """Words outside [skip_top, num_words) become `oov_char` (or are dropped when it is None)."""
    if not num_words:
        num_words = max(max(x) for x in sequences)
    if oov_char is not None:
        return [[w if skip_top <= w < num_words else oov_char for w in x] for x in sequences]
    return [[w for w in x if skip_top <= w < num_words] for x in sequences]


def as_object_array(sequences):
    """A 1-D object array of lists (ragged sequences), as Keras returns them."""
    array = np.empty(len(sequences), dtype=object)
    for index, sequence in enumerate(sequences):
        array[index] = sequence
    return array
