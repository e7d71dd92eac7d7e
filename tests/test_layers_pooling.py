"""Pooling layers: numerics and configs against Keras 3; TF's "same" averaging by definition."""

import itertools
import json

import numpy as np
import pytest
import torch

from keramic import Input
from keramic.layers.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    MaxPooling1D,
    MaxPooling2D,
)


def _numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _json(value):
    return json.loads(json.dumps(value))


def assert_parity(keras_layer, ours, x, case, **call_kwargs):
    expected = _numpy(keras_layer(x, **call_kwargs))
    actual = _numpy(ours(x, **call_kwargs))
    assert actual.shape == expected.shape, case
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=1e-5, err_msg=str(case))
    assert _json(ours.get_config()) == _json(keras_layer.get_config()), case
    assert ours.get_build_config() is None and keras_layer.get_build_config() is None, case
    assert tuple(ours.compute_output_shape(x.shape)) == actual.shape, case


def _symmetric_same(size, pool, stride):
    total = max((-(-size // stride) - 1) * stride + pool - size, 0)
    return total % 2 == 0


CASES_2D = [
    dict(pool_size=2),
    dict(pool_size=3, strides=2),
    dict(pool_size=(2, 3), strides=(1, 2)),
    dict(pool_size=3, strides=1, padding="same"),
    dict(pool_size=3, strides=2, padding="same"),
    dict(pool_size=2, strides=2, padding="same"),
    dict(pool_size=2, strides=1, padding="same"),
    dict(pool_size=(3, 2), strides=3, padding="same"),
]


@pytest.mark.interop
def test_2d_pooling_matches_keras(keras):
    rng = np.random.default_rng(0)
    for data_format, case in itertools.product(("channels_last", "channels_first"), CASES_2D):
        kwargs = dict(case, data_format=data_format, name="pool")
        shape = (2, 7, 6, 3) if data_format == "channels_last" else (2, 3, 7, 6)
        x = rng.normal(size=shape).astype("float32")
        assert_parity(keras.layers.MaxPooling2D(**kwargs), MaxPooling2D(**kwargs), x, kwargs)
        pool, strides = np.broadcast_to(case["pool_size"], 2), np.broadcast_to(case.get("strides", case["pool_size"]), 2)
        even = all(_symmetric_same(n, p, s) for n, p, s in zip((7, 6), pool, strides))
        if case.get("padding", "valid") == "valid" or even:
            # Keras's torch backend counts replicated padding in uneven "same" windows; see below.
            assert_parity(keras.layers.AveragePooling2D(**kwargs), AveragePooling2D(**kwargs), x, kwargs)


CASES_1D = [
    dict(pool_size=2),
    dict(pool_size=3, strides=2),
    dict(pool_size=3, strides=1, padding="same"),
    dict(pool_size=2, strides=2, padding="same"),
    dict(pool_size=4, strides=3, padding="same"),
]


@pytest.mark.interop
def test_1d_pooling_matches_keras(keras):
    rng = np.random.default_rng(1)
    for data_format, case in itertools.product(("channels_last", "channels_first"), CASES_1D):
        kwargs = dict(case, data_format=data_format, name="pool")
        x = rng.normal(size=(2, 9, 3) if data_format == "channels_last" else (2, 3, 9)).astype("float32")
        assert_parity(keras.layers.MaxPooling1D(**kwargs), MaxPooling1D(**kwargs), x, kwargs)
        if case.get("padding", "valid") == "valid" or _symmetric_same(9, case["pool_size"], case["strides"]):
            assert_parity(keras.layers.AveragePooling1D(**kwargs), AveragePooling1D(**kwargs), x, kwargs)


def _tf_same_average(x, pool, strides):
    """TF's "same" average pooling of a (batch, *spatial, channels) array: the mean of the real values
    in each window, padding (extra after) left out."""
    spatial = x.shape[1:-1]
    outputs = [-(-n // s) for n, s in zip(spatial, strides)]
    starts = [(max((o - 1) * s + k - n, 0)) // 2 for o, s, k, n in zip(outputs, strides, pool, spatial)]
    result = np.zeros((x.shape[0], *outputs, x.shape[-1]), x.dtype)
    for index in itertools.product(*(range(o) for o in outputs)):
        window = tuple(
            slice(max(i * s - b, 0), min(i * s - b + k, n)) for i, s, b, k, n in zip(index, strides, starts, pool, spatial)
        )
        result[(slice(None), *index)] = x[(slice(None), *window)].mean(axis=tuple(range(1, len(spatial) + 1)))
    return result


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_uneven_same_average_leaves_padding_out_like_tf(data_format):
    rng = np.random.default_rng(2)
    for pool, strides in [((3, 3), (2, 2)), ((4, 2), (1, 1)), ((2, 3), (2, 3))]:
        x = rng.normal(size=(2, 7, 6, 3)).astype("float32")
        expected = _tf_same_average(x, pool, strides)
        layer = AveragePooling2D(pool, strides, padding="same", data_format=data_format)
        given = x if data_format == "channels_last" else x.transpose(0, 3, 1, 2)
        actual = _numpy(layer(given))
        if data_format == "channels_first":
            actual = actual.transpose(0, 2, 3, 1)
        np.testing.assert_allclose(actual, expected, atol=1e-6, err_msg=str((pool, strides)))
    x = np.arange(1, 6, dtype="float32").reshape(1, 5, 1)
    assert _numpy(AveragePooling1D(4, strides=1, padding="same")(x)).ravel().tolist() == [2.0, 2.5, 3.5, 4.0, 4.5]


@pytest.mark.interop
def test_global_pooling_matches_keras(keras):
    rng = np.random.default_rng(3)
    for data_format, keepdims in itertools.product(("channels_last", "channels_first"), (False, True)):
        kwargs = dict(data_format=data_format, keepdims=keepdims, name="g")
        x1 = rng.normal(size=(2, 5, 3)).astype("float32")
        x2 = rng.normal(size=(2, 4, 5, 3)).astype("float32")
        assert_parity(keras.layers.GlobalAveragePooling1D(**kwargs), GlobalAveragePooling1D(**kwargs), x1, kwargs)
        assert_parity(keras.layers.GlobalMaxPooling1D(**kwargs), GlobalMaxPooling1D(**kwargs), x1, kwargs)
        assert_parity(keras.layers.GlobalAveragePooling2D(**kwargs), GlobalAveragePooling2D(**kwargs), x2, kwargs)
        assert_parity(keras.layers.GlobalMaxPooling2D(**kwargs), GlobalMaxPooling2D(**kwargs), x2, kwargs)


@pytest.mark.interop
def test_masked_global_average_matches_keras(keras):
    x = np.random.default_rng(4).normal(size=(3, 5, 2)).astype("float32")
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 1, 0, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    for keepdims in (False, True):
        kwargs = dict(keepdims=keepdims, name="g")
        assert_parity(keras.layers.GlobalAveragePooling1D(**kwargs), GlobalAveragePooling1D(**kwargs), x, kwargs, mask=mask)
    cf = x.transpose(0, 2, 1).copy()
    kwargs = dict(data_format="channels_first", name="g")
    assert_parity(keras.layers.GlobalAveragePooling1D(**kwargs), GlobalAveragePooling1D(**kwargs), cf, kwargs, mask=mask)


def test_masked_average_ignores_masked_steps_and_drops_the_mask():
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    x._keras_mask = torch.tensor([[True, True, False]])
    out = GlobalAveragePooling1D()(x)
    assert out.tolist() == [[2.0]]
    assert getattr(out, "_keras_mask", None) is None


def test_default_strides_and_symbolic_shapes():
    assert MaxPooling2D().strides == (2, 2)
    assert MaxPooling1D(3).strides == (3,)
    x = Input(shape=(None, 7, 3))
    assert MaxPooling2D(3, 2, padding="same")(x).shape == (None, None, 4, 3)
    assert AveragePooling2D(3, 2)(x).shape == (None, None, 3, 3)
    assert GlobalMaxPooling2D(keepdims=True)(x).shape == (None, 1, 1, 3)
    assert GlobalAveragePooling1D(data_format="channels_first")(Input(shape=(4, 9))).shape == (None, 4)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError):
        MaxPooling2D(padding="full")
    with pytest.raises(ValueError):
        AveragePooling1D(0)
    with pytest.raises(ValueError):
        GlobalMaxPooling2D(data_format="nchw")
