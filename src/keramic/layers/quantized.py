"""Quantization of Dense, EinsumDense and Embedding (`layer.quantize("int8")`, `"int4"`, `"float8"`).

An int8 layer swaps its float kernel for an int8 one plus a float scale per output channel
(int4: two values packed per byte, and per group of `block_size` inputs a scale and a zero point);
a float8 layer keeps training its kernel but rounds inputs, kernel and output gradients through
float8 with scales it learns from a history of max|x|. The mode is recorded in the dtype policy
(`"int8_from_float32"`, `"int4/128_from_float32"`), which is how a saved model says which
variables to build. Variable names, shapes, the saved order and the arithmetic follow
Keras 3, so `.keras` files move both ways with equal predictions.
"""

import re
import string
import warnings

import torch

from keramic import backend, dtype_policies
from keramic.layers import lora
from keramic.quantizers import (
    AbsMaxQuantizer,
    AWQConfig,
    GPTQConfig,
    Int4QuantizationConfig,
    QuantizationConfig,
    abs_max_quantize_grouped_with_zero_point,
    compute_float8_amax_history,
    compute_float8_scale,
    dequantize_with_sz_map,
    pack_int4,
    quantize_and_dequantize,
    unpack_int4,
    validate_and_resolve_config,
)
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object

_IMPLEMENTED_MODES = ("int8", "int4", "float8", "gptq", "awq")
_CALIBRATED_MODES = ("gptq", "awq")


# ---------------------------------------------------------------- entry points
def quantize_layer(layer, mode=None, type_check=True, config=None) -> None:
    """Quantize one built layer in place (what `Layer.quantize` does)."""
    config = validate_and_resolve_config(mode, config)
    mode = config.mode
    if not layer.built:
        raise ValueError(
            f"Cannot quantize a layer that isn't yet built. Layer '{layer.name}' "
            f"(of type '{type(layer).__name__}') is not built yet."
        )
    if layer.quantization_mode is not None:
        raise ValueError(
            f"Layer '{layer.name}' is already quantized with dtype_policy='{layer.dtype_policy.name}'. Received: mode={mode}"
        )
    if mode == "int8" and layer.compute_dtype == "float16":
        raise ValueError(
            f"Quantization mode='{mode}' doesn't work well with compute_dtype='float16'. Consider loading "
            "model/layer with another dtype policy such as 'mixed_bfloat16' or 'mixed_float16' before calling "
            "`quantize()`."
        )
    kind = _kind(layer, type_check)
    if kind is None:
        raise NotImplementedError(f"Layer {type(layer).__name__} does not have a `quantize` method implemented.")
    if mode not in kind.modes:
        raise NotImplementedError(f"Invalid quantization mode. Expected one of {kind.modes}. Received: quantization_mode={mode}")
    if mode not in _IMPLEMENTED_MODES:
        raise NotImplementedError(f"Quantization mode '{mode}' is not implemented in keramic yet (int8, int4 and float8 are).")
    lora_enabled = layer.__dict__.get("lora_enabled")
    layer.__dict__["lora_enabled"] = False  # as Keras: the base weight is quantized, the LoRA factors stay float
    try:
        getattr(kind, f"quantize_{mode}")(layer, config)
    finally:
        layer.__dict__["lora_enabled"] = lora_enabled
    layer.quantization_config = config
    if mode == "int4":
        block_size = _int4_block_size(layer, config)
        mode = f"int4/{-1 if block_size is None else block_size}"
    elif mode in _CALIBRATED_MODES:
        mode = config.dtype_policy_string()
    layer.dtype_policy = dtype_policies.get(f"{mode}_from_{layer.dtype_policy.name}")


def quantize_model(model, mode=None, config=None, filters=None, **kwargs) -> None:
    """Quantize every leaf layer of `model` that `filters` selects; others warn and stay float."""
    type_check = kwargs.pop("type_check", True)
    if kwargs:
        raise ValueError(f"Unrecognized keyword arguments passed to {type(model).__name__}: {kwargs}")
    if filters is not None and not isinstance(filters, (str, list, tuple)) and not callable(filters):
        raise ValueError(
            f"The `filters` argument must be a regex string, a list of regex strings, or a callable. Received: {type(filters)}"
        )
    for layer in model._flatten_layers():
        if not selected(layer, filters) or len(list(layer._flatten_layers())) != 1:
            continue
        try:
            layer.quantize(mode, type_check=type_check, config=config)
        except NotImplementedError as error:
            warnings.warn(str(error), stacklevel=2)
    if mode in _CALIBRATED_MODES:  # as Keras: calibration runs only when the mode is named
        from keramic import quantization_calibration

        quantization_calibration.calibrate(
            model, config, lambda layer: is_calibrated_kind(layer) and selected(layer, filters), calibration_matrix, finish_calibration
        )


def selected(layer, filters) -> bool:
    """Whether `filters` (a regex, regexes, or a predicate on the layer) picks the layer."""
    if filters is None:
        return True
    if isinstance(filters, str):
        return bool(re.search(filters, layer.name))
    if isinstance(filters, (list, tuple)):
        return any(re.search(pattern, layer.name) for pattern in filters)
    return bool(filters(layer))


