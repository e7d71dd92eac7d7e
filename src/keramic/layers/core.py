"""Core layers: Dense, Activation, Dropout, the reshaping layers, Identity and Masking."""

import math

import numpy as np
import torch

from keramic import activations, backend, constraints, initializers, ops, regularizers
from keramic import random as keramic_random
from keramic.layers import lora, quantized, symbolic_masks
from keramic.layers.base import Layer, weight_settings
from keramic.layers.input_spec import InputSpec
from keramic.serialization.registry import keras_export


@keras_export("keras.layers")
class Dense(lora.LoraLayer, Layer):
    """`activation(inputs @ kernel + bias)` over the last axis."""

    _quantization_kind = "dense"  # its recipe in layers/quantized.py
    _saved_variable_names = ("kernel", "bias")  # as Keras's Dense: a subclass's extra variables are not saved
    _lora_base_name = "kernel"
    kernel = lora.LoraWeight("kernel")  # with LoRA enabled: the base kernel plus the low-rank update

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        lora_rank=None,
        lora_alpha=None,
        quantization_config=None,
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.input_spec = InputSpec(min_ndim=2)
        lora.init(self, lora_rank, lora_alpha)
        self.quantization_config = quantized.config_from(quantization_config)
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.supports_masking = True

    def build(self, input_shape):
        self.input_spec = InputSpec(min_ndim=2, axes={-1: input_shape[-1]})  # as Keras: checked on every later call
        self._lora_base_shape = (input_shape[-1], self.units)
        if self.quantization_mode:
            quantized.build_weights(self, (input_shape[-1], self.units))
        if not quantized.replaces_kernel(self):  # float8 keeps training the float kernel
            self.kernel = self.add_weight(
                shape=(input_shape[-1], self.units),
                initializer=self.kernel_initializer,
                regularizer=self.kernel_regularizer,
                constraint=self.kernel_constraint,
                name="kernel",
            )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(self.units,),
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
        if not inputs.is_floating_point():  # as Keras's `ops.matmul`: integers promote to the kernel's float
            inputs = inputs.to(kernel.dtype)
        # A product, then the bias, as Keras: a fused `addmm` rounds differently.
        outputs = torch.matmul(inputs, kernel)
        if self.bias is not None:
            outputs = outputs + self.bias
        # Read at each call, as Keras: Grad-CAM sets `activation = None` on a built layer.
        return outputs if self.activation is None or self.activation is activations.linear else self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": activations.serialize(self.activation),
                "use_bias": self.use_bias,
                **weight_settings(self, ("kernel", "bias")),
                "quantization_config": quantized.config_to_json(self.quantization_config),
                **lora.config(self),
            }
        )
        return config


@keras_export("keras.layers")
class Activation(Layer):
    """Applies an activation function."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)
        self.supports_masking = True

    def call(self, inputs):
        return self.activation(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["activation"] = activations.serialize(self.activation)
        return config


@keras_export("keras.layers")
class Dropout(Layer):
    """Zeroes a fraction `rate` of inputs while training and rescales the rest."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate <= 1:
            raise ValueError(f"Invalid value received for argument `rate`. Expected a float in [0, 1]. Received: rate={rate}")
        self.rate = rate
        self.noise_shape = noise_shape
        self.seed = seed
        if rate > 0:  # as Keras: its state is one of `variables`, and its draws are Keras's
            self.seed_generator = keramic_random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        return keramic_random.dropout(inputs, self.rate, noise_shape=self.noise_shape, seed=self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed, "noise_shape": self.noise_shape})
        return config


@keras_export("keras.layers")
class Flatten(Layer):
    """Flattens every axis but the batch axis (channels_first inputs are moved to last first)."""

    _records_build_config = True

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = data_format or backend.image_data_format()

    def call(self, inputs):
        if self.data_format == "channels_first" and inputs.dim() > 2:
            inputs = inputs.movedim(1, -1)
        return inputs.reshape(inputs.shape[0], -1)

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        size = None if any(d is None for d in rest) else int(np.prod(rest))
        return (input_shape[0], size)

    def get_config(self):
        config = super().get_config()
        config["data_format"] = self.data_format
        return config


@keras_export("keras.layers")
class Reshape(Layer):
    """Reshapes the non-batch axes to `target_shape` (one entry may be -1)."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(target_shape)

    def call(self, inputs):
        return inputs.reshape((inputs.shape[0],) + self.target_shape)

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        target = list(self.target_shape)
        if -1 in target:
            known = math.prod(d for d in target if d != -1)
            size = None if any(d is None for d in rest) else math.prod(rest) // known
            target[target.index(-1)] = size
        return (input_shape[0], *target)

    def get_config(self):
        config = super().get_config()
        config["target_shape"] = list(self.target_shape)
        return config


@keras_export("keras.layers")
class Permute(Layer):
    """Permutes the non-batch axes; `dims` counts from 1."""

    _records_build_config = True

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        self.dims = tuple(dims)
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(f"Invalid permutation argument `dims` for Permute Layer. Received: dims={dims}")

    def call(self, inputs):
        return inputs.permute((0,) + self.dims)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(input_shape[d] for d in self.dims)

    def get_config(self):
        config = super().get_config()
        config["dims"] = list(self.dims)
        return config


@keras_export("keras.layers")
class RepeatVector(Layer):
    """Repeats a (batch, features) input `n` times: (batch, n, features)."""

    _records_build_config = True

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        self.n = int(n)

    def call(self, inputs):
        return inputs.unsqueeze(1).expand(-1, self.n, -1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n, input_shape[1])

    def get_config(self):
        config = super().get_config()
        config["n"] = self.n
        return config


@keras_export("keras.layers")
class Identity(Layer):
    """Returns its input unchanged (a placeholder that keeps masks)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


@keras_export("keras.layers")
class Masking(Layer):
    """Masks time steps whose features all equal `mask_value`: they become zeros and carry a False mask."""

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = mask_value
        self.supports_masking = True

    def _keep(self, inputs):
        return (inputs != self.mask_value).any(dim=-1, keepdim=True)

    def call(self, inputs):
        keep = self._keep(inputs)
        outputs = torch.where(keep, inputs, torch.zeros((), dtype=inputs.dtype, device=inputs.device))
        outputs._keras_mask = keep.squeeze(-1)
        return outputs

    @symbolic_masks.in_ops
    def compute_mask(self, inputs, previous_mask):
        if inputs is None:
            return None
        return ops.any(ops.not_equal(inputs, self.mask_value), axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value}
