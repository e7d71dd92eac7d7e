"""`keras.quantizers`: the numeric building blocks of quantization, on torch tensors.

Abs-max int8 quantization, int4 nibble packing, float8 scaling with an amax history,
TensorFlow's `fake_quant_with_min_max_vars`, and the `*QuantizationConfig` classes that tell
`quantize()` which quantizers to use (the quantized layers live in keramic.layers.quantized).
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
    amax = x.abs().amax(dim=_axes(axis), keepdim=True) + epsilon
    scale = torch.div(torch.tensor(value_range[1], dtype=amax.dtype), amax)  # `number / tensor` is reciprocal * number in torch: 1 ulp off
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
    """`abs_max_quantize` with its settings kept, so layers can save which quantizer they used.

    The axis may be fixed here or given per call (layers pass theirs); with neither it is -1.
    """

    def __init__(self, axis=None, value_range=(-127, 127), epsilon=backend.epsilon(), output_dtype="int8"):
        super().__init__(output_dtype)
        self.axis = None if axis is None else _axes(axis)
        self.value_range = value_range
        self.epsilon = epsilon
        if output_dtype == "int8" and (self.value_range[0] < -128 or self.value_range[1] > 127):
            raise ValueError(
                "Quantizer with output_dtype='int8' requires value_range to be within the interval "
                f"[-128, 127]. Received: value_range={value_range}"
            )

    def __call__(self, x, axis=None, to_numpy=False):
        axis = self.axis if axis is None else axis
        return abs_max_quantize(x, -1 if axis is None else axis, self.value_range, self.output_dtype, self.epsilon)

    def get_config(self):
        config = {"value_range": self.value_range, "epsilon": self.epsilon, "output_dtype": self.output_dtype}
        if self.axis is not None:
            config["axis"] = self.axis
        return config


def _moved(tensor, axis):
    return tensor.movedim(axis, 0)


def pack_int4(arr, axis=0, dtype="int8"):
    """Two int4 values per byte along `axis` (low nibble first): `(packed, packed.shape, orig_len)`."""
    x = to_tensor(arr)
    if dtype not in ("int8", "uint8"):
        raise ValueError(f"Expected dtype to be 'int8' or 'uint8', but got '{dtype}'.")
    if x.dtype != backend.torch_dtype(dtype):  # uint8: GPTQ/AWQ's unsigned codes in [0, 15]
        raise ValueError(f"pack_int4 expects {dtype} values; received dtype {backend.standardize_dtype(x.dtype)}.")
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
    if dtype != "uint8":  # uint8 keeps GPTQ/AWQ's unsigned codes
        low, high = torch.where(low > 7, low - 16, low), torch.where(high > 7, high - 16, high)
    values = torch.stack([low, high], dim=1).reshape((-1,) + tuple(rows.shape[1:]))[:orig_len]
    return values.to(backend.torch_dtype(dtype)).movedim(0, axis)


def abs_max_quantize_grouped_with_zero_point(
    inputs, block_size, value_range=(-8, 7), dtype="int8", epsilon=backend.epsilon(), to_numpy=False
):
    """`(quantized, scale, zero_point)` of a 2D kernel, asymmetric per group of `block_size` rows.

    Each group of rows (the last one zero-padded, padding included in its range) gets per column a
    scale mapping [min, max] onto `value_range` and a zero point that puts 0.0 on the grid; this
    keeps off-centre weights accurate where one symmetric scale per column would not.
    Shapes: quantized as `inputs`, scale and zero point `(ceil(rows / block_size), columns)`.
    """
    x = to_tensor(inputs)
    rows, columns = x.shape
    groups = -(-rows // block_size)
    padded = torch.cat([x, x.new_zeros(groups * block_size - rows, columns)]).reshape(groups, block_size, columns)
    low, high = value_range
    minimum, maximum = padded.amin(dim=1, keepdim=True), padded.amax(dim=1, keepdim=True)
    scale = (maximum - minimum + epsilon) / (high - low)
    zero_point = (torch.round(-minimum / scale) + low).clamp(low, high)
    quantized = (torch.round(padded / scale) + zero_point).clamp(low, high).to(backend.torch_dtype(dtype))
    return quantized.reshape(-1, columns)[:rows], scale.squeeze(1), zero_point.squeeze(1).to(torch.int8)


def dequantize_with_sz_map(weights, scale, zero, g_idx, group_axis=-1):
    """`(weights - zero) * scale`, each position along the grouped axis using its group's (`g_idx`) pair."""
    groups = to_tensor(g_idx).long()
    scale = to_tensor(scale)
    zero = torch.index_select(to_tensor(zero), group_axis, groups).to(scale.dtype)
    return (to_tensor(weights) - zero) * torch.index_select(scale, group_axis, groups)


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
    compute = backend.torch_dtype(compute_dtype)
    scale = to_tensor(scale).to(compute)  # as Keras: the scale is rounded to the compute dtype first
    quantized = (x / scale).clamp(-limit, limit).to(target)
    return quantized.to(compute) * scale


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


