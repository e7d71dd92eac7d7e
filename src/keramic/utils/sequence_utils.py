"""`keras.utils.pad_sequences`: ragged lists of sequences -> one padded NumPy array."""

import numpy as np


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre", value=0.0):
    """Pad (or cut) every sequence to `maxlen`, at the start ("pre") or end ("post").

    >>> pad_sequences([[1], [2, 3]])
    array([[0, 1],
           [2, 3]], dtype=int32)
    """
    if padding not in ("pre", "post") or truncating not in ("pre", "post"):
        raise ValueError(f"padding and truncating must be 'pre' or 'post'; received {padding!r}, {truncating!r}.")
    lengths, sample_shape = [], ()
    for sequence in sequences:
        if not hasattr(sequence, "__len__"):
            raise ValueError(f"pad_sequences expects a list of sequences; found {sequence!r}.")
        lengths.append(len(sequence))
        if not sample_shape and len(sequence):
            sample_shape = np.asarray(sequence).shape[1:]
    maxlen = max(lengths, default=0) if maxlen is None else maxlen
    is_text = np.issubdtype(np.dtype(dtype), np.str_) or np.issubdtype(np.dtype(dtype), np.object_)
    if isinstance(value, str) and not is_text:
        raise ValueError(f"`dtype` {dtype} is not compatible with the string padding value {value!r}.")
    out = np.full((len(sequences), maxlen) + tuple(sample_shape), value, dtype=dtype)
    for index, sequence in enumerate(sequences):
        if not len(sequence):
            continue
        kept = sequence[-maxlen:] if truncating == "pre" else sequence[:maxlen]
        kept = np.asarray(kept, dtype=dtype)
        if kept.shape[1:] != tuple(sample_shape):
            raise ValueError(f"Sequence {index} has entries of shape {kept.shape[1:]}; expected {tuple(sample_shape)}.")
        if padding == "post":
            out[index, : len(kept)] = kept
        elif len(kept):
            out[index, -len(kept):] = kept
    return out
