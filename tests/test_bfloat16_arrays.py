"""Keras hands bfloat16 values around as ml_dtypes arrays (numpy has no bfloat16): they must cross
into keramic tensors and variables and back with every bit kept."""

import numpy as np
import pytest
import torch

import keramic
from keramic import backend

ml_dtypes = pytest.importorskip("ml_dtypes")

# Values that float32 rounding would change or that sit at bfloat16's edges (tiny, huge, -0, inf).
BITS = np.array([0x3FC0, 0xBF80, 0x0001, 0x7F7F, 0x8000, 0x7F80, 0x3A83, 0xC2F7], dtype=np.uint16)


def _bfloat16_array():
    return BITS.view(np.int16).view(ml_dtypes.bfloat16).reshape(2, 4)


def test_convert_to_tensor_keeps_bfloat16_bits():
    array = _bfloat16_array()
    tensor = backend.convert_to_tensor(array)
    assert tensor.dtype == torch.bfloat16
    np.testing.assert_array_equal(tensor.cpu().view(torch.int16).numpy(), array.view(np.int16))
    np.testing.assert_array_equal(backend.convert_to_tensor(array, "float32").cpu().numpy(), array.astype(np.float32))
    assert backend.convert_to_tensor(array[0, 0]).dtype == torch.bfloat16


def test_bfloat16_variable_numpy_round_trips_bits():
    array = _bfloat16_array()
    variable = backend.Variable(array, dtype="bfloat16")
    value = variable.numpy()
    assert value.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(value.view(np.int16), array.view(np.int16))
    variable.assign(np.zeros((2, 4), dtype=ml_dtypes.bfloat16))
    np.testing.assert_array_equal(value.view(np.int16), array.view(np.int16))  # a copy, not a view


def test_set_weights_from_a_bfloat16_keras_layer(keras):
    reference = keras.layers.Dense(3, dtype="bfloat16")
    reference.build((None, 4))
    weights = reference.get_weights()
    assert weights[0].dtype == ml_dtypes.bfloat16
    layer = keramic.layers.Dense(3, dtype="bfloat16")
    layer.build((None, 4))
    layer.set_weights(weights)
    for ours, theirs in zip(layer.get_weights(), weights):
        assert ours.dtype == theirs.dtype
        np.testing.assert_array_equal(ours.view(np.int16), theirs.view(np.int16))
    x = np.arange(8, dtype="float32").reshape(2, 4) / 8
    expected = keras.ops.convert_to_numpy(reference(x)).astype("float32")
    np.testing.assert_array_equal(layer(x).detach().float().cpu().numpy(), expected)