def build_weights(layer, shape) -> None:
    """Create the quantized variables of a layer whose policy is already quantized (loading a saved model)."""
    mode = layer.quantization_mode
    kind = _kind(layer, type_check=False)
    if mode not in _IMPLEMENTED_MODES:
        raise NotImplementedError(f"Building a '{mode}'-quantized {type(layer).__name__} is not implemented in keramic yet.")
    getattr(kind, f"build_{mode}")(layer, tuple(shape), layer.quantization_config)
    if mode in _CALIBRATED_MODES:  # a saved GPTQ/AWQ layer is always calibrated
        layer.kernel = None
        layer._calibrated = True


def replaces_kernel(layer) -> bool:
    """Whether the layer's quantized variables stand in for its float kernel (float8 keeps and trains it)."""
    return layer.quantization_mode in ("int8", "int4", *_CALIBRATED_MODES)


def finish_calibration(layer, codes, scale, zero, g_idx, awq_scales=None) -> None:
    """Store a GPTQ/AWQ result (`codes` [columns, rows] in [0, 2**bits - 1]) and drop the float kernel.

    4-bit codes are packed two per byte along the columns, as Keras stores them.
    """
    codes = torch.as_tensor(codes).to(torch.uint8)
    if _calibrated_settings(layer, None)[0] == 4:
        codes = pack_int4(codes, axis=0, dtype="uint8")[0]
    layer.quantized_kernel.assign(codes)
    layer.kernel_scale.assign(scale)
    layer.kernel_zero.assign(torch.as_tensor(zero).to(torch.uint8))
    layer.g_idx.assign(g_idx)
    if awq_scales is not None:
        layer.awq_scales.assign(awq_scales)
    if layer.kernel is not None:
        _drop_variable(layer, layer.kernel)
        layer.kernel = None
    layer._calibrated = True


def is_calibrated_kind(layer) -> bool:
    """Dense, EinsumDense and their subclasses: the layers GPTQ/AWQ calibrate."""
    return _kind(layer, type_check=False) in (_Dense, _EinsumDense)


def calibration_matrix(layer) -> torch.Tensor:
    """The float kernel as GPTQ/AWQ see it: [rows (inputs), columns (outputs)], 3D einsum kernels reshaped."""
    rows, columns = _calibrated_rows_columns(tuple(layer.kernel.shape))
    return torch.as_tensor(layer.kernel).detach().reshape(rows, columns)


def load_without_zero(layer, variables) -> list:
    """The variables a Keras 3.15 GPTQ/AWQ file holds: Keras saves them without `kernel_zero`.

    The zero point is known only for symmetric GPTQ (the middle code, 2**(bits-1)); for the
    other files the information is gone (Keras itself cannot load them), so this raises.
    """
    mode = layer.quantization_mode
    if mode not in _CALIBRATED_MODES:
        return variables
    config = layer.quantization_config
    if mode == "gptq" and isinstance(config, GPTQConfig) and config.symmetric:
        layer.kernel_zero.assign(torch.full(tuple(layer.kernel_zero.shape), 2 ** (config.weight_bits - 1), dtype=torch.uint8))
        return [v for v in variables if v is not layer.kernel_zero]
    raise ValueError(
        f"Layer '{layer.name}': this {mode.upper()} file has no `kernel_zero` (Keras 3.15 omits it when saving), "
        "and its zero points cannot be recovered for asymmetric quantization. Re-save the quantized model "
        "from keramic, or quantize with `symmetric=True` (GPTQ)."
    )


def call(layer, inputs):
    """The quantized forward pass (the layer's activation included); a LoRA layer adds its low-rank term."""
    kind, lora_enabled = _kind(layer, type_check=False), layer.__dict__.get("lora_enabled")
    if lora_enabled and layer.quantization_mode not in ("int8", "int4"):
        raise NotImplementedError(f"Currently, `_{layer.quantization_mode}_call` doesn't support LoRA")
    outputs = getattr(kind, f"call_{layer.quantization_mode}")(layer, inputs)
    if lora_enabled:
        outputs = lora.add_to_outputs(layer, inputs, outputs, kind.lora_product(layer))
    activation = getattr(layer, "activation", None)
    return outputs if activation is None else activation(outputs)


def merged_lora(layer) -> dict:
    """What Keras saves for an int8/int4 layer with LoRA: the dequantized base plus the LoRA update,
    requantized as `quantize` would. Returns {id(variable): the value to save in its place}."""
    kind = _kind(layer, type_check=False)
    base_name = layer._lora_base_name
    delta = lora.delta(layer).detach().float()
    if layer.quantization_mode == "int8":
        values, scale = kind.requantize_int8(layer, delta)
        new = {base_name: values, f"{base_name}_scale": scale}
    else:
        values, scale, zero = kind.requantize_int4(layer, delta)
        new = {base_name: pack_int4(values, axis=-1)[0], f"{base_name}_scale": scale}
        if zero is not None:
            new[f"{base_name}_zero"] = zero
    return {id(getattr(layer, name)): value for name, value in new.items()}


def saving_order(layer) -> list:
    """A quantized layer's variables in the order Keras saves them ("0", "1", ...)."""
    names = _kind(layer, type_check=False).saved_names[layer.quantization_mode]
    return [getattr(layer, name) for name in names if getattr(layer, name, None) is not None]


def config_from(config):
    """A layer's `quantization_config` argument: a config, None, or its saved envelope."""
    if isinstance(config, dict):
        config = deserialize_keras_object(config)
    if config is not None and not isinstance(config, QuantizationConfig):
        raise ValueError(f"`quantization_config` must be a keras.quantizers.QuantizationConfig; received {config!r}.")
    return config


def config_to_json(config):
    """The envelope a layer config stores for its `quantization_config` (None when there is none)."""
    return None if config is None else serialize_keras_object(config)