@keras_export(_NAMESPACE)
class QuantizationConfig:
    """Which quantizers `quantize()` uses: one for weights, one for activations (None: the layer's default)."""

    def __init__(self, weight_quantizer=None, activation_quantizer=None):
        self.weight_quantizer = weight_quantizer
        self.activation_quantizer = activation_quantizer

    @property
    def mode(self):
        raise NotImplementedError("Subclasses must implement this property. Do not instantiate QuantizationConfig directly.")

    def get_config(self):
        return {
            "weight_quantizer": serialize_keras_object(self.weight_quantizer),
            "activation_quantizer": serialize_keras_object(self.activation_quantizer),
        }

    @classmethod
    def from_config(cls, config):
        return cls(
            weight_quantizer=deserialize_keras_object(config.get("weight_quantizer")),
            activation_quantizer=deserialize_keras_object(config.get("activation_quantizer")),
        )

    @staticmethod
    def weight_quantizer_or_default(config, default):
        """The config's weight quantizer, else `default`."""
        if config is not None and config.weight_quantizer is not None:
            return config.weight_quantizer
        return default

    @staticmethod
    def activation_quantizer_or_default(config, default):
        """The config's activation quantizer (None means weight-only), `default` without a config."""
        return config.activation_quantizer if config is not None else default


def _check_int8_output(quantizer, config_name):
    if quantizer is not None and quantizer.output_dtype != "int8":
        raise ValueError(
            f"{config_name} requires a weight_quantizer with output_dtype='int8'. "
            f"Received: output_dtype={quantizer.output_dtype}"
        )


@keras_export(_NAMESPACE)
class Int8QuantizationConfig(QuantizationConfig):
    """int8 weights with per-channel scales; activations abs-max quantized at run time unless told otherwise."""

    def __init__(self, weight_quantizer=None, activation_quantizer="default"):
        if isinstance(activation_quantizer, str) and activation_quantizer == "default":
            activation_quantizer = AbsMaxQuantizer()
        super().__init__(weight_quantizer, activation_quantizer)
        _check_int8_output(self.weight_quantizer, "Int8QuantizationConfig")

    @property
    def mode(self):
        return "int8"


