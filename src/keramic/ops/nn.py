"""`keras.ops.nn`: activations, convolutions, pooling, normalisation and losses on tensors."""

import math
import sys
import warnings

import torch
import torch.nn.functional as F

from keramic import backend
from keramic.ops.convert import to_tensor, torch_dtype
from keramic.ops.ctc_beam_search import ctc_beam_search
from keramic.ops.dtypes import result_type
from keramic.ops.node import keras_op
from keramic.ops.numpy import _float_input

_t = to_tensor


def _export(name, fn, doc):
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    globals()[name] = keras_op(fn)


_SIMPLE = {
    "sigmoid": torch.sigmoid, "tanh_shrink": F.tanhshrink, "selu": F.selu,
    "softplus": F.softplus, "softsign": F.softsign, "silu": F.silu, "swish": F.silu, "log_sigmoid": F.logsigmoid,
    "hard_sigmoid": lambda x: torch.clamp(x / 6.0 + 0.5, 0.0, 1.0),
    "hard_silu": lambda x: x * torch.clamp(x / 6.0 + 0.5, 0.0, 1.0),
    "hard_swish": lambda x: x * torch.clamp(x / 6.0 + 0.5, 0.0, 1.0),
    "sparse_plus": lambda x: torch.where(x <= -1, torch.zeros_like(x), torch.where(x >= 1, x, (x + 1) ** 2 / 4)),
    "sparse_sigmoid": lambda x: torch.where(x <= -1, torch.zeros_like(x), torch.where(x >= 1, torch.ones_like(x), (x + 1) / 2)),
}
for _name, _fn in _SIMPLE.items():
    _export(_name, lambda x, _fn=_fn: _fn(_float_input(x)), f"The `{_name}` activation.")


@keras_op
def relu(x):
    x = _t(x)
    return torch.relu(x) if x.dtype != torch.bool else x


@keras_op
def relu6(x):
    x = _t(x)
    return torch.clamp(x, 0, 6) if x.dtype != torch.bool else x


@keras_op
def hard_tanh(x):
    x = _t(x)
    return torch.clamp(x, -1, 1) if x.dtype != torch.bool else x


@keras_op
def elu(x, alpha=1.0):
    return F.elu(_float_input(x), alpha)


@keras_op
def celu(x, alpha=1.0):
    return F.celu(_float_input(x), alpha)


@keras_op
def leaky_relu(x, negative_slope=0.2):
    return F.leaky_relu(_float_input(x), negative_slope)


@keras_op
def gelu(x, approximate=True):
    return F.gelu(_float_input(x), approximate="tanh" if approximate else "none")


@keras_op
def glu(x, axis=-1):
    return F.glu(_float_input(x), dim=axis)


@keras_op
def hard_shrink(x, threshold=0.5):
    return F.hardshrink(_float_input(x), threshold)


@keras_op
def soft_shrink(x, threshold=0.5):
    return F.softshrink(_float_input(x), threshold)


@keras_op
def squareplus(x, b=4):
    x = _float_input(x)
    return (x + torch.sqrt(x * x + b)) / 2


@keras_op
def threshold(x, threshold, default_value):
    x = _float_input(x)
    return torch.where(x > threshold, x, torch.tensor(default_value, dtype=x.dtype, device=x.device))


def _axes(axis):
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


def warn_if_softmax_over_one(x, axis) -> None:
    """As Keras: a softmax over an axis of size 1 always gives 1, which Keras warns of (shape
    probes stay silent, as Keras's symbolic layers do)."""
    shape = getattr(x, "shape", None)
    if isinstance(axis, int) and shape is not None and -len(shape) <= axis < len(shape) and shape[axis] == 1:
        if not _skips_value_checks():
            warnings.warn(
                f"You are using a softmax over axis {axis} of a tensor of shape {shape}. This axis has size 1. "
                "The softmax operation will always return the value 1, which is likely not what you intended. "
                "Did you mean to use a sigmoid instead?",
                stacklevel=3,
            )


