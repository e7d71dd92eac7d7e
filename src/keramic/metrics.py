"""Metrics: stateful accumulators with Keras 3's semantics, kept in non-trainable Variables.

`update_state` runs every training step, so it is a handful of vectorised torch ops under
`torch.no_grad()`, updates the state in place and never reads a value back to the host.
"""

import functools
import warnings

import numpy as np
import torch

from keramic import backend, dtype_policies, initializers
from keramic.errors import UnknownObjectError, WeightsMismatchError
from keramic.losses import (
    EPSILON,
    Loss,
    apply_mask,
    binary_crossentropy,
    binary_focal_crossentropy,  # noqa: F401  (Keras lists it in keras.metrics too)
    categorical_crossentropy,
    categorical_focal_crossentropy,  # noqa: F401  (as above)
    categorical_hinge,
    divide_no_nan,
    float32_scalar,
    get_keras_mask,
    hinge,
    huber,  # noqa: F401  (as above)
    is_binary_or_sparse_categorical,
    kl_divergence,
    log_cosh,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    mean_squared_logarithmic_error,
    object_name,
    poisson,
    sparse_categorical_crossentropy,
    squared_hinge,
    squeeze_or_expand_to_same_rank,
    tensor_pair,
    to_tensor,
)
from keramic.losses import FUNCTIONS as _LOSS_FUNCTIONS
from keramic.losses import cosine_similarity as _cosine_similarity
from keramic.serialization import registry, saveable
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object
from keramic.utils.naming import auto_name, to_snake_case

NEG_INF = -1e10  # the score Keras gives predictions outside the top k


