"""Losses: Keras 3's loss classes and functions, computed with torch ops.

Every function returns per-sample values (the last axis reduced); a `Loss` object applies sample
weights, masks and the reduction exactly as Keras 3 does, so loss values match it to float32
rounding.
"""

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from keramic import backend, dtype_policies, tree
from keramic.errors import UnknownObjectError
from keramic.serialization import registry
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object
from keramic.utils.naming import auto_name, to_snake_case

EPSILON = 1e-7  # Keras' `backend.epsilon()`: the clip applied to probabilities
REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


# ---------------------------------------------------------------------------------- helpers
def to_tensor(x, dtype=None, like=None):
    """A torch tensor in `dtype` (a torch dtype); tensors keep their device unless `like` names one."""
    if not isinstance(x, torch.Tensor):
        x = backend.convert_to_tensor(x)
    if like is not None and x.device != like.device:
        x = x.to(like.device)
    if dtype is not None and x.dtype != dtype:
        x = x.to(dtype)
    return x


def _holds_arrays(x) -> bool:
    """A list, tuple or dict of tensors or arrays, which a loss takes leaf by leaf (a nesting of
    plain numbers is one tensor)."""
    return isinstance(x, (list, tuple, dict)) and any(isinstance(leaf, (torch.Tensor, np.ndarray)) for leaf in tree.flatten(x))


def get_keras_mask(x):
    """The mask a masking layer attached to a tensor as `_keras_mask` (None when absent)."""
    return getattr(x, "_keras_mask", None)


def standardize_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"Invalid value for argument `reduction`. Expected one of {REDUCTIONS}. Received: reduction={reduction!r}"
        )
    return reduction


def squeeze_or_expand_to_same_rank(x1, x2, expand_rank_1=True):
    """Make ranks equal when they differ by a trailing axis of size 1 (Keras' rule)."""
    rank1, rank2 = x1.dim(), x2.dim()
    if rank1 == rank2 + 1 and x1.shape[-1] == 1:
        if rank2 == 1 and expand_rank_1:
            x2 = x2.unsqueeze(-1)
        else:
            x1 = x1.squeeze(-1)
    if rank2 == rank1 + 1 and x2.shape[-1] == 1:
        if rank1 == 1 and expand_rank_1:
            x1 = x1.unsqueeze(-1)
        else:
            x2 = x2.squeeze(-1)
    return x1, x2


def divide_no_nan(numerator, denominator):
    """`numerator / denominator`, and 0 where the denominator is 0 (no host sync)."""
    if not isinstance(denominator, torch.Tensor):
        return numerator / denominator if denominator else torch.zeros_like(numerator)
    zero = denominator == 0
    return torch.where(zero, 0.0, numerator / torch.where(zero, 1.0, denominator))


def apply_mask(sample_weight, mask, dtype, reduction):
    """Fold a mask into the sample weights.

    For averaging reductions the kept entries are scaled by total/valid so that dividing by the
    full size still averages over the valid entries only.
    """
    if mask is None:
        return sample_weight
    mask = to_tensor(mask)
    if reduction in ("mean", "sum_over_batch_size"):
        valid = mask.to(dtype).sum()
        mask_weight = divide_no_nan(float(mask.numel()), valid)
        float_mask = torch.where(mask.bool(), mask_weight, 0.0)
    else:
        float_mask = mask.to(dtype)
    if sample_weight is None:
        return float_mask
    sample_weight = to_tensor(sample_weight, dtype, like=float_mask)
    float_mask, sample_weight = squeeze_or_expand_to_same_rank(float_mask, sample_weight)
    return sample_weight * float_mask


def reduce_values(values, sample_weight=None, reduction="sum_over_batch_size"):
    if reduction is None or reduction == "none" or values.dim() == 0 or tuple(values.shape) == (0,):
        return values
    loss = values.sum()
    if reduction == "sum":
        return loss
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        return divide_no_nan(loss, sample_weight.sum().to(loss.dtype))
    return divide_no_nan(loss, values.numel())


def reduce_weighted_values(values, sample_weight=None, mask=None, reduction="sum_over_batch_size", dtype=None):
    """Weight per-sample losses (sample weights times mask) and reduce them to what Keras reports."""
    reduction = standardize_reduction(reduction)
    values = to_tensor(values, dtype)
    sample_weight = apply_mask(
        None if sample_weight is None else to_tensor(sample_weight, values.dtype, like=values),
        None if mask is None else to_tensor(mask, like=values),
        values.dtype,
        reduction,
    )
    if sample_weight is not None:
        sample_weight = sample_weight.to(values.dtype)
        values, sample_weight = squeeze_or_expand_to_same_rank(values, sample_weight)
        values = values * sample_weight
    return reduce_values(values, sample_weight, reduction)


