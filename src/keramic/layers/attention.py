"""MultiHeadAttention and the EinsumDense projections it is made of (Keras's weight layouts).

Weights: `query`/`key`/`value` kernels `(d_model, heads, key_dim)` with biases `(heads, key_dim)`,
`attention_output` kernel `(heads, value_dim, d_out)` with bias `(d_out,)`.
"""

import functools
import math
import re
import string

import torch

from keramic import activations, backend, constraints, initializers, regularizers
from keramic.layers import lora, quantized, symbolic_masks
from keramic.layers.activations import Softmax
from keramic.layers.base import Layer, weight_settings
from keramic.layers.core import Dropout
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object
from keramic.symbolic import KerasTensor, run_on_placeholders

_EQUATION = re.compile(r"(\.\.\.)?([a-zA-Z]+)(\.\.\.)?,([a-zA-Z]+)->(\.\.\.)?([a-zA-Z]+)(\.\.\.)?")



def _analyze_equation(equation, bias_axes, input_shape, output_shape):
    """Kernel shape, bias shape, full output shape and the kernel's input/output axes.

    `output_shape` gives the output dims other than the first one and the `...` ones, as in Keras.
    """
    match = _EQUATION.fullmatch(equation.replace(" ", ""))
    if not match or match[1] != match[5] or match[3] != match[7] or (match[1] and match[3]):
        raise ValueError(
            f"Invalid einsum equation '{equation}'. Equations must be in the form "
            "[X],[Y]->[Z], ...[X],[Y]->...[Z], or [X]...,[Y]->[Z]...."
        )
    left, right = bool(match[1]), bool(match[3])
    input_spec, weight_spec, output_spec = match[2], match[4], match[6]
    input_shape = tuple(input_shape)
    elided = len(input_shape) - len(input_spec)
    if elided < 0 or (elided and not (left or right)):
        raise ValueError(f"Equation '{equation}' does not fit an input of rank {len(input_shape)}.")
    partial = list(output_shape)
    if left:
        full = list(input_shape[:elided]) + partial
        offset = elided
    else:
        full = [input_shape[0]] + partial + (list(input_shape[len(input_shape) - elided :]) if elided else [])
        offset = 0
    if len(full) - (elided if (left or right) else 0) != len(output_spec):
        raise ValueError(
            f"`output_shape` {tuple(output_shape)} does not match the output spec '{output_spec}' of '{equation}'."
        )
    input_sizes = {dim: input_shape[i + offset] for i, dim in enumerate(input_spec)}
    for i, dim in enumerate(output_spec):
        if dim in input_sizes:
            given = full[i + offset]
            if given is not None and input_sizes[dim] is not None and given != input_sizes[dim]:
                raise ValueError(
                    f"Input shape and output shape do not match at shared dimension '{dim}'. Input shape is "
                    f"{input_sizes[dim]}, and output shape is {given}."
                )
            full[i + offset] = input_sizes[dim] if given is None else given
        elif dim not in weight_spec:
            raise ValueError(
                f"Dimension '{dim}' of the output '{output_spec}' is in neither the input nor the weight spec."
            )
    output_sizes = {dim: full[i + offset] for i, dim in enumerate(output_spec)}
    kernel_shape, input_axes, output_axes = [], [], []
    for i, dim in enumerate(weight_spec):
        if dim in output_sizes and output_sizes[dim] is not None:
            kernel_shape.append(output_sizes[dim])
            output_axes.append(i)
        elif dim in input_sizes:
            kernel_shape.append(input_sizes[dim])
            input_axes.append(i)
        else:
            raise ValueError(
                f"Weight dimension '{dim}' did not have a match in either the input spec '{input_spec}' or the "
                f"output spec '{output_spec}'. For this layer, the weight must be fully specified."
            )
    bias_shape = None
    if bias_axes is not None:
        for dim in bias_axes:
            if dim not in output_spec:
                raise ValueError(
                    f"Bias dimension '{dim}' was requested, but is not part of the output spec '{output_spec}'"
                )
        first = min(output_spec.index(dim) for dim in bias_axes)
        bias_shape = [output_sizes[dim] if dim in bias_axes else 1 for dim in output_spec[first:]]
        if not left:
            bias_shape += [1] * elided
    return kernel_shape, bias_shape, full, input_axes, output_axes