# ------------------------------------------------------------------------------------ base
@keras_export("keras.metrics")
class Metric:
    """Base class: create state with `add_variable` in `__init__`, then implement
    `update_state(...)` and `result()`. Not a Layer: it has no weights to train or save.
    """

    def __init__(self, dtype=None, name=None):
        self.name = name or auto_name(type(self).__name__)
        # As Keras: floatx by default, not the global policy, so mixed precision keeps float32 state.
        self._dtype_policy = dtype_policies.get(dtype or backend.floatx())
        self._dtype = self._dtype_policy.compute_dtype
        self._variables = []
        self._metrics = []

    def __setattr__(self, name, value):
        # Metrics held as attributes contribute their state to `variables` (and to resets).
        if isinstance(value, Metric) and "_metrics" in self.__dict__:
            self._metrics.append(value)
        object.__setattr__(self, name, value)

    @property
    def dtype(self):
        return self._dtype

    @property
    def _torch_dtype(self):
        return backend.torch_dtype(self._dtype)

    def add_variable(self, shape, initializer="zeros", dtype=None, aggregation="sum", name=None):
        """A non-trainable state variable. `aggregation` is accepted for Keras API compatibility
        (it only matters for multi-replica training, which keramic does not do)."""
        dtype = backend.standardize_dtype(dtype)
        value = initializers.get(initializer)(tuple(shape), dtype=dtype)
        name = name or "variable"
        variable = backend.Variable(value, name=name, trainable=False, dtype=dtype, path=f"{self.name}/{name}")
        self._variables.append(variable)
        return variable

    def add_weight(self, shape=(), initializer=None, dtype=None, name=None):
        return self.add_variable(shape=shape, initializer=initializer or "zeros", dtype=dtype, name=name)

    @property
    def variables(self):
        variables = list(self._variables)
        for metric in self._metrics:
            variables.extend(metric.variables)
        return variables

    def reset_state(self):
        with torch.no_grad():
            for variable in self.variables:
                variable.zero_()

    def update_state(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement update_state().")

    def result(self):
        raise NotImplementedError(f"{type(self).__name__} must implement result().")

    def __call__(self, *args, **kwargs):
        self.update_state(*args, **kwargs)
        return self.result()

    # Keras's stateless API (custom steps written for JAX thread the state through them): each
    # runs the stateful method in a StatelessScope on the given values; the metric keeps its own.
    def _scope_on(self, metric_variables):
        from keramic.stateless_scope import StatelessScope

        variables = self.variables
        if len(metric_variables) != len(variables):
            raise ValueError(
                f"Argument `metric_variables` must hold one value per variable of {type(self).__name__}"
                f"().variables, in order: received {len(metric_variables)} values for {len(variables)} variables."
            )
        return StatelessScope(list(zip(variables, metric_variables)))

    def stateless_update_state(self, metric_variables, *args, **kwargs) -> list:
        """`update_state(*args, **kwargs)` on the values `metric_variables`; returns the new values."""
        with self._scope_on(metric_variables) as scope:
            self.update_state(*args, **kwargs)
        return [scope.get_current_value(variable) for variable in self.variables]

    def stateless_result(self, metric_variables):
        """`result()` of the state `metric_variables`."""
        with self._scope_on(metric_variables):
            return self.result()

    def stateless_reset_state(self) -> list:
        """The values `reset_state()` would give the variables (which keep theirs)."""
        variables = self.variables
        with self._scope_on([variable.detach().clone() for variable in variables]) as scope:
            self.reset_state()
        return [scope.get_current_value(variable) for variable in variables]

    # Saving protocol (keramic.serialization.saveable): Keras's hooks over `variables`.
    def _saveable_variables(self) -> list:
        return self.variables

    @saveable.default_hook
    def save_own_variables(self, store) -> None:
        """Put the metric's state in `store` as "0", "1", ... (override to save other state)."""
        for index, variable in enumerate(self._saveable_variables()):
            store[str(index)] = variable

    @saveable.default_hook
    def load_own_variables(self, store) -> None:
        """Assign the metric's state from `store`'s "0", "1", ...; the counts must agree."""
        variables = self._saveable_variables()
        if len(store.keys()) != len(variables):
            raise WeightsMismatchError(
                f"Metric '{self.name}' has {len(variables)} variables, but the saved state lists {len(store.keys())}."
            )
        for index, variable in enumerate(variables):
            variable.assign(store[str(index)])

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


def _accumulate(variable, value):
    """In-place `variable += value`, moving the value to the state's device and dtype."""
    if isinstance(value, torch.Tensor):
        value = value.to(device=variable.device, dtype=variable.dtype)
    variable.add_(value)


# ------------------------------------------------------------------------------- reductions
def _reduce_to_samplewise_values(values, sample_weight, reduce_fn, dtype):
    """One value per sample (weighted when weights are given), and the matching weights."""
    mask = get_keras_mask(values)
    values = to_tensor(values, dtype)
    if sample_weight is not None:
        sample_weight = to_tensor(sample_weight, dtype, like=values)
        if mask is not None:
            sample_weight = apply_mask(sample_weight, to_tensor(mask, like=values), dtype, "sum")
        values, sample_weight = squeeze_or_expand_to_same_rank(values, sample_weight)
        weight_ndim = sample_weight.dim()
        if values.dim() > weight_ndim:
            values = reduce_fn(values, dim=tuple(range(weight_ndim, values.dim())))
        values = values * sample_weight.broadcast_to(values.shape)
        if weight_ndim > 1:
            sample_weight = reduce_fn(sample_weight, dim=tuple(range(1, weight_ndim)))
    if values.dim() > 1:
        values = reduce_fn(values, dim=tuple(range(1, values.dim())))
    return values, sample_weight


def _is_python_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@keras_export("keras.metrics")
class Sum(Metric):
    """The (weighted) sum of all values seen."""

    def __init__(self, name="sum", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable((), "zeros", dtype=self.dtype, name="total")

    @torch.no_grad()
    def update_state(self, values, sample_weight=None):
        values, _ = _reduce_to_samplewise_values(values, sample_weight, torch.sum, self._torch_dtype)
        _accumulate(self.total, values.sum())

    def result(self):
        return self.total.detach().clone()


@keras_export("keras.metrics")
class Mean(Metric):
    """The (weighted) mean of all values seen: total / count."""

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable((), "zeros", dtype=self.dtype, name="total")
        self.count = self.add_variable((), "zeros", dtype=self.dtype, name="count")

    @torch.no_grad()
    def update_state(self, values, sample_weight=None):
        if _is_python_number(sample_weight) and get_keras_mask(values) is None:
            # A scalar weight (e.g. the batch size for the loss tracker) weighs the batch mean;
            # kept as a Python number so no host-to-device copy is needed.
            values = to_tensor(values, self._torch_dtype)
            _accumulate(self.total, (values.mean() if values.dim() else values) * sample_weight)
            _accumulate(self.count, sample_weight)
            return
        values, sample_weight = _reduce_to_samplewise_values(values, sample_weight, torch.mean, self._torch_dtype)
        _accumulate(self.total, values.sum())
        if sample_weight is not None:
            _accumulate(self.count, sample_weight.sum())
        else:
            _accumulate(self.count, values.shape[0] if values.dim() else 1)

    def result(self):
        return divide_no_nan(self.total.detach(), self.count.detach())


@keras_export("keras.metrics")
class MeanMetricWrapper(Mean):
    """The mean of a per-sample function `fn(y_true, y_pred, **kwargs)`."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        super().__init__(name=name, dtype=dtype)
        self._fn = fn
        self._fn_kwargs = kwargs
        if fn in _LOSS_FUNCTIONS or isinstance(fn, Loss):
            self._direction = "down"  # read by callbacks' mode="auto"

    @torch.no_grad()
    def update_state(self, y_true, y_pred, sample_weight=None):
        mask = get_keras_mask(y_pred)
        values = self._fn(y_true, y_pred, **self._fn_kwargs)
        sample_weight = apply_mask(sample_weight, mask, self._torch_dtype, "sum")
        super().update_state(values, sample_weight=sample_weight)

    def get_config(self):
        config = {**super().get_config(), "fn": serialize_keras_object(self._fn)}
        config.update(serialize_keras_object(self._fn_kwargs))
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "fn" in config:
            config["fn"] = deserialize_keras_object(config["fn"], ("keras.metrics", "keras.losses"))
        return cls(**config)


class _BuiltinMeanMetric(MeanMetricWrapper):
    """A built-in wrapper whose config lists its own arguments rather than the function."""

    def get_config(self):
        return Mean.get_config(self)


# -------------------------------------------------------------------------------- accuracy
def _floatx():
    return backend.torch_dtype(backend.floatx())


def accuracy(y_true, y_pred):
    y_true, y_pred = tensor_pair(y_true, y_pred)
    return (y_true == y_pred).to(_floatx())


@keras_export("keras.metrics")
def binary_accuracy(y_true, y_pred, threshold=0.5):
    y_pred = to_tensor(y_pred)
    y_true = to_tensor(y_true, like=y_pred)
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    # Keras compares against the threshold as a float32 tensor.
    return (y_true == (y_pred > float32_scalar(threshold)).to(y_true.dtype)).to(_floatx())


@keras_export("keras.metrics")
def categorical_accuracy(y_true, y_pred):
    y_pred = to_tensor(y_pred)
    true_index = torch.argmax(to_tensor(y_true, y_pred.dtype, like=y_pred), dim=-1)
    original_shape = true_index.shape
    reshape = true_index.dim() == y_pred.dim()
    if reshape:
        true_index = true_index.squeeze(-1)
    matches = (true_index == torch.argmax(y_pred, dim=-1)).to(_floatx())
    return matches.reshape(original_shape) if reshape else matches


@keras_export("keras.metrics")
def sparse_categorical_accuracy(y_true, y_pred):
    y_pred = to_tensor(y_pred)
    y_true = to_tensor(y_true, y_pred.dtype, like=y_pred)
    original_shape = y_true.shape
    reshape = y_true.dim() == y_pred.dim() and y_true.shape[-1] == 1
    if reshape:
        y_true = y_true.squeeze(-1)
    matches = (y_true == torch.argmax(y_pred, dim=-1).to(y_true.dtype)).to(_floatx())
    if reshape:
        matches = matches.reshape(original_shape)
    if matches.dim() > 1 and matches.shape[-1] == 1:
        matches = matches.squeeze(-1)
    return matches


def _in_top_k(targets, predictions, k):
    """True where the target's score reaches the k-th largest score (ties count as in)."""
    target_scores = torch.take_along_dim(predictions, targets.long()[:, None], dim=-1)
    return torch.any(target_scores >= torch.topk(predictions, k, dim=-1).values, dim=-1)


def _top_k_matches(targets, y_pred, k, from_sorted_ids=False):
    original_shape = targets.shape
    if y_pred.dim() > 2:
        y_pred = y_pred.reshape(-1, y_pred.shape[-1])
    if targets.dim() > 1:
        targets = targets.reshape(-1)
    if from_sorted_ids:
        matches = torch.any(targets[:, None] == y_pred[:, :k], dim=1)
    else:
        matches = _in_top_k(targets, y_pred, k)
    return matches.to(_floatx()).reshape(original_shape)


@keras_export("keras.metrics")
def top_k_categorical_accuracy(y_true, y_pred, k=5):
    y_true, y_pred = tensor_pair(y_true, y_pred, same_rank=False)
    return _top_k_matches(torch.argmax(y_true, dim=-1), y_pred, k)


@keras_export("keras.metrics")
def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5, from_sorted_ids=False):
    y_pred = to_tensor(y_pred)
    y_true = to_tensor(y_true, like=y_pred)
    y_true = y_true.to(y_pred.dtype) if from_sorted_ids else y_true.to(torch.int32)
    return _top_k_matches(y_true, y_pred, k, from_sorted_ids)


@keras_export("keras.metrics")
class Accuracy(_BuiltinMeanMetric):
    """How often predictions equal the labels exactly."""

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(accuracy, name=name, dtype=dtype)
        self._direction = "up"


@keras_export("keras.metrics")
class BinaryAccuracy(_BuiltinMeanMetric):
    """How often `y_pred > threshold` equals the binary label."""

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        super().__init__(binary_accuracy, name=name, dtype=dtype, threshold=threshold)
        self.threshold = threshold
        self._direction = "up"

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@keras_export("keras.metrics")
class CategoricalAccuracy(_BuiltinMeanMetric):
    """How often the arg-max of `y_pred` matches the one-hot label."""

    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(categorical_accuracy, name=name, dtype=dtype)
        self._direction = "up"


@keras_export("keras.metrics")
class SparseCategoricalAccuracy(_BuiltinMeanMetric):
    """How often the arg-max of `y_pred` matches the integer label."""

    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(sparse_categorical_accuracy, name=name, dtype=dtype)
        self._direction = "up"


@keras_export("keras.metrics")
class TopKCategoricalAccuracy(_BuiltinMeanMetric):
    """How often the one-hot label is among the k highest predictions."""

    def __init__(self, k=5, name="top_k_categorical_accuracy", dtype=None):
        super().__init__(top_k_categorical_accuracy, name=name, dtype=dtype, k=k)
        self.k = k
        self._direction = "up"

    def get_config(self):
        return {**super().get_config(), "k": self.k}


@keras_export("keras.metrics")
class SparseTopKCategoricalAccuracy(_BuiltinMeanMetric):
    """How often the integer label is among the k highest predictions."""

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None, from_sorted_ids=False):
        super().__init__(sparse_top_k_categorical_accuracy, name=name, dtype=dtype, k=k, from_sorted_ids=from_sorted_ids)
        self.k = k
        self.from_sorted_ids = from_sorted_ids
        self._direction = "up"

    def get_config(self):
        config = {**super().get_config(), "k": self.k}
        if self.from_sorted_ids:
            config["from_sorted_ids"] = True
        return config


# ------------------------------------------------------------------ regression / probabilistic
@keras_export("keras.metrics")
class MeanSquaredError(_BuiltinMeanMetric):
    """The mean squared error."""

    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(mean_squared_error, name=name, dtype=dtype)


@keras_export("keras.metrics")
class MeanAbsoluteError(_BuiltinMeanMetric):
    """The mean absolute error."""

    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(mean_absolute_error, name=name, dtype=dtype)


@keras_export("keras.metrics")
class MeanAbsolutePercentageError(_BuiltinMeanMetric):
    """The mean absolute percentage error."""

    def __init__(self, name="mean_absolute_percentage_error", dtype=None):
        super().__init__(mean_absolute_percentage_error, name=name, dtype=dtype)


@keras_export("keras.metrics")
class MeanSquaredLogarithmicError(_BuiltinMeanMetric):
    """The mean squared logarithmic error."""

    def __init__(self, name="mean_squared_logarithmic_error", dtype=None):
        super().__init__(mean_squared_logarithmic_error, name=name, dtype=dtype)