def is_binary_or_sparse_categorical(y_true, y_pred):
    """Keras' compile rule: binary when predictions have one unit, sparse when targets lack the class axis."""
    true_shape, pred_shape = tuple(y_true.shape), tuple(y_pred.shape)
    is_binary = pred_shape[-1] == 1
    is_sparse = len(true_shape) < len(pred_shape) or (true_shape[-1] == 1 and pred_shape[-1] > 1)
    return is_binary, is_sparse


def float32_scalar(value):
    """A Python float holding `value` rounded to float32, so scalar maths matches float32 tensors."""
    return float(np.float32(value))


# ------------------------------------------------------------------------------- functions
def tensor_pair(y_true, y_pred, same_rank=True):
    """Both as tensors in y_pred's dtype and device (optionally with Keras' rank fix-up).

    Integer and bool predictions compute in floatx: Keras's means of them come out float, and its
    integer arithmetic on them (MAPE, Poisson, log-cosh) gives numbers its own docs disagree with.
    """
    y_pred = to_tensor(y_pred)
    if not (y_pred.is_floating_point() or y_pred.is_complex()):
        y_pred = y_pred.to(backend.torch_dtype(backend.floatx()))
    y_true = to_tensor(y_true, y_pred.dtype, like=y_pred)
    if same_rank:
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    return y_true, y_pred


def mean_squared_error(y_true, y_pred):
    y_true, y_pred = tensor_pair(y_true, y_pred)
    return torch.mean(torch.square(y_true - y_pred), dim=-1)


def mean_absolute_error(y_true, y_pred):
    y_true, y_pred = tensor_pair(y_true, y_pred)
    return torch.mean(torch.abs(y_true - y_pred), dim=-1)


def mean_absolute_percentage_error(y_true, y_pred):
    y_true, y_pred = tensor_pair(y_true, y_pred)
    diff = torch.abs((y_true - y_pred) / torch.clamp(torch.abs(y_true), min=EPSILON))
    return 100.0 * torch.mean(diff, dim=-1)


def mean_squared_logarithmic_error(y_true, y_pred):
    y_true, y_pred = tensor_pair(y_true, y_pred)
    first = torch.log(torch.clamp(y_pred, min=EPSILON) + 1.0)
    second = torch.log(torch.clamp(y_true, min=EPSILON) + 1.0)
    return torch.mean(torch.square(first - second), dim=-1)


def _l2_normalize(x, axis):
    inv_norm = torch.rsqrt(torch.sum(torch.square(x), dim=axis, keepdim=True))
    return x * torch.clamp(inv_norm, max=1.0 / EPSILON)


def cosine_similarity(y_true, y_pred, axis=-1):
    y_true, y_pred = tensor_pair(y_true, y_pred)
    return -torch.sum(_l2_normalize(y_true, axis) * _l2_normalize(y_pred, axis), dim=axis)


def huber(y_true, y_pred, delta=1.0):
    y_true, y_pred = tensor_pair(y_true, y_pred)
    delta = float32_scalar(delta)
    error = y_pred - y_true
    abs_error = torch.abs(error)
    linear = delta * abs_error - float32_scalar(np.float32(0.5) * np.float32(delta) * np.float32(delta))
    return torch.mean(torch.where(abs_error <= delta, 0.5 * torch.square(error), linear), dim=-1)


def log_cosh(y_true, y_pred):
    y_true, y_pred = tensor_pair(y_true, y_pred)
    x = y_pred - y_true
    return torch.mean(x + F.softplus(x * -2.0) - math.log(2.0), dim=-1)


def kl_divergence(y_true, y_pred):
    y_true, y_pred = tensor_pair(y_true, y_pred, same_rank=False)
    y_true = torch.clamp(y_true, EPSILON, 1.0)
    y_pred = torch.clamp(y_pred, EPSILON, 1.0)
    return torch.sum(y_true * torch.log(y_true / y_pred), dim=-1)


def poisson(y_true, y_pred):
    y_true, y_pred = tensor_pair(y_true, y_pred, same_rank=False)
    return torch.mean(y_pred - y_true * torch.log(y_pred + EPSILON), dim=-1)


def _binary_crossentropy_elementwise(target, output, from_logits):
    if target.shape != output.shape:
        raise ValueError(
            f"Arguments `target` and `output` must have the same shape. Received: target.shape={tuple(target.shape)}, "
            f"output.shape={tuple(output.shape)}"
        )
    if from_logits:
        return F.binary_cross_entropy_with_logits(output, target, reduction="none")
    return F.binary_cross_entropy(torch.clamp(output, EPSILON, 1.0 - EPSILON), target, reduction="none")


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    y_true, y_pred = tensor_pair(y_true, y_pred, same_rank=False)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return torch.mean(_binary_crossentropy_elementwise(y_true, y_pred, from_logits), dim=axis)


