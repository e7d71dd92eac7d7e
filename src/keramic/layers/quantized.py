"""Post-training quantization of Dense, EinsumDense and Embedding (`layer.quantize("int8")`).

A quantized layer swaps its float kernel for an int8 one plus a float scale per output channel,
and records the mode in its dtype policy (`"int8_from_float32"`), which is how a saved model
says which variables to build. Variable names, shapes, the saved order and the arithmetic follow
Keras 3, so `.keras` files move both ways with equal predictions.
"""

import re
import string
import warnings

import torch

from keramic import backend, dtype_policies
from keramic.quantizers import AbsMaxQuantizer, QuantizationConfig, validate_and_resolve_config
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object

_INT8_MODES = ("int8",)


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
    if mode not in _INT8_MODES:
        raise NotImplementedError(f"Quantization mode '{mode}' is not implemented in keramic yet (int8 is).")
    kind.quantize_int8(layer, config)
    layer.quantization_config = config
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
        if not _selected(layer, filters) or len(list(layer._flatten_layers())) != 1:
            continue
        try:
            layer.quantize(mode, type_check=type_check, config=config)
        except NotImplementedError as error:
            warnings.warn(str(error), stacklevel=2)


def _selected(layer, filters) -> bool:
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
    if mode not in _INT8_MODES:
        raise NotImplementedError(f"Building a '{mode}'-quantized {type(layer).__name__} is not implemented in keramic yet.")
    kind.build_int8(layer, tuple(shape), layer.quantization_config)


def call(layer, inputs):
    """The quantized forward pass (the layer's activation included)."""
    outputs = _kind(layer, type_check=False).call_int8(layer, inputs)
    activation = getattr(layer, "activation", None)
    return outputs if activation is None else activation(outputs)


def saving_order(layer) -> list:
    """A quantized layer's variables in the order Keras saves them ("0", "1", ...)."""
    names = _kind(layer, type_check=False).saved_names
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


class _Dense:
    modes = dtype_policies.QUANTIZATION_MODES
    saved_names = ("kernel", "bias", "kernel_scale")

    @staticmethod
    def build_int8(layer, kernel_shape, config):
        layer.inputs_quantizer = _activation_quantizer(config)
        layer.kernel = _add_int8(layer, "kernel", kernel_shape)
        layer.kernel_scale = _add_scale(layer, "kernel_scale", (kernel_shape[1],))

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


class _Embedding:
    modes = ("int8", "int4")
    saved_names = ("embeddings", "embeddings_scale")

    @staticmethod
    def build_int8(layer, shape, config):
        layer.embeddings = _add_int8(layer, "embeddings", shape)
        layer.embeddings_scale = _add_scale(layer, "embeddings_scale", (shape[0],))

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


class _EinsumDense:
    modes = dtype_policies.QUANTIZATION_MODES
    saved_names = ("kernel", "bias", "kernel_scale")

    @staticmethod
    def build_int8(layer, kernel_shape, config):
        info = _einsum_info(layer)
        layer.inputs_quantizer = _activation_quantizer(config)
        layer.quantization_axis = tuple(info.input_reduced)
        layer.kernel = _add_int8(layer, "kernel", kernel_shape)
        scale_shape = [1 if axis in info.kernel_reduced else size for axis, size in enumerate(kernel_shape)]
        layer.kernel_scale = _add_scale(layer, "kernel_scale", info.to_output(torch.ones(scale_shape), "kernel").shape)

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
