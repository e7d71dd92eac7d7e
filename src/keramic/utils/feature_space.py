"""`keras.utils.FeatureSpace`: one layer that turns a dict of raw columns into model-ready features.

Each named feature pairs a preprocessing layer (Normalization, Discretization, IntegerLookup,
StringLookup, Hashing, Rescaling) with an encoding (`"float"`, `"int"`, `"one_hot"`); crosses hash
pairs of preprocessed categorical features together. `adapt` learns every preprocessor's state from
a dict of arrays or an iterable of dict batches (a `tf.data.Dataset` included); calling it returns
one concatenated float tensor (`output_mode="concat"`) or a dict of encoded features (`"dict"`).
As in Keras, the same sublayers also give a symbolic graph (`get_inputs()` -> `get_encoded_features()`)
for functional models, the layer saves to and loads from `.keras` files with Keras's layout, and a
call inside a `tf.data` pipeline (graph-mode tf tensors) runs eagerly through `tf.py_function`.

>>> space = FeatureSpace({"age": "float_normalized", "city": "string_categorical"})
>>> space.adapt({"age": np.array([20.0, 40.0]), "city": np.array(["Oslo", "Rome"])})
>>> space({"age": np.array([30.0]), "city": np.array(["Rome"])}).shape
torch.Size([1, 4])
"""

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from keramic import backend, ops
from keramic.layers.base import Layer
from keramic.layers.input_layer import Input
from keramic.layers.preprocessing.hashing import HashedCrossing, Hashing
from keramic.layers.preprocessing.lookup import IntegerLookup, StringLookup
from keramic.layers.preprocessing.numerical import CategoryEncoding, Discretization, Normalization, Rescaling
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object

# Keras writes its helper classes under their implementation module; configs name it.
_FEATURE_MODULE = "keras.src.layers.preprocessing.feature_space"
_ENCODINGS = ("float", "int", "one_hot")


@keras_export(_FEATURE_MODULE)
class TFDIdentity(Layer):
    """The pass-through preprocessor of a `"float"` feature (Keras's class name, so configs interoperate)."""

    def call(self, inputs):
        return inputs


@keras_export(_FEATURE_MODULE)
class TFDConcat(Layer):
    """Concatenates the encoded features (Keras's class name: saved files name its group `concat`)."""

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def call(self, inputs):
        return ops.concatenate(inputs, axis=self.axis)

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis}


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


def _is_tf_graph_tensor(value: Any) -> bool:
    """True for a symbolic tf tensor (inside `tf.data.Dataset.map` or a `tf.function`)."""
    if not type(value).__module__.startswith("tensorflow"):
        return False
    import tensorflow as tf

    return not tf.executing_eagerly()