def binary_focal_crossentropy(
    y_true, y_pred, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1
):
    y_true, y_pred = tensor_pair(y_true, y_pred, same_rank=False)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        y_pred = torch.sigmoid(y_pred)
    bce = _binary_crossentropy_elementwise(y_true, y_pred, from_logits=False)
    p_t = y_true * y_pred + (1 - y_true) * (1 - y_pred)
    focal_bce = torch.pow(1.0 - p_t, gamma) * bce
    if apply_class_balancing:
        focal_bce = (y_true * alpha + (1 - y_true) * (1 - alpha)) * focal_bce
    return torch.mean(focal_bce, dim=axis)


def _categorical_crossentropy_elementwise(target, output, from_logits, axis):
    if target.shape != output.shape:
        raise ValueError(
            f"Arguments `target` and `output` must have the same shape. Received: target.shape={tuple(target.shape)}, "
            f"output.shape={tuple(output.shape)}"
        )
    if target.dim() < 1:
        raise ValueError("Arguments `target` and `output` must be at least rank 1.")
    if from_logits:
        log_prob = F.log_softmax(output, dim=axis)
    else:
        # Keras renormalises probabilities to sum to 1 before clipping them.
        output = output / torch.sum(output, dim=axis, keepdim=True)
        log_prob = torch.log(torch.clamp(output, EPSILON, 1.0 - EPSILON))
    return -torch.sum(target * log_prob, dim=axis)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    if isinstance(axis, bool):
        raise ValueError(f"`axis` must be of type `int`. Received: axis={axis} of type {type(axis)}")
    y_true, y_pred = tensor_pair(y_true, y_pred, same_rank=False)
    if y_pred.shape[-1] == 1:
        warnings.warn(
            "In loss categorical_crossentropy, expected y_pred.shape to be (batch_size, num_classes) with "
            f"num_classes > 1. Received: y_pred.shape={tuple(y_pred.shape)}. Consider using "
            "'binary_crossentropy' if you only have 2 classes.",
            SyntaxWarning,
            stacklevel=2,
        )
    if label_smoothing:
        num_classes = y_true.shape[-1]
        y_true = y_true * (1.0 - label_smoothing) + float32_scalar(np.float32(label_smoothing) / np.float32(num_classes))
    return _categorical_crossentropy_elementwise(y_true, y_pred, from_logits, axis)


def _sparse_categorical_crossentropy_elementwise(target, output, from_logits, axis):
    if output.dim() < 1:
        raise ValueError(f"Argument `output` must be at least rank 1. Received: output.shape={tuple(output.shape)}")
    expected = list(output.shape)
    del expected[axis]
    if list(target.shape) != expected:
        raise ValueError(
            "Arguments `target` and `output` must have the same shape up until the last dimension: "
            f"target.shape={tuple(target.shape)}, output.shape={tuple(output.shape)}"
        )
    squeeze = output.dim() == 1
    if squeeze:
        output, target = output.unsqueeze(0), target.unsqueeze(0)
    elif axis % output.dim() != 1:
        output = output.movedim(axis % output.dim(), 1).contiguous()  # nll_loss's 2-D backward needs it
    if from_logits:
        result = F.cross_entropy(output, target, reduction="none")
    else:
        output = output / torch.sum(output, dim=1, keepdim=True)
        result = F.nll_loss(torch.log(torch.clamp(output, EPSILON, 1.0 - EPSILON)), target, reduction="none")
    return result.squeeze(0) if squeeze else result


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    y_pred = to_tensor(y_pred)
    y_true = to_tensor(y_true, like=y_pred)
    if y_true.dim() == y_pred.dim() and y_true.shape[axis] == 1:
        y_true = y_true.squeeze(axis)
    valid = None
    if ignore_class is not None:
        valid = y_true != ignore_class
        y_true = torch.where(valid, y_true, 0)
    result = _sparse_categorical_crossentropy_elementwise(y_true.long(), y_pred, from_logits, axis)
    if valid is not None:
        # Keras also zeroes the ignored predictions first; the kept values are identical and
        # leaving them avoids 0/0 in the renormalisation (NaN gradients) for probabilities.
        valid = valid.reshape(result.shape)
        result = torch.where(valid, result, 0.0)
        result._keras_mask = valid
    return result


def _hinge_labels(y_true):
    """Map {0, 1} labels to {-1, 1}; other labels pass unchanged (decided on the device, no sync)."""
    is_binary = torch.all((y_true == 0) | (y_true == 1))
    return torch.where(is_binary, 2.0 * y_true - 1.0, y_true)


def hinge(y_true, y_pred):
    y_true, y_pred = tensor_pair(y_true, y_pred, same_rank=False)
    return torch.mean(torch.clamp(1.0 - _hinge_labels(y_true) * y_pred, min=0.0), dim=-1)