@functools.lru_cache(maxsize=256)
def _matmul_plan(equation: str) -> tuple[int, int]:
    """How many trailing input axes `equation` contracts when it is a plain matrix product (else 0),
    and the input rank it needs (negative: at least that, for a leading `...`).

    That is `[...]FC,CK->[...]FK`: the contracted axes C end the input and start the kernel in the
    same order, and the output is the input's free axes F then the kernel's own axes K. torch's
    einsum then computes the same product as one matmul, but costs tens of microseconds more per call.
    """
    match = _EQUATION.fullmatch(equation.replace(" ", ""))
    if not match or match[3] or match[7] or match[1] != match[5]:
        return 0, 0
    input_spec, weight_spec, output_spec = match[2], match[4], match[6]
    if any(len(set(spec)) != len(spec) for spec in (input_spec, weight_spec, output_spec)):
        return 0, 0
    contracted = "".join(dim for dim in input_spec if dim not in output_spec)
    free, own = input_spec[: len(input_spec) - len(contracted)], weight_spec[len(contracted) :]
    if not contracted or not own or free + contracted != input_spec or not weight_spec.startswith(contracted):
        return 0, 0
    if output_spec != free + own or set(own) & set(input_spec):
        return 0, 0
    return len(contracted), -len(input_spec) if match[1] else len(input_spec)


def _as_matmul(inputs: torch.Tensor, kernel: torch.Tensor, contracted: int) -> torch.Tensor:
    """`inputs` times `kernel` over `contracted` trailing/leading axes, as one matmul."""
    lead, inner = inputs.shape[: inputs.dim() - contracted], kernel.shape[:contracted]
    flat = kernel.reshape(math.prod(inner), -1)
    product = torch.matmul(inputs.reshape(*lead, flat.shape[0]), flat)
    return product.reshape(*lead, *kernel.shape[contracted:])