@keras_export(_NAMESPACE)
class Int4QuantizationConfig(QuantizationConfig):
    """int4 weights: per channel (`block_size` None or -1) or in groups of `block_size` inputs."""

    def __init__(self, weight_quantizer=None, activation_quantizer="default", block_size=128):
        if isinstance(activation_quantizer, str) and activation_quantizer == "default":
            activation_quantizer = None
        super().__init__(weight_quantizer, activation_quantizer)
        if block_size is not None and block_size != -1 and block_size <= 0:
            raise ValueError(f"block_size must be None, -1, or a positive integer. Received: block_size={block_size}")
        self.block_size = block_size
        custom = self.weight_quantizer is not None or self.activation_quantizer is not None
        if block_size is not None and block_size > 0 and custom:
            raise ValueError(
                "Int4 sub-channel quantization (block_size > 0) does not support custom quantizers. Either set "
                "block_size to None or -1 for per-channel quantization, or remove the custom quantizer arguments. "
                f"Received: block_size={block_size}"
            )
        if self.weight_quantizer is not None and tuple(self.weight_quantizer.value_range) != (-8, 7):
            raise ValueError(
                "Int4QuantizationConfig requires a weight_quantizer with value_range=(-8, 7). "
                f"Received: value_range={self.weight_quantizer.value_range}"
            )
        _check_int8_output(self.weight_quantizer, "Int4QuantizationConfig")

    @property
    def mode(self):
        return "int4"

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}

    @classmethod
    def from_config(cls, config):
        return cls(
            weight_quantizer=deserialize_keras_object(config.get("weight_quantizer")),
            activation_quantizer=deserialize_keras_object(config.get("activation_quantizer")),
            block_size=config.get("block_size"),
        )


@keras_export(_NAMESPACE)
class Float8QuantizationConfig(QuantizationConfig):
    """Marks float8 training; its quantizers are fixed (e4m3 forward, e5m2 gradients)."""

    def __init__(self):
        super().__init__(None, None)

    @property
    def mode(self):
        return "float8"

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls()


def _check_calibration_sizes(num_samples, sequence_length, hessian_damping, group_size, per_channel_name):
    """Keras's checks, in its order (AWQ passes no damping)."""
    if num_samples <= 0:
        raise ValueError("num_samples must be a positive integer.")
    if sequence_length <= 0:
        raise ValueError("sequence_length must be a positive integer.")
    if hessian_damping is not None and (hessian_damping < 0 or hessian_damping > 1):
        raise ValueError("hessian_damping must be between 0 and 1.")
    if group_size < -1 or group_size == 0:
        raise ValueError(
            f"Invalid group_size. Supported values are -1 ({per_channel_name}) or a positive integer, but got {group_size}."
        )


class _CalibratedConfig(QuantizationConfig):
    """Shared by GPTQ and AWQ: calibration data (never saved) and the layer structure to walk."""

    weight_bits: int
    group_size: int
    _SETTINGS: tuple[str, ...] = ()  # the saved arguments, in Keras's `get_config` order

    def get_config(self):
        return {"dataset": None, "tokenizer": None, **{name: getattr(self, name) for name in self._SETTINGS}}

    def dtype_policy_string(self) -> str:
        """The quantized layer's policy mode, `"<mode>/<weight_bits>/<group_size>"`."""
        return f"{self.mode}/{self.weight_bits}/{self.group_size}"

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras_export(_NAMESPACE)
class GPTQConfig(_CalibratedConfig):
    """GPTQ: weights rounded column by column, each rounding error spread over the columns still
    to come through the inverse Hessian of the calibration inputs (`model.quantize("gptq", config)`).

    `dataset` holds token ids (arrays) or strings `tokenizer.tokenize` turns into ids;
    `quantization_layer_structure` is `{"pre_block_layers": [...], "sequential_blocks": [...]}`.
    """

    _SETTINGS = ("weight_bits", "num_samples", "per_channel", "sequence_length", "hessian_damping", "group_size",
                 "symmetric", "activation_order", "quantization_layer_structure")

    def __init__(
        self,
        dataset,
        tokenizer,
        *,
        weight_bits: int = 4,
        num_samples: int = 128,
        per_channel: bool = True,
        sequence_length: int = 512,
        hessian_damping: float = 0.01,
        group_size: int = 128,
        symmetric: bool = False,
        activation_order: bool = False,
        quantization_layer_structure: dict | None = None,
    ):
        super().__init__()
        if weight_bits not in (2, 3, 4, 8):
            raise ValueError(f"Unsupported weight_bits {weight_bits}. Supported values are 2, 3, 4, and 8.")
        _check_calibration_sizes(num_samples, sequence_length, hessian_damping, group_size, "whole-tensor")
        self.dataset = dataset
        self.tokenizer = tokenizer
        self.weight_bits = weight_bits
        self.num_samples = num_samples
        self.per_channel = per_channel
        self.sequence_length = sequence_length
        self.hessian_damping = hessian_damping
        self.group_size = group_size
        self.symmetric = symmetric
        self.activation_order = activation_order
        self.quantization_layer_structure = quantization_layer_structure

    @property
    def mode(self):
        return "gptq"


