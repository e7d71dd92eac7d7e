"""`keras.quantizers`: the numeric building blocks of quantization, on torch tensors.

Abs-max int8 quantization, int4 nibble packing, float8 scaling with an amax history and
TensorFlow's `fake_quant_with_min_max_vars`. Quantized layers and the `*QuantizationConfig`
classes are not here yet (see tests/test_namespace_coverage.py).
"""

import torch

from keramic import backend
from keramic.errors import ConfigError
from keramic.ops.convert import to_tensor
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, get_object, serialize_keras_object

_NAMESPACE = "keras.quantizers"


def _axes(axis):
    if axis is None:
        return ()
    return tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)


def abs_max_quantize(inputs, axis, value_range=(-127, 127), dtype="int8", epsilon=backend.epsilon(), to_numpy=False):
    """`(quantized, scale)`: values scaled so the largest |value| along `axis` maps to `value_range[1]`."""
    x = to_tensor(inputs)
    scale = value_range[1] / (x.abs().amax(dim=_axes(axis), keepdim=True) + epsilon)
    quantized = torch.round(x * scale).clamp(value_range[0], value_range[1]).to(backend.torch_dtype(dtype))
    return quantized, scale


@keras_export(_NAMESPACE)
class Quantizer:
    """Base class: `__call__(x)` returns the quantized values (and their scale)."""

    def __init__(self, output_dtype="int8"):
        self.output_dtype = output_dtype

    def __call__(self, x):
        raise NotImplementedError(f"{type(self).__name__} must implement `__call__`.")

    def get_config(self):
        raise NotImplementedError(f"{type(self).__name__} must implement `get_config`.")

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras_export(_NAMESPACE)
class AbsMaxQuantizer(Quantizer):
    """`abs_max_quantize` with its settings kept, so layers can save which quantizer they used."""

    def __init__(self, axis=None, value_range=(-127, 127), epsilon=backend.epsilon(), output_dtype="int8"):
        super().__init__(output_dtype)
        self.axis = _axes(axis)
        self.value_range = value_range
        self.epsilon = epsilon

    def __call__(self, x):
        return abs_max_quantize(x, self.axis, self.value_range, self.output_dtype, self.epsilon)

    def get_config(self):
        return {"value_range": self.value_range, "epsilon": self.epsilon, "output_dtype": self.output_dtype, "axis": self.axis}


def _moved(tensor, axis):
    return tensor.movedim(axis, 0)


def pack_int4(arr, axis=0, dtype="int8"):
    """Two int4 values per byte along `axis` (low nibble first): `(packed, packed.shape, orig_len)`."""
    x = to_tensor(arr)
    if x.dtype != torch.int8:
        raise ValueError(f"pack_int4 expects int8 values in [-8, 7]; received dtype {backend.standardize_dtype(x.dtype)}.")
    rows = _moved(x, axis)
    orig_len = rows.shape[0]
    if orig_len % 2:
        rows = torch.cat([rows, torch.zeros_like(rows[:1])])
    low, high = rows[0::2].to(torch.int16) & 0xF, rows[1::2].to(torch.int16) & 0xF
    packed = (low | (high << 4)).to(torch.uint8).view(torch.int8) if dtype == "int8" else (low | (high << 4)).to(torch.uint8)
    packed = packed.movedim(0, axis)
    return packed, tuple(packed.shape), orig_len


def unpack_int4(packed, orig_len, axis=0, dtype="int8"):
    """The int8 values `pack_int4` packed, `orig_len` of them along `axis`."""
    rows = _moved(to_tensor(packed), axis).to(torch.int16) & 0xFF
    low, high = rows & 0xF, rows >> 4
    low, high = torch.where(low > 7, low - 16, low), torch.where(high > 7, high - 16, high)
    values = torch.stack([low, high], dim=1).reshape((-1,) + tuple(rows.shape[1:]))[:orig_len]
    return values.to(torch.int8).movedim(0, axis)


def compute_float8_scale(amax, scale, dtype_max, margin=0):
    """Next float8 scale (`amax / dtype_max`, times 2**margin); the old one where amax is 0 or not finite."""
    amax, scale = to_tensor(amax), to_tensor(scale)
    new = (dtype_max / amax) / (2**margin)
    keep = (amax <= 0) | ~torch.isfinite(amax)
    return torch.reciprocal(torch.where(keep, torch.reciprocal(scale), new))


def compute_float8_amax_history(x, amax_history):
    """The history rolled one step back in time, with max|x| as its newest (first) entry."""
    history = torch.roll(to_tensor(amax_history), shifts=-1, dims=0)
    history[0] = to_tensor(x).abs().max().to(history.dtype)
    return history


def quantize_and_dequantize(inputs, scale, quantized_dtype, compute_dtype):
    """`inputs` rounded through `quantized_dtype` (float8) at `scale`, returned in `compute_dtype`."""
    target = getattr(torch, quantized_dtype)
    limit = torch.finfo(target).max
    x = to_tensor(inputs)
    scale = to_tensor(scale)
    quantized = (x / scale).clamp(-limit, limit).to(target)
    compute = backend.torch_dtype(compute_dtype)
    return quantized.to(compute) * scale.to(compute)


def fake_quant_with_min_max_vars(inputs, min_vals, max_vals, num_bits=8, narrow_range=False, axis=None):
    """Values snapped to the `num_bits` grid spanning [min, max] (nudged so 0 is on the grid).

    TensorFlow's fake quantization: the gradient passes straight through inside the range and is
    zero outside it. `axis` gives per-channel `min_vals` / `max_vals`.
    """
    x = to_tensor(inputs)
    low, high = to_tensor(min_vals, x.dtype), to_tensor(max_vals, x.dtype)
    if axis is not None and low.ndim == 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        low, high = low.reshape(shape), high.reshape(shape)
    quant_min = 1.0 if narrow_range else 0.0
    quant_max = float(2**num_bits - 1)
    step = (high - low) / (quant_max - quant_min)
    zero_point = torch.floor((quant_min - low / step).clamp(quant_min, quant_max) + 0.5)
    nudged_low, nudged_high = (quant_min - zero_point) * step, (quant_max - zero_point) * step
    clamped = torch.minimum(torch.maximum(x, nudged_low), nudged_high)
    snapped = torch.floor((clamped - nudged_low) / step + 0.5) * step + nudged_low  # ties round up, as TF
    return clamped + (snapped - clamped).detach()


def serialize(quantizer):
    """The Keras envelope of a quantizer."""
    return serialize_keras_object(quantizer)


def deserialize(config, custom_objects=None):
    """The quantizer a name or envelope describes."""
    return deserialize_keras_object(config, (_NAMESPACE,), custom_objects)


def get(identifier, **kwargs):
    """Resolve a name (`"abs_max_quantizer"`), a config dict or a class to a quantizer."""
    if isinstance(identifier, type):
        return identifier(**kwargs)
    quantizer = get_object(identifier, _NAMESPACE, "quantizer")
    if quantizer is None and identifier is not None:
        raise ConfigError(f"Could not interpret quantizer identifier: {identifier!r}")
    return quantizer


keras_export(_NAMESPACE, name="abs_max_quantizer")(AbsMaxQuantizer)
