"""Embedding: integer ids -> dense vectors, optionally masking id 0 for the layers downstream."""

import warnings

import torch

from keramic import backend, constraints, initializers, regularizers
from keramic.layers.base import Layer, weight_settings
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object



@keras_export("keras.layers")
class Embedding(Layer):
    """Looks each id up in an `(input_dim, output_dim)` table; `mask_zero=True` marks id 0 as padding.

    >>> Embedding(10, 4, mask_zero=True)(np.array([[3, 0]])).shape
    torch.Size([1, 2, 4])
    """

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
        if lora_rank is not None or quantization_config is not None:
            raise NotImplementedError("keramic's Embedding does not support LoRA or quantization yet.")
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
        if weights is not None:
            self.build()
            self.set_weights(weights if isinstance(weights, list) else [weights])

    def build(self, input_shape=None):
        if self.built:
            return
        self.embeddings = self.add_weight(
            shape=(self.input_dim, self.output_dim),
            initializer=self.embeddings_initializer,
            regularizer=self.embeddings_regularizer,
            constraint=self.embeddings_constraint,
            name="embeddings",
        )
        self.built = True

    def call(self, inputs):
        if inputs.dtype not in (torch.int32, torch.int64):
            inputs = inputs.to(torch.int64)
        outputs = torch.nn.functional.embedding(inputs, self.embeddings)
        dtype = backend.torch_dtype(self.compute_dtype)
        return outputs if outputs.dtype == dtype else outputs.to(dtype)

    def compute_mask(self, inputs, previous_mask=None):
        if not self.mask_zero:
            return None
        return inputs != 0

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
                "quantization_config": None,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["quantization_config"] = deserialize_keras_object(config.get("quantization_config"))
        return super().from_config(config)
