"""`keras.utils.FeatureSpace`: one layer that turns a dict of raw columns into model-ready features.

Each named feature pairs a preprocessing layer (Normalization, Discretization, IntegerLookup,
StringLookup, Hashing, Rescaling) with an encoding (`"float"`, `"int"`, `"one_hot"`); crosses hash
pairs of preprocessed categorical features together. `adapt` learns every preprocessor's state from
a dict of arrays or an iterable of dict batches (a `tf.data.Dataset` included); calling it returns
one concatenated float tensor (`output_mode="concat"`) or a dict of encoded features (`"dict"`).

>>> space = FeatureSpace({"age": "float_normalized", "city": "string_categorical"})
>>> space.adapt({"age": np.array([20.0, 40.0]), "city": np.array(["Oslo", "Rome"])})
>>> space({"age": np.array([30.0]), "city": np.array(["Rome"])}).shape
torch.Size([1, 4])
"""

from typing import Any

import numpy as np
import torch

from keramic import backend
from keramic.layers.base import Layer
from keramic.layers.preprocessing.hashing import HashedCrossing, Hashing
from keramic.layers.preprocessing.lookup import IntegerLookup, StringLookup
from keramic.layers.preprocessing.numerical import CategoryEncoding, Discretization, Normalization, Rescaling
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object

# Keras writes these two helper classes under their implementation module; configs name it.
_FEATURE_MODULE = "keras.src.layers.preprocessing.feature_space"
_ENCODINGS = ("float", "int", "one_hot")


@keras_export(_FEATURE_MODULE)
class TFDIdentity(Layer):
    """The pass-through preprocessor of a `"float"` feature (Keras's class name, so configs interoperate)."""

    def call(self, inputs):
        return inputs


@keras_export(_FEATURE_MODULE)
class Cross:
    """A hashed cross of two or more features into `crossing_dim` bins."""

    def __init__(self, feature_names, crossing_dim: int, output_mode: str = "one_hot"):
        if output_mode not in ("int", "one_hot"):
            raise ValueError(f"Invalid value for argument `output_mode`. Expected one of {{'int', 'one_hot'}}. Received: output_mode={output_mode}")
        self.feature_names = tuple(feature_names)
        self.crossing_dim = crossing_dim
        self.output_mode = output_mode

    @property
    def name(self) -> str:
        return "_X_".join(self.feature_names)

    def get_config(self) -> dict:
        return {"feature_names": self.feature_names, "crossing_dim": self.crossing_dim, "output_mode": self.output_mode}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras_export(_FEATURE_MODULE)