@keras_export("keras.metrics")
class LogCoshError(_BuiltinMeanMetric):
    """The mean logarithm of the hyperbolic cosine of the error."""

    def __init__(self, name="logcosh", dtype=None):
        super().__init__(log_cosh, name=name, dtype=dtype)


@keras_export("keras.metrics")
class KLDivergence(_BuiltinMeanMetric):
    """The mean Kullback-Leibler divergence."""

    def __init__(self, name="kl_divergence", dtype=None):
        super().__init__(kl_divergence, name=name, dtype=dtype)


@keras_export("keras.metrics")
class Poisson(_BuiltinMeanMetric):
    """The mean Poisson loss."""

    def __init__(self, name="poisson", dtype=None):
        super().__init__(poisson, name=name, dtype=dtype)


@keras_export("keras.metrics")
class Hinge(_BuiltinMeanMetric):
    """The mean hinge loss."""

    def __init__(self, name="hinge", dtype=None):
        super().__init__(hinge, name=name, dtype=dtype)


@keras_export("keras.metrics")
class SquaredHinge(_BuiltinMeanMetric):
    """The mean squared hinge loss."""

    def __init__(self, name="squared_hinge", dtype=None):
        super().__init__(squared_hinge, name=name, dtype=dtype)


@keras_export("keras.metrics")
class CategoricalHinge(_BuiltinMeanMetric):
    """The mean categorical hinge loss."""

    def __init__(self, name="categorical_hinge", dtype=None):
        super().__init__(categorical_hinge, name=name, dtype=dtype)


@keras_export("keras.metrics")
class CosineSimilarity(_BuiltinMeanMetric):
    """The mean cosine similarity between labels and predictions along `axis`."""

    def __init__(self, name="cosine_similarity", dtype=None, axis=-1):
        super().__init__(_cosine_similarity_metric, name=name, dtype=dtype, axis=axis)
        self.axis = axis
        self._direction = "up"

    def get_config(self):
        config = super().get_config()
        if self.axis != -1:
            # Keras drops `axis`; keramic keeps a non-default one so it survives a round trip.
            config["axis"] = self.axis
        return config


def _cosine_similarity_metric(y_true, y_pred, axis=-1):
    """The metric reports the similarity itself (the loss reports its negative)."""
    return -_cosine_similarity(y_true, y_pred, axis=axis)


@keras_export("keras.metrics")
class RootMeanSquaredError(Mean):
    """sqrt of the (weighted) mean squared error."""

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = "down"

    @torch.no_grad()
    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = to_tensor(y_pred, self._torch_dtype)
        y_true = to_tensor(y_true, self._torch_dtype, like=y_pred)
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        super().update_state(torch.square(y_pred - y_true), sample_weight=sample_weight)

    def result(self):
        return torch.sqrt(super().result())


@keras_export("keras.metrics")
class BinaryCrossentropy(_BuiltinMeanMetric):
    """The mean binary crossentropy."""

    def __init__(self, name="binary_crossentropy", dtype=None, from_logits=False, label_smoothing=0):
        super().__init__(binary_crossentropy, name=name, dtype=dtype, from_logits=from_logits, label_smoothing=label_smoothing)
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self._direction = "down"

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


@keras_export("keras.metrics")
class CategoricalCrossentropy(_BuiltinMeanMetric):
    """The mean categorical crossentropy (one-hot labels)."""

    def __init__(self, name="categorical_crossentropy", dtype=None, from_logits=False, label_smoothing=0, axis=-1):
        super().__init__(
            categorical_crossentropy, name=name, dtype=dtype, from_logits=from_logits, label_smoothing=label_smoothing, axis=axis
        )
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self.axis = axis
        self._direction = "down"

    def get_config(self):
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
            "axis": self.axis,
        }


@keras_export("keras.metrics")
class SparseCategoricalCrossentropy(_BuiltinMeanMetric):
    """The mean sparse categorical crossentropy (integer labels)."""

    def __init__(self, name="sparse_categorical_crossentropy", dtype=None, from_logits=False, ignore_class=None, axis=-1):
        super().__init__(
            sparse_categorical_crossentropy, name=name, dtype=dtype, from_logits=from_logits, ignore_class=ignore_class, axis=axis
        )
        self.from_logits = from_logits
        self.ignore_class = ignore_class
        self.axis = axis
        self._direction = "down"

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "ignore_class": self.ignore_class, "axis": self.axis}


# ----------------------------------------------------------------------- confusion matrices
TRUE_POSITIVES, FALSE_POSITIVES, TRUE_NEGATIVES, FALSE_NEGATIVES = "tp", "fp", "tn", "fn"


def _parse_thresholds(thresholds, default):
    if thresholds is None:
        return [default]
    thresholds = list(thresholds) if isinstance(thresholds, (list, tuple, np.ndarray)) else [thresholds]
    invalid = [t for t in thresholds if t is None or t < 0 or t > 1]
    if invalid:
        raise ValueError(f"Threshold values must be in [0, 1]. Received: {invalid}")
    return thresholds


def _evenly_distributed(thresholds):
    """Thresholds 0, 1/(n-1), ..., 1 allow the bucketed O(n) update instead of comparing each."""
    count = len(thresholds)
    if count < 3:
        return False
    even = np.arange(count, dtype=np.float32) / (count - 1)
    return bool(np.allclose(thresholds, even, atol=1e-7))


def _filter_top_k(x, k):
    """Keep the k largest scores per row; the rest become NEG_INF."""
    keep = torch.zeros_like(x).scatter_(-1, torch.topk(x, k, dim=-1).indices, 1.0)
    return x * keep + NEG_INF * (1 - keep)


def _reverse_cumsum(x):
    return torch.flip(torch.cumsum(torch.flip(x, [0]), dim=0), [0])


def update_confusion_matrix_variables(
    variables,
    y_true,
    y_pred,
    thresholds,
    top_k=None,
    class_id=None,
    sample_weight=None,
    multi_label=False,
    label_weights=None,
    thresholds_distributed_evenly=False,
):
    """Add this batch's (weighted) TP/FP/TN/FN counts per threshold to `variables` ({"tp": var, ...}).

    With `multi_label`, counts are kept per label (variables of shape (thresholds, labels)).
    """
    first = next(iter(variables.values()))
    dtype, device = first.dtype, first.device
    y_pred = to_tensor(y_pred, dtype).to(device)
    y_true = to_tensor(y_true, dtype, like=y_pred)
    y_pred, y_true = squeeze_or_expand_to_same_rank(y_pred, y_true)
    if sample_weight is not None:
        sample_weight = to_tensor(sample_weight, dtype, like=y_pred).unsqueeze(-1)
        _, sample_weight = squeeze_or_expand_to_same_rank(y_true, sample_weight, expand_rank_1=False)
    if top_k is not None:
        y_pred = _filter_top_k(y_pred, top_k)
    if class_id is not None:
        if y_pred.dim() == 1:
            raise ValueError(
                "When class_id is provided, y_pred must be a 2D array with shape (num_samples, num_classes), "
                f"found shape: {tuple(y_pred.shape)}"
            )
        y_true = y_true[..., class_id, None]
        y_pred = y_pred[..., class_id, None]
    weights = None
    if sample_weight is not None:
        weights = sample_weight.broadcast_to(y_pred.shape)
    if label_weights is not None and not multi_label:
        label_weights = label_weights.to(device=device, dtype=dtype)[None].broadcast_to(y_pred.shape)
        weights = label_weights if weights is None else weights * label_weights
    if thresholds_distributed_evenly:
        counts = _bucketed_counts(y_true, y_pred, weights, thresholds, multi_label)
    else:
        counts = _compared_counts(y_true, y_pred, weights, thresholds, multi_label, variables)
    for key, variable in variables.items():
        variable.add_(counts[key])


