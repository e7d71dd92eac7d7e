"""Activation, reshaping and preprocessing layers against Keras 3: values, weights and configs."""

import json

import numpy as np
import pytest
import torch

from keramic import Input, backend
from keramic.layers.activations import ELU, PReLU, LeakyReLU, ReLU, Softmax
from keramic.layers.preprocessing import Normalization, Rescaling
from keramic.layers.reshaping import UpSampling2D, ZeroPadding2D


def _numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _json(value):
    return json.loads(json.dumps(value))


def assert_parity(keras_layer, ours, x, case, **call_kwargs):
    """Same weights in -> same outputs, weights, config (key order too) and build config."""
    keras_out = keras_layer(x, **call_kwargs)
    if keras_layer.weights:
        rng = np.random.default_rng(0)
        keras_layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in keras_layer.get_weights()])
        keras_out = keras_layer(x, **call_kwargs)
    ours(x, **call_kwargs)
    assert [(w.path, tuple(w.shape)) for w in ours.weights] == [(w.path, tuple(w.shape)) for w in keras_layer.weights], case
    ours.set_weights(keras_layer.get_weights())
    actual = ours(x, **call_kwargs)
    np.testing.assert_allclose(_numpy(actual), _numpy(keras_out), atol=1e-5, rtol=1e-5, err_msg=str(case))
    assert list(_json(ours.get_config()).items()) == list(_json(keras_layer.get_config()).items()), case
    assert _json(ours.get_build_config()) == _json(keras_layer.get_build_config()), case
    assert tuple(ours.compute_output_shape(x.shape)) == tuple(actual.shape), case


def _x(shape=(3, 8), seed=0, scale=3.0):
    values = np.random.default_rng(seed).normal(0.0, scale, shape).astype("float32")
    values.flat[:6] = [0.0, 1.0, -1.0, 6.0, 0.5, -0.5][: values.size]
    return values


RELU_CASES = [
    dict(),
    dict(max_value=6.0),
    dict(max_value=2.5, negative_slope=0.1),
    dict(negative_slope=0.2),
    dict(threshold=0.5),
    dict(threshold=0.5, negative_slope=0.3, max_value=4.0),
]


@pytest.mark.interop
def test_activation_layers_match_keras(keras):
    x = _x()
    for case in RELU_CASES:
        assert_parity(keras.layers.ReLU(**case, name="a"), ReLU(**case, name="a"), x, case)
    for slope in (0.3, 0.01):
        assert_parity(keras.layers.LeakyReLU(slope, name="a"), LeakyReLU(slope, name="a"), x, slope)
    for alpha in (1.0, 0.4):
        assert_parity(keras.layers.ELU(alpha, name="a"), ELU(alpha, name="a"), x, alpha)
    for axis in (-1, 0, (0, 1)):
        assert_parity(keras.layers.Softmax(axis, name="a"), Softmax(axis, name="a"), x, axis)


@pytest.mark.interop
def test_prelu_matches_keras(keras):
    x = _x((2, 4, 5, 3), 1)
    for case in (dict(), dict(shared_axes=[1, 2]), dict(shared_axes=3), dict(alpha_initializer="ones", alpha_regularizer="l2")):
        assert_parity(keras.layers.PReLU(**case, name="p"), PReLU(**case, name="p"), x, case)


@pytest.mark.interop
def test_softmax_mask_matches_keras(keras):
    x = _x((2, 3, 4), 2)
    masks = [
        torch.tensor(np.random.default_rng(3).random((2, 3, 4)) > 0.3),
        torch.tensor([[1.0, 0.0, 1.0, 1.0]]),  # float masks are thresholded at 0.5
        torch.tensor([[[True], [False], [True]], [[True], [True], [False]]]),
    ]
    for mask in masks:
        assert_parity(keras.layers.Softmax(name="s"), Softmax(name="s"), x, tuple(mask.shape), mask=mask)


def test_leaky_relu_accepts_keras2_alpha():
    with pytest.warns(UserWarning, match="alpha"):
        layer = LeakyReLU(alpha=0.1)
    assert layer.negative_slope == 0.1
    assert layer(torch.tensor([-10.0])).tolist() == pytest.approx([-1.0])


def test_activation_layers_keep_masks_and_reject_bad_arguments():
    x = torch.randn(2, 3)
    x._keras_mask = torch.tensor([True, False])
    for layer in (ReLU(), LeakyReLU(), PReLU(), ELU()):
        assert layer(x)._keras_mask is x._keras_mask
    x._keras_mask = torch.tensor([[True, False, True], [False, True, True]])
    out = Softmax()(x)  # Softmax also applies a mask of the input's shape
    assert out._keras_mask is x._keras_mask and out[0, 1] == 0 and out[1, 0] == 0
    for make in (lambda: ReLU(max_value=-1.0), lambda: ReLU(negative_slope=-0.1), lambda: LeakyReLU(-1)):
        with pytest.raises(ValueError):
            make()


