"""GroupedQueryAttention (`keras.layers.GroupQueryAttention`): query heads share fewer key/value heads.

Inputs are `(batch, steps, features)`. Weights as in Keras: `query`/`gate` kernels
`(features, query_heads, head_dim)`, `key`/`value` kernels `(features, kv_heads, head_dim)`,
`attention_output` kernel `(query_heads, head_dim, features)`, stored under the private
attribute names Keras's saving walk gives them (`_query_dense`, ...).
"""

import math

import torch

from keramic import constraints, initializers, regularizers
from keramic.layers import symbolic_masks
from keramic.layers.activations import Softmax
from keramic.layers.attention import _as_bool, _fused_mask_value, _keras_mask, _with_query_mask, projection_dense
from keramic.layers.base import Layer, weight_settings
from keramic.layers.core import Dropout
from keramic.serialization.registry import keras_export
from keramic.symbolic import KerasTensor


@keras_export("keras.layers", name="GroupQueryAttention")
class GroupedQueryAttention(Layer):
    """Attention with `num_query_heads` query heads over `num_key_value_heads` shared key/value heads."""

    def __init__(
        self,
        head_dim,
        num_query_heads,
        num_key_value_heads,
        dropout=0.0,
        use_bias=True,
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
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if num_query_heads % num_key_value_heads != 0:
            raise ValueError("`num_query_heads` must be divisible by `num_key_value_heads`.")
        if sliding_window is not None and (not isinstance(sliding_window, int) or sliding_window <= 0):
            raise ValueError(
                f"`sliding_window` must be `None` or a positive integer. Received: sliding_window={sliding_window}"
            )
        if flash_attention and dropout > 0.0:
            raise ValueError(
                "Dropout is not supported when flash attention is enabled. Please set dropout to 0.0 to use "
                "flash attention."
            )
        self.supports_masking = True
        self.head_dim = head_dim
        self.num_query_heads = num_query_heads
        self.num_key_value_heads = num_key_value_heads
        self.num_repeats = num_query_heads // num_key_value_heads
        self.dropout = dropout
        self.use_bias = use_bias
        self.use_gate = use_gate
        self.sliding_window = sliding_window
        self._flash_attention = bool(flash_attention)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.seed = seed
        self._inverse_sqrt_head_dim = 1.0 / math.sqrt(float(head_dim))

    def _dense(self, equation, output_shape, bias_axes, name, activation=None):
        return projection_dense(self, "", equation, output_shape, bias_axes if self.use_bias else None, name, activation)

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        self.feature_dim = query_shape[-1]
        query_heads, kv_heads, head_dim = self.num_query_heads, self.num_key_value_heads, self.head_dim
        self._query_dense = self._dense("bqm,muh->bquh", (None, query_heads, head_dim), "uh", "query")
        self._query_dense.build_from_config({"input_shape": query_shape})
        self._key_dense = self._dense("bkm,mvh->bkvh", (None, kv_heads, head_dim), "vh", "key")
        self._key_dense.build_from_config({"input_shape": key_shape})
        if self.use_gate:
            self._gate_dense = self._dense("bqm,muh->bquh", (None, query_heads, head_dim), "uh", "gate", "sigmoid")
            self._gate_dense.build_from_config({"input_shape": query_shape})
        self._value_dense = self._dense("bkm,mvh->bkvh", (None, kv_heads, head_dim), "vh", "value")
        self._value_dense.build_from_config({"input_shape": value_shape})
        self._softmax = Softmax(axis=-1, dtype=self.dtype_policy)
        self._dropout_layer = Dropout(rate=self.dropout, dtype=self.dtype_policy, seed=self.seed)
        self._output_dense = self._dense("bquh,uhm->bqm", (None, self.feature_dim), "m", "attention_output")
        self._output_dense.build_from_config({"input_shape": (None, None, query_heads, head_dim)})

    def _attention_mask(self, query, value, query_mask, value_mask, key_mask, attention_mask, use_causal_mask):
        """AND of the padding masks, the causal and sliding-window masks and `attention_mask`: `(B, T, S)`."""
        parts = []
        if query_mask is not None:
            parts.append(query_mask.unsqueeze(-1))
        for mask in (value_mask, key_mask):
            if mask is not None:
                parts.append(mask.unsqueeze(-2))
        rows = torch.arange(query.shape[1], device=query.device).reshape(1, -1, 1)
        cols = torch.arange(value.shape[1], device=query.device).reshape(1, 1, -1)
        if use_causal_mask:
            parts.append(rows >= cols)
        if self.sliding_window is not None:
            parts.append((rows - cols).abs() < self.sliding_window)
        if not parts:
            return attention_mask
        combined = parts[0]
        for part in parts[1:]:
            combined = combined & part
        return combined if attention_mask is None else attention_mask & combined

    def _attend(self, query, key, value, attention_mask, training, return_scores, causal_only):
        if self._flash_attention and return_scores:
            raise ValueError(
                "Returning attention scores is not supported when flash attention is enabled. Please disable "
                "flash attention to access attention scores."
            )
        if not (self.dropout > 0.0 or return_scores):
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
                is_causal=causal_only,
                scale=self._inverse_sqrt_head_dim,
            )
            return output.transpose(1, 2), None
        if causal_only:
            attention_mask = self._attention_mask(query, key, None, None, None, None, True)
        scores = torch.einsum("bquh,bkuh->buqk", query * self._inverse_sqrt_head_dim, key)
        if attention_mask is not None:
            while attention_mask.dim() < scores.dim():
                attention_mask = attention_mask.unsqueeze(-3)
        scores = self._softmax(scores, mask=attention_mask)
        dropped = self._dropout_layer(scores, training=training) if self.dropout > 0.0 else scores
        return torch.einsum("buqk,bkuh->bquh", dropped, value), scores

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
        query_mask = _as_bool(_keras_mask(query) if query_mask is None else query_mask)
        value_mask = _as_bool(_keras_mask(value) if value_mask is None else value_mask)
        if key is None:
            key = value
        else:
            key_mask = _as_bool(_keras_mask(key) if key_mask is None else key_mask)
        attention_mask = _as_bool(attention_mask)
        causal_only = (
            use_causal_mask
            and query_mask is None
            and value_mask is None
            and key_mask is None
            and attention_mask is None
            and self.sliding_window is None
        )
        if not causal_only:
            attention_mask = self._attention_mask(
                query, value, query_mask, value_mask, key_mask, attention_mask, use_causal_mask
            )
        gate = self._gate_dense(query) if self.use_gate else None
        projected_query = self._query_dense(query)
        projected_key = self._key_dense(key).repeat_interleave(self.num_repeats, dim=2)
        projected_value = self._value_dense(value).repeat_interleave(self.num_repeats, dim=2)
        output, scores = self._attend(
            projected_query, projected_key, projected_value, attention_mask, training, return_attention_scores, causal_only
        )
        output = self._output_dense(output if gate is None else output * gate)
        if query_mask is not None:
            output._keras_mask = query_mask
        return (output, scores) if return_attention_scores else output

    @symbolic_masks.in_ops
    def compute_mask(self, inputs, previous_mask):
        """The query's mask, in a graph; eager calls need none: `call` puts it on the output itself."""
        return previous_mask if isinstance(previous_mask, KerasTensor) else None

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        value_shape = query_shape if value_shape is None else value_shape
        key_shape = value_shape if key_shape is None else key_shape
        if query_shape[-1] != value_shape[-1]:
            raise ValueError(
                "The last dimension of `query_shape` and `value_shape` must be equal, but are "
                f"{query_shape[-1]}, {value_shape[-1]}. Received: query_shape={query_shape}, value_shape={value_shape}"
            )
        if tuple(value_shape[1:-1]) != tuple(key_shape[1:-1]):
            raise ValueError(
                "All dimensions of `value` and `key`, except the last one, must be equal. "
                f"Received: value_shape={value_shape} and key_shape={key_shape}"
            )
        return tuple(query_shape)

    def compute_output_spec(self, query, value, key=None, return_attention_scores=False, **kwargs):
        output = KerasTensor(
            self.compute_output_shape(query.shape, value.shape, None if key is None else key.shape), self.compute_dtype
        )
        if return_attention_scores:
            source = value if key is None else key
            scores = KerasTensor((query.shape[0], self.num_query_heads, query.shape[1], source.shape[1]), self.compute_dtype)
            return _with_query_mask((output, scores), query)
        return _with_query_mask(output, query)

    def get_config(self):
        config = super().get_config()
        config.pop("activity_regularizer", None)
        config.update(
            {
                "head_dim": self.head_dim,
                "num_query_heads": self.num_query_heads,
                "num_key_value_heads": self.num_key_value_heads,
                "use_bias": self.use_bias,
                "use_gate": self.use_gate,
                "sliding_window": self.sliding_window,
                "dropout": self.dropout,
                **weight_settings(self, ("kernel", "bias"), activity=True),
                "seed": self.seed,
            }
        )
        return config


GroupQueryAttention = keras_export("keras.layers", name="GroupedQueryAttention")(GroupedQueryAttention)