class Feature:
    """One input column: its dtype, the layer that preprocesses it and how the result is encoded."""

    def __init__(self, dtype: str, preprocessor: Layer, output_mode: str):
        if output_mode not in _ENCODINGS:
            raise ValueError(f"Invalid value for argument `output_mode`. Expected one of {_ENCODINGS}. Received: output_mode={output_mode}")
        if isinstance(preprocessor, dict):
            preprocessor = deserialize_keras_object(preprocessor, ("keras.layers",))
        self.dtype = dtype
        self.preprocessor = preprocessor
        self.output_mode = output_mode

    def get_config(self) -> dict:
        return {"dtype": self.dtype, "preprocessor": serialize_keras_object(self.preprocessor), "output_mode": self.output_mode}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _column(values: Any, dtype: str) -> np.ndarray:
    """A column as a `(batch, 1)` numpy array (a scalar becomes `(1, 1)`) in the feature's dtype."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    elif hasattr(values, "numpy"):  # a tf.Tensor from a tf.data pipeline
        values = values.numpy()
    array = np.asarray(values)
    if dtype == "string":
        is_bytes = array.dtype.kind == "S" or (array.dtype.kind == "O" and array.size and isinstance(array.flat[0], bytes))
        array = np.char.decode(array.astype(bytes), "utf-8") if is_bytes else array.astype(str)
    else:
        array = array.astype(dtype)
    if array.ndim == 0:
        array = array.reshape(1, 1)
    elif array.ndim == 1:
        array = array[:, None]
    return array


@keras_export("keras.utils")
class FeatureSpace(Layer):
    """Preprocess and encode a dict of structured-data columns, as `keras.utils.FeatureSpace`."""

    @classmethod
    def cross(cls, feature_names, crossing_dim: int, output_mode: str = "one_hot") -> Cross:
        return Cross(feature_names, crossing_dim, output_mode=output_mode)

    @classmethod
    def feature(cls, dtype: str, preprocessor: Layer, output_mode: str) -> Feature:
        return Feature(dtype, preprocessor, output_mode)

    @classmethod
    def float(cls, name=None) -> Feature:
        return Feature("float32", TFDIdentity(dtype="float32", name=f"{name or 'float'}_preprocessor"), "float")

    @classmethod
    def float_rescaled(cls, scale=1.0, offset=0.0, name=None) -> Feature:
        return Feature("float32", Rescaling(scale, offset, name=f"{name or 'float_rescaled'}_preprocessor"), "float")

    @classmethod
    def float_normalized(cls, name=None) -> Feature:
        return Feature("float32", Normalization(axis=-1, name=f"{name or 'float_normalized'}_preprocessor"), "float")

    @classmethod
    def float_discretized(cls, num_bins, bin_boundaries=None, output_mode="one_hot", name=None) -> Feature:
        layer = Discretization(bin_boundaries=bin_boundaries, num_bins=num_bins, name=f"{name or 'float_discretized'}_preprocessor")
        return Feature("float32", layer, output_mode)

    @classmethod
    def integer_categorical(cls, max_tokens=None, num_oov_indices=1, output_mode="one_hot", name=None) -> Feature:
        layer = IntegerLookup(max_tokens=max_tokens, num_oov_indices=num_oov_indices, name=f"{name or 'integer_categorical'}_preprocessor")
        return Feature("int32", layer, output_mode)

    @classmethod
    def string_categorical(cls, max_tokens=None, num_oov_indices=1, output_mode="one_hot", name=None) -> Feature:
        layer = StringLookup(max_tokens=max_tokens, num_oov_indices=num_oov_indices, name=f"{name or 'string_categorical'}_preprocessor")
        return Feature("string", layer, output_mode)

    @classmethod
    def string_hashed(cls, num_bins, output_mode="one_hot", name=None) -> Feature:
        return Feature("string", Hashing(num_bins=num_bins, name=f"{name or 'string_hashed'}_preprocessor"), output_mode)

    @classmethod
    def integer_hashed(cls, num_bins, output_mode="one_hot", name=None) -> Feature:
        return Feature("int32", Hashing(num_bins=num_bins, name=f"{name or 'integer_hashed'}_preprocessor"), output_mode)

    def __init__(self, features, output_mode="concat", crosses=None, crossing_dim=32, hashing_dim=32,
                 num_discretization_bins=32, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if not features:
            raise ValueError("The `features` argument cannot be None or empty.")
        if output_mode not in ("concat", "dict"):
            raise ValueError(f"Invalid value for argument `output_mode`. Expected one of {{'concat', 'dict'}}. Received: output_mode={output_mode}")
        self.crossing_dim = crossing_dim
        self.hashing_dim = hashing_dim
        self.num_discretization_bins = num_discretization_bins
        self.output_mode = output_mode
        self.features = {name: self._standardize_feature(name, value) for name, value in features.items()}
        self.crosses = [self._standardize_cross(cross) for cross in crosses or []]
        for cross in self.crosses:
            for feature_name in cross.feature_names:
                if feature_name not in self.features:
                    raise ValueError(
                        "All features referenced in the `crosses` argument should be present in the `features` dict. "
                        f"Received unknown features: {[feature_name]}"
                    )
        self.crossers = {cross.name: HashedCrossing(num_bins=cross.crossing_dim, name=cross.name) for cross in self.crosses}
        self._is_adapted = False

    def _standardize_feature(self, name, feature):
        if isinstance(feature, dict):
            feature = deserialize_keras_object(feature, (_FEATURE_MODULE,))
        if isinstance(feature, Feature):
            return feature
        kinds = {
            "float": lambda: self.float(name=name),
            "float_normalized": lambda: self.float_normalized(name=name),
            "float_rescaled": lambda: self.float_rescaled(name=name),
            "float_discretized": lambda: self.float_discretized(self.num_discretization_bins, name=name),
            "integer_categorical": lambda: self.integer_categorical(name=name),
            "string_categorical": lambda: self.string_categorical(name=name),
            "integer_hashed": lambda: self.integer_hashed(self.hashing_dim, name=name),
            "string_hashed": lambda: self.string_hashed(self.hashing_dim, name=name),
        }
        if feature not in kinds:
            raise ValueError(f"Invalid feature type for feature {name!r}: {feature!r}. Expected a Feature or one of {sorted(kinds)}.")
        return kinds[feature]()

    def _standardize_cross(self, cross):
        if isinstance(cross, dict):
            cross = deserialize_keras_object(cross, (_FEATURE_MODULE,))
        if isinstance(cross, Cross):
            return cross
        return Cross(cross, self.crossing_dim, "one_hot")

    def _columns(self, data) -> dict:
        missing = [name for name in self.features if name not in data]
        if missing:
            raise ValueError(f"FeatureSpace expects a dict with keys {sorted(self.features)}; missing {missing}.")
        return {name: _column(data[name], feature.dtype) for name, feature in self.features.items()}

    def adapt(self, dataset) -> None:
        """Learn every preprocessor's state (mean, bins, vocabulary) from a dict of arrays or dict batches."""
        batches = [dataset] if isinstance(dataset, dict) else list(dataset)
        if not batches or not all(isinstance(batch, dict) for batch in batches):
            raise ValueError("FeatureSpace.adapt() expects a dict of arrays or an iterable of dicts (e.g. a batched tf.data.Dataset of dicts).")
        columns = [self._columns(batch) for batch in batches]
        for name, feature in self.features.items():
            if hasattr(feature.preprocessor, "adapt") and not self._is_fixed(feature.preprocessor):
                feature.preprocessor.adapt(np.concatenate([batch[name] for batch in columns], axis=0))
        self._is_adapted = True

    @staticmethod
    def _is_fixed(preprocessor) -> bool:
        """A Discretization given boundaries has nothing to learn (adapting it is an error)."""
        return isinstance(preprocessor, Discretization) and preprocessor.num_bins is None

    def _encoded_size(self, feature) -> int:
        layer = feature.preprocessor
        if isinstance(layer, (IntegerLookup, StringLookup)):
            return layer.vocabulary_size()
        if isinstance(layer, Hashing):
            return layer.num_bins
        return len(layer.bin_boundaries) + 1

    def _encode(self, values: torch.Tensor, output_mode: str, size_of) -> torch.Tensor:
        if output_mode == "one_hot":
            return CategoryEncoding(num_tokens=size_of(), output_mode="one_hot")(values)
        if output_mode == "int":
            return values.to(torch.int64)
        return values.to(torch.float32)

    def __call__(self, data):
        """Encode a dict of columns (arrays, lists, tensors or scalars) eagerly."""
        if not isinstance(data, dict):
            raise ValueError(f"A FeatureSpace can only be called with a dict. Received: data={data!r}")
        needs_adapt = [name for name, f in self.features.items() if hasattr(f.preprocessor, "adapt") and not self._is_fixed(f.preprocessor)]
        if needs_adapt and not self._is_adapted:
            raise ValueError(f"You need to call `.adapt(dataset)` on the FeatureSpace before you can start using it (features {needs_adapt} learn from data).")
        unbatched = all(np.ndim(value) == 0 for value in data.values())
        columns = self._columns(data)
        preprocessed = {name: torch.as_tensor(np.asarray(feature.preprocessor(columns[name])))
                        for name, feature in self.features.items()}
        encoded = {
            name: self._encode(preprocessed[name], feature.output_mode, lambda feature=feature: self._encoded_size(feature))
            for name, feature in self.features.items()
        }
        for cross in self.crosses:
            crossed = self.crossers[cross.name]([preprocessed[name] for name in cross.feature_names])
            encoded[cross.name] = self._encode(torch.as_tensor(np.asarray(crossed)), cross.output_mode, lambda cross=cross: cross.crossing_dim)
        # Keras's order: features by name, then crosses by name.
        order = sorted(self.features) + sorted(cross.name for cross in self.crosses)
        encoded = {name: encoded[name].to(backend.get_device()) for name in order}
        if self.output_mode == "dict":
            return {name: value[0] for name, value in encoded.items()} if unbatched else encoded
        parts = [value if value.dtype.is_floating_point else value.to(torch.float32) for value in encoded.values()]
        merged = torch.cat(parts, dim=-1)
        return merged[0] if unbatched else merged

    def get_config(self) -> dict:
        return {
            "features": {name: serialize_keras_object(feature) for name, feature in self.features.items()},
            "output_mode": self.output_mode,
            "crosses": [serialize_keras_object(cross) for cross in self.crosses],
            "crossing_dim": self.crossing_dim,
            "hashing_dim": self.hashing_dim,
            "num_discretization_bins": self.num_discretization_bins,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
