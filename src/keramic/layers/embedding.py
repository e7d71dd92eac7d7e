"""Embedding (integer ids -> dense vectors, optionally masking id 0) and ReversibleEmbedding (vectors -> logits too)."""

import warnings

import torch

from keramic import backend, constraints, initializers, ops, regularizers
from keramic.layers import lora, quantized, symbolic_masks
from keramic.layers.base import Layer, weight_settings
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object


@keras_export("keras.layers")
class Embedding(lora.LoraLayer, Layer):
    """Looks each id up in an `(input_dim, output_dim)` table; `mask_zero=True` marks id 0 as padding.

    >>> Embedding(10, 4, mask_zero=True)(np.array([[3, 0]])).shape
    torch.Size([1, 2, 4])
    """

    _quantization_kind = "embedding"  # its recipe in layers/quantized.py
    _saved_variable_names: tuple[str, ...] = ("embeddings",)  # as Keras's Embedding: a subclass's extra variables are not saved
    _lora_base_name = "embeddings"
    embeddings = lora.LoraWeight("embeddings")  # with LoRA enabled: the base table plus the low-rank update

    def __init__(
        self,
        input_dim,
        output_dim,
        embeddings_initializer="uniform",
        embeddings_regularizer=None,
        embeddings_constraint=None,
        mask_zero=False,
        weights=None,
        lora_rank=None,
        lora_alpha=None,
        quantization_config=None,
        **kwargs,
    ):
        for argument, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(
                    f"`{argument}` must be a positive integer. Received: {argument}={value} "
                    f"(of type {type(value).__name__})."
                )
        if kwargs.pop("input_length", None) is not None:
            warnings.warn("Argument `input_length` is deprecated. Just remove it.", stacklevel=2)
        super().__init__(**kwargs)
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = constraints.get(embeddings_constraint)
        self.mask_zero = mask_zero
        self.supports_masking = mask_zero
        self.autocast = False
        self.quantization_config = quantized.config_from(quantization_config)
        lora.init(self, lora_rank, lora_alpha)
        if weights is not None:
            self.build()
            self.set_weights(weights if isinstance(weights, list) else [weights])

    def build(self, input_shape=None):
        if self.built:
            return
        self._lora_base_shape = (self.input_dim, self.output_dim)
        if self.quantization_mode:
            quantized.build_weights(self, (self.input_dim, self.output_dim))
        else:
            self.embeddings = self.add_weight(
                shape=(self.input_dim, self.output_dim),
                initializer=self.embeddings_initializer,
                regularizer=self.embeddings_regularizer,
                constraint=self.embeddings_constraint,
                name="embeddings",
            )
        self.built = True
        if self.lora_rank:  # as Keras 3.15: `lora_alpha` given to the constructor is reset to the rank here
            self.enable_lora(self.lora_rank)

    def call(self, inputs):
        if self.quantization_mode:
            return quantized.call(self, inputs)
        if inputs.dtype not in (torch.int32, torch.int64):
            inputs = inputs.to(torch.int64)
        outputs = torch.nn.functional.embedding(inputs, self.embeddings)
        dtype = backend.torch_dtype(self.compute_dtype)
        return outputs if outputs.dtype == dtype else outputs.to(dtype)

    @symbolic_masks.in_ops
    def compute_mask(self, inputs, previous_mask=None):
        if not self.mask_zero:
            return None
        return ops.not_equal(inputs, 0)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "input_dim": self.input_dim,
                "output_dim": self.output_dim,
                **weight_settings(self, ("embeddings",), activity=True),
                "mask_zero": self.mask_zero,
                "quantization_config": quantized.config_to_json(self.quantization_config),
                **lora.config(self),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["quantization_config"] = deserialize_keras_object(config.get("quantization_config"))
        return super().from_config(config)


@keras_export("keras.layers")
class ReversibleEmbedding(Embedding):
    """An Embedding that also maps vectors back to logits over the vocabulary (`reverse=True`).

    With `tie_weights` the reverse projection is the transposed embedding table; otherwise it is
    its own `(output_dim, input_dim)` weight, `reverse_embeddings`.
    """

    _saved_variable_names = ("embeddings", "reverse_embeddings")

    def __init__(
        self,
        input_dim,
        output_dim,
        tie_weights=True,
        embeddings_initializer="uniform",
        embeddings_regularizer=None,
        embeddings_constraint=None,
        mask_zero=False,
        reverse_dtype=None,
        logit_soft_cap=None,
        **kwargs,
    ):
        super().__init__(
            input_dim,
            output_dim,
            embeddings_initializer=embeddings_initializer,
            embeddings_regularizer=embeddings_regularizer,
            embeddings_constraint=embeddings_constraint,
            mask_zero=mask_zero,
            **kwargs,
        )
        self.tie_weights = tie_weights
        self.reverse_dtype = reverse_dtype
        self.logit_soft_cap = logit_soft_cap

    def build(self, input_shape=None):
        if self.built:
            return
        super().build(input_shape)
        if not self.tie_weights:
            self.reverse_embeddings = self.add_weight(
                shape=(self.output_dim, self.input_dim),
                initializer=self.embeddings_initializer,
                name="reverse_embeddings",
            )

    def call(self, inputs, reverse=False):
        if not reverse:
            outputs = super().call(inputs)
            if self.mask_zero:
                outputs._keras_mask = inputs != 0
            return outputs
        kernel = self.embeddings.T if self.tie_weights else self.reverse_embeddings
        if self.reverse_dtype is not None:
            dtype = backend.torch_dtype(self.reverse_dtype)
            inputs, kernel = inputs.to(dtype), kernel.to(dtype)
        logits = torch.matmul(inputs, kernel)
        if self.logit_soft_cap is not None:
            logits = torch.tanh(logits / self.logit_soft_cap) * self.logit_soft_cap
        return logits

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def compute_output_shape(self, input_shape, reverse=False):
        shape = list(input_shape)
        if reverse:
            shape[-1] = self.input_dim
        else:
            shape.append(self.output_dim)
        return tuple(shape)

    def compute_output_spec(self, inputs, reverse=False):
        from keramic.symbolic import KerasTensor

        return KerasTensor(self.compute_output_shape(inputs.shape, reverse), self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"tie_weights": self.tie_weights, "reverse_dtype": self.reverse_dtype, "logit_soft_cap": self.logit_soft_cap}
        )
        return config
