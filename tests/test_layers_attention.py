"""MultiHeadAttention and EinsumDense: numbers, masks, weights and configs against Keras."""

import json

import numpy as np
import pytest
import torch

import keramic
from keramic.layers.attention import EinsumDense, MultiHeadAttention
from keramic.layers.embedding import Embedding
from keramic.saving import deserialize_keras_object, serialize_keras_object

ATOL = 1e-5
RNG = np.random.default_rng(0)
QUERY = RNG.normal(size=(3, 6, 5)).astype("float32")
VALUE = RNG.normal(size=(3, 4, 7)).astype("float32")
KEY = RNG.normal(size=(3, 4, 2)).astype("float32")
ATTENTION_MASK = RNG.integers(0, 2, size=(3, 6, 4)).astype(bool)
ATTENTION_MASK[0, 2] = False  # a query row that may attend nowhere
IDS = np.array([[3, 4, 5, 0, 0, 0], [1, 2, 0, 0, 0, 0], [0, 0, 7, 8, 9, 1]], dtype="int32")


def _np(value):
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _compare(keras_layer, our_layer, *args, **kwargs):
    keras_layer(*args, **kwargs)
    our_layer(*args, **kwargs)
    our_layer.set_weights(keras_layer.get_weights())
    theirs, ours = _as_list(keras_layer(*args, **kwargs)), _as_list(our_layer(*args, **kwargs))
    assert len(theirs) == len(ours)
    for a, b in zip(theirs, ours):
        assert tuple(b.shape) == tuple(a.shape)
        np.testing.assert_allclose(_np(b), _np(a), atol=ATOL)
    return ours


_CASES = [
    ({}, (QUERY, VALUE), {}),
    ({}, (QUERY, VALUE), {"attention_mask": ATTENTION_MASK}),
    ({}, (QUERY, VALUE), {"attention_mask": ATTENTION_MASK, "return_attention_scores": True}),
    ({"dropout": 0.3}, (QUERY, VALUE), {"attention_mask": ATTENTION_MASK}),
    ({}, (QUERY, QUERY), {"use_causal_mask": True}),
    ({}, (QUERY, QUERY), {"use_causal_mask": True, "return_attention_scores": True}),
    ({}, (QUERY, QUERY), {"use_causal_mask": True, "attention_mask": ATTENTION_MASK[:, :, :1]}),
    ({}, (QUERY, VALUE, KEY), {}),
    ({"value_dim": 2, "output_shape": (8,), "use_bias": False}, (QUERY, VALUE), {}),
    ({"use_gate": True, "sliding_window": 2}, (QUERY, QUERY), {"use_causal_mask": True}),
]


@pytest.mark.interop
def test_outputs_match_keras(keras):
    for options, args, kwargs in _CASES:
        _compare(
            keras.layers.MultiHeadAttention(2, 3, **options), MultiHeadAttention(2, 3, **options), *args, **kwargs
        )


@pytest.mark.interop
def test_attention_axes_on_4d_inputs_match_keras(keras):
    x = RNG.normal(size=(2, 3, 4, 5)).astype("float32")
    for axes, kwargs in (((2,), {}), ((1, 2), {"return_attention_scores": True})):
        _compare(
            keras.layers.MultiHeadAttention(2, 3, attention_axes=axes),
            MultiHeadAttention(2, 3, attention_axes=axes),
            x,
            x,
            **kwargs,
        )


@pytest.mark.interop
def test_keras_masks_of_query_and_value_are_used(keras):
    """Padding masks from `Embedding(mask_zero=True)`; the output keeps the query's mask."""
    keras_embeddings = [keras.layers.Embedding(10, 5, mask_zero=True), keras.layers.Embedding(10, 7, mask_zero=True)]
    our_embeddings = [Embedding(10, 5, mask_zero=True), Embedding(10, 7, mask_zero=True)]
    for theirs, ours in zip(keras_embeddings, our_embeddings):
        theirs.build()
        ours.build()
        ours.set_weights(theirs.get_weights())
    for kwargs in ({}, {"return_attention_scores": True}, {"use_causal_mask": True}):
        keras_layer, our_layer = keras.layers.MultiHeadAttention(2, 3), MultiHeadAttention(2, 3)

        def run(layer, embeddings):
            return layer(embeddings[0](IDS), embeddings[1](IDS[:, :4]), **kwargs)

        run(keras_layer, keras_embeddings)
        run(our_layer, our_embeddings)
        our_layer.set_weights(keras_layer.get_weights())
        theirs, ours = _as_list(run(keras_layer, keras_embeddings)), _as_list(run(our_layer, our_embeddings))
        for a, b in zip(theirs, ours):
            np.testing.assert_allclose(_np(b), _np(a), atol=ATOL)
        np.testing.assert_array_equal(_np(ours[0]._keras_mask), IDS != 0)