def squared_hinge(y_true, y_pred):
    y_true, y_pred = tensor_pair(y_true, y_pred, same_rank=False)
    return torch.mean(torch.square(torch.clamp(1.0 - _hinge_labels(y_true) * y_pred, min=0.0)), dim=-1)


def categorical_hinge(y_true, y_pred):
    y_true, y_pred = tensor_pair(y_true, y_pred, same_rank=False)
    positive = torch.sum(y_true * y_pred, dim=-1)
    negative = torch.amax((1.0 - y_true) * y_pred, dim=-1)
    return torch.clamp(negative - positive + 1.0, min=0.0)


def categorical_focal_crossentropy(
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> torch.Tensor:
    """Crossentropy with each class term scaled by `alpha * (1 - p)^gamma`: easy examples count less."""
    if isinstance(axis, bool):
        raise ValueError(f"`axis` must be of type `int`. Received: axis={axis} of type {type(axis)}")
    y_true, y_pred = tensor_pair(y_true, y_pred, same_rank=False)
    if y_pred.shape[-1] == 1:
        warnings.warn(
            "In loss categorical_focal_crossentropy, expected y_pred.shape to be (batch_size, num_classes) with "
            f"num_classes > 1. Received: y_pred.shape={tuple(y_pred.shape)}. Consider using 'binary_crossentropy' "
            "if you only have 2 classes.",
            SyntaxWarning,
            stacklevel=2,
        )
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / float32_scalar(y_true.shape[-1])
    if from_logits:
        y_pred = torch.softmax(y_pred, dim=axis)
    output = torch.clamp(y_pred / torch.sum(y_pred, dim=axis, keepdim=True), EPSILON, 1.0 - EPSILON)
    focal = torch.pow(1.0 - output, gamma) * alpha * (-y_true * torch.log(output))
    return torch.sum(focal, dim=axis)


def categorical_generalized_cross_entropy(y_true: torch.Tensor, y_pred: torch.Tensor, q: float) -> torch.Tensor:
    """`(1 - p^q) / q` with p the predicted probability of the (integer) true class: robust to label noise."""
    y_pred = to_tensor(y_pred)
    labels = to_tensor(y_true, like=y_pred).long()
    p = torch.sum(y_pred * F.one_hot(labels, y_pred.shape[-1]).to(y_pred.dtype), dim=-1)
    return (1 - torch.pow(p, q)) / q


def _sum_over(x, axis):
    return torch.sum(x) if axis is None else torch.sum(x, dim=axis)


def dice(y_true: torch.Tensor, y_pred: torch.Tensor, axis: int | tuple[int, ...] | None = None) -> torch.Tensor:
    """`1 - 2|y∩ŷ| / (|y| + |ŷ|)` over `axis` (all axes when None: one value for the batch)."""
    y_pred = to_tensor(y_pred)
    y_true = to_tensor(y_true, y_pred.dtype, like=y_pred)
    intersection = _sum_over(y_true * y_pred, axis)
    return 1 - 2.0 * intersection / (_sum_over(y_true, axis) + _sum_over(y_pred, axis) + EPSILON)


def tversky(
    y_true: torch.Tensor, y_pred: torch.Tensor, alpha: float = 0.5, beta: float = 0.5, axis: int | tuple[int, ...] | None = None
) -> torch.Tensor:
    """Dice generalised: missed targets weigh `alpha`, false alarms `beta` (Keras's naming of the two)."""
    y_pred = to_tensor(y_pred)
    y_true = to_tensor(y_true, y_pred.dtype, like=y_pred)
    intersection = _sum_over(y_true * y_pred, axis)
    missed = _sum_over((1 - y_pred) * y_true, axis)
    false_alarms = _sum_over(y_pred * (1 - y_true), axis)
    return 1 - intersection / (intersection + missed * alpha + false_alarms * beta + EPSILON)


def _pair_masks(query_labels, key_labels, remove_diagonal):
    query, key = query_labels.reshape(-1, 1), key_labels.reshape(-1, 1)
    positive = query == key.T
    negative = ~positive
    if remove_diagonal:
        eye = torch.eye(query.shape[0], key.shape[0], dtype=torch.bool, device=positive.device)
        positive = positive & ~eye
    return positive, negative


def circle(
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    ref_labels: torch.Tensor | None = None,
    ref_embeddings: torch.Tensor | None = None,
    remove_diagonal: bool = True,
    gamma: float = 80,
    margin: float = 0.4,
) -> torch.Tensor:
    """Circle loss on L2-normalised embeddings: pairs of one label pulled together, others pushed
    apart, each weighted by how far it is from its optimum. Samples with zero loss are masked out."""
    y_pred = to_tensor(y_pred)
    labels = to_tensor(y_true, like=y_pred).to(torch.int32)
    references = y_pred if ref_embeddings is None else to_tensor(ref_embeddings, like=y_pred)
    ref_labels = labels if ref_labels is None else to_tensor(ref_labels, like=y_pred).to(torch.int32)
    distances = torch.clamp(1 - y_pred @ references.T, min=0.0)
    positive, negative = _pair_masks(labels, ref_labels, remove_diagonal)
    pos_weights = torch.clamp((margin + distances) * positive.to(distances.dtype), min=0.0)
    neg_weights = torch.clamp((1 + margin - distances) * negative.to(distances.dtype), min=0.0)
    pos_terms = -1 * gamma * pos_weights * (margin - distances)
    neg_terms = gamma * neg_weights * ((1 - margin) - distances)
    minus_inf = torch.tensor(float("-inf"), dtype=distances.dtype, device=distances.device)
    p_loss = torch.logsumexp(torch.where(positive, pos_terms, minus_inf), dim=1)
    n_loss = torch.logsumexp(torch.where(negative, neg_terms, minus_inf), dim=1)
    losses = F.softplus(p_loss + n_loss)
    losses._keras_mask = losses > 0
    return losses


def ctc(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    """Connectionist temporal classification: integer targets (batch, max_length), 0 = blank and
    padding; logits (batch, time, classes), every sequence using all time steps."""
    y_pred = to_tensor(y_pred)
    y_true = to_tensor(y_true, like=y_pred)
    if y_true.dim() != 2:
        raise ValueError(
            "Targets `y_true` are expected to be a tensor of shape `(batch_size, max_length)` in integer format. "
            f"Received: y_true.shape={tuple(y_true.shape)}"
        )
    if y_pred.dim() != 3:
        raise ValueError(
            "Logits `y_pred` are expected to be a tensor of shape `(batch_size, max_length, num_classes)`. "
            f"Received: y_pred.shape={tuple(y_pred.shape)}"
        )
    targets = y_true.to(torch.int32)
    batch, steps = y_pred.shape[0], y_pred.shape[1]
    input_lengths = torch.full((batch,), steps, dtype=torch.int32, device=y_pred.device)
    target_lengths = torch.sum(targets != 0, dim=-1).to(torch.int32)
    log_probs = F.log_softmax(y_pred.to(torch.promote_types(y_pred.dtype, torch.float32)).transpose(0, 1), dim=-1)
    return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="none")


# The per-sample loss functions. Keras publishes them under keras.losses, and all but
# cosine_similarity under keras.metrics too (the metric of that name reports +similarity).
FUNCTIONS = (
    mean_squared_error,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_logarithmic_error,
    huber,
    log_cosh,
    kl_divergence,
    poisson,
    binary_crossentropy,
    binary_focal_crossentropy,
    categorical_crossentropy,
    sparse_categorical_crossentropy,
    hinge,
    squared_hinge,
    categorical_hinge,
    cosine_similarity,
    categorical_focal_crossentropy,
)
_fn: Callable[..., Any]
for _fn in FUNCTIONS:
    keras_export("keras.losses")(_fn)
    if _fn is not cosine_similarity:
        keras_export("keras.metrics")(_fn)
# Loss functions Keras publishes under keras.losses only.
LOSS_ONLY_FUNCTIONS = (categorical_generalized_cross_entropy, circle, ctc, dice, tversky)
for _fn in LOSS_ONLY_FUNCTIONS:
    keras_export("keras.losses")(_fn)

# Short names `keras.losses.get` accepts ("logcosh" is Keras' legacy spelling of log_cosh).
ALIASES = {
    "bce": binary_crossentropy,
    "BCE": binary_crossentropy,
    "kld": kl_divergence,
    "KLD": kl_divergence,
    "mae": mean_absolute_error,
    "MAE": mean_absolute_error,
    "mse": mean_squared_error,
    "MSE": mean_squared_error,
    "mape": mean_absolute_percentage_error,
    "MAPE": mean_absolute_percentage_error,
    "msle": mean_squared_logarithmic_error,
    "MSLE": mean_squared_logarithmic_error,
    "logcosh": log_cosh,
}
# Published after the canonical names, so functions keep serializing under their own name.
for _alias, _fn in ALIASES.items():
    keras_export("keras.losses", name=_alias)(_fn)


# --------------------------------------------------------------------------------- classes
@keras_export("keras.losses")
class Loss:
    """Base class of losses: subclasses implement `call(y_true, y_pred)` -> per-sample losses.

    `reduction`: "sum_over_batch_size" (default) and "mean" divide the weighted sum by the number
    of loss values, "sum" keeps the sum, "mean_with_sample_weight" divides by the sum of the
    weights, "none"/None return the weighted values unreduced.
    """

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        self.name = name or auto_name(type(self).__name__)
        self.reduction = standardize_reduction(reduction)
        # As Keras: floatx by default, not the global policy, so mixed precision keeps float32 state.
        self._dtype_policy = dtype_policies.get(dtype or backend.floatx())
        self._dtype = self._dtype_policy.compute_dtype

    @property
    def dtype(self):
        return self._dtype

    def __call__(self, y_true, y_pred, sample_weight=None):
        in_mask = get_keras_mask(y_pred)
        dtype = backend.torch_dtype(self._dtype)
        if _holds_arrays(y_pred):  # as Keras: a list or dict of arrays (a discriminator's features) stays one
            y_pred = tree.map_structure(lambda x: to_tensor(x, dtype), y_pred)
            y_true = tree.map_structure(lambda x: to_tensor(x, dtype), y_true)
        else:
            y_pred = to_tensor(y_pred, dtype)
            y_true = to_tensor(y_true, dtype, like=y_pred)
        losses = self.call(y_true, y_pred)
        out_mask = get_keras_mask(losses)
        if in_mask is not None and out_mask is not None:
            mask = to_tensor(in_mask, like=losses).bool() & out_mask.bool()
        else:
            mask = in_mask if in_mask is not None else out_mask
        return reduce_weighted_values(losses, sample_weight, mask, self.reduction, dtype)

    def call(self, y_true, y_pred):
        raise NotImplementedError(f"{type(self).__name__} must implement `call(y_true, y_pred)`.")

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


@keras_export("keras.losses")
class LossFunctionWrapper(Loss):
    """A `Loss` around a per-sample function (with fixed keyword arguments)."""

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.fn = fn
        self._fn_kwargs = kwargs

    def call(self, y_true, y_pred):
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def get_config(self):
        config = super().get_config()
        config["fn"] = serialize_keras_object(self.fn)
        config.update(serialize_keras_object(self._fn_kwargs))
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "fn" in config:
            config["fn"] = deserialize_keras_object(config["fn"], ("keras.losses",))
        return cls(**config)

    def __repr__(self):
        return f"<LossFunctionWrapper({getattr(self.fn, '__name__', self.fn)}, kwargs={self._fn_kwargs})>"


class _BuiltinLoss(LossFunctionWrapper):
    """A built-in loss: its arguments (the wrapped function's keyword arguments, kept as
    attributes) are its config, after `name` and `reduction`; the function itself is not."""

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        super().__init__(fn, reduction=reduction, name=name, dtype=dtype, **kwargs)
        for key, value in kwargs.items():
            setattr(self, key, value)

    def get_config(self):
        return {**Loss.get_config(self), **{key: getattr(self, key) for key in self._fn_kwargs}}


def _without_default_axis(config):
    return config if config.get("axis", -1) != -1 else {k: v for k, v in config.items() if k != "axis"}


@keras_export("keras.losses")
class MeanSquaredError(_BuiltinLoss):
    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(mean_squared_error, name=name, reduction=reduction, dtype=dtype)


@keras_export("keras.losses")
class MeanAbsoluteError(_BuiltinLoss):
    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error", dtype=None):
        super().__init__(mean_absolute_error, name=name, reduction=reduction, dtype=dtype)


@keras_export("keras.losses")
class MeanAbsolutePercentageError(_BuiltinLoss):
    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_percentage_error", dtype=None):
        super().__init__(mean_absolute_percentage_error, name=name, reduction=reduction, dtype=dtype)


@keras_export("keras.losses")
class MeanSquaredLogarithmicError(_BuiltinLoss):
    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_logarithmic_error", dtype=None):
        super().__init__(mean_squared_logarithmic_error, name=name, reduction=reduction, dtype=dtype)


@keras_export("keras.losses")
class CosineSimilarity(_BuiltinLoss):
    def __init__(self, axis=-1, reduction="sum_over_batch_size", name="cosine_similarity", dtype=None):
        super().__init__(cosine_similarity, name=name, reduction=reduction, dtype=dtype, axis=axis)

    def get_config(self):
        # Keras drops `axis`; keramic keeps a non-default one so it survives a round trip.
        return _without_default_axis(super().get_config())


@keras_export("keras.losses")
class Huber(_BuiltinLoss):
    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss", dtype=None):
        # `delta` is in the config: a deliberate difference from Keras 3, whose config omits it (a
        # saved Huber(2.0) reloads there as Huber(1.0)); Keras' own from_config accepts the key.
        super().__init__(huber, name=name, reduction=reduction, dtype=dtype, delta=delta)


@keras_export("keras.losses")
class LogCosh(_BuiltinLoss):
    def __init__(self, reduction="sum_over_batch_size", name="log_cosh", dtype=None):
        super().__init__(log_cosh, name=name, reduction=reduction, dtype=dtype)


@keras_export("keras.losses")
class Hinge(_BuiltinLoss):
    def __init__(self, reduction="sum_over_batch_size", name="hinge", dtype=None):
        super().__init__(hinge, name=name, reduction=reduction, dtype=dtype)


@keras_export("keras.losses")
class SquaredHinge(_BuiltinLoss):
    def __init__(self, reduction="sum_over_batch_size", name="squared_hinge", dtype=None):
        super().__init__(squared_hinge, name=name, reduction=reduction, dtype=dtype)


@keras_export("keras.losses")
class CategoricalHinge(_BuiltinLoss):
    def __init__(self, reduction="sum_over_batch_size", name="categorical_hinge", dtype=None):
        super().__init__(categorical_hinge, name=name, reduction=reduction, dtype=dtype)


@keras_export("keras.losses")
class KLDivergence(_BuiltinLoss):
    def __init__(self, reduction="sum_over_batch_size", name="kl_divergence", dtype=None):
        super().__init__(kl_divergence, name=name, reduction=reduction, dtype=dtype)


@keras_export("keras.losses")
class Poisson(_BuiltinLoss):
    def __init__(self, reduction="sum_over_batch_size", name="poisson", dtype=None):
        super().__init__(poisson, name=name, reduction=reduction, dtype=dtype)


@keras_export("keras.losses")
class BinaryCrossentropy(_BuiltinLoss):
    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="binary_crossentropy",
        dtype=None,
    ):
        super().__init__(
            binary_crossentropy, name=name, reduction=reduction, dtype=dtype,
            from_logits=from_logits, label_smoothing=label_smoothing, axis=axis,
        )


