"""Hashing and HashedCrossing: Keras's bins from FarmHash / SipHash, computed without TensorFlow."""

import numpy as np
import torch

from keramic import backend
from keramic.layers.base import Layer
from keramic.layers.preprocessing import encoding, strings
from keramic.layers.preprocessing.fingerprint import fingerprint64, fingerprint_cat64, siphash64
from keramic.serialization.registry import keras_export

# tf.sparse.cross_hashed's default key: the seed of the running fingerprint of a feature cross.
_CROSS_HASH_KEY = 0xDECAFCAFFE


class _StringInputLayer(Layer):
    """A layer whose inputs may be strings: numpy/list inputs are kept as arrays, not made tensors."""

    _allows_non_tensor_positional_args = True  # as Keras's data layers

    _records_build_config = True  # Keras records a build config for it once called

    def _as_input_tensor(self, x):
        return x

    def __call__(self, *args, **kwargs):
        if args and isinstance(args[0], (list, tuple)) and not self._takes_several_inputs():
            args = (strings.as_array(args[0]),) + args[1:]
        return super().__call__(*args, **kwargs)

    def _takes_several_inputs(self):
        return False


def _feature_hash(value) -> int:
    """A feature's hash in a cross: the fingerprint of a string, an integer's own two's-complement bits."""
    if isinstance(value, (str, bytes)):
        return fingerprint64(strings.to_bytes(value))
    return int(value) & 0xFFFFFFFFFFFFFFFF


def _output(values: np.ndarray, output_mode: str, depth: int, dtype) -> torch.Tensor:
    ids = torch.as_tensor(values.astype("int64"), device=backend.get_device())
    return encoding.encode(ids, output_mode, depth, dtype)


@keras_export("keras.layers")
class Hashing(_StringInputLayer):
    """Hash strings or integers into `num_bins` bins (FarmHash64, or SipHash64 when `salt` is set).

    >>> Hashing(num_bins=3)([["A"], ["B"], ["C"]])
    tensor([[1],
            [0],
            [1]])
    """

    _converts_input_args = False  # as Keras: inputs are taken as they come

    def __init__(self, num_bins, mask_value=None, salt=None, output_mode="int", sparse=False, **kwargs):
        if kwargs.get("dtype") is None:
            kwargs["dtype"] = "int64" if output_mode == "int" else "float32"
        super().__init__(**kwargs)
        if num_bins is None or num_bins <= 0:
            raise ValueError(f"The `num_bins` for `Hashing` cannot be `None` or non-positive values. Received: num_bins={num_bins}.")
        if output_mode == "int" and self.dtype_policy.name not in ("int32", "int64"):
            raise ValueError(f"When `output_mode=\"int\"`, `dtype` should be an integer type, 'int32' or 'in64'. Received: dtype={kwargs['dtype']}")
        encoding.check_output_mode(output_mode, ("int", "one_hot", "multi_hot", "count"), "Hashing")
        if sparse:
            raise ValueError(f"`sparse=True` is not supported on the torch backend. Received: sparse={sparse}")
        self.num_bins = num_bins
        self.mask_value = mask_value
        self.strong_hash = salt is not None
        self.output_mode = output_mode
        self.sparse = sparse
        self.salt = None
        if salt is not None:
            if isinstance(salt, (tuple, list)) and len(salt) == 2:
                self.salt = list(salt)
            elif isinstance(salt, int):
                self.salt = [salt, salt]
            else:
                raise ValueError(f"The `salt` argument for `Hashing` can only be a tuple of size 2 integers, or a single integer. Received: salt={salt}.")

    def _bin(self, value, bins: int) -> int:
        data = strings.to_bytes(value)
        digest = siphash64(self.salt, data) if self.salt is not None else fingerprint64(data)
        return digest % bins

    def call(self, inputs):
        values = strings.as_array(inputs)
        if values.dtype.kind == "f":
            raise ValueError(f"Hashing takes strings or integers; received floating point inputs ({values.dtype}).")
        bins = self.num_bins
        masked = None
        if self.mask_value is not None and bins > 1:
            bins -= 1
            masked = values == self.mask_value
        flat = values.reshape(-1)
        hashed = np.fromiter((self._bin(v, bins) for v in flat), dtype="int64", count=flat.size).reshape(values.shape)
        if masked is not None:
            hashed = np.where(masked, 0, hashed + 1)
        return _output(hashed, self.output_mode, self.num_bins, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        if self.output_mode == "int":
            return tuple(input_shape)
        if len(input_shape) == 0:
            return (self.num_bins,)
        return tuple(input_shape[:-1]) + (self.num_bins,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_bins": self.num_bins,
                "salt": self.salt,
                "mask_value": self.mask_value,
                "output_mode": self.output_mode,
                "sparse": self.sparse,
            }
        )
        return config


@keras_export("keras.layers")
class HashedCrossing(_StringInputLayer):
    """Hash the cross of two or more categorical features into `num_bins` bins (as `tf.sparse.cross_hashed`).

    >>> HashedCrossing(num_bins=5)((["A", "B"], [101, 101]))
    tensor([1, 4])
    """

    _converts_input_args = False  # as Keras: inputs are taken as they come

    def __init__(self, num_bins, output_mode="int", sparse=False, name=None, dtype=None, **kwargs):
        if output_mode == "int" and dtype is None:
            dtype = "int64"
        super().__init__(name=name, dtype=dtype, **kwargs)
        if sparse:
            raise ValueError("`sparse=True` can only be used with the TensorFlow backend.")
        encoding.check_output_mode(output_mode, ("int", "one_hot"), "HashedCrossing")
        self.num_bins = num_bins
        self.output_mode = output_mode
        self.sparse = sparse

    def _takes_several_inputs(self):
        return True

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            raise ValueError(f"`HashedCrossing` should be called on a list or tuple of at least two inputs. Received: inputs={inputs}")
        features = [strings.as_array(x) for x in inputs]
        shape = features[0].shape
        if any(f.shape != shape for f in features) or len(shape) > 2 or (len(shape) == 2 and shape[-1] != 1):
            raise ValueError(
                "All `HashedCrossing` inputs should have the same shape, (batch,) or (batch, 1) or a scalar. "
                f"Received shapes: {[f.shape for f in features]}"
            )
        if any(f.dtype.kind == "f" for f in features):
            raise ValueError("All `HashedCrossing` inputs should have an integer or string dtype; received floats.")
        columns = [f.reshape(-1) for f in features]
        crossed = np.empty(columns[0].size, dtype="int64")
        for row in range(columns[0].size):
            digest = _CROSS_HASH_KEY
            for column in columns:
                digest = fingerprint_cat64(digest, _feature_hash(column[row]))
            crossed[row] = digest % self.num_bins
        ids = crossed.reshape(shape)
        return _output(ids, self.output_mode, self.num_bins, self.compute_dtype).to(backend.torch_dtype(self.dtype))

    def compute_output_shape(self, input_shape):
        first = tuple(input_shape[0])
        if self.output_mode == "one_hot":
            if first and first[-1] == 1:
                first = first[:-1]
            return first + (self.num_bins,)
        return first

    def get_config(self):
        return {
            "num_bins": self.num_bins,
            "output_mode": self.output_mode,
            "sparse": self.sparse,
            "name": self.name,
            "dtype": self.dtype,
        }
