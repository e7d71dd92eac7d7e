"""Merge layers and Dot against Keras 3: values, broadcasting, masks, configs, build configs and functional helpers."""

import json

import numpy as np
import pytest
import torch

import keramic
from keramic import Input
from keramic.layers import merging
from keramic.layers.merging import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from keramic.utils.naming import reset_names
from layer_parity import assert_call_parity, assert_layer_parity


@pytest.fixture(autouse=True)
def _fresh_layer_names():
    """Auto names restart per test, as Keras's do after the `keras` fixture's clear_session."""
    reset_names()


ELEMENTWISE = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]


def _numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _json(value):
    return json.loads(json.dumps(value))


def _inputs(shapes, seed=0, masks=None):
    rng = np.random.default_rng(seed)
    tensors = [torch.tensor(rng.normal(size=shape).astype("float32")) for shape in shapes]
    for tensor, mask in zip(tensors, masks or []):
        if mask is not None:
            tensor._keras_mask = torch.tensor(mask)
    return tensors


def assert_parity(keras_layer, ours, inputs, case):
    expected = keras_layer(inputs)
    actual = ours(inputs)
    np.testing.assert_allclose(_numpy(actual), _numpy(expected), atol=1e-6, err_msg=str(case))
    expected_mask, actual_mask = getattr(expected, "_keras_mask", None), getattr(actual, "_keras_mask", None)
    assert (expected_mask is None) == (actual_mask is None), case
    if expected_mask is not None:
        np.testing.assert_array_equal(_numpy(actual_mask), _numpy(expected_mask), err_msg=str(case))
    assert _json(ours.get_config()) == _json(keras_layer.get_config()), case
    assert _json(ours.get_build_config()) == _json(keras_layer.get_build_config()), case
    assert ours.compute_output_shape([tuple(x.shape) for x in inputs]) == tuple(actual.shape), case


SHAPE_CASES = [
    [(2, 3), (2, 3)],
    [(2, 4, 3), (2, 4, 3), (2, 4, 3)],
    [(2, 4, 3), (2, 1, 3)],
    [(2, 4, 3), (2, 4, 1)],
    [(2, 4, 3), (2, 3)],  # lower rank: new axes right after the batch axis
]


@pytest.mark.interop
def test_elementwise_merges_match_keras(keras):
    for name in ELEMENTWISE:
        for shapes in SHAPE_CASES:
            if name == "Subtract" and len(shapes) != 2:
                continue
            keras_layer, ours = getattr(keras.layers, name)(name="m"), getattr(merging, name)(name="m")
            assert_parity(keras_layer, ours, _inputs(shapes), (name, shapes))


MASK_CASES = [
    [[[True, True, False, False], [True, False, True, False]], [[True, False, False, True], [False, False, True, True]]],
    [[[True, True, False, False], [True, False, True, False]], None],
    [None, [[True, False, False, True], [False, False, True, True]]],
]


@pytest.mark.interop
def test_masked_merges_match_keras(keras):
    for name in ELEMENTWISE:
        for masks in MASK_CASES:
            keras_layer, ours = getattr(keras.layers, name)(name="m"), getattr(merging, name)(name="m")
            assert_parity(keras_layer, ours, _inputs([(2, 4, 3), (2, 4, 3)], 1, masks), (name, masks))
    three = [[[True, False, True, False]], [[False, False, True, True]], [[True, False, False, False]]]
    for name in ("Maximum", "Minimum", "Multiply"):
        keras_layer, ours = getattr(keras.layers, name)(name="m"), getattr(merging, name)(name="m")
        assert_parity(keras_layer, ours, _inputs([(1, 4, 2)] * 3, 2, three), (name, three))


@pytest.mark.interop
def test_concatenate_matches_keras(keras):
    cases = [
        (-1, [(2, 4, 3), (2, 4, 1)]),
        (1, [(2, 4, 3), (2, 2, 3), (2, 1, 3)]),
        (0, [(2, 3), (1, 3)]),
        (-2, [(2, 4, 3), (2, 2, 3)]),
    ]
    for axis, shapes in cases:
        keras_layer, ours = keras.layers.Concatenate(axis=axis, name="c"), Concatenate(axis=axis, name="c")
        assert_parity(keras_layer, ours, _inputs(shapes), (axis, shapes))
    masks = [[[True, False, True, False], [True, True, False, False]], None]
    for axis in (1, -1):
        keras_layer, ours = keras.layers.Concatenate(axis=axis, name="c"), Concatenate(axis=axis, name="c")
        assert_parity(keras_layer, ours, _inputs([(2, 4, 3), (2, 4, 3)], 3, masks), (axis, masks))