@keras_export("keras.losses")
class BinaryFocalCrossentropy(_BuiltinLoss):
    def __init__(
        self,
        apply_class_balancing=False,
        alpha=0.25,
        gamma=2.0,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="binary_focal_crossentropy",
        dtype=None,
    ):
        super().__init__(
            binary_focal_crossentropy, name=name, reduction=reduction, dtype=dtype,
            from_logits=from_logits, label_smoothing=label_smoothing, axis=axis,
            apply_class_balancing=apply_class_balancing, alpha=alpha, gamma=gamma,
        )


@keras_export("keras.losses")
class CategoricalCrossentropy(_BuiltinLoss):
    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="categorical_crossentropy",
        dtype=None,
    ):
        super().__init__(
            categorical_crossentropy, name=name, reduction=reduction, dtype=dtype,
            from_logits=from_logits, label_smoothing=label_smoothing, axis=axis,
        )


@keras_export("keras.losses")
class SparseCategoricalCrossentropy(_BuiltinLoss):
    def __init__(
        self,
        from_logits=False,
        ignore_class=None,
        reduction="sum_over_batch_size",
        axis=-1,
        name="sparse_categorical_crossentropy",
        dtype=None,
    ):
        super().__init__(
            sparse_categorical_crossentropy, name=name, reduction=reduction, dtype=dtype,
            from_logits=from_logits, ignore_class=ignore_class, axis=axis,
        )

    def get_config(self):
        # Keras drops `axis`; keramic keeps a non-default one so it survives a round trip.
        return _without_default_axis(super().get_config())