@pytest.mark.interop
def test_weights_configs_and_build_config_match_keras(keras):
    pairs = [
        (keras.layers.MultiHeadAttention(2, 3, name="mha"), MultiHeadAttention(2, 3, name="mha"), (QUERY, VALUE)),
        (
            keras.layers.MultiHeadAttention(
                4, 2, value_dim=3, dropout=0.1, output_shape=6, use_gate=True, kernel_regularizer="l2", seed=5,
                activity_regularizer="l1", name="mha2",
            ),
            MultiHeadAttention(
                4, 2, value_dim=3, dropout=0.1, output_shape=6, use_gate=True, kernel_regularizer="l2", seed=5,
                activity_regularizer="l1", name="mha2",
            ),
            (QUERY, VALUE, KEY),
        ),
    ]
    for keras_layer, our_layer, args in pairs:
        keras_layer(*args)
        our_layer(*args)
        assert [(w.path, tuple(w.shape)) for w in our_layer.weights] == [
            (w.path, tuple(w.shape)) for w in keras_layer.weights
        ]
        theirs = json.loads(json.dumps(keras.saving.serialize_keras_object(keras_layer)))
        ours = json.loads(json.dumps(serialize_keras_object(our_layer)))
        assert list(ours["config"]) == list(theirs["config"])
        assert ours["config"] == theirs["config"]
        assert ours["build_config"] == theirs["build_config"]
        loaded = deserialize_keras_object(theirs)
        loaded.set_weights(keras_layer.get_weights())
        np.testing.assert_allclose(_np(loaded(*args)), _np(keras_layer(*args)), atol=ATOL)


@pytest.mark.interop
def test_einsum_dense_matches_keras(keras):
    for equation, output_shape, bias_axes, x in (
        ("abc,cde->abde", (None, 2, 4), "de", QUERY),
        ("ab,bc->ac", 4, "c", QUERY[:, 0]),
        ("...b,bc->...c", 4, "c", QUERY),
        ("abc,cd->abd", (6, 4), None, QUERY),
    ):
        options = {"bias_axes": bias_axes, "activation": "relu", "activity_regularizer": "l2" if bias_axes else None}
        keras_layer = keras.layers.EinsumDense(equation, output_shape, name="ed", **options)
        our_layer = EinsumDense(equation, output_shape, name="ed", **options)
        _compare(keras_layer, our_layer, x)
        assert [tuple(w.shape) for w in our_layer.weights] == [tuple(w.shape) for w in keras_layer.weights]
        theirs = json.loads(json.dumps(keras.saving.serialize_keras_object(keras_layer)))
        assert json.loads(json.dumps(serialize_keras_object(our_layer)))["config"] == theirs["config"]


def test_output_mask_shapes_and_symbolic_use():
    layer = MultiHeadAttention(2, 4)
    query = torch.tensor(QUERY)
    query._keras_mask = torch.tensor(IDS != 0)
    output, scores = layer(query, VALUE, return_attention_scores=True)
    assert output.shape == (3, 6, 5) and scores.shape == (3, 2, 6, 4)
    assert torch.equal(output._keras_mask, query._keras_mask)
    assert getattr(scores, "_keras_mask", None) is None
    assert layer.compute_output_shape((None, 6, 5), (None, 4, 7)) == (None, 6, 5)
    inputs, memory = keramic.Input((6, 5)), keramic.Input((4, 7))
    attended, symbolic_scores = MultiHeadAttention(2, 4, output_shape=3)(inputs, memory, return_attention_scores=True)
    assert attended.shape == (None, 6, 3) and symbolic_scores.shape == (None, 2, 6, 4)


def test_dropout_only_while_training_and_gradients_flow():
    layer = MultiHeadAttention(2, 4, dropout=0.5)
    query, value = torch.tensor(QUERY), torch.tensor(VALUE)
    inference = layer(query, value)
    np.testing.assert_array_equal(_np(layer(query, value)), _np(inference))
    assert not np.allclose(_np(layer(query, value, training=True)), _np(inference))
    layer(query, value, training=True).sum().backward()
    assert all(w.grad is not None for w in layer.weights)


def test_fully_masked_rows_follow_each_keras_path():
    """The fused path spreads a row with nothing to attend evenly; the explicit path zeroes it."""
    layer = MultiHeadAttention(1, 4)
    mask = np.ones((3, 6, 4), bool)
    mask[:, 0] = False
    layer(QUERY, VALUE)
    values = layer.value_dense(torch.tensor(VALUE))
    fused = layer._compute_attention(
        layer.query_dense(torch.tensor(QUERY)), layer.key_dense(torch.tensor(VALUE)), values,
        torch.tensor(mask), False, False, False,
    )[0]
    explicit = layer._compute_attention(
        layer.query_dense(torch.tensor(QUERY)), layer.key_dense(torch.tensor(VALUE)), values,
        torch.tensor(mask), False, True, False,
    )[0]
    np.testing.assert_allclose(_np(fused[:, 0]), _np(values.mean(dim=1)), atol=1e-5)
    np.testing.assert_allclose(_np(explicit[:, 0]), 0.0)


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadAttention(0, 4)
    with pytest.raises(ValueError, match="value_dim"):
        MultiHeadAttention(2, 4, value_dim=-1)
    with pytest.raises(ValueError, match="key"):
        MultiHeadAttention(2, 4)(QUERY, VALUE, KEY[:, :3])
    with pytest.raises(ValueError, match="Invalid einsum equation"):
        EinsumDense("ab->b", 3).build((2, 3))
