"""Convolution layers: numerics, weights and configs against Keras 3, plus shapes and errors."""

import json

import numpy as np
import pytest
import torch

from keramic import Input
from keramic.layers.conv import Conv1D, Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D


def _numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _json(value):
    return json.loads(json.dumps(value))


def _randomize(keras_layer, rng):
    keras_layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in keras_layer.get_weights()])


def assert_parity(keras_layer, ours, x, case):
    """Same weights in -> same outputs, weight names/shapes/order, config and build config."""
    keras_layer(x)
    _randomize(keras_layer, np.random.default_rng(0))
    expected = _numpy(keras_layer(x))
    ours(x)
    weights = [(w.path, tuple(w.shape)) for w in ours.weights]
    assert weights == [(w.path, tuple(w.shape)) for w in keras_layer.weights], case
    ours.set_weights(keras_layer.get_weights())
    actual = _numpy(ours(x))
    assert actual.shape == expected.shape, case
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=1e-5, err_msg=str(case))
    assert _json(ours.get_config()) == _json(keras_layer.get_config()), case
    assert _json(ours.get_build_config()) == _json(keras_layer.get_build_config()), case
    assert tuple(ours.compute_output_shape(x.shape)) == actual.shape, case


def _image(data_format, height=7, width=6, channels=4, batch=2):
    shape = (batch, height, width, channels) if data_format == "channels_last" else (batch, channels, height, width)
    return np.random.default_rng(1).normal(size=shape).astype("float32")


def _with_data_formats(cases):
    return [(data_format, case) for data_format in ("channels_last", "channels_first") for case in cases]


CONV2D_CASES = [
    dict(filters=3, kernel_size=3),
    dict(filters=3, kernel_size=3, padding="same"),
    dict(filters=3, kernel_size=2, padding="same"),
    dict(filters=3, kernel_size=(3, 2), strides=2, padding="same"),
    dict(filters=3, kernel_size=4, strides=3, padding="same"),
    dict(filters=3, kernel_size=3, strides=(2, 1)),
    dict(filters=3, kernel_size=3, dilation_rate=2, padding="same"),
    dict(filters=3, kernel_size=(2, 3), dilation_rate=(1, 2)),
    dict(filters=4, kernel_size=3, groups=2, padding="same"),
    dict(filters=3, kernel_size=1, use_bias=False, activation="relu"),
]


@pytest.mark.interop
def test_conv2d_matches_keras(keras):
    for data_format, case in _with_data_formats(CONV2D_CASES):
        kwargs = dict(case, data_format=data_format, name="conv")
        assert_parity(keras.layers.Conv2D(**kwargs), Conv2D(**kwargs), _image(data_format), kwargs)


CONV1D_CASES = [
    dict(filters=3, kernel_size=3),
    dict(filters=3, kernel_size=2, padding="same"),
    dict(filters=3, kernel_size=3, strides=2, padding="same"),
    dict(filters=3, kernel_size=3, padding="causal"),
    dict(filters=3, kernel_size=2, padding="causal", dilation_rate=3),
    dict(filters=3, kernel_size=3, padding="causal", strides=2),
    dict(filters=4, kernel_size=3, groups=2, dilation_rate=2),
]


@pytest.mark.interop
def test_conv1d_matches_keras(keras):
    for data_format, case in _with_data_formats(CONV1D_CASES):
        shape = (2, 9, 4) if data_format == "channels_last" else (2, 4, 9)
        x = np.random.default_rng(2).normal(size=shape).astype("float32")
        kwargs = dict(case, data_format=data_format, name="conv1")
        assert_parity(keras.layers.Conv1D(**kwargs), Conv1D(**kwargs), x, kwargs)


TRANSPOSE_CASES = [
    dict(filters=3, kernel_size=3),
    dict(filters=3, kernel_size=3, strides=2),
    dict(filters=3, kernel_size=3, strides=2, padding="same"),
    dict(filters=3, kernel_size=2, strides=2, padding="same"),
    dict(filters=3, kernel_size=4, strides=2, padding="same"),
    dict(filters=3, kernel_size=1, strides=3),
    dict(filters=3, kernel_size=1, strides=3, padding="same"),
    dict(filters=3, kernel_size=3, strides=2, padding="same", output_padding=1),
    dict(filters=3, kernel_size=3, strides=3, padding="same", output_padding=2),
    dict(filters=3, kernel_size=(3, 2), strides=(2, 3), output_padding=(1, 0)),
    dict(filters=3, kernel_size=(3, 1), strides=2, padding="same"),  # one axis cut unevenly, one padded
    dict(filters=3, kernel_size=(1, 3), strides=(3, 2), padding="same", output_padding=(2, 1)),
    dict(filters=3, kernel_size=3, dilation_rate=2, padding="same"),
    dict(filters=3, kernel_size=3, dilation_rate=2, use_bias=False),
]