@pytest.mark.interop
def test_functional_forms_match_keras(keras):
    inputs = _inputs([(2, 3), (2, 3)], 4)
    for name in ("add", "subtract", "multiply", "average", "maximum", "minimum"):
        np.testing.assert_allclose(_numpy(getattr(merging, name)(inputs)), _numpy(getattr(keras.layers, name)(inputs)), atol=1e-6)
    np.testing.assert_allclose(
        _numpy(merging.concatenate(inputs, axis=0)), _numpy(keras.layers.concatenate(inputs, axis=0)), atol=1e-6
    )


def test_symbolic_arithmetic_and_shapes():
    a, b = Input(shape=(4, 3)), Input(shape=(1, 3))
    assert (a + b).shape == (None, 4, 3)
    assert (a - b).shape == (None, 4, 3)
    assert (a * b).shape == (None, 4, 3)
    assert Concatenate(axis=1)([a, b]).shape == (None, 5, 3)
    assert Concatenate()([Input(shape=(None, 2)), Input(shape=(None, 5))]).shape == (None, None, 7)
    assert Average()([a, Input(shape=(3,))]).shape == (None, 4, 3)


def test_incompatible_inputs_raise():
    with pytest.raises(ValueError, match="exactly 2"):
        Subtract()(_inputs([(2, 3)] * 3))
    with pytest.raises(ValueError, match="incompatible"):
        Add()([Input(shape=(3,)), Input(shape=(4,))])
    with pytest.raises(ValueError, match="batch sizes"):
        Maximum()(_inputs([(2, 3), (3, 3)]))
    with pytest.raises(ValueError, match="matching shapes"):
        Concatenate()([Input(shape=(2, 3)), Input(shape=(3, 3))])
    with pytest.raises(ValueError, match="list"):
        Minimum()(_inputs([(2, 3)])[0])


def test_multiply_gradients_reach_both_inputs():
    a, b = (torch.ones(2, 3, requires_grad=True) for _ in range(2))
    Multiply()([a, b]).sum().backward()
    assert a.grad is not None and b.grad is not None


# ---------------------------------------------------------------- Dot and the functional helpers

_RNG = np.random.default_rng(21)
_A3, _B3 = _RNG.normal(size=(2, 4, 5)).astype("float32"), _RNG.normal(size=(2, 3, 5)).astype("float32")
_A2, _B2 = _RNG.normal(size=(2, 5)).astype("float32"), _RNG.normal(size=(2, 5)).astype("float32")


@pytest.mark.interop
def test_dot_parity_with_files(keras, tmp_path):
    assert_layer_parity(
        keras, tmp_path, lambda: keras.layers.Dot(axes=(2, 2), name="layer"),
        lambda: keramic.layers.Dot(axes=(2, 2), name="layer"), [_A3, _B3],
    )


@pytest.mark.interop
def test_dot_axes_and_normalize_match_keras(keras):
    cases = [
        ({"axes": 1}, [_A2, _B2]),
        ({"axes": -1, "normalize": True}, [_A2, _B2]),
        ({"axes": (1, 1)}, [_A3, _B3[:, :, :4].transpose(0, 2, 1).copy()]),
        ({"axes": (2, 1)}, [_A3, _B3.transpose(0, 2, 1).copy()]),
        ({"axes": (1, 2), "normalize": True}, [_A2, _A3]),
        ({"axes": 2}, [_A3, _B2[:, None, :].repeat(3, 1)]),
    ]
    for options, inputs in cases:
        assert_call_parity(keras.layers.Dot(**options), keramic.layers.Dot(**options), inputs, options)
        shapes = [x.shape for x in inputs]
        assert keramic.layers.Dot(**options).compute_output_shape(shapes) == keras.layers.Dot(**options).compute_output_shape(shapes)


@pytest.mark.interop
def test_functional_helpers_build_the_same_models_as_keras(keras):
    helpers = ["add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate"]
    for name in helpers + ["dot"]:
        def model(framework, name=name):
            a, b = framework.Input((5,)), framework.Input((5,))
            kwargs = {"axes": 1} if name == "dot" else {}
            return framework.Model([a, b], getattr(framework.layers, name)([a, b], **kwargs))

        theirs, ours = model(keras), model(keramic)
        np.testing.assert_allclose(ours.predict([_A2, _B2], verbose=0), theirs.predict([_A2, _B2], verbose=0), atol=1e-6)
        assert type(ours.layers[-1]).__name__ == type(theirs.layers[-1]).__name__


def test_dot_refuses_bad_axes_and_shapes():
    with pytest.raises(TypeError):
        keramic.layers.Dot(axes="x")
    with pytest.raises(ValueError, match="two elements"):
        keramic.layers.Dot(axes=(1, 2, 3))
    with pytest.raises(ValueError, match="Incompatible"):
        keramic.layers.Dot(axes=1)([torch.zeros(2, 3), torch.zeros(2, 4)])