# ---------------------------------------------------------------- shared pieces
def _drop_variable(layer, variable) -> None:
    """Forget a variable the layer owned (the float kernel a quantized one replaces)."""
    for owned in (layer._own_trainable, layer._own_non_trainable):
        owned[:] = [v for v in owned if v is not variable]
    for key, value in list(layer._parameters.items()):
        if value is variable:
            del layer._parameters[key]
    variable._keramic_registered = False


def _add_int8(layer, name, shape):
    return layer.add_weight(name=name, shape=shape, initializer="zeros", dtype="int8", trainable=False)


def _add_scale(layer, name, shape):
    return layer.add_weight(name=name, shape=shape, initializer="ones", trainable=False)


def _int_product(equation, a, b):
    """An int8 x int8 einsum, exact in int32 (float32 on CUDA, where torch has no integer einsum)."""
    dtype = torch.float32 if a.is_cuda else torch.int32
    return torch.einsum(equation, a.to(dtype), b.to(dtype)).to(torch.int32)


def _with_input_gradient(quantized, inputs, float_kernel, equation):
    """`quantized` forward; the backward pass of the float einsum with the dequantized kernel."""
    if not (torch.is_grad_enabled() and inputs.requires_grad):
        return quantized
    surrogate = torch.einsum(equation, inputs, float_kernel.detach())
    return quantized.detach() + (surrogate - surrogate.detach())


def _activation_quantizer(config):
    return QuantizationConfig.activation_quantizer_or_default(config, AbsMaxQuantizer())


def _int4_block_size(layer, config):
    """Rows per int4 group, None per channel: the config's `block_size`, else the policy's
    (`"int4/128_..."`; a legacy `"int4_from_..."` policy means per channel), as Keras decides."""
    if isinstance(config, Int4QuantizationConfig):
        size = config.block_size
    else:
        size = getattr(layer.dtype_policy, "block_size", None)
    return None if size is None or size == -1 else size


def _build_int4(layer, name, packed_shape, scale_shape, block_size, grouped_length):
    """Packed int4 values `name`, `name_scale`, and for groups `name_zero` and `g_idx` (each position's group)."""
    layer._int4_block_size = block_size
    setattr(layer, name, _add_int8(layer, name, packed_shape))
    setattr(layer, f"{name}_scale", _add_scale(layer, f"{name}_scale", scale_shape))
    if block_size is not None:
        setattr(layer, f"{name}_zero", _add_int8(layer, f"{name}_zero", scale_shape))
        layer.g_idx = layer.add_weight(name="g_idx", shape=(grouped_length,), initializer="zeros", dtype="float32", trainable=False)
        layer.g_idx.assign(torch.div(torch.arange(grouped_length, dtype=torch.float32), block_size, rounding_mode="floor"))


def _assign_int4(layer, name, values, scale, zero):
    getattr(layer, name).assign(pack_int4(values, axis=-1)[0])
    getattr(layer, f"{name}_scale").assign(scale)
    if zero is not None:
        getattr(layer, f"{name}_zero").assign(zero)


def _int4_rows_kernel(kernel, block_size, per_channel_quantizer):
    """`(values, scale, zero)` of a [rows, columns] kernel: symmetric per column, or asymmetric per group of rows."""
    if block_size is not None:
        return abs_max_quantize_grouped_with_zero_point(kernel, block_size)
    values, scale = per_channel_quantizer(kernel, to_numpy=True)
    return values, scale.squeeze(0), None


def _int4_float_kernel(layer, unpacked, compute):
    """A [rows, columns] int4 kernel in float: divided by its column scale, or (q - zero) * scale per group."""
    scale = torch.as_tensor(layer.kernel_scale)
    if layer._int4_block_size is None:
        return unpacked.to(compute) / scale
    zero, g_idx = torch.as_tensor(layer.kernel_zero), torch.as_tensor(layer.g_idx)
    return dequantize_with_sz_map(unpacked, scale, zero, g_idx, group_axis=0).to(compute)


_FLOAT8_NAMES = tuple(f"{prefix}_{kind}" for prefix in ("inputs", "kernel", "outputs_grad") for kind in ("scale", "amax_history"))
_KERNEL_NAMES = {
    "gptq": ("bias", "quantized_kernel", "kernel_scale", "kernel_zero", "g_idx"),
    "awq": ("bias", "quantized_kernel", "kernel_scale", "kernel_zero", "awq_scales", "g_idx"),
    "int8": ("kernel", "bias", "kernel_scale"),
    "int4": ("kernel", "bias", "kernel_scale", "kernel_zero", "g_idx"),
    "float8": ("kernel", "bias", *_FLOAT8_NAMES),
}


def _build_float8(layer, *_) -> None:
    """Scales and max|x| histories for inputs, kernel and output gradients; the optimizer
    overwrites each with its "gradient" (the next value), as Keras's float8 training does."""
    length = getattr(layer.dtype_policy, "amax_history_length", dtype_policies.QuantizedFloat8DTypePolicy.default_amax_history_length)
    for name in _FLOAT8_NAMES:
        shape, initializer = ((), "ones") if name.endswith("scale") else ((length,), "zeros")
        variable = layer.add_weight(
            name=name, shape=shape, initializer=initializer, dtype="float32", autocast=False, overwrite_with_gradient=True
        )
        setattr(layer, name, variable)


_E4M3_MAX, _E5M2_MAX = torch.finfo(torch.float8_e4m3fn).max, torch.finfo(torch.float8_e5m2).max


