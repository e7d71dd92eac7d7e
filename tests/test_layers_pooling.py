"""Pooling layers 1D/2D/3D, global and adaptive: numerics, configs and files against Keras 3."""

import itertools

import numpy as np
import pytest
import torch

import keramic
from keramic import Input
from keramic.layers.adaptive_pooling import AdaptiveAveragePooling2D, AdaptiveMaxPooling1D
from keramic.layers.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    AveragePooling3D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
    MaxPooling1D,
    MaxPooling2D,
    MaxPooling3D,
)
from layer_parity import assert_call_parity as assert_parity
from layer_parity import assert_layer_parity
from layer_parity import to_numpy as _numpy

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
        assert_parity(keras.layers.AveragePooling1D(**kwargs), AveragePooling1D(**kwargs), x, kwargs)


def test_uneven_same_average_counts_repeated_edges_like_keras_on_torch():
    # Padding (1 before, 2 after) repeats the edges: [1, 1, 2, 3, 4, 5, 5, 5], windows of 4.
    x = np.arange(1, 6, dtype="float32").reshape(1, 5, 1)
    actual = _numpy(AveragePooling1D(4, strides=1, padding="same")(x)).ravel()
    np.testing.assert_allclose(actual, [1.75, 2.5, 3.5, 4.25, 4.75])


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


CASES_3D = [
    dict(pool_size=2),
    dict(pool_size=(2, 3, 1), strides=(1, 2, 1)),
    dict(pool_size=2, strides=1, padding="same"),  # even padding
    dict(pool_size=3, strides=2, padding="same"),  # uneven on some axes
]


@pytest.mark.interop
def test_3d_pooling_matches_keras(keras):
    rng = np.random.default_rng(5)
    for data_format, case in itertools.product(("channels_last", "channels_first"), CASES_3D):
        kwargs = dict(case, data_format=data_format, name="pool3")
        x = rng.normal(size=(2, 4, 5, 3, 2) if data_format == "channels_last" else (2, 2, 4, 5, 3)).astype("float32")
        assert_parity(keras.layers.MaxPooling3D(**kwargs), MaxPooling3D(**kwargs), x, kwargs)
        assert_parity(keras.layers.AveragePooling3D(**kwargs), AveragePooling3D(**kwargs), x, kwargs)
    for data_format, keepdims in itertools.product(("channels_last", "channels_first"), (False, True)):
        kwargs = dict(data_format=data_format, keepdims=keepdims, name="g3")
        x = rng.normal(size=(2, 3, 4, 2, 3)).astype("float32")
        assert_parity(keras.layers.GlobalAveragePooling3D(**kwargs), GlobalAveragePooling3D(**kwargs), x, kwargs)
        assert_parity(keras.layers.GlobalMaxPooling3D(**kwargs), GlobalMaxPooling3D(**kwargs), x, kwargs)


ADAPTIVE_CASES = [  # (rank, output_size, spatial shape): shrinking, uneven windows, growing
    (1, 3, (7,)),
    (1, 5, (3,)),
    (2, (2, 3), (5, 7)),
    (2, 4, (4, 3)),
    (3, (2, 1, 3), (4, 3, 5)),
]


@pytest.mark.interop
def test_adaptive_pooling_matches_keras(keras):
    rng = np.random.default_rng(6)
    for (rank, output_size, spatial), data_format, mode in itertools.product(
        ADAPTIVE_CASES, ("channels_last", "channels_first"), ("Average", "Max")
    ):
        name = f"Adaptive{mode}Pooling{rank}D"
        kwargs = dict(output_size=output_size, data_format=data_format, name="ap")
        shape = (2, *spatial, 3) if data_format == "channels_last" else (2, 3, *spatial)
        x = rng.normal(size=shape).astype("float32")
        assert_parity(getattr(keras.layers, name)(**kwargs), getattr(keramic.layers, name)(**kwargs), x, (name, kwargs))


# Each class once through the whole harness, files both ways: (class name, arguments, input shape).
FULL_CASES = [
    ("MaxPooling1D", dict(pool_size=3, strides=2, padding="same"), (2, 7, 2)),
    ("MaxPool2D", dict(pool_size=2, data_format="channels_first"), (2, 2, 4, 5)),
    ("MaxPooling3D", dict(pool_size=2, padding="same"), (2, 3, 4, 3, 2)),
    ("AvgPool1D", dict(pool_size=2), (2, 6, 2)),
    ("AveragePooling2D", dict(pool_size=3, strides=2, padding="same"), (2, 6, 5, 2)),
    ("AveragePooling3D", dict(pool_size=(1, 2, 2), data_format="channels_first"), (2, 2, 3, 4, 4)),
    ("GlobalAveragePooling1D", dict(keepdims=True), (2, 5, 3)),
    ("GlobalMaxPool1D", dict(data_format="channels_first"), (2, 3, 5)),
    ("GlobalAvgPool2D", dict(), (2, 4, 3, 2)),
    ("GlobalMaxPooling2D", dict(keepdims=True, data_format="channels_first"), (2, 2, 4, 3)),
    ("GlobalAveragePooling3D", dict(keepdims=True), (2, 2, 3, 2, 2)),
    ("GlobalMaxPooling3D", dict(), (2, 2, 3, 2, 2)),
    ("AdaptiveAveragePooling1D", dict(output_size=2), (2, 5, 2)),
    ("AdaptiveAveragePooling2D", dict(output_size=(2, 3)), (2, 5, 7, 2)),
    ("AdaptiveAveragePooling3D", dict(output_size=2, data_format="channels_first"), (2, 2, 3, 4, 5)),
    ("AdaptiveMaxPooling1D", dict(output_size=3, data_format="channels_first"), (2, 2, 7)),
    ("AdaptiveMaxPooling2D", dict(output_size=2), (2, 5, 4, 2)),
    ("AdaptiveMaxPooling3D", dict(output_size=(1, 2, 2)), (2, 3, 3, 4, 2)),
]


@pytest.mark.interop
@pytest.mark.parametrize("name, kwargs, shape", FULL_CASES, ids=[c[0] for c in FULL_CASES])
def test_full_parity_with_keras_files(keras, tmp_path, name, kwargs, shape):
    kwargs = dict(kwargs, name="layer")
    x = np.random.default_rng(7).normal(size=shape).astype("float32")
    assert_layer_parity(
        keras, tmp_path, lambda: getattr(keras.layers, name)(**kwargs), lambda: getattr(keramic.layers, name)(**kwargs), x
    )


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
    with pytest.raises(ValueError, match="output_size"):
        AdaptiveMaxPooling1D((2, 2))


def test_adaptive_pooling_symbolic_shapes_are_fixed_whatever_the_input():
    assert AdaptiveAveragePooling2D((2, 3))(Input(shape=(None, None, 4))).shape == (None, 2, 3, 4)
    assert AdaptiveMaxPooling1D(5, data_format="channels_first")(Input(shape=(4, None))).shape == (None, 4, 5)