@pytest.mark.interop
def test_conv2d_transpose_matches_keras(keras):
    for data_format, case in _with_data_formats(TRANSPOSE_CASES):
        x = _image(data_format, 5, 6, 2)
        kwargs = dict(case, data_format=data_format, name="deconv")
        assert_parity(keras.layers.Conv2DTranspose(**kwargs), Conv2DTranspose(**kwargs), x, kwargs)


DEPTHWISE_CASES = [
    dict(kernel_size=3),
    dict(kernel_size=3, depth_multiplier=2, padding="same"),
    dict(kernel_size=2, strides=2, padding="same"),
    dict(kernel_size=3, dilation_rate=2, use_bias=False),
]


@pytest.mark.interop
def test_depthwise_and_separable_match_keras(keras):
    for data_format, case in _with_data_formats(DEPTHWISE_CASES):
        x = _image(data_format, channels=3)
        kwargs = dict(case, data_format=data_format, name="dw")
        assert_parity(keras.layers.DepthwiseConv2D(**kwargs), DepthwiseConv2D(**kwargs), x, kwargs)
        kwargs = dict(kwargs, filters=5, name="sep")
        assert_parity(keras.layers.SeparableConv2D(**kwargs), SeparableConv2D(**kwargs), x, kwargs)


@pytest.mark.interop
def test_configs_with_initializers_regularizers_constraints_match_keras(keras):
    kwargs = dict(
        filters=2,
        kernel_size=3,
        activation="tanh",
        kernel_initializer="he_normal",
        bias_initializer="ones",
        kernel_regularizer="l2",
        bias_regularizer="l1",
        activity_regularizer="l2",
        kernel_constraint="max_norm",
        bias_constraint="non_neg",
        name="c",
    )
    assert _json(Conv2D(**kwargs).get_config()) == _json(keras.layers.Conv2D(**kwargs).get_config())
    deconv = dict(kwargs, output_padding=None)
    assert _json(Conv2DTranspose(**deconv).get_config()) == _json(keras.layers.Conv2DTranspose(**deconv).get_config())
    depthwise = dict(kernel_size=3, depthwise_initializer="zeros", depthwise_regularizer="l2", name="d")
    assert _json(DepthwiseConv2D(**depthwise).get_config()) == _json(keras.layers.DepthwiseConv2D(**depthwise).get_config())
    separable = dict(filters=2, kernel_size=3, pointwise_initializer="ones", pointwise_constraint="unit_norm", name="s")
    assert _json(SeparableConv2D(**separable).get_config()) == _json(keras.layers.SeparableConv2D(**separable).get_config())


def test_config_round_trip_rebuilds_an_equal_layer():
    layer = Conv2D(4, (3, 2), strides=2, padding="same", activation="relu", kernel_regularizer="l2", name="c")
    clone = Conv2D.from_config(_json(layer.get_config()))
    assert _json(clone.get_config()) == _json(layer.get_config())


def test_symbolic_shapes_follow_keras_rules():
    x = Input(shape=(None, 9, 3))
    assert Conv2D(4, 3, strides=2, padding="same")(x).shape == (None, None, 5, 4)
    assert Conv2DTranspose(4, 3, strides=2, padding="same")(x).shape == (None, None, 18, 4)
    assert SeparableConv2D(6, 3)(x).shape == (None, None, 7, 6)
    assert DepthwiseConv2D(3, depth_multiplier=2)(x).shape == (None, None, 7, 6)
    assert Conv1D(5, 3, padding="causal")(Input(shape=(10, 2))).shape == (None, 10, 5)


def test_gradients_reach_every_weight():
    layer = Conv2DTranspose(2, 3, strides=2, padding="same")
    layer(np.zeros((1, 3, 3, 2), "float32")).sum().backward()
    assert all(w.grad is not None for w in layer.trainable_weights)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Conv2D(0, 3),
        lambda: Conv2D(3, 3, groups=2),
        lambda: Conv2D(3, 3, strides=2, dilation_rate=2),
        lambda: Conv2D(3, 0),
        lambda: Conv2D(3, 3, padding="causal"),
        lambda: Conv2D(3, 3, data_format="channels_middle"),
        lambda: Conv2DTranspose(3, 3, strides=2, output_padding=2),
        lambda: DepthwiseConv2D(3, depth_multiplier=0),
    ],
)
def test_invalid_arguments_raise(make):
    with pytest.raises(ValueError):
        make()


def test_build_rejects_channels_not_divisible_by_groups_and_empty_outputs():
    with pytest.raises(ValueError, match="groups"):
        Conv2D(4, 3, groups=2)(np.zeros((1, 5, 5, 3), "float32"))
    with pytest.raises(ValueError, match="zero or negative"):
        Conv2D(4, 5)(np.zeros((1, 3, 3, 1), "float32"))