class _Float8Inputs(torch.autograd.Function):
    """float8 (e4m3) round trip; the gradient passes straight through, and the scale and history
    receive their next values (from the history and this max|x|) as their gradients."""

    @staticmethod
    def forward(ctx, x, scale, amax_history, compute):
        ctx.next_values = (
            compute_float8_scale(amax_history.max(), scale, torch.tensor(_E4M3_MAX, dtype=torch.float32)),
            compute_float8_amax_history(x, amax_history),
        )
        return quantize_and_dequantize(x, scale, "float8_e4m3fn", compute)

    @staticmethod
    def backward(ctx, upstream):
        return (upstream, *ctx.next_values, None)


class _Float8OutputGradient(torch.autograd.Function):
    """Identity forward; the incoming gradient is rounded through float8 (e5m2) at the current scale."""

    @staticmethod
    def forward(ctx, outputs, scale, amax_history, compute):
        ctx.save_for_backward(scale, amax_history)
        ctx.compute = compute
        return outputs.clone()

    @staticmethod
    def backward(ctx, upstream):
        scale, amax_history = ctx.saved_tensors
        next_scale = compute_float8_scale(amax_history.max(), scale, torch.tensor(_E5M2_MAX, dtype=torch.float32))
        rounded = quantize_and_dequantize(upstream, scale, "float8_e5m2", ctx.compute)
        return rounded, next_scale, compute_float8_amax_history(upstream, amax_history), None


def _call_float8(layer, inputs, product):
    """`product(inputs, kernel)` on float8-rounded operands; bias rounded through bfloat16 under float32, as Keras."""
    compute = layer.compute_dtype
    x = _Float8Inputs.apply(inputs, layer.inputs_scale, layer.inputs_amax_history, compute)
    kernel = _Float8Inputs.apply(layer.kernel, layer.kernel_scale, layer.kernel_amax_history, compute)
    outputs = _Float8OutputGradient.apply(product(x, kernel), layer.outputs_grad_scale, layer.outputs_grad_amax_history, compute)
    if layer.bias is not None:
        bias = layer.bias
        if compute == "float32":
            bias = bias.to(torch.bfloat16).to(bias.dtype)
        outputs = outputs + bias
    return outputs


def _calibrated_settings(layer, config):
    """`(weight_bits, group_size)`: the GPTQ/AWQ config's when quantizing, else the policy's (a loaded layer)."""
    if isinstance(config, (GPTQConfig, AWQConfig)):
        return config.weight_bits, config.group_size
    policy = layer._own_policy()
    if not isinstance(policy, (dtype_policies.GPTQDTypePolicy, dtype_policies.AWQDTypePolicy)):
        raise ValueError(
            f"For {layer.quantization_mode.upper()} quantization, the weight bits and group size must be given by a "
            f"`GPTQConfig`/`AWQConfig` or a GPTQ/AWQ dtype policy. Got: {type(policy)}"
        )
    return policy.weight_bits, policy.group_size


def _calibrated_rows_columns(kernel_shape):
    """How Keras flattens a kernel for GPTQ/AWQ: 2D as is; 3D by where its largest axis is
    (first: [in, heads, head_dim] -> [in, heads*head_dim]; else [heads, head_dim, out] -> [heads*head_dim, out])."""
    if len(kernel_shape) == 2:
        return kernel_shape
    if len(kernel_shape) != 3:
        raise ValueError("GPTQ/AWQ quantization only supports 2D or 3D kernels.")
    if kernel_shape.index(max(kernel_shape)) == 0:
        return kernel_shape[0], kernel_shape[1] * kernel_shape[2]
    return kernel_shape[0] * kernel_shape[1], kernel_shape[2]