def _bucketed_counts(y_true, y_pred, weights, thresholds, multi_label):
    """Counts for evenly spaced thresholds: bucket each prediction once, then cumulative sums."""
    count = len(thresholds)
    with_epsilon = thresholds[0] < 0.0 or thresholds[-1] > 1.0
    y_pred = torch.clamp(y_pred, 0.0, 1.0)
    y_true = (y_true != 0).to(y_pred.dtype)
    if not multi_label:
        y_true, y_pred = y_true.reshape(-1), y_pred.reshape(-1)
        weights = None if weights is None else weights.reshape(-1)
    true_labels = y_true if weights is None else y_true * weights
    false_labels = (1.0 - y_true) if weights is None else (1.0 - y_true) * weights
    buckets = torch.ceil(y_pred * (count - 1)) - 1
    if with_epsilon:
        buckets = torch.relu(buckets)
    # Shift by one so predictions below every threshold (bucket -1) land in a dropped slot.
    buckets = buckets.long() + 1
    if multi_label:
        labels = y_pred.shape[-1]
        buckets = buckets * labels + torch.arange(labels, device=y_pred.device)
        slots, shape = (count + 1) * labels, (count + 1, labels)
    else:
        slots, shape = count + 1, (count + 1,)
    flat = buckets.reshape(-1)

    def bucket_sums(values):
        sums = torch.zeros(slots, dtype=values.dtype, device=values.device).index_add_(0, flat, values.reshape(-1))
        return sums.reshape(shape)[1:]

    tp = _reverse_cumsum(bucket_sums(true_labels))
    fp = _reverse_cumsum(bucket_sums(false_labels))
    total_true = true_labels.sum(dim=0)
    total_false = false_labels.sum(dim=0)
    return {TRUE_POSITIVES: tp, FALSE_POSITIVES: fp, TRUE_NEGATIVES: total_false - fp, FALSE_NEGATIVES: total_true - tp}


@functools.lru_cache(maxsize=64)
def _threshold_tensor(thresholds, dtype, device):
    """Thresholds as a device tensor, made once: a fresh host-to-device copy would stall each step."""
    return torch.tensor(thresholds, dtype=dtype, device=device)


def _compared_counts(y_true, y_pred, weights, thresholds, multi_label, wanted):
    """Counts for arbitrary thresholds: compare every prediction with every threshold."""
    thresholds = _threshold_tensor(tuple(float(t) for t in thresholds), y_pred.dtype, y_pred.device)
    if multi_label:
        thresholds = thresholds.reshape(-1, *([1] * y_pred.dim()))
        predictions, labels = y_pred[None], (y_true != 0)[None]
        weights = None if weights is None else weights[None]
    else:
        thresholds = thresholds[:, None]
        predictions, labels = y_pred.reshape(1, -1), (y_true != 0).reshape(1, -1)
        weights = None if weights is None else weights.reshape(1, -1)
    pred_is_pos = predictions > thresholds
    pairs = {
        TRUE_POSITIVES: (labels, pred_is_pos),
        FALSE_POSITIVES: (~labels, pred_is_pos),
        TRUE_NEGATIVES: (~labels, ~pred_is_pos),
        FALSE_NEGATIVES: (labels, ~pred_is_pos),
    }
    counts = {}
    for key in wanted:
        label, pred = pairs[key]
        hit = label & pred
        value = hit.to(y_pred.dtype) if weights is None else torch.where(hit, weights, 0.0)
        counts[key] = value.sum(dim=1)
    return counts


class _ConfusionMatrixConditionCount(Metric):
    """Counts one confusion-matrix cell per threshold."""

    _condition: str | None = None

    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.init_thresholds = thresholds
        self.thresholds = _parse_thresholds(thresholds, 0.5)
        self._thresholds_distributed_evenly = _evenly_distributed(self.thresholds)
        self.accumulator = self.add_variable((len(self.thresholds),), "zeros", name="accumulator")

    @torch.no_grad()
    def update_state(self, y_true, y_pred, sample_weight=None):
        update_confusion_matrix_variables(
            {self._condition: self.accumulator},
            y_true,
            y_pred,
            self.thresholds,
            sample_weight=sample_weight,
            thresholds_distributed_evenly=self._thresholds_distributed_evenly,
        )

    def result(self):
        value = self.accumulator.detach()
        return (value[0] if len(self.thresholds) == 1 else value).clone()

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds}


@keras_export("keras.metrics")
class TruePositives(_ConfusionMatrixConditionCount):
    """The (weighted) number of true positives per threshold."""

    _condition = TRUE_POSITIVES


@keras_export("keras.metrics")
class FalsePositives(_ConfusionMatrixConditionCount):
    """The (weighted) number of false positives per threshold."""

    _condition = FALSE_POSITIVES


@keras_export("keras.metrics")
class TrueNegatives(_ConfusionMatrixConditionCount):
    """The (weighted) number of true negatives per threshold."""

    _condition = TRUE_NEGATIVES


@keras_export("keras.metrics")
class FalseNegatives(_ConfusionMatrixConditionCount):
    """The (weighted) number of false negatives per threshold."""

    _condition = FALSE_NEGATIVES


class _PrecisionRecall(Metric):
    """Shared state of Precision and Recall: TP plus one error cell per threshold."""

    _error: tuple[str, str] | None = None  # (cell, variable name): false positives for precision, false negatives for recall

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        self.init_thresholds = thresholds
        self.top_k = top_k
        self.class_id = class_id
        # With top_k, every kept prediction counts as positive (the rest sit at NEG_INF).
        self.thresholds = _parse_thresholds(thresholds, 0.5 if top_k is None else NEG_INF)
        self._thresholds_distributed_evenly = _evenly_distributed(self.thresholds)
        size = (len(self.thresholds),)
        self.true_positives = self.add_variable(size, "zeros", name="true_positives")
        self._error_variable = self.add_variable(size, "zeros", name=self._error[1])
        setattr(self, self._error[1], self._error_variable)  # Keras' attribute name for that state

    @torch.no_grad()
    def update_state(self, y_true, y_pred, sample_weight=None):
        update_confusion_matrix_variables(
            {TRUE_POSITIVES: self.true_positives, self._error[0]: self._error_variable},
            y_true,
            y_pred,
            self.thresholds,
            top_k=self.top_k,
            class_id=self.class_id,
            sample_weight=sample_weight,
            thresholds_distributed_evenly=self._thresholds_distributed_evenly,
        )

    def result(self):
        tp = self.true_positives.detach()
        value = divide_no_nan(tp, tp + self._error_variable.detach())
        return value[0] if len(self.thresholds) == 1 else value

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds, "top_k": self.top_k, "class_id": self.class_id}


@keras_export("keras.metrics")
class Precision(_PrecisionRecall):
    """TP / (TP + FP) at each threshold (or among the top-k predictions, or for one class)."""

    _error = (FALSE_POSITIVES, "false_positives")


@keras_export("keras.metrics")
class Recall(_PrecisionRecall):
    """TP / (TP + FN) at each threshold (or among the top-k predictions, or for one class)."""

    _error = (FALSE_NEGATIVES, "false_negatives")


# Spellings Keras accepts for `curve` and `summation_method`.
_CURVES = {"ROC": "ROC", "roc": "ROC", "PR": "PR", "pr": "PR", "PRGAIN": "PRGAIN", "prgain": "PRGAIN"}
_SUMMATIONS = {
    **{name: name for name in ("interpolation", "majoring", "minoring")},
    **{name.capitalize(): name for name in ("interpolation", "majoring", "minoring")},
}


def _parse_choice(value, table, argument):
    found = table.get(getattr(value, "value", value))  # also accept Keras' enum members
    if found is None:
        raise ValueError(f'Invalid {argument} value: "{value}". Expected values are {sorted(set(table.values()))}')
    return found


