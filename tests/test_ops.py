"""`keramic.ops` gives the numbers `keras.ops` gives, so custom layers port unchanged."""

import numpy as np
import pytest

import keramic

RNG = np.random.default_rng(0)
A = RNG.normal(size=(3, 4)).astype("float32")
B = RNG.normal(size=(4, 2)).astype("float32")

CALLS = [
    ("matmul", (A, B), {}),
    ("dot", (A, B), {}),
    ("einsum", ("ij,jk->ik", A, B), {}),
    ("sum", (A,), {"axis": 1}),
    ("mean", (A,), {"axis": 0, "keepdims": True}),
    ("max", (A,), {"axis": -1}),
    ("var", (A,), {"axis": 1}),
    ("std", (A,), {}),
    ("argmax", (A,), {"axis": 1}),
    ("transpose", (A,), {}),
    ("reshape", (A, (2, 6)), {}),
    ("expand_dims", (A, 1), {}),
    ("concatenate", ([A, A],), {"axis": 1}),
    ("stack", ([A, A],), {"axis": 0}),
    ("clip", (A, -0.5, 0.5), {}),
    ("where", (A > 0, A, 0.0 * A), {}),
    ("take", (A, np.array([0, 2])), {"axis": 1}),
    ("one_hot", (np.array([0, 2, 1]), 3), {}),
    ("relu", (A,), {}),
    ("softmax", (A,), {}),
    ("square", (A,), {}),
    ("abs", (A,), {}),
]


@pytest.mark.interop
@pytest.mark.parametrize("name,args,kwargs", CALLS, ids=[c[0] for c in CALLS])
def test_ops_match_keras(keras, name, args, kwargs):
    expected = keras.ops.convert_to_numpy(getattr(keras.ops, name)(*args, **kwargs))
    got = keramic.ops.convert_to_numpy(getattr(keramic.ops, name)(*args, **kwargs))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


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
