"""Cropping, ZeroPadding and UpSampling 1D/2D/3D: numerics, configs and files against Keras 3."""

import itertools

import numpy as np
import pytest

import keramic
from keramic import Input
from keramic.layers.reshaping import Cropping1D, Cropping2D, Cropping3D, UpSampling1D, UpSampling2D, UpSampling3D, ZeroPadding1D, ZeroPadding3D
from layer_parity import assert_call_parity, assert_layer_parity, to_numpy

FORMATS = ("channels_last", "channels_first")


def _array(spatial, channels, data_format, seed=0):
    shape = (2, *spatial, channels) if data_format == "channels_last" else (2, channels, *spatial)
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


# (class name, argument name, values): every form Keras accepts (int, per-axis ints, per-axis pairs).
SWEEPS = [
    ("Cropping1D", "cropping", [1, (0, 2), [2, 1]]),
    ("Cropping2D", "cropping", [1, (1, 2), ((0, 1), (2, 0))]),
    ("Cropping3D", "cropping", [1, (0, 1, 1), ((1, 0), (0, 1), (1, 1))]),
    ("ZeroPadding1D", "padding", [2, (0, 3)]),
    ("ZeroPadding2D", "padding", [1, (2, 0), ((1, 0), (0, 2))]),
    ("ZeroPadding3D", "padding", [1, (1, 0, 2), ((0, 1), (2, 0), (1, 1))]),
    ("UpSampling1D", "size", [1, 3]),
    ("UpSampling2D", "size", [2, (1, 3)]),
    ("UpSampling3D", "size", [2, (1, 2, 3)]),
]


@pytest.mark.interop
def test_argument_sweeps_match_keras(keras):
    for name, argument, values in SWEEPS:
        rank = int(name[-2])
        has_format = name not in ("Cropping1D", "UpSampling1D")
        for value, data_format in itertools.product(values, FORMATS if has_format else ("channels_last",)):
            kwargs = {argument: value, "name": "r"}
            if has_format:
                kwargs["data_format"] = data_format
            x = _array((6, 7, 5)[:rank], 2, data_format)
            assert_call_parity(getattr(keras.layers, name)(**kwargs), getattr(keramic.layers, name)(**kwargs), x,
                               (name, kwargs))


@pytest.mark.interop
def test_upsampling2d_interpolations_match_keras(keras):
    for interpolation, data_format, size in itertools.product(("nearest", "bilinear", "bicubic"), FORMATS,
                                                              (2, (3, 2))):
        kwargs = dict(size=size, interpolation=interpolation, data_format=data_format, name="up")
        x = _array((3, 4), 2, data_format)
        assert_call_parity(keras.layers.UpSampling2D(**kwargs), UpSampling2D(**kwargs), x, kwargs)


# Each class through the whole harness, files both ways: (class name, arguments, input shape).
FULL_CASES = [
    ("Cropping1D", dict(cropping=(1, 2)), (2, 6, 3)),
    ("Cropping2D", dict(cropping=((1, 0), (0, 2)), data_format="channels_first"), (2, 3, 4, 5)),
    ("Cropping3D", dict(cropping=1), (2, 3, 4, 5, 2)),
    ("ZeroPadding1D", dict(padding=(2, 1)), (2, 4, 3)),
    ("ZeroPadding2D", dict(padding=(1, 2)), (2, 3, 3, 2)),
    ("ZeroPadding3D", dict(padding=((1, 0), (0, 1), (2, 2)), data_format="channels_first"), (2, 2, 2, 3, 2)),
    ("UpSampling1D", dict(size=3), (2, 4, 2)),
    ("UpSampling2D", dict(size=(2, 3), interpolation="bilinear"), (2, 3, 4, 2)),
    ("UpSampling3D", dict(size=(2, 1, 2), data_format="channels_first"), (2, 2, 2, 3, 2)),
]


@pytest.mark.interop
@pytest.mark.parametrize("name, kwargs, shape", FULL_CASES, ids=[c[0] for c in FULL_CASES])
def test_full_parity_with_keras_files(keras, tmp_path, name, kwargs, shape):
    kwargs = dict(kwargs, name="layer")
    x = np.random.default_rng(1).normal(size=shape).astype("float32")
    assert_layer_parity(
        keras, tmp_path, lambda: getattr(keras.layers, name)(**kwargs), lambda: getattr(keramic.layers, name)(**kwargs), x
    )


def test_values_land_where_expected():
    x = np.arange(6, dtype="float32").reshape(1, 3, 2)  # steps 0..2, features 2
    assert to_numpy(UpSampling1D(2)(x))[0, :, 0].tolist() == [0, 0, 2, 2, 4, 4]
    assert to_numpy(ZeroPadding1D((1, 0))(x))[0, :, 1].tolist() == [0, 1, 3, 5]
    assert to_numpy(Cropping1D((1, 1))(x)).tolist() == [[[2, 3]]]
    volume = np.arange(8, dtype="float32").reshape(1, 2, 2, 2, 1)
    up = to_numpy(UpSampling3D((1, 1, 2))(volume))[0, 0, 0, :, 0]
    assert up.tolist() == [0, 0, 1, 1]


def test_symbolic_shapes_keep_unknown_axes_unknown():
    assert Cropping2D(((1, 1), (2, 0)))(Input(shape=(None, 6, 3))).shape == (None, None, 4, 3)
    assert ZeroPadding3D(1)(Input(shape=(None, 2, 2, 1))).shape == (None, None, 4, 4, 1)
    assert UpSampling3D(2, data_format="channels_first")(Input(shape=(3, 2, None, 2))).shape == (None, 3, 4, None, 4)
    assert UpSampling1D(2)(Input(shape=(None, 3))).shape == (None, None, 3)


def test_invalid_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="cropping"):
        Cropping2D((1, 2, 3))
    with pytest.raises(ValueError, match="padding"):
        ZeroPadding3D((1, 2))
    with pytest.raises(ValueError, match="interpolation"):
        UpSampling2D(interpolation="lanczos3")
    with pytest.raises(ValueError, match="cropping"):
        Cropping1D((2, 2))(np.zeros((1, 4, 1), "float32"))
    with pytest.raises(ValueError, match="cropping"):
        Cropping3D(2).compute_output_shape((None, 4, 8, 8, 1))


def test_global_image_data_format_is_the_default_except_for_layers_without_one():
    keramic.config.set_image_data_format("channels_first")
    try:
        assert ZeroPadding1D(1).data_format == "channels_first"
        assert Cropping2D(1).data_format == "channels_first"
        assert keramic.layers.Conv2D(2, 3).data_format == "channels_first"
        assert keramic.layers.GlobalMaxPooling1D().data_format == "channels_first"
        # Cropping1D and UpSampling1D always work on (batch, steps, features).
        assert to_numpy(Cropping1D((1, 0))(np.zeros((1, 4, 2), "float32"))).shape == (1, 3, 2)
        assert to_numpy(UpSampling1D(2)(np.zeros((1, 4, 2), "float32"))).shape == (1, 8, 2)
    finally:
        keramic.config.set_image_data_format("channels_last")
    assert Cropping2D(1).data_format == "channels_last"
