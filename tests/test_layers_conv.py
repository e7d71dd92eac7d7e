"""Convolution layers: numerics, weights, configs and files against Keras 3, plus shapes and errors.

Wide argument sweeps use the light `assert_call_parity`; one or two cases per class go through the
full harness (`assert_layer_parity`: files both ways and a training step).
"""

import inspect

import numpy as np
import pytest

import keramic
from keramic import Input
from keramic.layers.conv import Conv1D, Conv2D, Conv3D
from keramic.layers.conv_transpose import Conv1DTranspose, Conv2DTranspose, Conv3DTranspose
from keramic.layers.depthwise import DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D
from layer_parity import assert_call_parity as assert_parity
from layer_parity import assert_layer_parity
from layer_parity import json_normalised as _json


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
    dict(kernel_size=2, strides=2, dilation_rate=2, padding="same"),  # Keras allows both here, unlike Conv
]


@pytest.mark.interop
def test_depthwise_and_separable_match_keras(keras):
    for data_format, case in _with_data_formats(DEPTHWISE_CASES):
        x = _image(data_format, channels=3)
        kwargs = dict(case, data_format=data_format, name="dw")
        assert_parity(keras.layers.DepthwiseConv2D(**kwargs), DepthwiseConv2D(**kwargs), x, kwargs)
        kwargs = dict(kwargs, filters=5, name="sep")
        assert_parity(keras.layers.SeparableConv2D(**kwargs), SeparableConv2D(**kwargs), x, kwargs)


def _array(spatial, channels, data_format, batch=2, seed=3):
    """A random batch with the given spatial shape, channels placed as `data_format` says."""
    shape = (batch, *spatial, channels) if data_format == "channels_last" else (batch, channels, *spatial)
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


CONV3D_CASES = [
    dict(filters=2, kernel_size=2),
    dict(filters=2, kernel_size=(3, 2, 1), strides=(2, 1, 2), padding="same"),
    dict(filters=2, kernel_size=2, dilation_rate=(2, 1, 1), padding="same", activation="relu"),
    dict(filters=4, kernel_size=1, groups=2, use_bias=False),
]


@pytest.mark.interop
def test_conv3d_matches_keras(keras):
    for data_format, case in _with_data_formats(CONV3D_CASES):
        kwargs = dict(case, data_format=data_format, name="conv3")
        x = _array((4, 5, 3), 2, data_format)
        assert_parity(keras.layers.Conv3D(**kwargs), Conv3D(**kwargs), x, kwargs)


TRANSPOSE_1D_CASES = [
    dict(filters=2, kernel_size=3),
    dict(filters=2, kernel_size=3, strides=2, padding="same"),
    dict(filters=2, kernel_size=2, strides=3, output_padding=1),
    dict(filters=2, kernel_size=3, dilation_rate=2, padding="same", use_bias=False),
]
TRANSPOSE_3D_CASES = [
    dict(filters=2, kernel_size=2),
    dict(filters=2, kernel_size=(3, 2, 1), strides=(2, 1, 2), padding="same"),
    dict(filters=2, kernel_size=3, strides=2, output_padding=(1, 0, 1)),
]


@pytest.mark.interop
def test_conv1d_and_conv3d_transpose_match_keras(keras):
    for data_format, case in _with_data_formats(TRANSPOSE_1D_CASES):
        kwargs = dict(case, data_format=data_format, name="deconv1")
        x = _array((5,), 3, data_format)
        assert_parity(keras.layers.Conv1DTranspose(**kwargs), Conv1DTranspose(**kwargs), x, kwargs)
    for data_format, case in _with_data_formats(TRANSPOSE_3D_CASES):
        kwargs = dict(case, data_format=data_format, name="deconv3")
        x = _array((3, 2, 3), 2, data_format)
        assert_parity(keras.layers.Conv3DTranspose(**kwargs), Conv3DTranspose(**kwargs), x, kwargs)