@keras_op
def softmax(x, axis=-1):
    warn_if_softmax_over_one(x, axis)
    x = _float_input(x)
    if isinstance(axis, (list, tuple)):
        exp = torch.exp(x - torch.amax(x, dim=tuple(axis), keepdim=True))
        return exp / torch.sum(exp, dim=tuple(axis), keepdim=True)
    return backend.softmax(x, axis)


@keras_op
def log_softmax(x, axis=-1):
    x = _float_input(x)
    if isinstance(axis, (list, tuple)):
        return x - torch.logsumexp(x, dim=tuple(axis), keepdim=True)
    return torch.log_softmax(x, dim=axis)


@keras_op
def sparsemax(x, axis=-1):
    x = _float_input(x)
    z = torch.sort(x, dim=axis, descending=True).values
    k = torch.arange(1, x.shape[axis] + 1, dtype=x.dtype, device=x.device)
    shape = [1] * x.dim()
    shape[axis] = -1
    k = k.reshape(shape)
    cumulative = torch.cumsum(z, dim=axis)
    support = (1 + k * z) > cumulative
    k_z = torch.sum(support.to(x.dtype), dim=axis, keepdim=True)
    tau = (torch.sum(torch.where(support, z, torch.zeros_like(z)), dim=axis, keepdim=True) - 1) / k_z
    return torch.clamp(x - tau, min=0)


def _skips_value_checks() -> bool:
    """Traced or compiled graphs and symbolic shape probes (placeholder values) skip checks that
    read tensor values: a trace would freeze the answer, a compile would break its graph."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return True
    symbolic = sys.modules.get("keramic.symbolic")  # loaded with keramic; it imports the ops
    return symbolic is not None and symbolic.in_dry_run()


def check_class_indices(x: torch.Tensor, num_classes: int, op: str) -> None:
    """Refuse class indices >= `num_classes` with a ValueError naming `op`: Keras's torch backend
    fails there inside torch (a RuntimeError from `F.one_hot`). Where values are not checked
    (`_skips_value_checks`) such indices give all-zero rows."""
    if x.numel() == 0 or _skips_value_checks():
        return
    largest = int(x.max())
    if largest >= num_classes:
        raise ValueError(
            f"`{op}` received the class index {largest}, out of range for num_classes={num_classes}: "
            "indices must be smaller than num_classes (negative indices give all-zero rows)."
        )


@keras_op
def one_hot(x, num_classes, axis=-1, dtype=None, sparse=False):
    """Negative indices give all-zero rows (as Keras); indices >= num_classes are refused."""
    x = _t(x).to(torch.int64)
    check_class_indices(x, num_classes, "one_hot")
    valid = (x >= 0) & (x < num_classes)
    out = F.one_hot(torch.where(valid, x, torch.zeros_like(x)), num_classes) * valid.unsqueeze(-1)
    out = out.to(torch_dtype(dtype or backend.floatx()))
    return out if axis == -1 else out.movedim(-1, axis)


@keras_op
def multi_hot(inputs, num_classes=None, axis=-1, dtype=None, sparse=False, **kwargs):
    if num_classes is None:
        num_classes = kwargs.pop("num_tokens")
    x = _t(inputs)
    check_class_indices(x, num_classes, "multi_hot")
    batched = x.dim() > 1
    hot = one_hot(x if batched else x[None], num_classes, dtype=dtype)
    out = torch.amax(hot, dim=-2)
    out = out if batched else out[0]
    return out if axis == -1 else out.movedim(-1, axis)


@keras_op
def normalize(x, axis=-1, order=2, epsilon=None):
    if not isinstance(order, int) or order < 1:
        raise ValueError(f"Argument `order` must be an int >= 1. Received: order={order}")
    x = _float_input(x)
    epsilon = backend.epsilon() if epsilon is None else epsilon
    norm = torch.linalg.vector_norm(x, ord=order, dim=axis, keepdim=True)
    return x / torch.clamp(norm, min=epsilon)


@keras_op
def moments(x, axes, keepdims=False, synchronized=False):
    x = _float_input(x)
    # The two-pass variance, as BatchNormalization (docs/keras_differences.md): Keras's torch
    # backend takes E[x^2] - E[x]^2, a few ulps away, and cancelling where |mean| >> the spread.
    compute = x.to(torch.float32) if x.dtype in (torch.float16, torch.bfloat16) else x
    axes = tuple(axes) if isinstance(axes, (list, tuple)) else (axes,)
    mean = torch.mean(compute, dim=axes, keepdim=True)
    variance = torch.mean(torch.square(compute - mean), dim=axes, keepdim=keepdims)
    if not keepdims:
        mean = mean.squeeze(axes)
    if x.dtype == torch.float16:  # as Keras: clipped into float16's range, not overflowing to inf
        limit = torch.finfo(torch.float16).max
        mean, variance = mean.clamp(-limit, limit), variance.clamp(-limit, limit)
    return mean.to(x.dtype), variance.to(x.dtype)


@keras_op
def batch_normalization(x, mean, variance, axis, offset=None, scale=None, epsilon=0.001):
    x = _float_input(x)
    shape = [1] * x.dim()
    shape[axis] = x.shape[axis]

    def broadcast(v):
        return _t(v, x.dtype).reshape(shape)

    inv = torch.rsqrt(broadcast(variance) + epsilon)
    if scale is not None:
        inv = inv * broadcast(scale)
    out = (x - broadcast(mean)) * inv
    return out + broadcast(offset) if offset is not None else out


def _trailing_layer_norm(x, axes, gamma, beta) -> bool:
    """Whether `axes` are x's last ones and gamma/beta hold exactly one value per normalized entry."""
    if sorted(a % x.dim() for a in axes) != list(range(x.dim() - len(axes), x.dim())):
        return False
    size = math.prod(x.shape[x.dim() - len(axes) :])
    return all(v is None or _t(v).numel() == size for v in (gamma, beta))


