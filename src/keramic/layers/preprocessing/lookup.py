"""StringLookup and IntegerLookup: tokens <-> indices through a vocabulary, without TensorFlow.

The vocabulary is learned by `adapt` (tokens by count, ties by token, both descending, as Keras
orders them) or given. As in Keras, a given vocabulary lives in the config, an adapted one is
saved as the asset `vocabulary.txt`, and TF-IDF weights as the variable `idf_weights`.
"""

import collections
import math
import os
import sys

import numpy as np
import torch

from keramic import backend
from keramic.layers import tf_graph
from keramic.layers.base import Layer
from keramic.layers.preprocessing import encoding, strings
from keramic.layers.preprocessing.fingerprint import fingerprint64, siphash64
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import in_safe_mode
from keramic.symbolic import in_dry_run

_VOCABULARY_FILE = "vocabulary.txt"
_OUTPUT_MODES = ("int", "one_hot", "multi_hot", "count", "tf_idf")


def _listify(value):
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        value = strings.as_array(value).tolist()
    return list(value) if isinstance(value, tuple) else value


def _ragged_rows(data):
    """The rows of a ragged batch (a `tf.RaggedTensor`, or lists of unequal lengths), else None."""
    if hasattr(data, "to_list") and hasattr(data, "row_splits"):  # tf.RaggedTensor, without importing TensorFlow
        return data.to_list()
    if isinstance(data, (list, tuple)) and data and all(isinstance(row, (list, tuple, np.ndarray)) for row in data):
        if len({len(row) for row in data}) > 1:
            return list(data)
    return None