@pytest.mark.interop
def test_depthwise_and_separable_1d_match_keras(keras):
    for data_format, case in _with_data_formats(DEPTHWISE_CASES):
        x = _array((9,), 3, data_format)
        kwargs = dict(case, data_format=data_format, name="dw1")
        assert_parity(keras.layers.DepthwiseConv1D(**kwargs), DepthwiseConv1D(**kwargs), x, kwargs)
        kwargs = dict(kwargs, filters=4, name="sep1")
        assert_parity(keras.layers.SeparableConv1D(**kwargs), SeparableConv1D(**kwargs), x, kwargs)


# One or two cases per class through the whole harness: (class name, arguments, spatial shape, channels).
FULL_CASES = [
    ("Conv1D", dict(filters=3, kernel_size=3, padding="causal", dilation_rate=2), (7,), 2),
    ("Conv2D", dict(filters=4, kernel_size=3, strides=2, padding="same", groups=2, activation="relu"), (5, 6), 4),
    ("Conv2D", dict(filters=3, kernel_size=2, data_format="channels_first"), (4, 5), 2),
    ("Conv3D", dict(filters=2, kernel_size=2, padding="same"), (3, 4, 3), 2),
    ("Conv1DTranspose", dict(filters=2, kernel_size=3, strides=2, padding="same"), (4,), 3),
    ("Conv2DTranspose", dict(filters=2, kernel_size=3, strides=2, output_padding=1, data_format="channels_first"),
     (3, 4), 2),
    ("Conv3DTranspose", dict(filters=2, kernel_size=2, strides=2), (2, 3, 2), 2),
    ("DepthwiseConv1D", dict(kernel_size=3, depth_multiplier=2, padding="same"), (6,), 2),
    ("DepthwiseConv2D", dict(kernel_size=2, strides=2, data_format="channels_first"), (4, 5), 3),
    ("SeparableConv1D", dict(filters=3, kernel_size=2, dilation_rate=2), (7,), 2),
    ("SeparableConv2D", dict(filters=3, kernel_size=3, depth_multiplier=2, padding="same"), (4, 5), 2),
    ("Convolution2D", dict(filters=2, kernel_size=1, use_bias=False), (3, 3), 2),
    # Regularizers add to the training loss and constraints apply after the step, as in Keras.
    ("Conv2D", dict(filters=2, kernel_size=2, kernel_regularizer="l2", bias_regularizer="l1",
                    activity_regularizer="l2", kernel_constraint="max_norm"), (4, 4), 3),
    ("SeparableConv1D", dict(filters=2, kernel_size=2, pointwise_regularizer="l1", depthwise_constraint="unit_norm",
                             activity_regularizer="l1"), (5,), 2),
]


@pytest.mark.interop
@pytest.mark.parametrize("name, kwargs, spatial, channels", FULL_CASES, ids=[c[0] for c in FULL_CASES])
def test_full_parity_with_keras_files_and_training(keras, tmp_path, name, kwargs, spatial, channels):
    kwargs = dict(kwargs, name="layer")
    x = _array(spatial, channels, kwargs.get("data_format", "channels_last"))
    assert_layer_parity(
        keras,
        tmp_path,
        lambda: getattr(keras.layers, name)(**kwargs),
        lambda: getattr(keramic.layers, name)(**kwargs),
        x,
    )


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


class _OffByOneConv2D(Conv2D):
    """Same config and weights as Conv2D, wrong numbers: the harness must notice."""

    def call(self, inputs):
        return super().call(inputs) + 1e-3


@pytest.mark.interop
def test_harness_rejects_a_layer_that_differs(keras, tmp_path):
    x = _array((4, 4), 2, "channels_last")
    with pytest.raises(AssertionError, match="prediction"):
        assert_layer_parity(keras, tmp_path, lambda: keras.layers.Conv2D(2, 2, name="c"),
                            lambda: _OffByOneConv2D(2, 2, name="c"), x)
    with pytest.raises(AssertionError, match="get_config"):
        assert_layer_parity(keras, tmp_path, lambda: keras.layers.Conv2D(2, 2, name="c"),
                            lambda: Conv2D(2, 2, activation="relu", name="c"), x)
    with pytest.raises(AssertionError, match="weights"):
        assert_layer_parity(keras, tmp_path, lambda: keras.layers.Conv2D(2, 2, name="c"),
                            lambda: Conv2D(2, 2, use_bias=False, name="c"), x)