@keras_export("keras.layers")
class EinsumDense(lora.LoraLayer, Layer):
    """A dense layer written as an einsum: `activation(einsum(equation, inputs, kernel) + bias)`.

    >>> EinsumDense("abc,cde->abde", output_shape=(None, 2, 8), bias_axes="de")
    """

    _quantization_kind = "einsum_dense"  # its recipe in layers/quantized.py
    _saved_variable_names = ("kernel", "bias")  # as Keras's EinsumDense: a subclass's extra variables are not saved
    _lora_base_name = "kernel"
    kernel = lora.LoraWeight("kernel")  # with LoRA enabled: the base kernel plus the low-rank update

    def __init__(
        self,
        equation,
        output_shape,
        activation=None,
        bias_axes=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        lora_rank=None,
        lora_alpha=None,
        gptq_unpacked_column_size=None,
        quantization_config=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        lora.init(self, lora_rank, lora_alpha)
        self.gptq_unpacked_column_size = gptq_unpacked_column_size  # a GPTQ kernel's column count, as Keras saves it
        self.quantization_config = quantized.config_from(quantization_config)
        self.equation = equation
        self.partial_output_shape = (output_shape,) if isinstance(output_shape, int) else tuple(output_shape)
        self.bias_axes = bias_axes
        self.activation = activations.get(activation)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

    def _initializer_for(self, input_axes, output_axes):
        """Variance-scaling initializers need the einsum's fan axes (as in Keras)."""
        initializer = self.kernel_initializer
        if isinstance(initializer, initializers.VarianceScaling) and (
            initializer.input_axes is None or initializer.output_axes is None
        ):
            config = {**initializer.get_config(), "input_axes": input_axes, "output_axes": output_axes}
            config["seed"] = initializer.seed  # as Keras: the seed already drawn, so the same numbers
            return type(initializer).from_config(config)
        return initializer

    def build(self, input_shape):
        kernel_shape, bias_shape, _, input_axes, output_axes = _analyze_equation(
            self.equation, self.bias_axes, input_shape, self.partial_output_shape
        )
        self._input_ndim = len(input_shape)
        self._lora_base_shape = tuple(kernel_shape)
        if self.quantization_mode:
            quantized.build_weights(self, kernel_shape)
        if not quantized.replaces_kernel(self):  # float8 keeps training the float kernel
            self.kernel = self.add_weight(
                shape=kernel_shape,
                initializer=self._initializer_for(input_axes, output_axes),
                regularizer=self.kernel_regularizer,
                constraint=self.kernel_constraint,
                name="kernel",
            )
        self.bias = None
        if bias_shape is not None:
            self.bias = self.add_weight(
                shape=bias_shape,
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
                name="bias",
            )
        if self.lora_rank:  # as Keras 3.15: `lora_alpha` given to the constructor is reset to the rank here
            self.built = True
            self.enable_lora(self.lora_rank)

    def call(self, inputs, training=None):  # as Keras: `training` (unused) may be given, by position too
        if self.quantization_mode:
            return quantized.call(self, inputs)
        kernel = self.kernel
        contracted, rank = _matmul_plan(self.equation)
        if contracted and (inputs.dim() == rank or (rank < 0 and inputs.dim() >= -rank)):
            outputs = _as_matmul(inputs, kernel, contracted)
        else:
            outputs = torch.einsum(self.equation, inputs, kernel)
        if self.bias is not None:
            outputs = outputs + self.bias
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return tuple(_analyze_equation(self.equation, self.bias_axes, input_shape, self.partial_output_shape)[2])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "output_shape": list(self.partial_output_shape),
                "equation": self.equation,
                "activation": activations.serialize(self.activation),
                "bias_axes": self.bias_axes,
                **weight_settings(self, ("kernel", "bias"), activity=True),
                "quantization_config": quantized.config_to_json(self.quantization_config),
                **lora.config(self),
            }
        )
        if self.gptq_unpacked_column_size:
            config["gptq_unpacked_column_size"] = self.gptq_unpacked_column_size
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["quantization_config"] = deserialize_keras_object(config.get("quantization_config"))
        return super().from_config(config)


def _projection(free_dims, bound_dims, output_dims):
    """Einsum equation and bias axes of a projection: free dims pass through, bound dims contract."""
    letters = string.ascii_lowercase
    free = letters[:free_dims]
    bound = letters[free_dims : free_dims + bound_dims]
    out = letters[free_dims + bound_dims : free_dims + bound_dims + output_dims]
    return f"{free}{bound},{bound}{out}->{free}{out}", out


def _keras_mask(tensor):
    return getattr(tensor, "_keras_mask", None) if tensor is not None else None


def _with_query_mask(outputs, query):
    """Symbolic attention output (the first output when scores come too) carries the query's mask, as in Keras."""
    mask = getattr(query, "_keras_mask", None)
    if mask is not None:
        (outputs[0] if isinstance(outputs, (list, tuple)) else outputs)._keras_mask = mask
    return outputs


def _as_bool(mask):
    """Masks may come as bool, int or float (> 0.5 means keep, as Keras's Softmax reads them)."""
    if mask is None:
        return None
    mask = backend.convert_to_tensor(mask)
    if mask.dtype == torch.bool:
        return mask
    return mask > 0.5 if mask.is_floating_point() else mask != 0


def _fresh(initializer):
    """Each projection gets its own copy of the initializer, as in Keras."""
    return initializer.clone() if hasattr(initializer, "clone") else initializer


_PROJECTION_SETTINGS = (
    "kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint", "bias_constraint",
)


