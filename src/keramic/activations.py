"""Keras 3 activation functions on torch tensors (`keras.activations`).

The common activations are single torch calls, so a layer pays nothing for going through Keras names.
Inside layer configs a built-in activation is written as its plain name (`"relu"`).

>>> keramic.activations.get("relu")(torch.tensor([-1.0, 2.0]))
tensor([0., 2.])
"""

import functools
import inspect
import types

import torch
import torch.nn.functional as F

from keramic import backend
from keramic.errors import ConfigError
from keramic.serialization import registry
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, get_object, serialize_keras_object
from keramic.symbolic import KerasTensor

_NAMESPACE = "keras.activations"


def _symbolic(name: str, x, arguments: dict):
    """The `keras.ops` node Keras records for this activation on a KerasTensor."""
    from keramic import ops

    if name == "relu":
        if any(arguments[k] != d for k, d in (("negative_slope", 0.0), ("max_value", None), ("threshold", 0.0))):
            operation = registry.public_objects("keras.src.activations.activations")["ReLU"]  # layers/operations.py
            return operation(**arguments)(x)
        return ops.relu(x)  # type: ignore[attr-defined]  # keramic.ops star-imports computed __all__ lists
    if name == "exponential":
        return ops.exp(x)  # type: ignore[attr-defined]  # (as above)
    if name == "mish":
        return ops.multiply(x, ops.tanh(ops.softplus(x)))  # type: ignore[attr-defined]  # (as above)
    return getattr(ops, name)(x, **arguments)


