"""`keramic.ops` gives the numbers `keras.ops` gives, so custom layers port unchanged."""

import numpy as np

import keramic

# Per-op numbers, dtypes and shapes against real Keras: tests/test_ops_parity.py (table-driven).


def test_a_keras_style_custom_layer_runs_on_ops():
    class Linear(keramic.layers.Layer):
        def __init__(self, units):
            super().__init__()
            self.units = units

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="ones")

        def call(self, x):
            return keramic.ops.relu(keramic.ops.matmul(x, self.w))

    out = Linear(2)(np.ones((1, 3), "float32"))
    np.testing.assert_allclose(keramic.ops.convert_to_numpy(out), [[3.0, 3.0]])


def test_floor_divide_is_differentiable_with_a_zero_gradient():
    """`x // 2` inside a trained graph must not break the backward pass (TensorFlow gives no gradient)."""
    import torch

    from keramic import ops as keramic_ops

    x = torch.tensor([-3.5, 2.0, 7.25], requires_grad=True)
    (keramic_ops.floor_divide(x, 2.0) + x).sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(3))
    torch.testing.assert_close(keramic_ops.floor_divide(x, 2.0).detach(), torch.tensor([-2.0, 1.0, 3.0]))