class IndexLookup(Layer):
    """The shared machinery of StringLookup and IntegerLookup (Keras's IndexLookup)."""

    _allows_non_tensor_positional_args = True  # as Keras's data layers

    _converts_input_args = False  # as Keras: inputs are taken as they come

    def __init__(
        self,
        max_tokens,
        num_oov_indices,
        mask_token,
        oov_token,
        vocabulary_dtype,
        vocabulary=None,
        idf_weights=None,
        invert=False,
        output_mode="int",
        sparse=False,
        pad_to_max_tokens=False,
        oov_method="floormod",
        name=None,
        salt=None,
        **kwargs,
    ):
        if max_tokens is not None and max_tokens <= 1:
            raise ValueError(f"If set, `max_tokens` must be greater than 1. Received: max_tokens={max_tokens}")
        if pad_to_max_tokens and max_tokens is None:
            raise ValueError(f"If pad_to_max_tokens is True, must set `max_tokens`. Received: max_tokens={max_tokens}")
        if num_oov_indices < 0:
            raise ValueError(f"`num_oov_indices` must be greater than or equal to 0. Received: num_oov_indices={num_oov_indices}")
        if oov_method not in ("floormod", "farmhash"):
            raise ValueError(f"Invalid value for argument `oov_method`: expected 'floormod' or 'farmhash', received {oov_method!r}")
        if salt is not None:
            if vocabulary_dtype != "string" and oov_method != "farmhash":
                raise ValueError(f"`salt` can only be used when `oov_method='farmhash'`. Received: oov_method={oov_method}")
            if isinstance(salt, (tuple, list)) and len(salt) == 2:
                salt = list(salt)
            elif isinstance(salt, int):
                salt = [salt, salt]
            else:
                raise ValueError(f"The `salt` argument for `IndexLookup` can only be a tuple of 2 integers, or a single integer. Received: salt={salt}.")
        output_mode = {"binary": "multi_hot", "tf-idf": "tf_idf"}.get(output_mode, output_mode)
        encoding.check_output_mode(output_mode, _OUTPUT_MODES, type(self).__name__)
        if invert and output_mode != "int":
            raise ValueError(f"`output_mode` must be `'int'` when `invert` is true. Received: output_mode={output_mode}")
        if sparse:
            raise ValueError("`sparse=True` can only be used with the TensorFlow backend.")
        if idf_weights is not None and output_mode != "tf_idf":
            raise ValueError(
                f"`idf_weights` should only be set if `output_mode` is `'tf_idf'`. Received: idf_weights={idf_weights} "
                f"and output_mode={output_mode}"
            )
        self._frozen_vocab_size = kwargs.pop("vocabulary_size", None)
        self._has_input_vocabulary = kwargs.pop("has_input_vocabulary", vocabulary is not None)
        kwargs.pop("trainable", None)
        kwargs.pop("dtype", None)
        if kwargs:
            raise ValueError(f"Unrecognized keyword argument(s): {kwargs}")
        super().__init__(name=name)
        self.invert = invert
        self.max_tokens = max_tokens
        self.num_oov_indices = num_oov_indices
        self.mask_token = mask_token
        self.oov_token = oov_token
        self.output_mode = output_mode
        self.sparse = sparse
        self.pad_to_max_tokens = pad_to_max_tokens
        self.vocabulary_dtype = vocabulary_dtype
        self.oov_method = oov_method
        self.salt = salt
        self.input_vocabulary = vocabulary if not isinstance(vocabulary, str) else None
        self.input_idf_weights = idf_weights
        self._tokens = []
        self._index = {}
        self.idf_weights = None
        self._reset_counts()
        if vocabulary is not None:
            self.set_vocabulary(vocabulary, idf_weights)

    @property
    def input_dtype(self):
        """As Keras: the vocabulary's dtype, inverse lookups included."""
        return self.vocabulary_dtype

    @property
    def _graph_output_dtype(self):
        """The eager dtype a `tf.data` map yields as in Keras: int64 for the counting modes, the
        vocabulary's for an inverse lookup."""
        if self.invert:
            return "string" if self.vocabulary_dtype == "string" else None
        return "int64" if self.output_mode in ("one_hot", "multi_hot", "count") else None

    # ------------------------------------------------------------ vocabulary
    def _oov_start_index(self):
        return 1 if self.mask_token is not None and self.output_mode == "int" else 0

    def _token_start_index(self):
        return self._oov_start_index() + self.num_oov_indices

    def _as_token(self, value):
        return str(value) if self.vocabulary_dtype == "string" else int(value)

    def vocabulary_size(self) -> int:
        """Vocabulary size, mask and OOV indices included."""
        return len(self._tokens) + self._token_start_index()

    def get_vocabulary(self, include_special_tokens: bool = True) -> list:
        """The vocabulary in index order (special tokens first unless `include_special_tokens=False`);
        as in Keras, the learned or set terms are NumPy scalars (`np.str_`, `np.int64`), the special
        tokens Python values."""
        scalar = np.str_ if self.vocabulary_dtype == "string" else np.int64
        start = self._token_start_index() if include_special_tokens else 0
        vocabulary = self._plain_vocabulary(include_special_tokens)
        return vocabulary[:start] + [scalar(token) for token in vocabulary[start:]]

    def _plain_vocabulary(self, include_special_tokens: bool = True) -> list:
        vocabulary = [self.oov_token] * self._token_start_index() + list(self._tokens)
        if self.mask_token is not None and self.output_mode == "int":
            vocabulary[0] = self.mask_token
        return vocabulary if include_special_tokens else vocabulary[self._token_start_index():]

    def set_vocabulary(self, vocabulary, idf_weights=None) -> None:
        """Replace the vocabulary (and TF-IDF weights); a `str` is a path to a one-token-per-line file."""
        if self.output_mode == "tf_idf":
            if idf_weights is None:
                raise ValueError("`idf_weights` must be set if output_mode is 'tf_idf'.")
        elif idf_weights is not None:
            raise ValueError(
                f"`idf_weights` should only be set if output_mode is `'tf_idf'`. Received: output_mode={self.output_mode} "
                f"and idf_weights={idf_weights}"
            )
        if isinstance(vocabulary, str):
            vocabulary = self._read_vocabulary_file(vocabulary)
        tokens = [self._as_token(v) for v in strings.as_array(vocabulary).reshape(-1).tolist()]
        if not tokens:
            raise ValueError(f"Cannot set an empty vocabulary. Received: vocabulary={vocabulary}")
        start = self._token_start_index()
        special = [self.mask_token] * self._oov_start_index() + [self.oov_token] * self.num_oov_indices
        found_special = tokens[:start] == special
        if found_special:
            tokens = tokens[start:]
        repeated = [t for t, n in collections.Counter(tokens).items() if n > 1]
        if repeated:
            raise ValueError(f"The passed vocabulary has at least one repeated term. Please uniquify your dataset. The repeated terms are: {repeated}")
        if self.mask_token is not None and self.mask_token in tokens:
            raise ValueError(
                "Found reserved mask token at unexpected location in `vocabulary`. Either remove all mask and OOV "
                f"tokens, or include them only at the start of the vocabulary in precisely this order: {special}. "
                f"Received: mask_token={self.mask_token}"
            )
        if self.oov_token is not None and self.invert and self.oov_token in tokens:
            raise ValueError(
                "Found reserved OOV token at unexpected location in `vocabulary`. Either remove all mask and OOV "
                f"tokens, or include them only at the start of the vocabulary in precisely this order: {special}. "
                f"Received: oov_token={self.oov_token}"
            )
        if self.max_tokens is not None and start + len(tokens) > self.max_tokens:
            raise ValueError(
                "Attempted to set a vocabulary larger than the maximum vocab size. Received vocabulary size is "
                f"{start + len(tokens)}; `max_tokens` is {self.max_tokens}."
            )
        self._set_tokens(tokens)
        if self.output_mode == "tf_idf":
            weights = np.asarray(backend.convert_to_numpy(idf_weights), dtype="float64").reshape(-1)
            if len(weights) != len(strings.as_array(vocabulary).reshape(-1)):
                raise ValueError(
                    f"`idf_weights` must be the same length as vocabulary. len(idf_weights) is {len(weights)}; "
                    f"len(vocabulary) is {len(strings.as_array(vocabulary).reshape(-1))}"
                )
            front = (0, 0.0) if found_special else (start, float(np.average(weights)))
            back = self.max_tokens - front[0] - len(weights) if self.pad_to_max_tokens and self.max_tokens else 0
            weights = np.pad(weights, (front[0], back), constant_values=(front[1], 0.0))
            self._set_idf_weights(weights)

    def _read_vocabulary_file(self, path):
        """Read a one-token-per-line file the user named in code (configs naming a path are refused)."""
        if not os.path.exists(path):
            raise ValueError(f"Vocabulary file {path} does not exist.")
        if self.output_mode == "tf_idf":
            raise ValueError("output_mode `'tf_idf'` does not support loading a vocabulary from file.")
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        return lines

    def _set_tokens(self, tokens):
        self._tokens = list(tokens)
        start = self._token_start_index()
        self._index = {token: start + i for i, token in enumerate(self._tokens)}
        self._record_vocabulary_size()

    def _set_idf_weights(self, weights):
        self.idf_weights = torch.as_tensor(np.asarray(weights, dtype="float32"), device=backend.get_device())

    def _record_vocabulary_size(self):
        if self.output_mode != "int" and not self.pad_to_max_tokens and self._frozen_vocab_size is not None:
            if self.vocabulary_size() != self._frozen_vocab_size:
                raise ValueError(
                    f"When using `output_mode={self.output_mode}` and `pad_to_max_tokens=False`, the vocabulary size "
                    f"cannot be changed after the layer is called. Old vocab size is {self._frozen_vocab_size}, "
                    f"new vocab size is {self.vocabulary_size()}"
                )
        self._frozen_vocab_size = self.vocabulary_size()

    # ------------------------------------------------------------ adapt
    def _reset_counts(self):
        self._token_counts = collections.Counter()
        self._document_counts = collections.Counter()
        self._num_documents = 0

    def reset_state(self):
        if not self._has_input_vocabulary:
            self._reset_counts()

    def adapt(self, data, steps=None):
        """Learn the vocabulary (and TF-IDF weights) from an array, a list, or an iterable of batches."""
        self.reset_state()
        if isinstance(data, (list, tuple, np.ndarray, torch.Tensor)):
            array = strings.as_array(data)
            self.update_state(array[:, None] if array.ndim == 1 else array)
        else:
            for step, batch in enumerate(data):
                if steps is not None and step >= steps:
                    break
                self.update_state(batch[0] if isinstance(batch, tuple) else batch)
        self.finalize_state()

    def update_state(self, data):
        if self._has_input_vocabulary:
            raise ValueError(
                f"Cannot adapt layer '{self.name}' after setting a static vocabulary via `vocabulary` argument or "
                "`set_vocabulary()` method."
            )
        rows = self._document_rows(data)
        for row in rows:
            tokens = [self._as_token(t) for t in row]
            self._token_counts.update(tokens)
            if self.output_mode == "tf_idf":
                self._document_counts.update(set(tokens))
        if self.output_mode == "tf_idf":
            self._num_documents += len(rows)

    def _document_rows(self, data):
        """Data as a list of documents (token lists); a flat batch is one document, as in Keras."""
        if isinstance(data, list) and data and isinstance(data[0], list) and any(len(r) != len(data[0]) for r in data):
            return data
        array = strings.as_array(data)
        if array.ndim == 0:
            array = array.reshape(1, 1)
        elif array.ndim == 1:
            array = array[None, :]
        return [list(row) for row in array.reshape(array.shape[0], -1)]

    def finalize_state(self):
        if self._has_input_vocabulary or not self._token_counts:
            self._record_vocabulary_size()
            return
        counts = {t: n for t, n in self._token_counts.items() if t != self.mask_token and t != self.oov_token}
        tokens = sorted(counts, key=lambda t: (counts[t], _sort_key(t)), reverse=True)
        if self.max_tokens:
            tokens = tokens[: self.max_tokens - self._token_start_index()]
        self._tokens, self._index = [], {}
        self._set_tokens(tokens)
        if self.output_mode == "tf_idf":
            weights = np.array(
                [math.log(1 + self._num_documents / (1 + self._document_counts[t])) for t in tokens], dtype="float32"
            )
            mean = float(np.mean(weights, dtype="float32")) if len(weights) else 0.0
            weights = np.pad(weights, (self._token_start_index(), 0), constant_values=mean)
            if self.pad_to_max_tokens and self.max_tokens is not None:
                weights = np.pad(weights, (0, self.max_tokens - len(weights)))
            self._set_idf_weights(weights)
        self._reset_counts()

    # ------------------------------------------------------------ call
    def _as_input_tensor(self, x):
        return x

    def __call__(self, *args, **kwargs):
        rows = _ragged_rows(args[0]) if args else None
        if rows is not None:
            return self._encode_ragged(rows)
        if args and isinstance(args[0], (list, tuple)):
            args = (strings.as_array(args[0]),) + args[1:]
        return super().__call__(*args, **kwargs)

    def _encode_ragged(self, rows):
        """One multi-hot/count/TF-IDF vector per row, as Keras encodes a ragged batch."""
        if self.invert or self.output_mode not in ("multi_hot", "count", "tf_idf"):
            raise ValueError(
                f"Layer '{self.name}' got a ragged batch (rows of unequal lengths); torch has no ragged tensors, so "
                "only output_mode 'multi_hot', 'count' or 'tf_idf' take one. Pad the rows first "
                "(keras.utils.pad_sequences) for output_mode='int'."
            )
        encoded = [self.call(strings.as_array(list(row))) if len(row) else None for row in rows]
        depth = self.max_tokens if self.pad_to_max_tokens else self._frozen_vocab_size
        empty = torch.zeros(depth, dtype=torch.float32 if self.output_mode == "tf_idf" else torch.int64,
                            device=backend.get_device())
        return torch.stack([empty if row is None else row for row in encoded])

    def _oov_index(self, value):
        if self.num_oov_indices == 0 and in_dry_run():
            return 0  # a placeholder value ("" or 0) during output-spec inference, not a user's token
        if self.num_oov_indices == 0:
            raise ValueError(
                f"When `num_oov_indices=0` all inputs should be in vocabulary, found OOV values [{value}], "
                "consider setting `num_oov_indices=1`."
            )
        if self.num_oov_indices == 1:
            bucket = 0
        elif self.vocabulary_dtype != "string" and self.oov_method != "farmhash":
            bucket = int(value) % self.num_oov_indices
        else:
            data = strings.to_bytes(value)
            digest = siphash64(self.salt, data) if self.salt is not None else fingerprint64(data)
            bucket = digest % self.num_oov_indices
        return self._oov_start_index() + bucket

    def _lookup(self, values: np.ndarray) -> np.ndarray:
        flat = values.reshape(-1).tolist()
        if self.invert:
            vocabulary = self._plain_vocabulary()
            found = [self.mask_token if (self.mask_token is not None and v == 0) else
                     (vocabulary[v] if self._token_start_index() <= v < len(vocabulary) else self.oov_token) for v in flat]
            return np.array(found, dtype=object).reshape(values.shape)
        mask_value = 0 if self.output_mode == "int" else -1
        ids = []
        for value in flat:
            token = self._as_token(value)
            if self.mask_token is not None and token == self.mask_token:
                ids.append(mask_value)
            else:
                index = self._index.get(token)
                ids.append(index if index is not None else self._oov_index(token))
        return np.array(ids, dtype="int64").reshape(values.shape)

    def call(self, inputs):
        values = strings.as_array(inputs)
        if self.invert:
            found = self._lookup(values.astype("int64"))
            if self.vocabulary_dtype == "string":
                return found.tolist()  # torch has no strings: Keras's torch backend returns a list too
            return torch.as_tensor(found.astype("int64"), device=backend.get_device())
        if self.output_mode != "int" and not self.pad_to_max_tokens and self._frozen_vocab_size is None:
            raise RuntimeError(
                f"When using `output_mode={self.output_mode}` and `pad_to_max_tokens=False`, you must set the layer's "
                "vocabulary before calling it. Either pass a `vocabulary` argument to the layer, or call `adapt` "
                "with some sample data."
            )
        ids = torch.as_tensor(self._lookup(values), device=backend.get_device())
        return self._encode(ids)

    def _encode(self, ids: torch.Tensor) -> torch.Tensor:
        if self.output_mode == "int":
            return ids
        depth = self.max_tokens if self.pad_to_max_tokens else self._frozen_vocab_size
        if self.output_mode == "tf_idf":
            counts = encoding.encode(ids, "count", depth, "float32")
            if self.idf_weights is None:
                raise ValueError("When `output_mode` is `'tf_idf'`, `idf_weights` must be provided.")
            return counts * self.idf_weights.to(counts.device)
        return encoding.encode(ids, self.output_mode, depth, "int64")

    def compute_output_shape(self, input_shape):
        if self.output_mode == "int":
            return tuple(input_shape)
        depth = self.max_tokens if self.pad_to_max_tokens else self._frozen_vocab_size
        input_shape = tuple(input_shape)
        if self.output_mode == "one_hot":
            if len(input_shape) > 1 and input_shape[-1] == 1:
                return input_shape[:-1] + (depth,)
            return input_shape + (depth,)
        return input_shape[:-1] + (depth,)

    def compute_output_spec(self, inputs):
        from keramic.symbolic import KerasTensor

        dtype = "int64" if self.output_mode == "int" else "float32"
        return KerasTensor(self.compute_output_shape(inputs.shape), dtype)

    # ------------------------------------------------------------ config and saving
    def get_build_config(self):
        return {}

    def build_from_config(self, config):
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "invert": self.invert,
                "max_tokens": self.max_tokens,
                "num_oov_indices": self.num_oov_indices,
                "oov_token": self.oov_token,
                "mask_token": self.mask_token,
                "output_mode": self.output_mode,
                "sparse": self.sparse,
                "pad_to_max_tokens": self.pad_to_max_tokens,
                "vocabulary_dtype": self.vocabulary_dtype,
                "idf_weights": _listify(self.input_idf_weights),
                "vocabulary": _listify(self.input_vocabulary),
                "vocabulary_size": self._frozen_vocab_size,
                "oov_method": self.oov_method,
                "salt": self.salt,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        """A config naming a vocabulary *file* is refused in safe mode: loading never reads paths it is handed."""
        vocabulary = config.get("vocabulary")
        if isinstance(vocabulary, str) and in_safe_mode():
            raise ValueError(
                "Requested the loading of a vocabulary file outside of the model archive. This carries a potential "
                "risk of loading arbitrary and sensitive files and thus it is disallowed by default. If you trust the "
                f"source, load with `safe_mode=False`. Vocabulary file: '{vocabulary}'"
            )
        return super().from_config(config)

    def save_own_variables(self, store):
        if self.output_mode == "tf_idf":
            store["idf_weights"] = self.idf_weights.detach().cpu().numpy()

    def load_own_variables(self, store):
        if self.output_mode == "tf_idf":
            self._set_idf_weights(np.asarray(store["idf_weights"]))

    def save_assets(self, dir_path):
        if self.input_vocabulary is not None:
            return  # a given vocabulary is in the config
        with open(os.path.join(dir_path, _VOCABULARY_FILE), "w", encoding="utf-8") as f:
            f.write("\n".join(str(token) for token in self.get_vocabulary(include_special_tokens=True)))

    def load_assets(self, dir_path):
        if self.input_vocabulary is not None or dir_path is None:
            return
        path = os.path.join(dir_path, _VOCABULARY_FILE)
        if not os.path.exists(path):
            return
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        while lines and lines[-1] == "":
            lines.pop()
        values = [self._as_token(line) for line in lines]
        self._frozen_vocab_size = None
        if self.output_mode != "tf_idf":
            self.set_vocabulary(values)
            return
        # The IDF weights were restored with the variables (before the assets): keep them as saved.
        kept = self.idf_weights
        self.set_vocabulary(values, idf_weights=kept.detach().cpu().numpy()[: len(values)])
        self.idf_weights = kept