@keras_export("keras.metrics")
class AUC(Metric):
    """Area under the ROC or precision-recall curve, summed over a fixed set of thresholds.

    `curve`: "ROC", "PR" or "PRGAIN"; `summation_method`: "interpolation" (for PR, the
    Davis & Goadrich interpolation), "minoring" or "majoring". With `multi_label`, one curve
    per label, averaged (weighted by `label_weights` when given).
    """

    def __init__(
        self,
        num_thresholds=200,
        curve="ROC",
        summation_method="interpolation",
        name=None,
        dtype=None,
        thresholds=None,
        multi_label=False,
        num_labels=None,
        label_weights=None,
        from_logits=False,
    ):
        self._direction = "up"
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            self.num_thresholds = len(thresholds) + 2
            thresholds = sorted(float(t) for t in thresholds)
            self._thresholds_distributed_evenly = _evenly_distributed([0.0] + thresholds + [1.0])
        else:
            if num_thresholds <= 1:
                raise ValueError(f"Argument `num_thresholds` must be an integer > 1. Received: num_thresholds={num_thresholds}")
            self.num_thresholds = num_thresholds
            thresholds = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self._thresholds_distributed_evenly = True
        # The end points sit just outside [0, 1] so predictions of exactly 0 or 1 are counted.
        self._thresholds = [0.0 - 1e-7] + thresholds + [1.0 + 1e-7]
        self.curve = _parse_choice(curve, _CURVES, "AUC curve")
        self.summation_method = _parse_choice(summation_method, _SUMMATIONS, "AUC summation method")
        super().__init__(name=name, dtype=dtype)
        self.multi_label = multi_label
        self.num_labels = num_labels
        self.label_weights = None
        if label_weights is not None:
            self.label_weights = torch.as_tensor(
                np.asarray(label_weights), dtype=self._torch_dtype, device=backend.get_device()
            )
        self._from_logits = from_logits
        self._built = False
        if multi_label:
            if num_labels:
                self._build([None, num_labels])
        elif num_labels:
            raise ValueError("`num_labels` is needed only when `multi_label` is True.")
        else:
            self._build(None)

    @property
    def thresholds(self):
        return list(self._thresholds)

    def _build(self, shape):
        if self.multi_label:
            if len(shape) != 2:
                raise ValueError(
                    f"`y_pred` must have rank 2 when `multi_label=True`. Found rank {len(shape)}. "
                    f"Full shape received for `y_pred`: {tuple(shape)}"
                )
            self._num_labels = shape[1]
            variable_shape = (self.num_thresholds, self._num_labels)
        else:
            variable_shape = (self.num_thresholds,)
        self.true_positives = self.add_variable(variable_shape, "zeros", name="true_positives")
        self.false_positives = self.add_variable(variable_shape, "zeros", name="false_positives")
        self.true_negatives = self.add_variable(variable_shape, "zeros", name="true_negatives")
        self.false_negatives = self.add_variable(variable_shape, "zeros", name="false_negatives")
        self._built = True

    def _build_from_batch(self, y_true, y_pred):
        """Create a multi-label AUC's per-label state before counting a batch (see `resolve_metric`)."""
        if not self._built:
            self._build(tuple(to_tensor(y_pred).shape))

    @torch.no_grad()
    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = to_tensor(y_pred)
        if not self._built:
            self._build(tuple(y_pred.shape))
        if self._from_logits:
            y_pred = torch.sigmoid(y_pred)
        update_confusion_matrix_variables(
            {
                TRUE_POSITIVES: self.true_positives,
                TRUE_NEGATIVES: self.true_negatives,
                FALSE_POSITIVES: self.false_positives,
                FALSE_NEGATIVES: self.false_negatives,
            },
            y_true,
            y_pred,
            self._thresholds,
            sample_weight=sample_weight,
            multi_label=self.multi_label,
            label_weights=None if self.multi_label else self.label_weights,
            thresholds_distributed_evenly=self._thresholds_distributed_evenly,
        )

    def _average_over_labels(self, by_threshold):
        if not self.multi_label:
            return by_threshold.sum()
        by_label = by_threshold.sum(dim=0)
        if self.label_weights is None:
            return by_label.mean()
        weights = self.label_weights.to(by_label.device)
        return divide_no_nan((by_label * weights).sum(), weights.sum())

    def interpolate_pr_auc(self):
        """PR-AUC by Davis & Goadrich interpolation between thresholds (precision varies non-linearly)."""
        tp, fp, fn = self.true_positives.detach(), self.false_positives.detach(), self.false_negatives.detach()
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        slope = divide_no_nan(dtp, torch.clamp(dp, min=0))
        intercept = tp[1:] - slope * p[1:]
        safe_p_ratio = torch.where(
            (p[:-1] > 0) & (p[1:] > 0), divide_no_nan(p[:-1], torch.clamp(p[1:], min=0)), torch.ones_like(p[1:])
        )
        increments = divide_no_nan(slope * (dtp + intercept * torch.log(safe_p_ratio)), torch.clamp(tp[1:] + fn[1:], min=0))
        return self._average_over_labels(increments)

    def result(self):
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self.interpolate_pr_auc()
        tp, fp = self.true_positives.detach(), self.false_positives.detach()
        tn, fn = self.true_negatives.detach(), self.false_negatives.detach()
        recall = divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = divide_no_nan(fp, fp + tn), recall
        elif self.curve == "PR":
            x, y = recall, divide_no_nan(tp, tp + fp)
        else:  # PRGAIN
            scale = divide_no_nan(tp + fn, tn + fp)
            recall_gain = torch.where(tp == 0, 0.0, 1.0 - scale * divide_no_nan(fn, tp))
            precision_gain = torch.where(tp == 0, 1.0, 1.0 - scale * divide_no_nan(fp, tp))
            x, y = torch.clamp(recall_gain, min=0.0), precision_gain
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = torch.minimum(y[:-1], y[1:])
        else:
            heights = torch.maximum(y[:-1], y[1:])
        return self._average_over_labels((x[:-1] - x[1:]) * heights)

    def get_config(self):
        config = {
            **super().get_config(),
            "num_thresholds": self.num_thresholds,
            "curve": self.curve,
            "summation_method": self.summation_method,
            "multi_label": self.multi_label,
            "num_labels": self.num_labels,
            "label_weights": None if self.label_weights is None else self.label_weights.tolist(),
            "from_logits": self._from_logits,
        }
        if self._init_from_thresholds:
            config["thresholds"] = self.thresholds[1:-1]
        return config


# ------------------------------------------------------------------------- F-beta scores
_AVERAGES = (None, "micro", "macro", "weighted")


@keras_export("keras.metrics")
class FBetaScore(Metric):
    """F-beta per class (or averaged: "micro" over all counts, "macro" over classes, "weighted" by
    support). A prediction counts as positive above `threshold`, or where it is its row's maximum
    when `threshold` is None. State is created at the first update, sized by the class count."""

    def __init__(self, average=None, beta=1.0, threshold=None, name="fbeta_score", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        if average not in _AVERAGES:
            raise ValueError(
                f"Invalid `average` argument value. Expected one of: {{None, 'micro', 'macro', 'weighted'}}. "
                f"Received: average={average}"
            )
        if not isinstance(beta, float):
            raise ValueError(
                f"Invalid `beta` argument value. It should be a Python float. Received: beta={beta} of type '{type(beta)}'"
            )
        if beta <= 0.0:
            raise ValueError(f"Invalid `beta` argument value. It should be > 0. Received: beta={beta}")
        if threshold is not None:
            if not isinstance(threshold, float):
                raise ValueError(
                    "Invalid `threshold` argument value. It should be a Python float. "
                    f"Received: threshold={threshold} of type '{type(threshold)}'"
                )
            if threshold > 1.0 or threshold <= 0.0:
                raise ValueError(
                    f"Invalid `threshold` argument value. It should verify 0 < threshold <= 1. Received: threshold={threshold}"
                )
        self.average = average
        self.beta = beta
        self.threshold = threshold
        self.axis = None if average == "micro" else 0
        self._built = False

    def _build(self, true_shape, pred_shape):
        if len(pred_shape) != 2 or len(true_shape) != 2:
            raise ValueError(
                f"{type(self).__name__} expects 2D inputs with shape (batch_size, output_dim). Received input "
                f"shapes: y_pred.shape={tuple(pred_shape)} and y_true.shape={tuple(true_shape)}."
            )
        shape = () if self.average == "micro" else (pred_shape[-1],)
        self.true_positives = self.add_variable(shape, "zeros", dtype=self.dtype, name="true_positives")
        self.false_positives = self.add_variable(shape, "zeros", dtype=self.dtype, name="false_positives")
        self.false_negatives = self.add_variable(shape, "zeros", dtype=self.dtype, name="false_negatives")
        self.intermediate_weights = self.add_variable(shape, "zeros", dtype=self.dtype, name="intermediate_weights")
        self._built = True

    def _build_from_batch(self, y_true, y_pred):
        """Create the state from a batch's shapes before counting it (see `resolve_metric`)."""
        if not self._built:
            self._build(tuple(to_tensor(y_true).shape), tuple(to_tensor(y_pred).shape))

    @torch.no_grad()
    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = to_tensor(y_pred, self._torch_dtype)
        y_true = to_tensor(y_true, self._torch_dtype, like=y_pred)
        if not self._built:
            self._build(y_true.shape, y_pred.shape)
        if self.threshold is None:
            positive = (y_pred >= torch.amax(y_pred, dim=-1, keepdim=True)) & (torch.abs(y_pred) > 1e-9)
        else:
            positive = y_pred > self.threshold
        y_pred = positive.to(y_true.dtype)
        weight = None if sample_weight is None else to_tensor(sample_weight, self._torch_dtype, like=y_pred).unsqueeze(1)

        def weighted_sum(values):
            values = values if weight is None else values * weight
            return values.sum() if self.axis is None else values.sum(dim=self.axis)

        _accumulate(self.true_positives, weighted_sum(y_pred * y_true))
        _accumulate(self.false_positives, weighted_sum(y_pred * (1 - y_true)))
        _accumulate(self.false_negatives, weighted_sum((1 - y_pred) * y_true))
        _accumulate(self.intermediate_weights, weighted_sum(y_true))

    def result(self):
        tp, fp, fn = self.true_positives.detach(), self.false_positives.detach(), self.false_negatives.detach()
        precision = tp / (tp + fp + EPSILON)
        recall = tp / (tp + fn + EPSILON)
        beta_squared = self.beta**2
        score = precision * recall / (beta_squared * precision + recall + EPSILON) * (1 + beta_squared)
        if self.average == "weighted":
            support = self.intermediate_weights.detach()
            return torch.sum(score * (support / (support.sum() + EPSILON)))
        if self.average is not None:
            return torch.mean(score)
        return score

    def get_config(self):
        return {**super().get_config(), "average": self.average, "beta": self.beta, "threshold": self.threshold}


@keras_export("keras.metrics")
class F1Score(FBetaScore):
    """FBetaScore with beta = 1: the harmonic mean of precision and recall."""

    def __init__(self, average=None, threshold=None, name="f1_score", dtype=None):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name, dtype=dtype)

    def get_config(self):
        config = super().get_config()
        del config["beta"]
        return config


