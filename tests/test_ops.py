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