@keras_export("keras.losses")
class CategoricalFocalCrossentropy(_BuiltinLoss):
    """Focal crossentropy for one-hot targets: `alpha * (1 - p)^gamma` down-weights easy examples."""

    def __init__(
        self,
        alpha=0.25,
        gamma=2.0,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="categorical_focal_crossentropy",
        dtype=None,
    ):
        super().__init__(
            categorical_focal_crossentropy, name=name, reduction=reduction, dtype=dtype,
            from_logits=from_logits, label_smoothing=label_smoothing, axis=axis, alpha=alpha, gamma=gamma,
        )


@keras_export("keras.losses")
class CategoricalGeneralizedCrossEntropy(_BuiltinLoss):
    """`(1 - p^q) / q` for integer targets: between crossentropy (q -> 0) and MAE (q -> 1), robust to noisy labels."""

    def __init__(self, q=0.5, reduction="sum_over_batch_size", name="categorical_generalized_cross_entropy", dtype=None):
        if not 0 < q < 1:
            raise ValueError(f"q must be in the interval (0, 1). Received: q={q}")
        super().__init__(categorical_generalized_cross_entropy, name=name, reduction=reduction, dtype=dtype, q=q)


@keras_export("keras.losses")
class Circle(_BuiltinLoss):
    """Circle loss for metric learning on L2-normalised embeddings with integer labels."""

    def __init__(self, gamma=80.0, margin=0.4, remove_diagonal=True, reduction="sum_over_batch_size", name="circle", dtype=None):
        super().__init__(
            circle, name=name, reduction=reduction, dtype=dtype, gamma=gamma, margin=margin, remove_diagonal=remove_diagonal
        )