@keras_op
def layer_normalization(x, gamma=None, beta=None, axis=-1, epsilon=None, **kwargs):
    x = _float_input(x)
    epsilon = backend.epsilon() if epsilon is None else epsilon
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    if kwargs.get("rms_scaling"):
        out = x * torch.rsqrt(torch.mean(x * x, dim=axes, keepdim=True) + epsilon)
    elif _trailing_layer_norm(x, axes, gamma, beta):
        # Trailing axes: torch's own layer_norm, as Keras's torch backend (same digits).
        shape = tuple(x.shape[x.dim() - len(axes) :])
        weight = None if gamma is None else _t(gamma, x.dtype).reshape(shape)
        bias = None if beta is None else _t(beta, x.dtype).reshape(shape)
        return F.layer_norm(x, shape, weight, bias, epsilon)
    else:
        mean = torch.mean(x, dim=axes, keepdim=True)
        variance = torch.var(x, dim=axes, keepdim=True, correction=0)
        out = (x - mean) * torch.rsqrt(variance + epsilon)
    if gamma is not None:
        out = out * _t(gamma, x.dtype)
    if beta is not None:
        out = out + _t(beta, x.dtype)
    return out


@keras_op
def rms_normalization(x, scale=None, axis=-1, epsilon=None):
    x = _float_input(x)
    epsilon = backend.epsilon() if epsilon is None else epsilon
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = x * torch.rsqrt(torch.mean(x * x, dim=axes, keepdim=True) + epsilon)
    return out if scale is None else out * _t(scale, x.dtype)


# ------------------------------------------------------------------ convolution and pooling
def _channels_first(x, data_format):
    data_format = data_format or _image_data_format()
    return x if data_format == "channels_first" else x.movedim(-1, 1)


def _restore(x, data_format):
    data_format = data_format or _image_data_format()
    return x if data_format == "channels_first" else x.movedim(1, -1)


def _image_data_format():
    return backend.image_data_format()


def _tuple(value, n):
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * n


def _same_padding(size, kernel, stride, dilation):
    effective = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _pad_same(x, kernel, strides, dilation, value=0.0):
    spatial = x.shape[2:]
    pads = []
    for size, k, s, d in reversed(list(zip(spatial, kernel, strides, dilation))):
        pads.extend(_same_padding(size, k, s, d))
    return F.pad(x, pads, value=value)


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _int_like(inputs, out):
    """`out` back in the dtype of integer `inputs`: Keras's convs and max pools keep int dtypes."""
    return out.to(inputs.dtype) if not inputs.is_floating_point() and inputs.dtype != torch.bool else out