def _sort_key(token):
    """Ties are broken by the token itself: strings by their UTF-8 bytes, as TensorFlow sorts them."""
    return token.encode("utf-8") if isinstance(token, str) else token


@keras_export("keras.layers")
class StringLookup(IndexLookup):
    """Map strings to integer indices (or back, with `invert=True`) through a vocabulary.

    >>> StringLookup(vocabulary=["a", "b"])(["a", "c", "b"])
    tensor([1, 0, 2])
    """

    def __init__(
        self,
        max_tokens=None,
        num_oov_indices=1,
        mask_token=None,
        oov_token="[UNK]",
        vocabulary=None,
        idf_weights=None,
        invert=False,
        output_mode="int",
        pad_to_max_tokens=False,
        sparse=False,
        encoding="utf-8",
        name=None,
        salt=None,
        **kwargs,
    ):
        self.encoding = encoding
        super().__init__(
            max_tokens=max_tokens,
            num_oov_indices=num_oov_indices,
            mask_token=mask_token,
            oov_token=oov_token,
            vocabulary=vocabulary,
            idf_weights=idf_weights,
            invert=invert,
            output_mode=output_mode,
            pad_to_max_tokens=pad_to_max_tokens,
            sparse=sparse,
            name=name,
            salt=salt,
            vocabulary_dtype="string",
            **kwargs,
        )

    def __call__(self, *args, **kwargs):
        tf = sys.modules.get("tensorflow")  # only a caller that imported TensorFlow can pass its tensors
        if tf is not None and args and isinstance(args[0], tf.Tensor) and not tf_graph.is_graph_call(args):
            # As Keras on torch: an eager TensorFlow tensor in, a TensorFlow tensor out (the OCR and
            # captioning examples join the decoded characters with `tf.strings`).
            outputs = super().__call__(args[0].numpy(), *args[1:], **kwargs)
            if isinstance(outputs, list):
                return tf.constant(outputs, dtype=tf.string)
            return tf.constant(outputs.detach().cpu().numpy())
        return super().__call__(*args, **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["vocabulary_dtype"]
        config["encoding"] = self.encoding
        return config


@keras_export("keras.layers")
class IntegerLookup(IndexLookup):
    """Map integers to contiguous indices (or back, with `invert=True`) through a vocabulary.

    >>> IntegerLookup(vocabulary=[12, 36])(np.array([12, 7, 36]))
    tensor([1, 0, 2])
    """

    def __init__(
        self,
        max_tokens=None,
        num_oov_indices=1,
        mask_token=None,
        oov_token=-1,
        vocabulary=None,
        vocabulary_dtype="int64",
        idf_weights=None,
        invert=False,
        output_mode="int",
        sparse=False,
        pad_to_max_tokens=False,
        oov_method="floormod",
        salt=None,
        name=None,
        **kwargs,
    ):
        if max_tokens is not None and max_tokens <= 1:
            raise ValueError(f"If `max_tokens` is set for `IntegerLookup`, it must be greater than 1. Received: max_tokens={max_tokens}")
        if num_oov_indices < 0:
            raise ValueError(f"The value of `num_oov_indices` argument for `IntegerLookup` must >= 0. Received: num_oov_indices={num_oov_indices}")
        if vocabulary_dtype != "int64":
            raise ValueError(f"Only `vocabulary_dtype='int64'` is supported at this time. Received: vocabulary_dtype={vocabulary_dtype}")
        super().__init__(
            max_tokens=max_tokens,
            num_oov_indices=num_oov_indices,
            mask_token=mask_token,
            oov_token=oov_token,
            vocabulary=vocabulary,
            vocabulary_dtype=vocabulary_dtype,
            idf_weights=idf_weights,
            invert=invert,
            output_mode=output_mode,
            sparse=sparse,
            pad_to_max_tokens=pad_to_max_tokens,
            oov_method=oov_method,
            salt=salt,
            name=name,
            **kwargs,
        )

    def get_config(self):
        config = super().get_config()
        for key in ("oov_token", "mask_token"):
            if config[key] is not None:
                config[key] = int(config[key])
        if config["vocabulary"] is not None:
            config["vocabulary"] = [int(v) for v in config["vocabulary"]]
        return config
