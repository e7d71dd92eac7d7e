"""SpectralNormalization: keeps a wrapped layer's kernel at spectral norm 1 (power iteration in training).

Like Keras, the wrapper tracks the wrapped layer's `kernel` (or `embeddings`) as its own variable
next to the non-trainable `vector_u`, so weight lists and file paths are Keras's.
"""

import torch

from keramic import initializers
from keramic.layers.wrappers import Wrapper
from keramic.serialization.registry import keras_export

_EPSILON = 1e-7  # Keras's backend.epsilon(): the floor of a vector norm in the power iteration


def _unit(x):
    """`x` scaled to unit L2 norm over all its entries."""
    return x * torch.clamp(torch.rsqrt(x.square().sum()), max=1.0 / _EPSILON)


@keras_export("keras.layers")
class SpectralNormalization(Wrapper):
    """Divides the wrapped layer's kernel by its largest singular value, estimated by power iteration."""

    def __init__(self, layer, power_iterations=1, **kwargs):
        super().__init__(layer, **kwargs)
        if power_iterations <= 0:
            raise ValueError(
                f"`power_iterations` should be greater than zero. Received: `power_iterations={power_iterations}`"
            )
        self.power_iterations = power_iterations

    def build(self, input_shape):
        super().build(input_shape)
        if hasattr(self.layer, "kernel"):
            self.kernel = self.layer.kernel
        elif hasattr(self.layer, "embeddings"):
            self.kernel = self.layer.embeddings
        else:
            raise ValueError(f"{type(self.layer).__name__} object has no attribute 'kernel' nor 'embeddings'")
        self.kernel_shape = tuple(self.kernel.shape)
        self.vector_u = self.add_weight(
            shape=(1, self.kernel_shape[-1]),
            initializer=initializers.TruncatedNormal(stddev=0.02),
            trainable=False,
            name="vector_u",
            dtype=self.kernel.dtype,
        )

    def normalized_weights(self):
        """`(new vector_u, kernel / sigma)` after `power_iterations` steps of power iteration."""
        with torch.no_grad():
            weights = self.kernel.reshape(-1, self.kernel_shape[-1])
            vector_u = self.vector_u.detach()
            for _ in range(self.power_iterations):
                vector_v = _unit(vector_u @ weights.T)
                vector_u = _unit(vector_v @ weights)
            sigma = (vector_v @ weights) @ vector_u.T
            return vector_u, (self.kernel / sigma).reshape(self.kernel_shape)

    def call(self, inputs, training=False):
        if training and bool((self.kernel != 0).any()):
            vector_u, kernel = self.normalized_weights()
            self.vector_u.assign(vector_u)
            self.kernel.assign(kernel)
        return self.layer(inputs).to(inputs.dtype)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "power_iterations": self.power_iterations}