@keras_op
def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    inputs = _t(inputs)
    x = _float_input(inputs)
    kernel = _t(kernel, x.dtype)
    n = x.dim() - 2
    x = _channels_first(x, data_format)
    strides, dilation = _tuple(strides, n), _tuple(dilation_rate, n)
    weight = kernel.permute(n + 1, n, *range(n))  # (spatial..., in, out) -> (out, in, spatial...)
    groups = x.shape[1] // weight.shape[1]
    if padding == "same":
        x = _pad_same(x, weight.shape[2:], strides, dilation)
    out = _CONV[n](x, weight, stride=strides, dilation=dilation, groups=groups)
    return _int_like(inputs, _restore(out, data_format))


@keras_op
def depthwise_conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    inputs = _t(inputs)
    x = _float_input(inputs)
    kernel = _t(kernel, x.dtype)
    n = x.dim() - 2
    x = _channels_first(x, data_format)
    strides, dilation = _tuple(strides, n), _tuple(dilation_rate, n)
    channels, multiplier = kernel.shape[-2], kernel.shape[-1]
    weight = kernel.reshape(*kernel.shape[:-2], channels * multiplier).permute(n, *range(n)).unsqueeze(1)
    if padding == "same":
        x = _pad_same(x, weight.shape[2:], strides, dilation)
    out = _CONV[n](x, weight, stride=strides, dilation=dilation, groups=channels)
    return _int_like(inputs, _restore(out, data_format))


@keras_op
def separable_conv(inputs, depthwise_kernel, pointwise_kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    depthwise = depthwise_conv(inputs, depthwise_kernel, strides, padding, data_format, dilation_rate)
    return conv(depthwise, pointwise_kernel, 1, "valid", data_format, 1)


@keras_op
def conv_transpose(inputs, kernel, strides=1, padding="valid", output_padding=None, data_format=None, dilation_rate=1):
    """Transposed convolution; kernel (spatial..., out_channels, in_channels), as Keras."""
    x = _float_input(inputs)
    kernel = _t(kernel, x.dtype)
    n = x.dim() - 2
    x = _channels_first(x, data_format)
    strides, dilation = _tuple(strides, n), _tuple(dilation_rate, n)
    extra = None if output_padding is None else _tuple(output_padding, n)
    weight = kernel.permute(n + 1, n, *range(n))  # -> (in, out, spatial...)
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[n]
    full = fn(x, weight, stride=strides, dilation=dilation)  # every output position, uncropped
    for i, (size, k, s, d) in enumerate(zip(x.shape[2:], kernel.shape[:n], strides, dilation)):
        effective = (k - 1) * d + 1
        before = max(effective - s, 0) // 2 if padding == "same" else 0
        if padding == "same":
            length = size * s if extra is None else (size - 1) * s + effective + extra[i] - max(effective - s, 0)
        else:
            length = size * s + max(effective - s, 0) if extra is None else (size - 1) * s + effective + extra[i]
        dim = 2 + i
        full = full.narrow(dim, before, min(length, full.shape[dim] - before))
        if full.shape[dim] < length:
            pad = [0, 0] * (full.dim() - 1 - dim) + [0, length - full.shape[dim]]
            full = F.pad(full, pad)
    return _restore(full, data_format)


def _pool(x, pool_size, strides, padding, data_format, kind):
    x = _float_input(x)
    n = x.dim() - 2
    x = _channels_first(x, data_format)
    pool_size = _tuple(pool_size, n)
    strides = pool_size if strides is None else _tuple(strides, n)
    if kind == "max":
        if padding == "same":
            x = _pad_same(x, pool_size, strides, (1,) * n, value=-float("inf"))
        out = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n](x, pool_size, strides)
    else:
        if padding == "same":
            ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device)
            total = _pool_sum(_pad_same(x, pool_size, strides, (1,) * n), pool_size, strides, n)
            count = _pool_sum(_pad_same(ones, pool_size, strides, (1,) * n), pool_size, strides, n)
            out = total / count
        else:
            out = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n](x, pool_size, strides)
    return _restore(out, data_format)