@keras_export("keras.losses")
class CTC(_BuiltinLoss):
    """Connectionist temporal classification for unaligned label sequences (0 = blank/padding)."""

    def __init__(self, reduction="sum_over_batch_size", name="ctc", dtype=None):
        super().__init__(ctc, name=name, reduction=reduction, dtype=dtype)


@keras_export("keras.losses")
class Dice(_BuiltinLoss):
    """`1 - Dice coefficient` for segmentation; over all axes (one value per batch) unless `axis` is given."""

    def __init__(self, reduction="sum_over_batch_size", name="dice", axis=None, dtype=None):
        super().__init__(dice, name=name, reduction=reduction, dtype=dtype, axis=axis)


@keras_export("keras.losses")
class Tversky(_BuiltinLoss):
    """Dice with separate weights for missed targets (`alpha`) and false alarms (`beta`)."""

    def __init__(self, alpha=0.5, beta=0.5, reduction="sum_over_batch_size", name="tversky", axis=None, dtype=None):
        super().__init__(tversky, name=name, reduction=reduction, dtype=dtype, alpha=alpha, beta=beta, axis=axis)



_CLASSES = (
    Loss,
    LossFunctionWrapper,
    MeanSquaredError,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredLogarithmicError,
    CosineSimilarity,
    Huber,
    LogCosh,
    Hinge,
    SquaredHinge,
    CategoricalHinge,
    KLDivergence,
    Poisson,
    BinaryCrossentropy,
    BinaryFocalCrossentropy,
    CategoricalCrossentropy,
    SparseCategoricalCrossentropy,
    CategoricalFocalCrossentropy,
    CategoricalGeneralizedCrossEntropy,
    Circle,
    CTC,
    Dice,
    Tversky,
)
# What `get` and `deserialize` accept as a bare name, as Keras' losses module table does.
_BY_NAME = {
    **{cls.__name__: cls for cls in _CLASSES},
    **{fn.__name__: fn for fn in FUNCTIONS + LOSS_ONLY_FUNCTIONS},
    **ALIASES,
}