def projection_dense(owner, prefix, equation, output_shape, bias_axes, name, activation=None):
    """An EinsumDense projection of an attention layer, with the owner's weight settings
    (read as `prefix + setting`); each projection gets its own copy of the initializers."""
    return EinsumDense(
        equation,
        output_shape=output_shape,
        bias_axes=bias_axes,
        activation=activation,
        kernel_initializer=_fresh(getattr(owner, prefix + "kernel_initializer")),
        bias_initializer=_fresh(getattr(owner, prefix + "bias_initializer")),
        **{setting: getattr(owner, prefix + setting) for setting in _PROJECTION_SETTINGS},
        dtype=owner.dtype_policy,
        name=name,
    )


@functools.lru_cache(maxsize=None)
def _scale_in(scale, dtype):
    """As Keras: the query is scaled by `1/sqrt(key_dim)` cast to the query's dtype first (a
    float16 query sees the float16-rounded scale)."""
    return float(torch.tensor(scale, dtype=dtype))


def _fused_mask_value(dtype):
    """What Keras adds to masked scores before its fused kernel: -0.7 times the dtype's maximum."""
    return -0.7 * (65500.0 if dtype == torch.float16 else 3.38953e38)


def _attention_equations(rank, attention_axes):
    """Keras's einsum equations (scores from key and query; output from scores and value).

    Subclasses written for Keras (`_compute_attention` overrides) use them as attributes.
    """
    letters = string.ascii_lowercase
    target = letters[:rank]
    batch_dims = [axis for axis in range(rank) if axis not in attention_axes and axis != rank - 1]
    source, offset = "", rank
    for axis in range(rank):
        if axis in batch_dims or axis == rank - 1:
            source += target[axis]
        else:
            source += letters[offset]
            offset += 1
    product = "".join([target[a] for a in batch_dims] + [target[a] for a in attention_axes] + [source[a] for a in attention_axes])
    return f"{source},{target}->{product}", f"{product},{source}->{target}"