def _accepts_any_tensor(fn):
    """Let an activation take what Keras's take: KerasTensors (recorded as `keras.ops` nodes, as Keras
    records them) and array-likes (converted to tensors); torch tensors go straight through."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(x, *args, **kwargs):
        if isinstance(x, torch.Tensor):
            return fn(x, *args, **kwargs)
        if isinstance(x, KerasTensor):
            bound = signature.bind(x, *args, **kwargs)
            bound.apply_defaults()
            arguments = {k: v for k, v in bound.arguments.items() if k != "x"}
            return _symbolic(fn.__name__, x, arguments)
        from keramic.ops import convert_to_tensor

        return fn(convert_to_tensor(x), *args, **kwargs)

    return wrapper


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """`max(x, 0)`; optionally leaky below `threshold` and capped at `max_value`.

    >>> relu(torch.tensor([-10.0, 5.0]), negative_slope=0.5)
    tensor([-5., 5.])
    """
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        return torch.relu(x)
    if max_value is None and threshold == 0.0:
        return F.leaky_relu(x, negative_slope)
    out = torch.where(x > threshold, x, 0.0) if threshold != 0.0 else torch.relu(x)
    if max_value is not None:
        out = out.clamp(0.0, max_value)
    if negative_slope != 0.0:
        out = out - negative_slope * torch.relu(threshold - x)
    return out


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def leaky_relu(x, negative_slope=0.2):
    """`x` above zero, `negative_slope * x` below."""
    return F.leaky_relu(x, negative_slope)


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def relu6(x):
    """ReLU capped at 6."""
    return F.relu6(x)


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def sigmoid(x):
    """`1 / (1 + exp(-x))`."""
    return torch.sigmoid(x)


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def softmax(x, axis=-1):
    """`exp(x) / sum(exp(x))` along `axis` (`None`: over all elements)."""
    from keramic.ops.nn import warn_if_softmax_over_one

    warn_if_softmax_over_one(x, axis)
    if axis is None:
        return backend.softmax(x.reshape(-1), 0).reshape(x.shape)
    return backend.softmax(x, axis)


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def log_softmax(x, axis=-1):
    """`log(softmax(x))`, computed stably."""
    if axis is None:
        return torch.log_softmax(x.reshape(-1), 0).reshape(x.shape)
    return torch.log_softmax(x, axis)


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def tanh(x):
    """Hyperbolic tangent."""
    return torch.tanh(x)


@keras_export(_NAMESPACE)
def linear(x):
    """Identity: returns `x` unchanged (the activation of `activation=None`)."""
    return x


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def elu(x, alpha=1.0):
    """`x` above zero, `alpha * (exp(x) - 1)` below."""
    return F.elu(x, alpha)


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def selu(x):
    """Scaled ELU with the self-normalising constants of Klambauer et al. (2017)."""
    return torch.selu(x)


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def celu(x, alpha=1.0):
    """Continuously differentiable ELU: `alpha * (exp(x / alpha) - 1)` below zero."""
    return F.celu(x, alpha)


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def softplus(x):
    """`log(exp(x) + 1)`."""
    return F.softplus(x)


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def softsign(x):
    """`x / (abs(x) + 1)`."""
    return F.softsign(x)


@keras_export(_NAMESPACE, name="swish")
@keras_export(_NAMESPACE)
@_accepts_any_tensor
def silu(x):
    """`x * sigmoid(x)` (also published as `swish`)."""
    return F.silu(x)


swish = silu


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def gelu(x, approximate=False):
    """Gaussian error linear unit; `approximate=True` uses the tanh formula."""
    return F.gelu(x, approximate="tanh" if approximate else "none")


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def glu(x, axis=-1):
    """Gated linear unit: the first half of `axis` times the sigmoid of the second half."""
    return F.glu(x, axis)


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def exponential(x):
    """`exp(x)`."""
    return torch.exp(x)


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def hard_sigmoid(x):
    """Piecewise-linear sigmoid: `clip(x / 6 + 0.5, 0, 1)`."""
    return F.hardsigmoid(x)


@keras_export(_NAMESPACE, name="hard_swish")
@keras_export(_NAMESPACE)
@_accepts_any_tensor
def hard_silu(x):
    """`x * hard_sigmoid(x)` (also published as `hard_swish`)."""
    return F.hardswish(x)


hard_swish = hard_silu


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def hard_tanh(x):
    """`clip(x, -1, 1)`."""
    return F.hardtanh(x)


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def mish(x):
    """`x * tanh(softplus(x))`."""
    return F.mish(x)


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def log_sigmoid(x):
    """`log(sigmoid(x))`, computed stably."""
    return F.logsigmoid(x)


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def tanh_shrink(x):
    """`x - tanh(x)`."""
    return F.tanhshrink(x)


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def soft_shrink(x, threshold=0.5):
    """Moves `x` towards zero by `threshold`, zero inside `[-threshold, threshold]`."""
    return F.softshrink(x, threshold)


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def hard_shrink(x, threshold=0.5):
    """`x` where `abs(x) > threshold`, else zero."""
    return F.hardshrink(x, threshold)


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def threshold(x, threshold, default_value):
    """`x` where `x > threshold`, else `default_value`."""
    return F.threshold(x, threshold, default_value)


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def sparse_plus(x):
    """Zero below -1, `(x + 1)**2 / 4` on (-1, 1), `x` from 1 on."""
    return torch.where(x <= -1, 0.0, torch.where(x < 1, 0.25 * (x + 1) ** 2, x))


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def sparse_sigmoid(x):
    """Zero below -1, `(x + 1) / 2` on (-1, 1), one from 1 on."""
    return torch.clamp(0.5 * (x + 1), 0.0, 1.0)


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def squareplus(x, b=4):
    """`(x + sqrt(x**2 + b)) / 2`, a smooth ReLU."""
    return (x + torch.sqrt(x * x + b)) / 2


@keras_export(_NAMESPACE)
@_accepts_any_tensor
def sparsemax(x, axis=-1):
    """Euclidean projection of `x` onto the probability simplex along `axis` (Martins et al., 2016)."""
    z = x.movedim(axis, -1)
    z_sorted = torch.sort(z, dim=-1, descending=True).values
    cumulative = z_sorted.cumsum(-1)
    k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
    support = (1 + k * z_sorted > cumulative).to(z.dtype)
    support_size = support.sum(-1, keepdim=True)
    tau = (torch.gather(cumulative, -1, support_size.long() - 1) - 1) / support_size
    return torch.relu(z - tau).movedim(-1, axis)


def _is_builtin(activation):
    """As Keras: a built-in activation, or any Python function named as one (`ops.gelu`, or a
    user's own `def gelu`), is written by its name."""
    name = getattr(activation, "__name__", None)
    public = registry.public_objects(_NAMESPACE)
    return name is not None and (public.get(name) is activation or (isinstance(activation, types.FunctionType) and name in public))


def serialize(activation):
    """A built-in activation as its plain name (the layer-config form); anything else as an envelope.

    >>> serialize(relu), serialize(swish)
    ('relu', 'silu')
    """
    if _is_builtin(activation):
        return activation.__name__
    return serialize_keras_object(activation)


def deserialize(config, custom_objects=None):
    """The activation a name or envelope describes (the inverse of `serialize`)."""
    return deserialize_keras_object(config, (_NAMESPACE,), custom_objects)


def get(identifier):
    """Resolve `None` (-> `linear`), a name, a config dict or a callable to an activation.

    >>> get(None) is linear, get("swish") is silu
    (True, True)
    """
    if identifier is None:
        return linear
    if callable(identifier):
        return identifier
    activation = get_object(identifier, _NAMESPACE, "activation")
    if not callable(activation):
        raise ConfigError(f"Could not interpret activation function identifier: {identifier!r}")
    return activation
