"""TextVectorization: standardize, split, n-grams, then a StringLookup, on Python/numpy strings."""

import re

import numpy as np
import torch

from keramic import backend
from keramic.layers.base import Layer
from keramic.layers.preprocessing import strings
from keramic.layers.preprocessing.lookup import StringLookup
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, in_safe_mode, serialize_keras_object

# The characters Keras's "strip_punctuation" removes.
_PUNCTUATION = re.compile(r"[!\"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~']")
_ASCII_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_WHITESPACE = " \t\n\r\v\f"


def _ngrams(tokens: list, widths) -> list:
    """All n-grams of each width in `widths`, width by width, joined by a space."""
    grams: list[str] = []
    for width in widths:
        grams.extend(" ".join(tokens[i : i + width]) for i in range(len(tokens) - width + 1))
    return grams


@keras_export("keras.layers")
class TextVectorization(Layer):
    """Turn raw strings into token indices (or multi-hot / count / TF-IDF vectors).

    >>> layer = TextVectorization()
    >>> layer.adapt(["the cat sat", "the dog"])
    >>> layer(["the dog sat"])
    tensor([[2, 4, 3]])
    """

    _allows_non_tensor_positional_args = True  # as Keras's data layers

    _converts_input_args = False  # as Keras: inputs are taken as they come

    def __init__(
        self,
        max_tokens=None,
        standardize="lower_and_strip_punctuation",
        split="whitespace",
        ngrams=None,
        output_mode="int",
        output_sequence_length=None,
        pad_to_max_tokens=False,
        vocabulary=None,
        idf_weights=None,
        sparse=False,
        ragged=False,
        encoding="utf-8",
        name=None,
        **kwargs,
    ):
        if sparse:
            raise ValueError("`sparse=True` can only be used with the TensorFlow backend.")
        if ragged:
            raise ValueError("`ragged=True` can only be used with the TensorFlow backend.")
        if not (standardize is None or callable(standardize) or standardize in ("lower_and_strip_punctuation", "lower", "strip_punctuation")):
            raise ValueError(f"Invalid value for argument `standardize`: {standardize!r}")
        if not (split is None or callable(split) or split in ("whitespace", "character")):
            raise ValueError(f"Invalid value for argument `split`: {split!r}")
        output_mode = {"binary": "multi_hot", "tf-idf": "tf_idf"}.get(output_mode, output_mode)
        encoding_check = ("int", "one_hot", "multi_hot", "count", "tf_idf")
        if output_mode not in encoding_check:
            raise ValueError(f"Invalid value for argument `output_mode`. Expected one of {encoding_check}. Received: output_mode={output_mode}")
        if not (ngrams is None or isinstance(ngrams, int) or isinstance(ngrams, tuple) and all(isinstance(i, int) for i in ngrams)):
            raise ValueError(f"`ngrams` must be None, an integer, or a tuple of integers. Received: ngrams={ngrams}")
        if output_mode == "int" and not (output_sequence_length is None or isinstance(output_sequence_length, int)):
            raise ValueError(
                "`output_sequence_length` must be either None or an integer when `output_mode` is 'int'. "
                f"Received: output_sequence_length={output_sequence_length}"
            )
        if output_mode != "int" and output_sequence_length is not None:
            raise ValueError(
                f"`output_sequence_length` must not be set if `output_mode` is not 'int'. Received output_sequence_length={output_sequence_length}."
            )
        self._max_tokens = max_tokens
        self._standardize = standardize
        self._split = split
        self._ngrams_arg = ngrams
        self._ngrams = tuple(range(1, ngrams + 1)) if isinstance(ngrams, int) else ngrams
        self._ragged = ragged
        self._output_mode = output_mode
        self._output_sequence_length = output_sequence_length
        self._encoding = encoding
        self._has_input_vocabulary = kwargs.pop("has_input_vocabulary", vocabulary is not None)
        vocabulary_size = kwargs.pop("vocabulary_size", None)
        super().__init__(name=name, **kwargs)
        self._lookup_layer = StringLookup(
            max_tokens=max_tokens,
            vocabulary=vocabulary,
            idf_weights=idf_weights,
            pad_to_max_tokens=pad_to_max_tokens,
            mask_token="",
            output_mode=output_mode,
            sparse=sparse,
            has_input_vocabulary=self._has_input_vocabulary,
            encoding=encoding,
            vocabulary_size=vocabulary_size,
        )

    def build(self, input_shape=None):
        """Nothing to create; Keras's layer records a build config all the same."""

    # ------------------------------------------------------------ strings in
    def _as_input_tensor(self, x):
        return x

    def __call__(self, *args, **kwargs):
        if args and isinstance(args[0], (list, tuple, str)):
            args = (strings.as_array(args[0]),) + args[1:]
        return super().__call__(*args, **kwargs)

    def _standardized(self, array: np.ndarray) -> np.ndarray:
        if callable(self._standardize):
            # A TensorFlow-string result (tf.strings.* functions) arrives as bytes: decode it.
            return strings.as_array(self._standardize(array.astype(str))).astype(object)
        if self._standardize in ("lower", "lower_and_strip_punctuation"):
            array = np.vectorize(lambda s: s.translate(_ASCII_UPPER), otypes=[object])(array)
        if self._standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
            array = np.vectorize(lambda s: _PUNCTUATION.sub("", s), otypes=[object])(array)
        return array

    def _preprocess(self, inputs):
        """Standardized strings -> a list of token lists (one per row), or the array when `split=None`."""
        array = strings.as_array(inputs)
        if array.size:
            array = self._standardized(array)
        if self._split is None:
            if self._ngrams is None:
                return array
            rows = array.reshape(array.shape[0], -1).tolist()
        else:
            if array.ndim > 1:
                if array.shape[-1] != 1:
                    raise ValueError(
                        "When using `TextVectorization` to tokenize strings, the input rank must be 1 or the last "
                        f"shape dimension must be 1. Received: inputs.shape={array.shape} with rank={array.ndim}"
                    )
                array = array.reshape(array.shape[:-1])
            if self._split == "whitespace":
                rows = [s.split() for s in array.reshape(-1).tolist()]
            elif self._split == "character":
                rows = [list(s) for s in array.reshape(-1).tolist()]
            else:
                rows = [list(strings.as_array(r).reshape(-1).tolist()) for r in self._split(array)]
        if self._ngrams is not None:
            rows = [_ngrams(row, self._ngrams) for row in rows]
        return rows

    # ------------------------------------------------------------ adapt
    def adapt(self, data, batch_size=None, steps=None):
        """Learn the vocabulary from strings: an array or list, or an iterable of batches."""
        self.reset_state()
        if isinstance(data, (list, tuple, np.ndarray, str)):
            array = strings.as_array(data)
            self.update_state(array[:, None] if array.ndim == 1 else array)
        else:
            for step, batch in enumerate(data):
                if steps is not None and step >= steps:
                    break
                self.update_state(batch[0] if isinstance(batch, tuple) else batch)
        self.finalize_state()

    def update_state(self, data):
        processed = self._preprocess(data)
        self._lookup_layer.update_state(processed if isinstance(processed, list) else processed)

    def finalize_state(self):
        self._lookup_layer.finalize_state()

    def reset_state(self):
        self._lookup_layer.reset_state()

    def get_vocabulary(self, include_special_tokens=True):
        return self._lookup_layer.get_vocabulary(include_special_tokens)

    def vocabulary_size(self):
        return self._lookup_layer.vocabulary_size()

    def set_vocabulary(self, vocabulary, idf_weights=None):
        self._lookup_layer.set_vocabulary(vocabulary, idf_weights=idf_weights)

    # ------------------------------------------------------------ call
    def call(self, inputs):
        if isinstance(inputs, (str, bytes)) or len(getattr(inputs, "shape", (None,))) == 0:
            # As Keras: one string in, one row out (no batch axis); unsplit counting modes already
            # read a rank-1 batch as one sample
            row = self.call(np.asarray(inputs, dtype=object).reshape(1))
            return row if self._split is None and self._output_mode != "int" else row[0]
        processed = self._preprocess(inputs)
        lookup = self._lookup_layer
        if not isinstance(processed, list):
            ids = lookup.call(processed)
            length = self._output_sequence_length
            if self._output_mode != "int" or length is None:
                return ids
            # Unsplit strings: as Keras, the last axis is cut or zero-padded to the sequence length
            return torch.nn.functional.pad(ids[..., :length], (0, max(length - ids.shape[-1], 0)))
        ids = [lookup._lookup(np.array(row, dtype=object)).tolist() if row else [] for row in processed]
        if self._output_mode != "int":
            encoded = [lookup._encode(torch.as_tensor(row, dtype=torch.int64)) if row else None for row in ids]
            depth = lookup.max_tokens if lookup.pad_to_max_tokens else lookup._frozen_vocab_size
            dtype = torch.float32 if self._output_mode == "tf_idf" else torch.int64
            rows = [e if e is not None else torch.zeros(depth, dtype=dtype) for e in encoded]
            return torch.stack(rows).to(backend.get_device())
        length = self._output_sequence_length
        if length is None:
            length = max((len(row) for row in ids), default=0)
        padded = np.zeros((len(ids), length), dtype="int64")
        for i, row in enumerate(ids):
            row = row[:length]
            padded[i, : len(row)] = row
        return torch.as_tensor(padded, device=backend.get_device())

    @property
    def input_dtype(self):
        return "string"

    @property
    def _graph_output_dtype(self):
        """The counting modes' eager dtype (int64), which a `tf.data` map yields as in Keras."""
        return "int64" if self._output_mode in ("multi_hot", "count") else None

    def _graph_output_shape(self, input_shape):
        """The static shape a `tf.data` map's output has in Keras, which differs from
        `compute_output_shape`: a split batch of `(batch, 1)` strings gives `(None, width)`, and
        with `split=None` a rank-1 batch is one sample (`(width,)`)."""
        if self._output_mode == "int":
            if self._split is None and self._output_sequence_length is None:
                return tuple(input_shape)
            width = self._output_sequence_length
        else:
            width = self.compute_output_shape((None,))[-1]
        if len(input_shape) == 0 or (self._split is None and len(input_shape) == 1):
            return (width,)
        return (None, width)

    def compute_output_shape(self, input_shape):
        if self._output_mode == "int":  # one string (a `tf.data` element) has no batch axis
            return tuple(input_shape[:1]) + (self._output_sequence_length,)
        if self._split is None:
            if len(input_shape) <= 1:
                input_shape = tuple(input_shape) + (1,)
        else:
            input_shape = tuple(input_shape) + (None,)
        return self._lookup_layer.compute_output_shape(input_shape)

    def compute_output_spec(self, inputs):
        from keramic.symbolic import KerasTensor

        dtype = "int64" if self._output_mode == "int" else "float32"
        return KerasTensor(self.compute_output_shape(inputs.shape), dtype)

    # ------------------------------------------------------------ config and saving
    def get_config(self):
        config = super().get_config()
        lookup = self._lookup_layer
        config.update(
            {
                "max_tokens": lookup.max_tokens,
                "standardize": self._standardize if not callable(self._standardize) else serialize_keras_object(self._standardize),
                "split": self._split if not callable(self._split) else serialize_keras_object(self._split),
                "ngrams": self._ngrams_arg,
                "output_mode": self._output_mode,
                "output_sequence_length": self._output_sequence_length,
                "pad_to_max_tokens": lookup.pad_to_max_tokens,
                "sparse": lookup.sparse,
                "ragged": self._ragged,
                "vocabulary": lookup.get_config()["vocabulary"],
                "idf_weights": lookup.get_config()["idf_weights"],
                "encoding": self._encoding,
                "vocabulary_size": self.vocabulary_size(),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("standardize", "split"):
            if config.get(key) is not None and not isinstance(config[key], str):
                config[key] = deserialize_keras_object(config[key])
        if isinstance(config.get("ngrams"), list):
            config["ngrams"] = tuple(config["ngrams"])
        if isinstance(config.get("vocabulary"), str) and in_safe_mode():
            raise ValueError(
                "Requested the loading of a vocabulary file outside of the model archive. This carries a potential "
                "risk of loading arbitrary and sensitive files and thus it is disallowed by default. If you trust the "
                f"source, load with `safe_mode=False`. Vocabulary file: '{config['vocabulary']}'"
            )
        return super().from_config(config)

    def save_own_variables(self, store):
        self._lookup_layer.save_own_variables(store)

    def load_own_variables(self, store):
        self._lookup_layer.load_own_variables(store)

    def save_assets(self, dir_path):
        self._lookup_layer.save_assets(dir_path)

    def load_assets(self, dir_path):
        self._lookup_layer.load_assets(dir_path)