def _pool_sum(x, pool_size, strides, n):
    return {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n](x, pool_size, strides) * math.prod(pool_size)


@keras_op
def max_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    inputs = _t(inputs)
    return _int_like(inputs, _pool(inputs, pool_size, strides, padding, data_format, "max"))


@keras_op
def average_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    return _pool(inputs, pool_size, strides, padding, data_format, "average")


def _adaptive(inputs, output_size, data_format, kind):
    x = _float_input(inputs)
    n = x.dim() - 2
    x = _channels_first(x, data_format)
    size = _tuple(output_size, n)
    table = {"max": {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d},
             "average": {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}}
    return _restore(table[kind][n](x, size), data_format)


@keras_op
def adaptive_max_pool(inputs, output_size, data_format=None):
    return _adaptive(inputs, output_size, data_format, "max")


@keras_op
def adaptive_average_pool(inputs, output_size, data_format=None):
    return _adaptive(inputs, output_size, data_format, "average")


@keras_op
def depth_to_space(x, block_size, data_format="channels_last"):
    """Move channel blocks into spatial blocks (TensorFlow's DCR order, as Keras)."""
    x, b = _t(x), block_size
    if data_format == "channels_last":
        n, h, w, c = x.shape
        return x.reshape(n, h, w, b, b, c // (b * b)).permute(0, 1, 3, 2, 4, 5).reshape(n, h * b, w * b, c // (b * b))
    n, c, h, w = x.shape
    return x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c // (b * b), h * b, w * b)


@keras_op
def space_to_depth(x, block_size, data_format="channels_last"):
    """Move spatial blocks into channels (the inverse of `depth_to_space`)."""
    x, b = _t(x), block_size
    if data_format == "channels_last":
        n, h, w, c = x.shape
        return x.reshape(n, h // b, b, w // b, b, c).permute(0, 1, 3, 2, 4, 5).reshape(n, h // b, w // b, c * b * b)
    n, c, h, w = x.shape
    return x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4).reshape(n, c * b * b, h // b, w // b)


@keras_op
def unfold(x, kernel_size, dilation=1, padding=0, stride=1):
    return F.unfold(_t(x), kernel_size, dilation=dilation, padding=padding, stride=stride)


@keras_op
def fold(x, output_size, kernel_size, dilation=1, padding=0, stride=1):
    return F.fold(_t(x), output_size, kernel_size, dilation=dilation, padding=padding, stride=stride)


# ------------------------------------------------------------------ losses and metrics
def _clipped(output):
    epsilon = 1e-7
    return torch.clamp(output, epsilon, 1.0 - epsilon)


@keras_op
def binary_crossentropy(target, output, from_logits=False):
    output = _float_input(output)
    target = _t(target, output.dtype)
    if from_logits:
        return F.binary_cross_entropy_with_logits(output, target, reduction="none")
    output = _clipped(output)
    return -(target * torch.log(output) + (1 - target) * torch.log(1 - output))


@keras_op
def categorical_crossentropy(target, output, from_logits=False, axis=-1):
    output = _float_input(output)
    target = _t(target)  # torch promotes target * log-probabilities, as in Keras (float64 targets: float64)
    if from_logits:
        log_probs = torch.log_softmax(output, dim=axis)
    else:
        output = output / torch.sum(output, dim=axis, keepdim=True)
        log_probs = torch.log(_clipped(output))
    return -torch.sum(target * log_probs, dim=axis)


@keras_op
def sparse_categorical_crossentropy(target, output, from_logits=False, axis=-1):
    output = _float_input(output)
    target = _t(target).to(torch.int64)
    if target.dim() == output.dim() and target.shape[-1] == 1:
        target = target.squeeze(-1)
    if target.shape != output.shape[:-1] and axis in (-1, output.dim() - 1):
        raise ValueError(
            "Arguments `target` and `output` must have the same shape up until the last dimension: "
            f"target.shape={tuple(target.shape)}, output.shape={tuple(output.shape)}"
        )
    classes = output.shape[axis]
    if target.numel() and not _skips_value_checks():
        outside = target[(target < 0) | (target >= classes)]
        if outside.numel():  # as Keras's torch backend (torch's nll_loss): negatives too
            raise IndexError(f"Target {int(outside[0])} is out of bounds.")
    return categorical_crossentropy(one_hot(target, output.shape[axis], axis=axis, dtype=output.dtype), output, from_logits, axis)


@keras_op
def psnr(x1, x2, max_val):
    a, b = _float_input(x1), _float_input(x2)
    mse = torch.mean(torch.square(a - b))
    return 20 * torch.log10(torch.tensor(float(max_val), dtype=a.dtype, device=a.device)) - 10 * torch.log10(mse)


@keras_op
def polar(abs_, angle):
    magnitude, phase = _float_input(abs_), _float_input(angle)
    if magnitude.dtype == torch.float16:  # no half-precision polar kernel on the CPU; complex32 as Keras
        return torch.polar(magnitude.float(), phase.float()).to(torch.complex32)
    return torch.polar(magnitude, phase)


@keras_op
def dot_product_attention(query, key, value, bias=None, mask=None, scale=None, is_causal=False, flash_attention=None,
                          attn_logits_soft_cap=None):
    """Inputs are (batch, length, heads, head_dim), as in Keras."""
    dtype = result_type(query, key, value)
    q, k, v = (_t(t, dtype).transpose(1, 2) for t in (query, key, value))
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    logits = torch.matmul(q, k.transpose(-1, -2)) * scale
    if attn_logits_soft_cap is not None:
        logits = torch.tanh(logits / attn_logits_soft_cap) * attn_logits_soft_cap
    if bias is not None:
        logits = logits + _t(bias, dtype)
    if mask is not None:
        logits = logits.masked_fill(~_t(mask).to(torch.bool), torch.finfo(logits.dtype).min)
    if is_causal:
        length_q, length_k = logits.shape[-2:]
        causal = torch.ones((length_q, length_k), dtype=torch.bool, device=logits.device).tril()
        logits = logits.masked_fill(~causal, torch.finfo(logits.dtype).min)
    weights = torch.softmax(logits.float(), dim=-1).to(logits.dtype)
    return torch.matmul(weights, v).transpose(1, 2)


@keras_op
def ctc_loss(target, output, target_length, output_length, mask_index=0):
    output = _float_input(output)
    log_probs = torch.log_softmax(output, dim=-1).transpose(0, 1)
    return F.ctc_loss(log_probs, _t(target).to(torch.int64), _t(output_length).to(torch.int64),
                      _t(target_length).to(torch.int64), blank=mask_index, reduction="none")


@keras_op
def ctc_decode(inputs, sequence_lengths, strategy="greedy", beam_width=100, top_paths=1, merge_repeated=True, mask_index=0):
    x = _float_input(inputs)
    lengths = _t(sequence_lengths).to(torch.int64)
    if mask_index is None:
        mask_index = x.shape[-1] - 1
    if strategy == "beam_search":
        return ctc_beam_search(x, lengths, beam_width, top_paths, mask_index)
    if strategy != "greedy":
        raise ValueError(f"Invalid strategy {strategy}. Supported values are 'greedy' and 'beam_search'.")
    best = torch.argmax(x, dim=-1)
    # The score is minus the sum of the best raw input per step (no softmax), as Keras's torch backend.
    scores = -torch.sum(torch.amax(x, dim=-1) *
                        (torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]), dim=1, keepdim=True)
    best = torch.where(torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None], best, torch.full_like(best, mask_index))
    keep = best != mask_index
    if merge_repeated:
        keep &= torch.cat([torch.ones_like(best[:, :1], dtype=torch.bool), best[:, 1:] != best[:, :-1]], dim=1)
    decoded = torch.full_like(best, -1)
    for row in range(best.shape[0]):
        values = best[row][keep[row]]
        decoded[row, : values.numel()] = values
    return decoded[None].to(torch.int32), scores


__all__ = [n for n, v in list(globals().items()) if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == __name__]