# ----------------------------------------------------------------------------- IoU family
class _IoUBase(Metric):
    """A (num_classes, num_classes) confusion matrix, rows = labels, columns = predictions.

    Its dtype is int32 unless given: weights are then truncated to integers, as in Keras.
    """

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None, sparse_y_true=True, sparse_y_pred=True, axis=-1):
        super().__init__(name=name, dtype=dtype or "int32")
        self._direction = "up"
        self.num_classes = num_classes
        self.ignore_class = ignore_class
        self.sparse_y_true = sparse_y_true
        self.sparse_y_pred = sparse_y_pred
        self.axis = axis
        self.total_cm = self.add_variable((num_classes, num_classes), "zeros", dtype=self.dtype, name="total_confusion_matrix")

    @torch.no_grad()
    def update_state(self, y_true, y_pred, sample_weight=None):
        dtype = self._torch_dtype
        if not self.sparse_y_true:
            y_true = torch.argmax(to_tensor(y_true), dim=self.axis)
        if not self.sparse_y_pred:
            y_pred = torch.argmax(to_tensor(y_pred), dim=self.axis)
        y_true = to_tensor(y_true, dtype).reshape(-1)
        y_pred = to_tensor(y_pred, dtype, like=y_true).reshape(-1)
        if sample_weight is None:
            weights = torch.ones_like(y_true)
        else:
            if not dtype.is_floating_point and getattr(sample_weight, "dtype", None) is not None and "float" in str(sample_weight.dtype):
                warnings.warn(
                    "You are passing weight as `float`, but dtype is `int`. This may result in an incorrect weight "
                    "due to type casting Consider using integer weights.",
                    stacklevel=2,
                )
            weights = to_tensor(sample_weight, dtype, like=y_true).reshape(-1).broadcast_to(y_true.shape)
        in_bounds = (y_true >= 0) & (y_true < self.num_classes) & (y_pred >= 0) & (y_pred < self.num_classes)
        if self.ignore_class is not None:
            in_bounds &= y_true != self.ignore_class
        zero = torch.zeros((), dtype=dtype, device=y_true.device)
        rows = torch.where(in_bounds, y_true, zero).long()
        columns = torch.where(in_bounds, y_pred, zero).long()
        weights = torch.where(in_bounds, weights, zero)
        cells = torch.zeros(self.num_classes * self.num_classes, dtype=dtype, device=y_true.device)
        cells.index_add_(0, rows * self.num_classes + columns, weights)
        _accumulate(self.total_cm, cells.reshape(self.num_classes, self.num_classes))
        return self.total_cm.detach().clone()  # as Keras: the updated totals


@keras_export("keras.metrics")
class IoU(_IoUBase):
    """Mean intersection-over-union, TP / (TP + FP + FN), over `target_class_ids` (classes that
    never occur are left out of the mean)."""

    def __init__(
        self,
        num_classes,
        target_class_ids,
        name=None,
        dtype=None,
        ignore_class=None,
        sparse_y_true=True,
        sparse_y_pred=True,
        axis=-1,
    ):
        super().__init__(
            num_classes, name=name, dtype=dtype, ignore_class=ignore_class,
            sparse_y_true=sparse_y_true, sparse_y_pred=sparse_y_pred, axis=axis,
        )
        if max(target_class_ids) >= num_classes:
            raise ValueError(f"Target class id {max(target_class_ids)} is out of range, which is [0, {num_classes}).")
        self.target_class_ids = list(target_class_ids)

    def result(self):
        cm = self.total_cm.detach()
        true_positives = torch.diagonal(cm)
        denominator = cm.sum(dim=0) + cm.sum(dim=1) - true_positives
        ids = torch.tensor(self.target_class_ids, device=cm.device)
        true_positives = true_positives[ids].to(torch.float32)
        denominator = denominator[ids].to(torch.float32)
        valid = denominator > 1e-9
        iou = torch.where(valid, true_positives / (denominator + EPSILON), 0.0)
        return iou.sum(dim=self.axis) / (valid.to(torch.float32).sum() + EPSILON)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "target_class_ids": self.target_class_ids,
            "ignore_class": self.ignore_class,
            "sparse_y_true": self.sparse_y_true,
            "sparse_y_pred": self.sparse_y_pred,
            "axis": self.axis,
        }


@keras_export("keras.metrics")
class BinaryIoU(IoU):
    """IoU of two classes; predictions at or above `threshold` are class 1."""

    def __init__(self, target_class_ids=(0, 1), threshold=0.5, name=None, dtype=None):
        super().__init__(num_classes=2, target_class_ids=target_class_ids, name=name, dtype=dtype)
        self.threshold = threshold

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = (to_tensor(y_pred, torch.float32) >= self.threshold).to(self._torch_dtype)
        return super().update_state(to_tensor(y_true, self._torch_dtype), y_pred, sample_weight)

    def get_config(self):
        return {"target_class_ids": self.target_class_ids, "threshold": self.threshold, "name": self.name, "dtype": self.dtype}


@keras_export("keras.metrics")
class MeanIoU(IoU):
    """IoU averaged over every class."""

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None, sparse_y_true=True, sparse_y_pred=True, axis=-1):
        super().__init__(
            num_classes, list(range(num_classes)), name=name, dtype=dtype, ignore_class=ignore_class,
            sparse_y_true=sparse_y_true, sparse_y_pred=sparse_y_pred, axis=axis,
        )

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "name": self.name,
            "dtype": self.dtype,
            "ignore_class": self.ignore_class,
            "sparse_y_true": self.sparse_y_true,
            "sparse_y_pred": self.sparse_y_pred,
            "axis": self.axis,
        }


@keras_export("keras.metrics")
class OneHotIoU(IoU):
    """IoU for one-hot labels (and, unless `sparse_y_pred`, scores): classes are their argmax."""

    def __init__(self, num_classes, target_class_ids, name=None, dtype=None, ignore_class=None, sparse_y_pred=False, axis=-1):
        super().__init__(
            num_classes, target_class_ids, name=name, dtype=dtype, ignore_class=ignore_class,
            sparse_y_true=False, sparse_y_pred=sparse_y_pred, axis=axis,
        )

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "target_class_ids": self.target_class_ids,
            "name": self.name,
            "dtype": self.dtype,
            "ignore_class": self.ignore_class,
            "sparse_y_pred": self.sparse_y_pred,
            "axis": self.axis,
        }