@keras_export(_NAMESPACE)
class AWQConfig(_CalibratedConfig):
    """AWQ: each input channel's weights scaled up by a power of its largest calibration activation
    (the power searched on a grid of `num_grid_points`) before 4-bit rounding, so salient weights keep precision."""

    _SETTINGS = ("weight_bits", "num_samples", "sequence_length", "group_size", "num_grid_points", "quantization_layer_structure")

    def __init__(
        self,
        dataset,
        tokenizer,
        *,
        weight_bits: int = 4,
        num_samples: int = 128,
        sequence_length: int = 512,
        group_size: int = 128,
        num_grid_points: int = 20,
        quantization_layer_structure: dict | None = None,
    ):
        super().__init__()
        if weight_bits != 4:
            raise ValueError(f"AWQ only supports 4-bit quantization. Received weight_bits={weight_bits}.")
        _check_calibration_sizes(num_samples, sequence_length, None, group_size, "per-channel")
        if num_grid_points <= 0:
            raise ValueError("num_grid_points must be a positive integer.")
        self.dataset = dataset
        self.tokenizer = tokenizer
        self.weight_bits = weight_bits
        self.num_samples = num_samples
        self.sequence_length = sequence_length
        self.group_size = group_size
        self.num_grid_points = num_grid_points
        self.quantization_layer_structure = quantization_layer_structure

    @property
    def mode(self):
        return "awq"


def validate_and_resolve_config(mode, config):
    """The config `quantize(mode, config)` means: a mode alone gets its default config; both must agree."""
    from keramic.dtype_policies import QUANTIZATION_MODES

    if isinstance(config, str):
        mode, config = config, None
    if mode is not None and mode not in QUANTIZATION_MODES:
        raise ValueError(f"Invalid quantization mode. Expected one of {QUANTIZATION_MODES}. Received: mode={mode}")
    if config is None:
        defaults = {"int8": Int8QuantizationConfig, "int4": Int4QuantizationConfig, "float8": Float8QuantizationConfig}
        if mode in defaults:
            return defaults[mode]()
        if mode in ("gptq", "awq"):
            article = {"gptq": "a `GPTQConfig`", "awq": "an `AWQConfig`"}[mode]
            raise ValueError(f"For {mode.upper()}, you must pass {article} object in the `config` argument.")
        raise ValueError("You must provide either `mode` or `config` to `quantize`.")
    if not isinstance(config, QuantizationConfig):
        raise ValueError(
            f"Argument `config` must be an instance of `QuantizationConfig`. Received: config={config} (of type {type(config)})"
        )
    if mode is not None and config.mode != mode:
        raise ValueError(f"Contradictory arguments: mode='{mode}' but config.mode='{config.mode}'")
    required = {"gptq": GPTQConfig, "awq": AWQConfig}.get(config.mode)
    if required is not None and not isinstance(config, required):
        raise ValueError(
            f"Mode '{config.mode}' requires a valid `config` argument of type `{required.__name__}`. Received: {type(config)}"
        )
    return config


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
    if isinstance(identifier, str) and isinstance(quantizer, AbsMaxQuantizer) and quantizer.axis is None:
        quantizer.axis = ()  # Keras builds a named quantizer as `cls({})`, so its axis is the empty tuple
    return quantizer


keras_export(_NAMESPACE, name="abs_max_quantizer")(AbsMaxQuantizer)