@keras_export("keras.layers")
class MultiHeadAttention(Layer):
    """Multi-head scaled dot-product attention (Vaswani et al., 2017), Keras's weights and masking.

    The projections are public attributes (`query_dense`, ..., `output_dense`) and the gate a
    private one (`_gate_dense`): Keras's saving walk names them so, and so do our files.

    Masks: the Keras masks of `query` and `value` (and of `key` when given), `attention_mask`
    (`(B, T, S)`, True = attend) and `use_causal_mask` are combined with AND; the output carries
    the query's mask.
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        dropout=0.0,
        use_bias=True,
        output_shape=None,
        attention_axes=None,
        sliding_window=None,
        flash_attention=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        use_gate=False,
        seed=None,
        **kwargs,
    ):
        for argument, value in (("num_heads", num_heads), ("key_dim", key_dim), ("value_dim", value_dim)):
            if (value is not None or argument != "value_dim") and (not isinstance(value, int) or value <= 0):
                raise ValueError(
                    f"Received an invalid value for argument `{argument}`, expected a positive integer. "
                    f"Received: {argument}={value}"
                )
        if sliding_window is not None and (not isinstance(sliding_window, int) or sliding_window <= 0):
            raise ValueError(
                f"`sliding_window` must be `None` or a positive integer. Received: sliding_window={sliding_window}"
            )
        if flash_attention and dropout > 0.0:
            raise ValueError(
                "Dropout is not supported when flash attention is enabled. Please set dropout to 0.0 to use "
                "flash attention."
            )
        super().__init__(**kwargs)
        self.supports_masking = True
        self._num_heads = num_heads
        self._key_dim = key_dim
        self._value_dim = value_dim or key_dim
        self._dropout = dropout
        self._use_bias = use_bias
        self._use_gate = use_gate
        if output_shape:
            output_shape = (output_shape,) if isinstance(output_shape, int) else tuple(output_shape)
        self._output_shape = output_shape or None
        self._flash_attention = bool(flash_attention)
        self._kernel_initializer = initializers.get(kernel_initializer)
        self._bias_initializer = initializers.get(bias_initializer)
        self._kernel_regularizer = regularizers.get(kernel_regularizer)
        self._bias_regularizer = regularizers.get(bias_regularizer)
        self._activity_regularizer = regularizers.get(activity_regularizer)
        self._kernel_constraint = constraints.get(kernel_constraint)
        self._bias_constraint = constraints.get(bias_constraint)
        if isinstance(attention_axes, int):
            attention_axes = (attention_axes,)
        elif attention_axes is not None and not isinstance(attention_axes, (list, tuple)):
            raise ValueError(
                f"`attention_axes` must be an int, list, or tuple. Received: attention_axes={attention_axes}"
            )
        self._attention_axes = None if attention_axes is None else tuple(attention_axes)
        self._sliding_window = sliding_window
        self.seed = seed
        self._scale = 1.0 / math.sqrt(float(key_dim))

    num_heads = property(lambda self: self._num_heads)
    key_dim = property(lambda self: self._key_dim)
    value_dim = property(lambda self: self._value_dim)
    dropout = property(lambda self: self._dropout)
    use_bias = property(lambda self: self._use_bias)
    attention_axes = property(lambda self: self._attention_axes)

    # ------------------------------------------------------------ build
    def _projection_layer(self, input_rank, bound_dims, output_dims, name, activation=None):
        equation, bias_axes = _projection(input_rank - 1, bound_dims, len(output_dims))
        output_shape = [None] * (input_rank - 2) + list(output_dims)
        return projection_dense(self, "_", equation, output_shape, bias_axes if self._use_bias else None, name, activation)

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        if tuple(value_shape[1:-1]) != tuple(key_shape[1:-1]):
            raise ValueError(
                "All dimensions of `value` and `key`, except the last one, must be equal. "
                f"Received: value_shape={value_shape} and key_shape={key_shape}"
            )
        heads = self._num_heads
        self.query_dense = self._projection_layer(len(query_shape), 1, (heads, self._key_dim), "query")
        self.query_dense.build_from_config({"input_shape": query_shape})
        self.key_dense = self._projection_layer(len(key_shape), 1, (heads, self._key_dim), "key")
        self.key_dense.build_from_config({"input_shape": key_shape})
        if self._use_gate:
            self._gate_dense = self._projection_layer(
                len(query_shape), 1, (heads, self._value_dim), "gate", activation="sigmoid"
            )
            self._gate_dense.build_from_config({"input_shape": query_shape})
        self.value_dense = self._projection_layer(len(value_shape), 1, (heads, self._value_dim), "value")
        self.value_dense.build_from_config({"input_shape": value_shape})
        rank = len(value_shape) + 1
        if self._attention_axes is None:
            self._attention_axes = tuple(range(1, rank - 2))
        else:
            self._attention_axes = tuple(axis if axis >= 0 else (rank - 1) + axis for axis in self._attention_axes)
        # Scores are (batch..., heads, query attention axes..., key attention axes...): normalize the last.
        score_axes = tuple(range(rank - 1, rank - 1 + len(self._attention_axes)))
        self._softmax = Softmax(axis=score_axes, dtype=self.dtype_policy)
        self._dropout_layer = Dropout(rate=self._dropout, seed=self.seed, dtype=self.dtype_policy)
        self._dot_product_equation, self._combine_equation = _attention_equations(rank, self._attention_axes)
        output_dims = self._output_shape or (query_shape[-1],)
        self.output_dense = self._projection_layer(len(query_shape), 2, output_dims, "attention_output")
        self.output_dense.build_from_config({"input_shape": (*query_shape[:-1], heads, self._value_dim)})

    # ------------------------------------------------------------ masks
    def _compute_attention_mask(self, query, value, query_mask, value_mask, key_mask, attention_mask, use_causal_mask):
        """AND of the padding masks (`(B,T,1)`, `(B,1,S)`), the causal/sliding masks and `attention_mask`."""
        parts = []
        if query_mask is not None:
            parts.append(query_mask.unsqueeze(-1))
        for mask in (value_mask, key_mask):
            if mask is not None:
                parts.append(mask.unsqueeze(-2))
        steps_q, steps_v = query.shape[1], value.shape[1]
        if use_causal_mask or self._sliding_window is not None:
            rows = torch.arange(steps_q, device=query.device).reshape(1, steps_q, 1)
            cols = torch.arange(steps_v, device=query.device).reshape(1, 1, steps_v)
            if use_causal_mask:
                parts.append(rows >= cols)
            if self._sliding_window is not None:
                parts.append((rows - cols).abs() < self._sliding_window)
        if attention_mask is not None:
            parts.insert(0, attention_mask)
        if not parts:
            return None
        combined = parts[0]
        for part in parts[1:]:
            combined = combined & part
        return combined

    # ------------------------------------------------------------ attention
    def _masked_softmax(self, attention_scores, attention_mask=None):
        """Keras's helper for subclasses: softmax over the key axes, the mask broadcast over the heads."""
        if attention_mask is not None:
            while attention_mask.dim() < attention_scores.dim():
                attention_mask = attention_mask.unsqueeze(-2 * len(self._attention_axes) - 1)
        return self._softmax(attention_scores, mask=attention_mask)

    def _compute_attention(self, query, key, value, attention_mask=None, training=None, return_attention_scores=False,
                           use_causal_mask=False):
        """Attention over projected `(B, ..., heads, dim)` tensors: `(output, scores or None)`.

        Like Keras, 3D inputs without dropout or returned scores use the fused kernel, where a
        fully masked row attends uniformly; the explicit path gives such rows zero weights.
        """
        if self._flash_attention and return_attention_scores:
            raise ValueError(
                "Returning attention scores is not supported when flash attention is enabled. Please disable "
                "flash attention to access attention scores."
            )
        if not (self._dropout > 0.0 or return_attention_scores or query.dim() != 4):
            additive = None
            if attention_mask is not None:
                mask = attention_mask
                while mask.dim() < 4:
                    mask = mask.unsqueeze(-3)
                additive = torch.zeros(mask.shape, dtype=query.dtype, device=query.device).masked_fill(
                    ~mask, _fused_mask_value(query.dtype)
                )
            output = torch.nn.functional.scaled_dot_product_attention(
                query.transpose(1, 2),
                key.transpose(1, 2),
                value.transpose(1, 2),
                attn_mask=additive,
                is_causal=use_causal_mask and additive is None,
                scale=self._scale,
            )
            return output.transpose(1, 2), None
        if use_causal_mask:
            attention_mask = self._compute_attention_mask(query, value, None, None, None, None, True)
        if training and self._dropout > 0.0:
            return self._einsum_attention(query, key, value, attention_mask, training)
        rank, axes = query.dim(), list(self._attention_axes)
        batch_axes = [0] + [axis for axis in range(1, rank - 2) if axis not in axes]
        order = batch_axes + [rank - 2] + axes + [rank - 1]
        heads = query.shape[-2]

        def gather(tensor):
            permuted = tensor.permute(order)
            attended = tuple(permuted.shape[len(batch_axes) + 1 : -1])
            return permuted.reshape(-1, heads, math.prod(attended), permuted.shape[-1]), attended, permuted.shape

        q, q_steps, q_layout = gather(query * _scale_in(self._scale, query.dtype))
        k, k_steps, _ = gather(key)
        v, _, _ = gather(value)
        lead = tuple(q_layout[: len(batch_axes)])
        scores = torch.matmul(q, k.transpose(-1, -2)).reshape(*lead, heads, *q_steps, *k_steps)
        if attention_mask is not None:
            while attention_mask.dim() < scores.dim():
                attention_mask = attention_mask.unsqueeze(-2 * len(axes) - 1)
        probabilities = self._softmax(scores, mask=attention_mask)
        dropped = self._dropout_layer(probabilities, training=training) if self._dropout > 0.0 else probabilities
        output = torch.matmul(dropped.reshape(q.shape[0], heads, q.shape[2], k.shape[2]), v)
        output = output.reshape(*lead, heads, *q_steps, output.shape[-1])
        return output.permute([order.index(axis) for axis in range(rank)]), probabilities

    def _einsum_attention(self, query, key, value, attention_mask, training):
        """Keras's own einsum route, taken while attention dropout is live.

        Unseeded dropout draws its mask in the memory order of the probabilities, and Keras's
        einsum leaves them permuted (size-1 attention axes, say): the same route draws the same mask.
        """
        scores = torch.einsum(self._dot_product_equation, key, query * _scale_in(self._scale, query.dtype))
        probabilities = self._masked_softmax(scores, attention_mask)
        dropped = self._dropout_layer(probabilities, training=training)
        return torch.einsum(self._combine_equation, dropped, value), probabilities

    def call(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=False,
    ):
        value = backend.convert_to_tensor(value) if not isinstance(value, torch.Tensor) else value
        # As Keras 3.15: the query's own Keras mask is used and a `query_mask` argument is not.
        query_mask = _as_bool(_keras_mask(query))
        value_mask = _as_bool(_keras_mask(value) if value_mask is None else value_mask)
        if key is None:
            key = value
        else:
            key = backend.convert_to_tensor(key) if not isinstance(key, torch.Tensor) else key
            key_mask = _as_bool(_keras_mask(key) if key_mask is None else key_mask)
        if attention_mask is not None:  # as Keras: cast to bool, so any non-zero value (even -1e9) keeps
            attention_mask = backend.convert_to_tensor(attention_mask) != 0
        for tensor in (query, value, key):  # as Keras, the inputs' masks are used up here: take them off
            if isinstance(tensor, torch.Tensor) and hasattr(tensor, "_keras_mask"):
                del tensor._keras_mask
        causal_only = (
            use_causal_mask
            and query_mask is None
            and value_mask is None
            and key_mask is None
            and attention_mask is None
            and self._sliding_window is None
            and type(self)._compute_attention is MultiHeadAttention._compute_attention
        )
        if not causal_only:
            attention_mask = self._compute_attention_mask(
                query, value, query_mask, value_mask, key_mask, attention_mask, use_causal_mask
            )
        gate = self._gate_dense(query) if self._use_gate else None
        output, scores = self._compute_attention(
            self.query_dense(query),
            self.key_dense(key),
            self.value_dense(value),
            attention_mask,
            training,
            return_attention_scores,
            # As Keras: passed only when set, so a subclass's `_compute_attention` of Keras's older signature works.
            **({"use_causal_mask": True} if causal_only else {}),
        )
        output = self.output_dense(output if gate is None else output * gate)
        if query_mask is not None:
            output._keras_mask = query_mask
        return (output, scores) if return_attention_scores else output

    @symbolic_masks.in_ops
    def compute_mask(self, inputs, previous_mask):
        """The query's mask, in a graph; eager calls need none: `call` puts it on the attention output
        itself (not on the scores)."""
        return previous_mask if isinstance(previous_mask, KerasTensor) else None

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        query_shape = tuple(query_shape)
        if self._output_shape:
            return query_shape[:-1] + tuple(self._output_shape)
        return query_shape

    def compute_output_spec(self, *args, **kwargs):
        kwargs.setdefault("training", False)
        return _with_query_mask(run_on_placeholders(self.call, args, kwargs), args[0] if args else kwargs.get("query"))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self._num_heads,
                "key_dim": self._key_dim,
                "value_dim": self._value_dim,
                "dropout": self._dropout,
                "use_bias": self._use_bias,
                "use_gate": self._use_gate,
                "output_shape": serialize_keras_object(self._output_shape),
                "attention_axes": serialize_keras_object(self._attention_axes),
                "sliding_window": self._sliding_window,
                **weight_settings(self, ("kernel", "bias"), activity=True, prefix="_"),
                "seed": self.seed,
            }
        )
        return config
