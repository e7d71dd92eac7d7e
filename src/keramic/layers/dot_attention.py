"""Attention (Luong, dot or concat scores) and AdditiveAttention (Bahdanau), called on `[query, value(, key)]`.

Masks: `mask=[query_mask, value_mask]` (taken from the inputs' Keras masks when not given);
masked values get `-1e9` added to their scores, masked query steps output zeros.
"""

import torch

from keramic import backend, ops
from keramic import random as keramic_random
from keramic.layers import symbolic_masks
from keramic.layers.base import Layer
from keramic.serialization.registry import keras_export
from keramic.symbolic import KerasTensor


def _as_bool(mask):
    return None if mask is None else backend.convert_to_tensor(mask).to(torch.bool)


def _check_inputs(layer, inputs, mask=None):
    name = type(layer).__name__
    if not isinstance(inputs, (list, tuple)):
        raise ValueError(
            f"{name} layer must be called on a list of inputs, namely [query, value] or [query, value, key]. "
            f"Received: inputs={inputs}."
        )
    if not 2 <= len(inputs) <= 3:
        raise ValueError(
            f"{name} layer accepts inputs list of length 2 or 3, namely [query, value] or [query, value, key]. "
            f"Received length: {len(inputs)}."
        )
    if mask is not None:
        if not isinstance(mask, (list, tuple)):
            raise ValueError(f"{name} layer mask must be a list, namely [query_mask, value_mask]. Received: mask={mask}.")
        if not 2 <= len(mask) <= 3:
            raise ValueError(f"{name} layer accepts mask list of length 2 or 3. Received: mask={mask}.")


@keras_export("keras.layers")
class Attention(Layer):
    """Dot-product attention: `softmax(query @ key^T [* scale]) @ value` (or concat/tanh scores)."""

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if score_mode not in ("dot", "concat"):
            raise ValueError(
                f"Invalid value for argument score_mode. Expected one of {{'dot', 'concat'}}. Received: score_mode={score_mode}"
            )
        self.use_scale = use_scale
        self.score_mode = score_mode
        self.dropout = dropout
        self.seed = seed
        if dropout > 0:  # Keras's: one of `variables`, drawn from `random` when unseeded
            self.seed_generator = keramic_random.SeedGenerator(seed)
        self.supports_masking = True

    def build(self, input_shape):
        _check_inputs(self, input_shape)
        self.scale = None
        self.concat_score_weight = None
        if self.use_scale:
            self.scale = self.add_weight(name="scale", shape=(), initializer="ones")
        if self.score_mode == "concat":
            self.concat_score_weight = self.add_weight(name="concat_score_weight", shape=(), initializer="ones")

    def _scores(self, query, key):
        if self.score_mode == "dot":
            scores = torch.matmul(query, key.transpose(-2, -1))
            return scores if self.scale is None else scores * self.scale
        pairs = query.unsqueeze(-2) + key.unsqueeze(-3)
        if self.scale is not None:
            pairs = self.scale * pairs
        return self.concat_score_weight * torch.tanh(pairs).sum(dim=-1)

    def _dropout(self, weights, training):
        if not training or self.dropout <= 0:
            return weights
        return keramic_random.dropout(weights, self.dropout, seed=self.seed_generator)

    def call(self, inputs, mask=None, training=False, return_attention_scores=False, use_causal_mask=False):
        _check_inputs(self, inputs, mask)
        query, value = inputs[0], inputs[1]
        key = inputs[2] if len(inputs) > 2 else value
        query_mask = _as_bool(mask[0]) if mask else None
        value_mask = _as_bool(mask[1]) if mask else None
        scores = self._scores(query, key)
        keep = None if value_mask is None else value_mask.unsqueeze(-2)
        if use_causal_mask:
            steps_q, steps_v = scores.shape[-2], scores.shape[-1]
            causal = torch.ones((steps_q, steps_v), dtype=torch.bool, device=scores.device).tril().unsqueeze(0)
            keep = causal if keep is None else keep & causal
        if keep is not None:
            big = 65504.0 if scores.dtype == torch.float16 else 1.0e9
            scores = torch.where(keep, scores, scores - big)
        ops.nn.warn_if_softmax_over_one(scores, -1)
        weights = torch.softmax(scores, dim=-1)
        output = torch.matmul(self._dropout(weights, training), value)
        if query_mask is not None:
            output = torch.where(query_mask.unsqueeze(-1), output, torch.zeros((), dtype=output.dtype, device=output.device))
        return (output, weights) if return_attention_scores else output

    @symbolic_masks.in_ops
    def compute_mask(self, inputs, previous_mask=None):
        if previous_mask is None or previous_mask[0] is None:
            return None
        return ops.convert_to_tensor(previous_mask[0])

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], input_shape[1][-1])

    def compute_output_spec(self, inputs, mask=None, return_attention_scores=False, training=None, use_causal_mask=False):
        _check_inputs(self, inputs, mask)
        query, value = inputs[0], inputs[1]
        key = inputs[2] if len(inputs) > 2 else value
        output = KerasTensor(self.compute_output_shape([query.shape, value.shape]), self.compute_dtype)
        if return_attention_scores:
            return output, KerasTensor((*query.shape[:-1], key.shape[-2]), self.compute_dtype)
        return output

    def get_config(self):
        config = super().get_config()
        config.update({"use_scale": self.use_scale, "score_mode": self.score_mode, "dropout": self.dropout, "seed": self.seed})
        return config


@keras_export("keras.layers")
class AdditiveAttention(Attention):
    """Additive attention: scores are `sum(scale * tanh(query + key))` over the feature axis."""

    def __init__(self, use_scale=True, dropout=0.0, **kwargs):
        super().__init__(use_scale=use_scale, dropout=dropout, **kwargs)

    def build(self, input_shape):
        _check_inputs(self, input_shape)
        self.scale = None
        if self.use_scale:
            self.scale = self.add_weight(name="scale", shape=(input_shape[0][-1],), initializer="glorot_uniform")

    def _scores(self, query, key):
        pairs = torch.tanh(query.unsqueeze(-2) + key.unsqueeze(-3))
        return (pairs if self.scale is None else self.scale * pairs).sum(dim=-1)

    def get_config(self):
        config = super().get_config()
        del config["score_mode"]
        return config