@keras_export("keras.metrics")
class OneHotMeanIoU(MeanIoU):
    """MeanIoU for one-hot labels (and, unless `sparse_y_pred`, scores)."""

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None, sparse_y_pred=False, axis=-1):
        super().__init__(
            num_classes, name=name, dtype=dtype, ignore_class=ignore_class, sparse_y_true=False,
            sparse_y_pred=sparse_y_pred, axis=axis,
        )

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "name": self.name,
            "dtype": self.dtype,
            "ignore_class": self.ignore_class,
            "sparse_y_pred": self.sparse_y_pred,
            "axis": self.axis,
        }


# ---------------------------------------------------------------------------- regression
_CLASS_AGGREGATIONS = (None, "uniform_average", "variance_weighted_average")


@keras_export("keras.metrics")
class R2Score(Metric):
    """Coefficient of determination per output, aggregated uniformly or by variance; adjusted
    for `num_regressors` when given. Per-output state is created at the first update."""

    def __init__(self, class_aggregation="uniform_average", num_regressors=0, name="r2_score", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        if class_aggregation not in _CLASS_AGGREGATIONS:
            raise ValueError(
                "Invalid value for argument `class_aggregation`. Expected one of "
                f"{_CLASS_AGGREGATIONS}. Received: class_aggregation={class_aggregation}"
            )
        if num_regressors < 0:
            raise ValueError(
                f"Invalid value for argument `num_regressors`. Expected a value >= 0. Received: num_regressors={num_regressors}"
            )
        self.class_aggregation = class_aggregation
        self.num_regressors = num_regressors
        self.num_samples = self.add_variable((), "zeros", name="num_samples")
        self._built = False

    def _build(self, true_shape, pred_shape):
        if len(pred_shape) != 2 or len(true_shape) != 2:
            raise ValueError(
                "R2Score expects 2D inputs with shape (batch_size, output_dim). Received input shapes: "
                f"y_pred.shape={tuple(pred_shape)} and y_true.shape={tuple(true_shape)}."
            )
        outputs = (pred_shape[-1],)
        self.squared_sum = self.add_variable(outputs, "zeros", name="squared_sum")
        self.sum = self.add_variable(outputs, "zeros", name="sum")
        self.total_mse = self.add_variable(outputs, "zeros", name="residual")
        self.count = self.add_variable(outputs, "zeros", name="count")
        self._built = True

    def _build_from_batch(self, y_true, y_pred):
        """Create the per-output state from a batch's shapes before counting it (see `resolve_metric`)."""
        if not self._built:
            y_true, y_pred = squeeze_or_expand_to_same_rank(to_tensor(y_true), to_tensor(y_pred))
            self._build(y_true.shape, y_pred.shape)

    @torch.no_grad()
    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = to_tensor(y_pred, self._torch_dtype)
        y_true = to_tensor(y_true, self._torch_dtype, like=y_pred)
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        if not self._built:
            self._build(y_true.shape, y_pred.shape)
        weight = to_tensor(1.0 if sample_weight is None else sample_weight, y_true.dtype, like=y_true)
        if weight.dim() == 1:
            weight = weight.unsqueeze(1)
        weight = weight.broadcast_to(y_true.shape)
        weighted = y_true * weight
        _accumulate(self.sum, weighted.sum(dim=0))
        _accumulate(self.squared_sum, (y_true * weighted).sum(dim=0))
        _accumulate(self.total_mse, (torch.square(y_true - y_pred) * weight).sum(dim=0))
        _accumulate(self.count, weight.sum(dim=0))
        _accumulate(self.num_samples, y_true.numel())

    def result(self):
        total_sum, count = self.sum.detach(), self.count.detach()
        total = self.squared_sum.detach() - total_sum * (total_sum / count)
        raw = 1 - self.total_mse.detach() / total
        raw = torch.where(torch.isinf(raw), 0.0, raw)
        if self.class_aggregation == "uniform_average":
            score = raw.mean()
        elif self.class_aggregation == "variance_weighted_average":
            score = torch.sum(total * raw) / torch.sum(total)
        else:
            score = raw
        if self.num_regressors:
            samples = float(self.num_samples)
            if self.num_regressors > samples - 1:
                warnings.warn("More independent predictors than datapoints in adjusted R2 score. Falling back to standard R2 score.", stacklevel=2)
            elif self.num_regressors == samples - 1:
                warnings.warn("Division by zero in Adjusted R2 score. Falling back to standard R2 score.", stacklevel=2)
            else:
                n, p = torch.tensor(samples), torch.tensor(float(self.num_regressors))
                score = 1.0 - (1.0 - score) * (n - 1.0) / (n - p - 1.0)
        return score

    def get_config(self):
        return {**super().get_config(), "class_aggregation": self.class_aggregation, "num_regressors": self.num_regressors}


@keras_export("keras.metrics")
def pearson_correlation(y_true: torch.Tensor, y_pred: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """Pearson's r along `axis` (population standard deviations)."""
    y_true, y_pred = tensor_pair(y_true, y_pred)
    true_centered = y_true - y_true.mean(dim=axis, keepdim=True)
    pred_centered = y_pred - y_pred.mean(dim=axis, keepdim=True)
    true_centered = true_centered / true_centered.std(dim=axis, keepdim=True, correction=0)
    pred_centered = pred_centered / pred_centered.std(dim=axis, keepdim=True, correction=0)
    return torch.mean(true_centered * pred_centered, dim=axis)


@keras_export("keras.metrics")
def concordance_correlation(y_true: torch.Tensor, y_pred: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """Lin's concordance correlation along `axis`: agreement, not just correlation.

    As in Keras, the covariance term centres `y_true` on the mean of `y_pred`.
    """
    y_true, y_pred = tensor_pair(y_true, y_pred)
    true_mean = y_true.mean(dim=axis, keepdim=True)
    pred_mean = y_pred.mean(dim=axis, keepdim=True)
    true_var = (y_true - true_mean).var(dim=axis, keepdim=True, correction=0)
    pred_var = (y_pred - pred_mean).var(dim=axis, keepdim=True, correction=0)
    covariance = (y_true - pred_mean) * (y_pred - pred_mean)
    norm = true_var + pred_var + torch.square(true_mean - pred_mean)
    return torch.mean(2 * covariance / (norm + EPSILON), dim=axis)


class _CorrelationMetric(MeanMetricWrapper):
    """The mean over batches of a per-sample correlation along `axis`."""

    def __init__(self, fn, name, dtype, axis):
        super().__init__(fn, name=name, dtype=dtype, axis=axis)
        self.axis = axis
        self._direction = "up"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "axis": self.axis}


@keras_export("keras.metrics")
class PearsonCorrelation(_CorrelationMetric):
    def __init__(self, name="pearson_correlation", dtype=None, axis=-1):
        super().__init__(pearson_correlation, name, dtype, axis)


@keras_export("keras.metrics")
class ConcordanceCorrelation(_CorrelationMetric):
    def __init__(self, name="concordance_correlation", dtype=None, axis=-1):
        super().__init__(concordance_correlation, name, dtype, axis)


# ------------------------------------------------- one rate at a constraint on another
class _RateAtConstraint(Metric):
    """TP/FP/TN/FN at `num_thresholds` evenly spaced thresholds in [0, 1]; the result is the best
    value of one rate among thresholds where the constrained rate reaches `value`."""

    _argument: str | None = None  # the constructor argument holding the constraint ("recall", ...)
    _constrained: str | None = None  # the rate that must reach `value`
    _maximized: str | None = None  # the rate whose best value is the result

    def __init__(self, value, num_thresholds=200, class_id=None, name=None, dtype=None):
        if value < 0 or value > 1:
            raise ValueError(f"Argument `{self._argument}` must be in the range [0, 1]. Received: {self._argument}={value}")
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        if num_thresholds <= 0:
            raise ValueError(f"Argument `num_thresholds` must be an integer > 0. Received: num_thresholds={num_thresholds}")
        setattr(self, self._argument, value)
        self.value = value
        self.num_thresholds = num_thresholds
        self.class_id = class_id
        if num_thresholds == 1:
            self.thresholds, self._thresholds_distributed_evenly = [0.5], False
        else:
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self.thresholds, self._thresholds_distributed_evenly = [0.0] + inner + [1.0], True
        size = (len(self.thresholds),)
        self.true_positives = self.add_variable(size, "zeros", name="true_positives")
        self.false_positives = self.add_variable(size, "zeros", name="false_positives")
        self.true_negatives = self.add_variable(size, "zeros", name="true_negatives")
        self.false_negatives = self.add_variable(size, "zeros", name="false_negatives")

    @torch.no_grad()
    def update_state(self, y_true, y_pred, sample_weight=None):
        update_confusion_matrix_variables(
            {
                TRUE_POSITIVES: self.true_positives,
                TRUE_NEGATIVES: self.true_negatives,
                FALSE_POSITIVES: self.false_positives,
                FALSE_NEGATIVES: self.false_negatives,
            },
            y_true,
            y_pred,
            self.thresholds,
            class_id=self.class_id,
            sample_weight=sample_weight,
            thresholds_distributed_evenly=self._thresholds_distributed_evenly,
        )

    def _rates(self):
        tp, fp = self.true_positives.detach(), self.false_positives.detach()
        tn, fn = self.true_negatives.detach(), self.false_negatives.detach()
        return {
            "recall": divide_no_nan(tp, tp + fn),
            "precision": divide_no_nan(tp, tp + fp),
            "specificity": divide_no_nan(tn, tn + fp),
        }

    def result(self):
        rates = self._rates()
        values = torch.where(rates[self._constrained] >= self.value, rates[self._maximized], 0.0)
        return torch.clamp(torch.amax(values), min=0.0)

    def get_config(self):
        return {
            **super().get_config(),
            "class_id": self.class_id,
            "num_thresholds": self.num_thresholds,
            self._argument: getattr(self, self._argument),
        }


@keras_export("keras.metrics")
class PrecisionAtRecall(_RateAtConstraint):
    """The best precision at thresholds where recall >= `recall`."""

    _argument = "recall"
    _constrained, _maximized = "recall", "precision"

    def __init__(self, recall, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(recall, num_thresholds=num_thresholds, class_id=class_id, name=name, dtype=dtype)


@keras_export("keras.metrics")
class RecallAtPrecision(_RateAtConstraint):
    """The best recall at thresholds where precision >= `precision`."""

    _argument = "precision"
    _constrained, _maximized = "precision", "recall"

    def __init__(self, precision, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(precision, num_thresholds=num_thresholds, class_id=class_id, name=name, dtype=dtype)


@keras_export("keras.metrics")
class SensitivityAtSpecificity(_RateAtConstraint):
    """The best sensitivity (recall) at thresholds where specificity >= `specificity`."""

    _argument = "specificity"
    _constrained, _maximized = "specificity", "recall"

    def __init__(self, specificity, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(specificity, num_thresholds=num_thresholds, class_id=class_id, name=name, dtype=dtype)


@keras_export("keras.metrics")
class SpecificityAtSensitivity(_RateAtConstraint):
    """The best specificity at thresholds where sensitivity (recall) >= `sensitivity`."""

    _argument = "sensitivity"
    _constrained, _maximized = "recall", "specificity"

    def __init__(self, sensitivity, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(sensitivity, num_thresholds=num_thresholds, class_id=class_id, name=name, dtype=dtype)


# ---------------------------------------------------------------------------------- lookup
_CLASSES = (
    Metric,
    Mean,
    Sum,
    MeanMetricWrapper,
    MeanSquaredError,
    RootMeanSquaredError,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredLogarithmicError,
    CosineSimilarity,
    LogCoshError,
    AUC,
    FalseNegatives,
    FalsePositives,
    Precision,
    Recall,
    TrueNegatives,
    TruePositives,
    Hinge,
    SquaredHinge,
    CategoricalHinge,
    KLDivergence,
    Poisson,
    BinaryCrossentropy,
    CategoricalCrossentropy,
    SparseCategoricalCrossentropy,
    Accuracy,
    BinaryAccuracy,
    CategoricalAccuracy,
    SparseCategoricalAccuracy,
    TopKCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
    F1Score,
    FBetaScore,
    IoU,
    BinaryIoU,
    MeanIoU,
    OneHotIoU,
    OneHotMeanIoU,
    R2Score,
    PearsonCorrelation,
    ConcordanceCorrelation,
    PrecisionAtRecall,
    RecallAtPrecision,
    SensitivityAtSpecificity,
    SpecificityAtSensitivity,
)
# Names `keras.metrics.get` accepts: class names, their snake_case, and a few short aliases.
_BY_NAME = {
    **{cls.__name__: cls for cls in _CLASSES},
    **{to_snake_case(cls.__name__): cls for cls in _CLASSES},
    "bce": BinaryCrossentropy,
    "BCE": BinaryCrossentropy,
    "mse": MeanSquaredError,
    "MSE": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "MAE": MeanAbsoluteError,
    "mape": MeanAbsolutePercentageError,
    "MAPE": MeanAbsolutePercentageError,
    "msle": MeanSquaredLogarithmicError,
    "MSLE": MeanSquaredLogarithmicError,
}


@keras_export("keras.metrics")
def serialize(metric):
    """A metric object or function as Keras 3 writes it in a config."""
    return serialize_keras_object(metric)


@keras_export("keras.metrics")
def deserialize(config, custom_objects=None):
    """A metric from its config, or from a bare name such as "mse" (-> a MeanSquaredError)."""
    if isinstance(config, str):
        with registry.custom_object_scope(custom_objects):
            found = registry.get_registered_object(config) or _BY_NAME.get(config)
        if found is None:
            raise UnknownObjectError(f"Could not interpret metric identifier: {config!r}")
        return found() if isinstance(found, type) else found
    return deserialize_keras_object(config, ("keras.metrics",), custom_objects)


@keras_export("keras.metrics")
def get(identifier):
    """None, a name, a config dict, a class, a function or a Metric -> a metric function or Metric."""
    if identifier is None:
        return None
    found = deserialize(identifier) if isinstance(identifier, (str, dict)) else identifier
    if not callable(found):
        raise ValueError(f"Could not interpret metric identifier: {identifier!r}")
    return found() if isinstance(found, type) else found


def resolve_metric(identifier, y_true, y_pred, loss=None):
    """The Metric that `compile(metrics=[identifier])` tracks, named as Keras 3 logs it.

    "accuracy"/"acc" become Binary-, Sparse- or CategoricalAccuracy from the shapes of
    `y_true`/`y_pred` (Keras' rule) but keep the given name; "crossentropy"/"ce" (which Keras 3
    rejects) likewise pick the matching crossentropy metric, taking `from_logits` from `loss`.
    Other strings resolve through `get`; functions are wrapped in a MeanMetricWrapper.
    """
    if identifier is None:
        raise ValueError("Expected metric, received `None`")
    lowered = str(identifier).lower()
    if lowered in ("accuracy", "acc", "crossentropy", "ce"):
        is_binary, is_sparse = is_binary_or_sparse_categorical(y_true, y_pred)
        if lowered in ("accuracy", "acc"):
            cls = BinaryAccuracy if is_binary else SparseCategoricalAccuracy if is_sparse else CategoricalAccuracy
            metric = cls(name=str(identifier))
        else:
            cls = BinaryCrossentropy if is_binary else SparseCategoricalCrossentropy if is_sparse else CategoricalCrossentropy
            metric = cls(name=str(identifier), from_logits=bool(getattr(loss, "from_logits", False)))
    else:
        metric = get(identifier)
    name = identifier if isinstance(identifier, str) else object_name(metric)
    if not isinstance(metric, Metric):
        metric = MeanMetricWrapper(metric)
    metric.name = name
    build = getattr(metric, "_build_from_batch", None)
    if build is not None:
        # State shaped by the data (F1Score, R2Score, multi-label AUC) exists from here on, as it
        # will after the first update, so a resumed fit can restore it before counting the batch.
        build(y_true, y_pred)
    return metric