@pytest.mark.interop
def test_every_keras_alias_of_the_spatial_layers_exists(keras):
    import re

    names = [n for n in dir(keras.layers) if re.search("Conv(?!LSTM)|Pool|Cropping|ZeroPadding|UpSampling", n)]
    assert len(names) >= 57  # Keras 3.15: 37 classes and 20 aliases
    for name in names:
        ours = getattr(keramic.layers, name, None)
        assert ours is not None, f"keramic.layers has no {name}"
        assert ours.__name__ == getattr(keras.layers, name).__name__, name
        # Same constructor arguments in the same order, so positional calls mean the same thing.
        theirs = [p for p in inspect.signature(getattr(keras.layers, name).__init__).parameters if p != "self"]
        assert [p for p in inspect.signature(ours.__init__).parameters if p != "self"] == theirs, name


def _default_arguments(class_name):
    if "Depthwise" in class_name:
        return dict(kernel_size=2)
    if "Conv" in class_name:
        return dict(filters=2, kernel_size=2)
    if "Adaptive" in class_name:
        return dict(output_size=2)
    if class_name.startswith("AveragePooling"):
        return dict(pool_size=2)
    return {}


@pytest.mark.interop
@pytest.mark.slow
def test_every_spatial_layer_survives_keras_sequential_files_and_resumed_training(keras, tmp_path):
    """As users save them: a Sequential with default names, trained with momentum SGD (optimizer
    slots in the file), saved as `.keras` and legacy `.h5` by Keras; keramic loads both, predicts,
    resumes training to Keras's weights, and writes a `.keras` that Keras loads and trains on."""
    import re

    classes = sorted({getattr(keras.layers, n).__name__ for n in dir(keras.layers)
                      if re.search("Conv(?!LSTM)|Pool|Cropping|ZeroPadding|UpSampling", n)})
    assert len(classes) == 37
    rng = np.random.default_rng(0)
    for name in classes:
        rank = int(re.search(r"(\d)D", name).group(1))
        x = rng.normal(size=(3,) + (5,) * rank + (2,)).astype("float32")
        theirs = keras.Sequential([keras.Input(x.shape[1:]), getattr(keras.layers, name)(**_default_arguments(name))])
        target = rng.normal(size=theirs.output_shape[1:]).astype("float32")[None].repeat(3, 0)
        trainable = bool(theirs.trainable_weights)
        if trainable:
            theirs.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
            theirs.train_on_batch(x, target)
        expected = theirs.predict(x, verbose=0)
        theirs.save(tmp_path / f"{name}.keras")
        theirs.save(tmp_path / f"{name}.h5")
        from_h5 = keramic.saving.load_model(tmp_path / f"{name}.h5")
        np.testing.assert_allclose(from_h5.predict(x, verbose=0), expected, atol=1e-5, err_msg=f"{name} .h5")
        ours = keramic.saving.load_model(tmp_path / f"{name}.keras")
        np.testing.assert_allclose(ours.predict(x, verbose=0), expected, atol=1e-5, err_msg=f"{name} .keras")
        if trainable:
            theirs.train_on_batch(x, -target)
            ours.train_on_batch(x, -target)
            for a, b in zip(ours.get_weights(), theirs.get_weights()):
                np.testing.assert_allclose(a, b, atol=1e-6, err_msg=f"{name}: resumed training")
        ours.save(tmp_path / f"{name}_ours.keras")
        back = keras.saving.load_model(tmp_path / f"{name}_ours.keras")
        np.testing.assert_allclose(back.predict(x, verbose=0), ours.predict(x, verbose=0), atol=1e-5, err_msg=name)
        if trainable:
            theirs.train_on_batch(x, target)
            back.train_on_batch(x, target)
            for a, b in zip(back.get_weights(), theirs.get_weights()):
                np.testing.assert_allclose(a, b, atol=1e-6, err_msg=f"{name}: Keras resuming keramic's file")