@keras_export("keras.utils")
class FeatureSpace(Layer):
    """Preprocess and encode a dict of structured-data columns, as `keras.utils.FeatureSpace`."""

    _loads_as_model = True  # Keras's `load_model` returns a saved FeatureSpace, as it returns models

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
        self.crosses_by_name = {cross.name: cross for cross in self.crosses}
        # Keras's attribute names: the saving walk turns them into the file's group paths.
        self.inputs = {name: Input(shape=(1,), dtype=feature.dtype, name=name) for name, feature in self.features.items()}
        self.preprocessors = {name: feature.preprocessor for name, feature in self.features.items()}
        self.crossers = {cross.name: HashedCrossing(num_bins=cross.crossing_dim, name=cross.name) for cross in self.crosses}
        self.one_hot_encoders = {}
        self.concat = None
        self.encoded_features = None
        self._is_adapted = False
        self._sublayers_built = False
        self.built = False  # built by adapt() or, on loading, by build_from_config()

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

    # ---------------------------------------------------------------- adapting and building
    def _adaptable(self) -> list:
        """Names of the features whose preprocessor learns from data (fixed ones are skipped, as in Keras)."""
        names = []
        for name, feature in self.features.items():
            layer = feature.preprocessor
            if isinstance(layer, Normalization) and getattr(layer, "input_mean", None) is not None:
                continue
            if isinstance(layer, Discretization) and layer.num_bins is None:
                continue  # given bin boundaries: nothing to learn (adapting it is an error)
            if hasattr(layer, "adapt"):
                names.append(name)
        return names

    def adapt(self, dataset) -> None:
        """Learn every preprocessor's state (mean, bins, vocabulary) from a dict of arrays or dict batches.

        As Keras does, an iterable is opened twice per learning feature (a one-element peek, then a
        full read) and not at all when nothing learns, so a reshuffling `tf.data` pipeline gives
        the same later orders (and so the same training numbers) as under Keras. A one-shot
        iterator (a generator) is read once and kept."""
        if isinstance(dataset, Iterator):
            dataset = list(dataset)
        for name in self._adaptable():
            if not isinstance(dataset, dict):
                next(iter(dataset), None)
            batches = [dataset] if isinstance(dataset, dict) else list(dataset)
            if not batches or not all(isinstance(batch, dict) for batch in batches):
                raise ValueError("FeatureSpace.adapt() expects a dict of arrays or an iterable of dicts (e.g. a batched tf.data.Dataset of dicts).")
            column = [self._columns(batch)[name] for batch in batches]
            self.preprocessors[name].adapt(np.concatenate(column, axis=0))
        self._is_adapted = True
        self._sublayers_built = False  # cardinalities may have changed
        self.encoded_features = None
        self._check_if_built()

    def _check_if_adapted(self) -> None:
        if not self._is_adapted:
            needs_adapt = self._adaptable()
            if needs_adapt:
                raise ValueError(
                    "You need to call `.adapt(dataset)` on the FeatureSpace before you can start using it "
                    f"(features {needs_adapt} learn from data)."
                )
            self._is_adapted = True

    def _names(self) -> list:
        """Keras's output order: features by name, then crosses by name."""
        return sorted(self.features) + sorted(self.crosses_by_name)

    def _spec(self, name):
        return self.features.get(name) or self.crosses_by_name[name]

    def _cardinality(self, name: str) -> int:
        layer = self.preprocessors.get(name) or self.crossers[name]
        if isinstance(layer, (IntegerLookup, StringLookup)):
            return layer.vocabulary_size()
        if isinstance(layer, CategoryEncoding):
            return layer.num_tokens
        if isinstance(layer, (Hashing, HashedCrossing)):
            return layer.num_bins
        if isinstance(layer, Discretization):
            return len(layer.bin_boundaries) + 1
        raise ValueError(
            f"Feature '{name}' has `output_mode='one_hot'`. However it isn't a standard feature and the dimensionality "
            "of its output space is not known, thus it cannot be one-hot encoded. Try using `output_mode='int'`."
        )

    def _check_if_built(self) -> None:
        """Create the one-hot encoders and the concat layer once the vocabularies are known."""
        if self._sublayers_built:
            return
        self._check_if_adapted()
        self.one_hot_encoders.clear()
        for name in self._names():
            spec = self._spec(name)
            if self.output_mode == "concat" and spec.output_mode == "int":
                raise ValueError(
                    f"Cannot concatenate features because feature '{name}' has not been encoded (it has "
                    "`output_mode='int'`). Consider using `output_mode='dict'`."
                )
            if spec.output_mode == "one_hot":
                self.one_hot_encoders[name] = CategoryEncoding(num_tokens=self._cardinality(name), output_mode="multi_hot")
        self.concat = TFDConcat(axis=-1) if self.output_mode == "concat" else None
        self._sublayers_built = True
        self.built = True

    def _merge(self, preprocessed: dict, crossed: dict):
        """Encode each preprocessed feature and cross, then concatenate them or return them by name."""
        merged = {}
        for name in self._names():
            value = preprocessed[name] if name in preprocessed else crossed[name]
            encoder = self.one_hot_encoders.get(name)
            merged[name] = encoder(value) if encoder is not None else value
        if self.output_mode == "dict":
            return merged
        return self.concat(list(merged.values()))

    # ---------------------------------------------------------------- functional use
    def get_inputs(self) -> dict:
        """The `keras.Input` of each feature (shape `(1,)`), for an end-to-end functional model."""
        self._check_if_built()
        return self.inputs

    def get_encoded_features(self):
        """The symbolic output of the preprocessing graph built on `get_inputs()`."""
        self._check_if_built()
        if self.encoded_features is None:
            preprocessed = {name: self.preprocessors[name](self.inputs[name]) for name in self.features}
            crossed = {cross.name: self.crossers[cross.name]([preprocessed[n] for n in cross.feature_names]) for cross in self.crosses}
            self.encoded_features = self._merge(preprocessed, crossed)
        return self.encoded_features

    # ---------------------------------------------------------------- calling
    def __call__(self, data):
        """Encode a dict of columns (arrays, lists, tensors or scalars) eagerly."""
        if not isinstance(data, dict):
            raise ValueError(f"A FeatureSpace can only be called with a dict. Received: data={data!r}")
        if any(_is_tf_graph_tensor(value) for value in data.values()):
            return self._call_in_tf_graph(data)
        self._check_if_built()
        unbatched = all(np.ndim(value) == 0 for value in data.values())
        columns = self._columns(data)
        preprocessed = {name: torch.as_tensor(np.asarray(self.preprocessors[name](columns[name]))) for name in self.features}
        crossed = {
            cross.name: torch.as_tensor(np.asarray(self.crossers[cross.name]([preprocessed[n] for n in cross.feature_names])))
            for cross in self.crosses
        }
        for name, value in preprocessed.items():
            if self._spec(name).output_mode == "int":
                preprocessed[name] = value.to(torch.int64)
        device = backend.get_device()
        preprocessed = {name: value.to(device) for name, value in preprocessed.items()}
        crossed = {name: value.to(device) for name, value in crossed.items()}
        merged = self._merge(preprocessed, crossed)
        if self.output_mode == "dict":
            return {name: value[0] for name, value in merged.items()} if unbatched else merged
        return merged[0] if unbatched else merged

    def _width(self, name: str) -> int:
        encoder = self.one_hot_encoders.get(name)
        return encoder.num_tokens if encoder is not None else 1

    def _call_in_tf_graph(self, data):
        """Inside `tf.data` (graph mode): run the eager encoding through `tf.py_function`."""
        import tensorflow as tf

        self._check_if_built()
        keys = list(self.features)
        missing = [name for name in keys if name not in data]
        if missing:
            raise ValueError(f"FeatureSpace expects a dict with keys {sorted(self.features)}; missing {missing}.")
        names = self._names()

        def run(*values):
            out = self({key: value.numpy() for key, value in zip(keys, values)})
            flat = [out] if self.output_mode == "concat" else [out[name] for name in names]
            return [value.detach().cpu().numpy() for value in flat]

        if self.output_mode == "concat":
            dtypes, widths = [tf.float32], [sum(self._width(name) for name in names)]
        else:
            dtypes = [tf.int64 if self._spec(name).output_mode == "int" else tf.float32 for name in names]
            widths = [self._width(name) for name in names]
        inputs = [tf.convert_to_tensor(data[key]) for key in keys]
        outputs = tf.py_function(run, inputs, dtypes)
        unbatched = all(value.shape.rank == 0 for value in inputs)
        batch = None if unbatched else next((value.shape[0] for value in inputs if value.shape.rank), None)
        for tensor, width in zip(outputs, widths):
            tensor.set_shape([width] if unbatched else [batch, width])
        if self.output_mode == "concat":
            return outputs[0]
        return dict(zip(names, outputs))

    # ---------------------------------------------------------------- saving
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

    def get_build_config(self) -> dict:
        """Each preprocessor's build config, by feature name (Keras's layout)."""
        return {name: feature.preprocessor.get_build_config() or {} for name, feature in self.features.items()}

    def build_from_config(self, config) -> None:
        """A loaded FeatureSpace counts as adapted: its state comes from the file's weights and assets."""
        for name, build_config in config.items():
            preprocessor = self.preprocessors.get(name)
            if preprocessor is not None and not preprocessor.built and build_config:
                preprocessor.build_from_config(build_config)
        self._is_adapted = True
        self.built = True

    def save(self, filepath) -> None:
        """Save to a `.keras` file; `keras.models.load_model` returns the FeatureSpace."""
        from keramic.saving.api import save_model

        save_model(self, filepath)