def _build_calibrated(layer, kernel_shape, config, zero_name):
    """Keras's GPTQ/AWQ variables: codes [packed columns, rows] (uint8), and per output column and
    group of rows a scale and a zero point; AWQ adds a scale per input row."""
    bits, group_size = _calibrated_settings(layer, config)
    rows, columns = _calibrated_rows_columns(kernel_shape)
    groups = 1 if group_size == -1 else -(-rows // group_size)
    layer._calibrated_kernel_shape = kernel_shape
    layer._calibrated = False
    packed = (columns + 1) // 2 if bits == 4 else columns
    layer.quantized_kernel = layer.add_weight(name="kernel", shape=(packed, rows), initializer="zeros", dtype="uint8", trainable=False)
    layer.kernel_scale = _add_scale(layer, "kernel_scale", (columns, groups))
    layer.kernel_zero = layer.add_weight(name=zero_name, shape=(columns, groups), initializer="zeros", dtype="uint8", trainable=False)
    if layer.quantization_mode == "awq" or isinstance(config, AWQConfig):
        layer.awq_scales = _add_scale(layer, "awq_scales", (rows,))
    layer.g_idx = layer.add_weight(name="g_idx", shape=(rows,), initializer="zeros", dtype="float32", trainable=False)
    return columns


def _calibrated_kernel(layer, compute):
    """The float kernel a calibrated layer stands for: ((codes - zero) * scale) per group, transposed,
    divided by AWQ's row scales, in the layer's kernel shape; before calibration, the float kernel."""
    if not layer._calibrated:
        return torch.as_tensor(layer.kernel)
    rows, columns = _calibrated_rows_columns(layer._calibrated_kernel_shape)
    codes = torch.as_tensor(layer.quantized_kernel)
    if codes.shape[0] != columns:
        codes = unpack_int4(codes, columns, axis=0, dtype="uint8")
    scale = torch.as_tensor(layer.kernel_scale)
    weights = dequantize_with_sz_map(codes, scale, torch.as_tensor(layer.kernel_zero), torch.as_tensor(layer.g_idx), group_axis=-1).T
    awq_scales = getattr(layer, "awq_scales", None)
    if awq_scales is not None:
        weights = weights / torch.as_tensor(awq_scales)[:, None]
    return weights.reshape(layer._calibrated_kernel_shape).to(compute)


class _KernelRecipe:
    """What Dense and EinsumDense share: every mode, Keras's kernel variable names, float8's build, GPTQ/AWQ."""

    modes = dtype_policies.QUANTIZATION_MODES
    saved_names = _KERNEL_NAMES
    build_float8 = staticmethod(_build_float8)
    quantize_float8 = staticmethod(_build_float8)
    zero_name = "kernel_zero"

    @classmethod
    def build_gptq(cls, layer, kernel_shape, config):
        _build_calibrated(layer, kernel_shape, config, cls.zero_name)

    build_awq = build_gptq

    @classmethod
    def quantize_gptq(cls, layer, config):
        """Only the variables: `model.quantize` fills them by calibration (the float kernel serves until then)."""
        cls.build_gptq(layer, tuple(layer.kernel.shape), config)

    quantize_awq = quantize_gptq

    @classmethod
    def call_gptq(cls, layer, inputs):
        kernel = _calibrated_kernel(layer, backend.torch_dtype(layer.compute_dtype))
        outputs = cls.product(layer, inputs, kernel)
        return outputs if layer.bias is None else outputs + layer.bias

    call_awq = call_gptq


class _Dense(_KernelRecipe):

    @staticmethod
    def product(layer, inputs, kernel):
        return torch.matmul(inputs, kernel)

    @staticmethod
    def lora_product(layer):
        return torch.matmul

    @staticmethod
    def call_float8(layer, inputs):
        return _call_float8(layer, inputs, torch.matmul)

    @staticmethod
    def build_int8(layer, kernel_shape, config):
        layer.inputs_quantizer = _activation_quantizer(config)
        layer.kernel = _add_int8(layer, "kernel", kernel_shape)
        layer.kernel_scale = _add_scale(layer, "kernel_scale", (kernel_shape[1],))

    @staticmethod
    def requantize_int8(layer, delta):
        merged = torch.as_tensor(layer.kernel).float() / torch.as_tensor(layer.kernel_scale) + delta
        quantizer = QuantizationConfig.weight_quantizer_or_default(layer.quantization_config, AbsMaxQuantizer(axis=0))
        values, scale = quantizer(merged, to_numpy=True)
        return values, scale.squeeze(0)

    @classmethod
    def quantize_int8(cls, layer, config):
        float_kernel = layer.kernel
        quantizer = QuantizationConfig.weight_quantizer_or_default(config, AbsMaxQuantizer(axis=0))
        values, scale = quantizer(torch.as_tensor(float_kernel).detach(), to_numpy=True)
        _drop_variable(layer, float_kernel)
        cls.build_int8(layer, tuple(float_kernel.shape), config)
        layer.kernel.assign(values)
        layer.kernel_scale.assign(scale.squeeze(0))

    @staticmethod
    def call_int8(layer, inputs):
        kernel, kernel_scale = torch.as_tensor(layer.kernel), torch.as_tensor(layer.kernel_scale)
        compute = backend.torch_dtype(layer.compute_dtype)
        float_kernel = kernel.to(compute) / kernel_scale
        if layer.inputs_quantizer:
            quantized_inputs, inputs_scale = layer.inputs_quantizer(inputs, axis=-1)
            product = _int_product("...i,io->...o", quantized_inputs, kernel)
            outputs = product.to(compute) / (kernel_scale * inputs_scale)
        else:
            outputs = torch.matmul(inputs, float_kernel)
        outputs = _with_input_gradient(outputs, inputs, float_kernel, "...i,io->...o")
        if layer.bias is not None:
            outputs = outputs + layer.bias
        return outputs

    @staticmethod
    def build_int4(layer, kernel_shape, config):
        layer.inputs_quantizer = QuantizationConfig.activation_quantizer_or_default(config, None)
        inputs, units = kernel_shape
        block_size = _int4_block_size(layer, config)
        scale_shape = (units,) if block_size is None else (-(-inputs // block_size), units)
        _build_int4(layer, "kernel", (inputs, (units + 1) // 2), scale_shape, block_size, inputs)

    @staticmethod
    def requantize_int4(layer, delta):
        unpacked = unpack_int4(torch.as_tensor(layer.kernel), layer.units, axis=-1)
        merged = _int4_float_kernel(layer, unpacked, torch.float32) + delta
        quantizer = QuantizationConfig.weight_quantizer_or_default(
            layer.quantization_config, AbsMaxQuantizer(axis=0, value_range=(-8, 7))
        )
        return _int4_rows_kernel(merged, layer._int4_block_size, quantizer)

    @classmethod
    def quantize_int4(cls, layer, config):
        float_kernel = layer.kernel
        quantizer = QuantizationConfig.weight_quantizer_or_default(config, AbsMaxQuantizer(axis=0, value_range=(-8, 7)))
        kernel = torch.as_tensor(float_kernel).detach()
        values, scale, zero = _int4_rows_kernel(kernel, _int4_block_size(layer, config), quantizer)
        _drop_variable(layer, float_kernel)
        cls.build_int4(layer, tuple(kernel.shape), config)
        _assign_int4(layer, "kernel", values, scale, zero)

    @staticmethod
    def call_int4(layer, inputs):
        kernel = unpack_int4(torch.as_tensor(layer.kernel), layer.units, axis=-1)
        compute = backend.torch_dtype(layer.compute_dtype)
        float_kernel = _int4_float_kernel(layer, kernel, compute)
        if layer._int4_block_size is not None:
            outputs = torch.matmul(inputs, float_kernel)
        elif layer.inputs_quantizer:  # Keras rescales the integer product, not the kernel
            quantized_inputs, inputs_scale = layer.inputs_quantizer(inputs, axis=-1)
            product = _int_product("...i,io->...o", quantized_inputs, kernel)
            outputs = product.to(compute) / (torch.as_tensor(layer.kernel_scale) * inputs_scale)
        else:
            outputs = torch.matmul(inputs, kernel.to(inputs.dtype)).to(compute) / torch.as_tensor(layer.kernel_scale)
        outputs = _with_input_gradient(outputs, inputs, float_kernel, "...i,io->...o")
        if layer.bias is not None:
            outputs = outputs + layer.bias
        return outputs


class _Embedding:
    modes = ("int8", "int4")

    @staticmethod
    def lora_product(layer):
        return lambda ids, table: torch.nn.functional.embedding(ids.to(torch.int64), table)
    saved_names = {
        "int8": ("embeddings", "embeddings_scale"),
        "int4": ("embeddings", "embeddings_scale", "embeddings_zero", "g_idx"),
    }

    @staticmethod
    def build_int8(layer, shape, config):
        layer.embeddings = _add_int8(layer, "embeddings", shape)
        layer.embeddings_scale = _add_scale(layer, "embeddings_scale", (shape[0],))

    @staticmethod
    def requantize_int8(layer, delta):
        merged = torch.as_tensor(layer.embeddings).float() / torch.as_tensor(layer.embeddings_scale)[:, None] + delta
        quantizer = QuantizationConfig.weight_quantizer_or_default(layer.quantization_config, AbsMaxQuantizer(axis=-1))
        values, scale = quantizer(merged, to_numpy=True)
        return values, scale.squeeze(-1)

    @classmethod
    def quantize_int8(cls, layer, config):
        table = layer.embeddings
        quantizer = QuantizationConfig.weight_quantizer_or_default(config, AbsMaxQuantizer(axis=-1))
        values, scale = quantizer(torch.as_tensor(table).detach(), to_numpy=True)
        _drop_variable(layer, table)
        cls.build_int8(layer, tuple(table.shape), config)
        layer.embeddings.assign(values)
        layer.embeddings_scale.assign(scale.squeeze(-1))

    @staticmethod
    def call_int8(layer, inputs):
        ids = inputs if inputs.dtype in (torch.int32, torch.int64) else inputs.to(torch.int32)
        ids = ids.long()
        rows = torch.nn.functional.embedding(ids, torch.as_tensor(layer.embeddings))
        scale = torch.nn.functional.embedding(ids, torch.as_tensor(layer.embeddings_scale)[:, None])
        return rows.to(backend.torch_dtype(layer.compute_dtype)) / scale

    @staticmethod
    def build_int4(layer, shape, config):
        input_dim, output_dim = shape
        block_size = _int4_block_size(layer, config)
        scale_shape = (input_dim,) if block_size is None else (input_dim, -(-output_dim // block_size))
        _build_int4(layer, "embeddings", (input_dim, (output_dim + 1) // 2), scale_shape, block_size, output_dim)

    @staticmethod
    def _int4_table(values, block_size, config):
        """Rows are the channels here: one scale per token, or groups along each token's vector."""
        if block_size is None:
            quantizer = QuantizationConfig.weight_quantizer_or_default(config, AbsMaxQuantizer(axis=-1, value_range=(-8, 7)))
            values, scale = quantizer(values, to_numpy=True)
            return values, scale.squeeze(-1), None
        return tuple(t.T for t in abs_max_quantize_grouped_with_zero_point(values.T, block_size))

    @classmethod
    def requantize_int4(cls, layer, delta):
        rows = unpack_int4(torch.as_tensor(layer.embeddings), layer.output_dim, axis=-1).float()
        scale = torch.as_tensor(layer.embeddings_scale)
        if layer._int4_block_size is None:
            table = rows / scale[:, None]
        else:
            zero, g_idx = torch.as_tensor(layer.embeddings_zero), torch.as_tensor(layer.g_idx)
            table = dequantize_with_sz_map(rows, scale, zero, g_idx, group_axis=-1)
        return cls._int4_table(table + delta, layer._int4_block_size, layer.quantization_config)

    @classmethod
    def quantize_int4(cls, layer, config):
        table = layer.embeddings
        values, scale, zero = cls._int4_table(torch.as_tensor(table).detach(), _int4_block_size(layer, config), config)
        _drop_variable(layer, table)
        cls.build_int4(layer, (layer.input_dim, layer.output_dim), config)
        _assign_int4(layer, "embeddings", values, scale, zero)

    @staticmethod
    def call_int4(layer, inputs):
        ids = inputs.long()
        rows = unpack_int4(torch.as_tensor(layer.embeddings), layer.output_dim, axis=-1)[ids]
        rows = rows.to(backend.torch_dtype(layer.compute_dtype))
        scale = torch.as_tensor(layer.embeddings_scale)[ids]
        if layer._int4_block_size is None:
            return rows / scale[..., None]
        zero, g_idx = torch.as_tensor(layer.embeddings_zero)[ids], torch.as_tensor(layer.g_idx)
        return dequantize_with_sz_map(rows, scale, zero, g_idx, group_axis=-1)


class _EinsumDense(_KernelRecipe):
    zero_name = "zero_point"

    @staticmethod
    def product(layer, inputs, kernel):
        return torch.einsum(layer.equation, inputs, kernel)

    @staticmethod
    def lora_product(layer):
        return lambda inputs, factor: torch.einsum(layer.equation, inputs, factor)

    @classmethod
    def build_gptq(cls, layer, kernel_shape, config):
        columns = _build_calibrated(layer, kernel_shape, config, cls.zero_name)
        if layer.quantization_mode == "gptq" or isinstance(config, GPTQConfig):
            layer.gptq_unpacked_column_size = columns

    build_awq = build_gptq

    @staticmethod
    def call_float8(layer, inputs):
        return _call_float8(layer, inputs, lambda x, kernel: torch.einsum(layer.equation, x, kernel))

    @staticmethod
    def build_int8(layer, kernel_shape, config):
        info = _einsum_info(layer)
        layer.inputs_quantizer = _activation_quantizer(config)
        layer.quantization_axis = tuple(info.input_reduced)
        layer.kernel = _add_int8(layer, "kernel", kernel_shape)
        scale_shape = [1 if axis in info.kernel_reduced else size for axis, size in enumerate(kernel_shape)]
        layer.kernel_scale = _add_scale(layer, "kernel_scale", info.to_output(torch.ones(scale_shape), "kernel").shape)

    @staticmethod
    def requantize_int8(layer, delta):
        info = _einsum_info(layer)
        merged = torch.as_tensor(layer.kernel).float() / info.to_kernel(torch.as_tensor(layer.kernel_scale)) + delta
        quantizer = QuantizationConfig.weight_quantizer_or_default(
            layer.quantization_config, AbsMaxQuantizer(axis=tuple(info.kernel_reduced))
        )
        values, scale = quantizer(merged, to_numpy=True)
        return values, info.to_output(scale, "kernel")

    @classmethod
    def quantize_int8(cls, layer, config):
        info = _einsum_info(layer)
        float_kernel = layer.kernel
        quantizer = QuantizationConfig.weight_quantizer_or_default(config, AbsMaxQuantizer(axis=tuple(info.kernel_reduced)))
        values, scale = quantizer(torch.as_tensor(float_kernel).detach(), to_numpy=True)
        _drop_variable(layer, float_kernel)
        cls.build_int8(layer, tuple(float_kernel.shape), config)
        layer.kernel.assign(values)
        layer.kernel_scale.assign(info.to_output(scale, "kernel"))

    @staticmethod
    def call_int8(layer, inputs):
        info = _einsum_info(layer)
        kernel, kernel_scale = torch.as_tensor(layer.kernel), torch.as_tensor(layer.kernel_scale)
        compute = backend.torch_dtype(layer.compute_dtype)
        float_kernel = kernel.to(compute) / info.to_kernel(kernel_scale)
        if layer.inputs_quantizer:
            quantized_inputs, inputs_scale = layer.inputs_quantizer(inputs, axis=layer.quantization_axis)
            inputs_scale = info.to_output(inputs_scale, "input")
            product = _int_product(layer.equation, quantized_inputs, kernel)
            outputs = product.to(compute) / (inputs_scale * kernel_scale)
        else:
            outputs = torch.einsum(layer.equation, inputs, float_kernel)
        outputs = _with_input_gradient(outputs, inputs, float_kernel, layer.equation)
        if layer.bias is not None:
            outputs = outputs + layer.bias
        return outputs

    @staticmethod
    def _rows_columns(layer, kernel_shape):
        """The kernel as Keras flattens it for int4: contracted axes' sizes multiplied, then the rest."""
        reduced = _einsum_info(layer).kernel_reduced
        rows = columns = 1
        for axis, size in enumerate(kernel_shape):
            rows, columns = (rows * size, columns) if axis in reduced else (rows, columns * size)
        return rows, columns

    @classmethod
    def build_int4(cls, layer, kernel_shape, config):
        block_size = _int4_block_size(layer, config)
        layer.inputs_quantizer = QuantizationConfig.activation_quantizer_or_default(config, None)
        layer.quantization_axis = tuple(_einsum_info(layer).input_reduced)
        layer._int4_kernel_shape = kernel_shape
        rows, columns = cls._rows_columns(layer, kernel_shape)
        scale_shape = (columns,) if block_size is None else (-(-rows // block_size), columns)
        _build_int4(layer, "kernel", (rows, (columns + 1) // 2), scale_shape, block_size, rows)

    @classmethod
    def requantize_int4(cls, layer, delta):
        rows, columns = cls._rows_columns(layer, layer._int4_kernel_shape)
        unpacked = unpack_int4(torch.as_tensor(layer.kernel), columns, axis=-1)
        merged = _int4_float_kernel(layer, unpacked, torch.float32) + delta.reshape(rows, columns)
        return _int4_rows_kernel(merged, layer._int4_block_size, AbsMaxQuantizer(axis=0, value_range=(-8, 7)))

    @classmethod
    def quantize_int4(cls, layer, config):
        """Keras reshapes (not transposes) the kernel to [rows, columns]; the per-channel quantizer is fixed."""
        float_kernel = layer.kernel
        shape = tuple(float_kernel.shape)
        kernel = torch.as_tensor(float_kernel).detach().reshape(cls._rows_columns(layer, shape))
        quantizer = AbsMaxQuantizer(axis=0, value_range=(-8, 7))
        values, scale, zero = _int4_rows_kernel(kernel, _int4_block_size(layer, config), quantizer)
        _drop_variable(layer, float_kernel)
        cls.build_int4(layer, shape, config)
        _assign_int4(layer, "kernel", values, scale, zero)

    @classmethod
    def call_int4(cls, layer, inputs):
        compute = backend.torch_dtype(layer.compute_dtype)
        columns = cls._rows_columns(layer, layer._int4_kernel_shape)[1]
        unpacked = unpack_int4(torch.as_tensor(layer.kernel), columns, axis=-1)
        float_kernel = _int4_float_kernel(layer, unpacked, compute).reshape(layer._int4_kernel_shape)
        if layer._int4_block_size is None and layer.inputs_quantizer:
            quantized_inputs, inputs_scale = layer.inputs_quantizer(inputs, axis=layer.quantization_axis)
            outputs = torch.einsum(layer.equation, quantized_inputs.to(compute), float_kernel)
            outputs = outputs / _einsum_info(layer).to_output(inputs_scale, "input")
        else:
            outputs = torch.einsum(layer.equation, inputs, float_kernel)
        outputs = _with_input_gradient(outputs, inputs, float_kernel, layer.equation)
        if layer.bias is not None:
            outputs = outputs + layer.bias
        return outputs


class _EinsumInfo:
    """How per-channel scales of an einsum's operands line up with its output.

    A scale keeps the operand's axes with the reduced (contracted) ones set to 1; `to_output`
    permutes, inserts and drops axes so it broadcasts against the einsum's output, and
    `to_kernel` undoes that for the kernel (to dequantize it). The axis bookkeeping is Keras's,
    so the stored `kernel_scale` has Keras's shape.
    """

    def __init__(self, equation: str, input_ndim: int):
        inputs, kernel, outputs = _einsum_specs(equation, input_ndim)
        self.input_reduced = [i for i, label in enumerate(inputs) if label not in outputs]
        self.kernel_reduced = [i for i, label in enumerate(kernel) if label not in outputs]
        self.layout = {"input": self._layout(inputs, outputs, self.input_reduced), "kernel": self._layout(kernel, outputs, self.kernel_reduced)}

    @staticmethod
    def _layout(spec, outputs, reduced):
        expand = [i for i, label in enumerate(outputs) if label not in spec]
        order = [spec.index(label) for label in outputs if label in spec]
        squeeze, position = [], None
        for axis in reduced:
            if expand:
                position = expand.pop(0)
            else:
                squeeze.append(axis)
            order.insert(position, axis)
        return order, expand, squeeze

    def to_output(self, scale, operand):
        order, expand, squeeze = self.layout[operand]
        if order:
            scale = scale.permute(order)
        for axis in sorted(expand):
            scale = scale.unsqueeze(axis)
        if squeeze:
            scale = scale.squeeze(tuple(squeeze))
        return scale

    def to_kernel(self, scale):
        order, expand, squeeze = self.layout["kernel"]
        for axis in sorted(squeeze):
            scale = scale.unsqueeze(axis)
        if expand:
            scale = scale.squeeze(tuple(expand))
        if order:
            scale = scale.permute(sorted(range(len(order)), key=order.__getitem__))
        return scale


def _einsum_specs(equation, input_ndim):
    """(input, kernel, output) subscripts with any `...` spelled out as spare letters."""
    text = equation.replace("...", "0")
    for pattern, side in (
        (r"([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)", None),
        (r"0([a-zA-Z]+),([a-zA-Z]+)->0([a-zA-Z]+)", "left"),
        (r"([a-zA-Z]{2,})0,([a-zA-Z]+)->([a-zA-Z]+)0", "right"),
    ):
        match = re.fullmatch(pattern, text)
        if match is None:
            continue
        inputs, kernel, outputs = match.groups()
        if side is not None:
            spare = sorted(set(string.ascii_letters) - set(inputs + kernel + outputs))
            for letter in spare[: input_ndim - len(inputs)]:
                inputs, outputs = (letter + inputs, letter + outputs) if side == "left" else (inputs + letter, outputs + letter)
        return inputs, kernel, outputs
    raise ValueError(
        f"Invalid einsum equation '{equation}'. Equations must be in the form [X],[Y]->[Z], ...[X],[Y]->...[Z], or [X]...,[Y]->[Z]...."
    )


def _einsum_info(layer) -> _EinsumInfo:
    info = layer.__dict__.get("_einsum_quantization_info")
    if info is None:
        info = _EinsumInfo(layer.equation, layer._input_ndim)
        layer.__dict__["_einsum_quantization_info"] = info
    return info


def _kind(layer, type_check):
    """The quantization recipe a layer class names in `_quantization_kind` (Dense, EinsumDense,
    Embedding); a subclass inherits its parent's only with `type_check=False`, as in Keras."""
    recipes = {"dense": _Dense, "einsum_dense": _EinsumDense, "embedding": _Embedding}
    classes = [type(layer)] if type_check else type(layer).__mro__
    return next((recipes[cls.__dict__["_quantization_kind"]] for cls in classes if "_quantization_kind" in cls.__dict__), None)