RESHAPING_CASES = [
    ("UpSampling2D", dict()),
    ("UpSampling2D", dict(size=(2, 3))),
    ("UpSampling2D", dict(size=3, interpolation="bilinear")),
    ("UpSampling2D", dict(size=(2, 3), interpolation="bilinear")),
    ("ZeroPadding2D", dict()),
    ("ZeroPadding2D", dict(padding=2)),
    ("ZeroPadding2D", dict(padding=(1, 3))),
    ("ZeroPadding2D", dict(padding=((0, 2), (3, 1)))),
]


@pytest.mark.interop
def test_reshaping_layers_match_keras(keras):
    ours_classes = {"UpSampling2D": UpSampling2D, "ZeroPadding2D": ZeroPadding2D}
    for data_format in ("channels_last", "channels_first"):
        x = _x((2, 3, 4, 5) if data_format == "channels_last" else (2, 5, 3, 4), 4)
        for name, case in RESHAPING_CASES:
            kwargs = dict(case, data_format=data_format, name="r")
            assert_parity(getattr(keras.layers, name)(**kwargs), ours_classes[name](**kwargs), x, (name, kwargs))


def test_reshaping_symbolic_shapes():
    x = Input(shape=(None, 5, 2))
    assert UpSampling2D((2, 3))(x).shape == (None, None, 15, 2)
    assert ZeroPadding2D(((1, 0), (2, 2)))(x).shape == (None, None, 9, 2)
    with pytest.raises(NotImplementedError):
        UpSampling2D(interpolation="lanczos3")


@pytest.mark.interop
def test_rescaling_matches_keras(keras):
    x = _x((2, 4, 3), 5)
    for case in (dict(scale=1 / 255), dict(scale=2.0, offset=-1.0), dict(scale=[1.0, 2.0, 3.0], offset=[0.0, 0.5, 1.0])):
        assert_parity(keras.layers.Rescaling(**case, name="r"), Rescaling(**case, name="r"), x, case)


NORMALIZATION_CASES = [
    ((20, 3), dict()),
    ((10, 4, 3), dict(axis=(1, 2))),
    ((10, 4, 3), dict(axis=1)),
    ((10, 3), dict(axis=None)),
    ((20, 3), dict(invert=True)),
]


@pytest.mark.interop
def test_normalization_adapt_matches_keras(keras):
    for shape, case in NORMALIZATION_CASES:
        data = _x(shape, 6) + 2.0
        keras_layer, ours = keras.layers.Normalization(**case, name="n"), Normalization(**case, name="n")
        keras_layer.adapt(data)
        ours.adapt(data)
        assert [(w.path, tuple(w.shape), backend.standardize_dtype(w.dtype)) for w in ours.weights] == [
            (w.path, tuple(w.shape), w.dtype) for w in keras_layer.weights
        ], case
        for mine, theirs in zip(ours.get_weights(), keras_layer.get_weights()):
            np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6, err_msg=str(case))
        np.testing.assert_allclose(_numpy(ours(data)), _numpy(keras_layer(data)), atol=1e-5, err_msg=str(case))
        assert _json(ours.get_config()) == _json(keras_layer.get_config()), case
        assert _json(ours.get_build_config()) == _json(keras_layer.get_build_config()), case


@pytest.mark.interop
def test_normalization_with_given_statistics_matches_keras(keras):
    x = _x((4, 2, 3), 7)
    for case in (dict(mean=1.0, variance=4.0), dict(mean=[0.5, 1.0, 2.0], variance=[1.0, 4.0, 0.25], invert=True)):
        assert_parity(keras.layers.Normalization(**case, name="n"), Normalization(**case, name="n"), x, case)


def test_adapt_on_batches_equals_adapt_on_the_whole_array():
    data = _x((30, 4), 8)
    whole, batched = Normalization(), Normalization()
    whole.adapt(data)
    batched.adapt([data[:7], data[7:20], (data[20:], np.zeros(10))])  # (x, y) pairs read x only
    for a, b in zip(whole.get_weights(), batched.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(whole.adapt_mean.numpy(), data.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(whole.adapt_variance.numpy(), data.var(axis=0), rtol=1e-5)


def test_set_weights_takes_effect_and_bad_statistics_raise():
    layer = Normalization()
    layer(np.zeros((2, 2), "float32"))
    layer.set_weights([np.array([1.0, 2.0], "float32"), np.array([4.0, 1.0], "float32"), np.array(0, "int32")])
    assert layer(np.array([[3.0, 3.0]], "float32")).tolist() == [[1.0, 1.0]]
    with pytest.raises(ValueError):
        Normalization(mean=1.0)
    with pytest.raises(ValueError):
        Normalization(mean=1.0, variance=1.0).adapt(np.zeros((2, 1)))


def test_rescaling_config_round_trip_with_array_scale():
    layer = Rescaling(np.array([0.5, 2.0], "float32"), offset=1.0)
    clone = Rescaling.from_config(_json(layer.get_config()))
    x = np.ones((1, 2), "float32")
    assert clone(x).tolist() == layer(x).tolist() == [[1.5, 3.0]]