# -------------------------------------------------------------------------- lookup helpers
def _lookup(name, table, kind):
    found = registry.get_registered_object(name) or table.get(name)
    if found is None:
        raise UnknownObjectError(f"Could not interpret {kind} identifier: {name!r}")
    return found


@keras_export("keras.losses")
def serialize(loss):
    """A loss object or function as Keras 3 writes it in a config."""
    return serialize_keras_object(loss)


@keras_export("keras.losses")
def deserialize(name, custom_objects=None):
    """A loss from its config, or from a bare name such as "mse" (-> the function)."""
    if isinstance(name, str):
        with registry.custom_object_scope(custom_objects):
            found = _lookup(name, _BY_NAME, "loss")
        return found() if isinstance(found, type) else found
    return deserialize_keras_object(name, ("keras.losses",), custom_objects)


@keras_export("keras.losses")
def get(identifier):
    """None, a name, a config dict, a class, a function or a Loss -> a loss function or Loss.

    As in Keras, function names ("mse", "binary_crossentropy") give the per-sample function and
    class names give an instance; `resolve_loss` wraps functions for use as a compiled loss.
    """
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        found = deserialize(identifier)
    elif isinstance(identifier, str):
        found = _lookup(identifier, _BY_NAME, "loss")
    else:
        found = identifier
    if not callable(found):
        raise ValueError(f"Could not interpret loss identifier: {identifier!r}")
    return found() if isinstance(found, type) else found


def object_name(obj):
    """The name Keras gives an object in logs: its `name`, else the snake_case function/class name."""
    if hasattr(obj, "name"):
        return obj.name
    if hasattr(obj, "__name__"):
        return to_snake_case(obj.__name__)
    return to_snake_case(type(obj).__name__)


def resolve_loss(identifier, y_true=None, y_pred=None):
    """The `Loss` that `compile(loss=identifier)` uses, as Keras 3's compile builds it.

    "crossentropy"/"ce" pick binary, sparse or categorical crossentropy from the shapes of
    `y_true`/`y_pred`; plain functions are wrapped in a LossFunctionWrapper named after the
    string given (or the function).
    """
    if identifier is None:
        return None
    if str(identifier).lower() in ("crossentropy", "ce"):
        if y_true is None or y_pred is None:
            raise ValueError(f"The loss {identifier!r} needs the shapes of y_true and y_pred to pick its crossentropy.")
        is_binary, is_sparse = is_binary_or_sparse_categorical(y_true, y_pred)
        if is_binary:
            loss = binary_crossentropy
        elif is_sparse:
            loss = sparse_categorical_crossentropy
        else:
            loss = categorical_crossentropy
    else:
        loss = get(identifier)
    if not isinstance(loss, Loss):
        name = identifier if isinstance(identifier, str) else object_name(loss)
        loss = LossFunctionWrapper(loss, name=name)
    return loss
