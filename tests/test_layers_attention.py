"""MultiHeadAttention, EinsumDense, Attention, AdditiveAttention and GroupQueryAttention against Keras: numbers, masks,
weights, configs and files both ways."""

import json

import numpy as np
import pytest
import torch

import keramic
from keramic.layers.attention import EinsumDense, MultiHeadAttention
from keramic.layers.embedding import Embedding
from keramic.saving import deserialize_keras_object, serialize_keras_object
from keramic.utils.naming import reset_names
from layer_parity import assert_call_parity, assert_layer_parity


@pytest.fixture(autouse=True)
def _fresh_layer_names():
    """Auto names restart per test, as Keras's do after the `keras` fixture's clear_session."""
    reset_names()


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
        ("abc,bcd->ad", 4, "d", QUERY),  # two contracted axes: one matmul too
        ("abc,dc->abd", (None, 4), "d", QUERY),  # kernel axes in another order: torch's einsum
        ("abc,cd->adb", (4, None), None, QUERY),  # output axes reordered: torch's einsum
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
    query._keras_mask = mask = torch.tensor(IDS != 0)
    output, scores = layer(query, VALUE, return_attention_scores=True)
    assert output.shape == (3, 6, 5) and scores.shape == (3, 2, 6, 4)
    assert torch.equal(output._keras_mask, mask)
    assert not hasattr(query, "_keras_mask")  # as in Keras, the layer takes the mask off its input
    # As Keras 3.15: the scores keep the mask their softmax was given explicitly (query rows).
    assert torch.equal(scores._keras_mask, mask[:, None, :, None])
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


# ---------------------------------------------------------------- files, Attention, GroupQueryAttention


def _query_value(layer, tensors):
    return layer(tensors[0], tensors[1])


def _h5_datasets(path):
    import h5py

    names = []
    with h5py.File(path, "r") as file:
        file.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
    return sorted(names)


@pytest.mark.interop
@pytest.mark.parametrize("gate", [False, True])
def test_multi_head_attention_files_both_ways(keras, tmp_path, gate):
    """Keras stores the projections as `query_dense`, ... (its public properties) and the gate as `_gate_dense`."""
    assert_layer_parity(
        keras,
        tmp_path,
        lambda: keras.layers.MultiHeadAttention(2, 3, use_gate=gate, name="layer"),
        lambda: keramic.layers.MultiHeadAttention(2, 3, use_gate=gate, name="layer"),
        [QUERY[:2], VALUE[:2, :, :5]],
        apply=_query_value,
    )
    ours = sorted(_h5_datasets(tmp_path / "from_keramic.weights.h5"))
    assert ours == sorted(_h5_datasets(tmp_path / "from_keras.weights.h5"))
    assert "layers/multi_head_attention/query_dense/vars/0" in ours
    assert ("layers/multi_head_attention/_gate_dense/vars/0" in ours) == gate


@pytest.mark.interop
@pytest.mark.parametrize(
    "make, inputs",
    [
        (lambda L: L.Attention(name="layer"), [QUERY, VALUE[:, :, :5]]),
        (lambda L: L.Attention(use_scale=True, score_mode="concat", name="layer"), [QUERY, VALUE[:, :, :5], KEY[:, :, :1].repeat(5, -1)]),
        (lambda L: L.AdditiveAttention(name="layer"), [QUERY, VALUE[:, :, :5]]),
    ],
    ids=["dot", "concat_scaled", "additive"],
)
def test_attention_layers_parity_with_files_and_training(keras, tmp_path, make, inputs):
    assert_layer_parity(keras, tmp_path, lambda: make(keras.layers), lambda: make(keramic.layers), inputs)


@pytest.mark.interop
def test_attention_masks_causal_and_scores_match_keras(keras):
    query, value = QUERY, VALUE[:, :, :5]
    query_mask = IDS != 0
    value_mask = (IDS != 0)[:, :4]
    for layer in ("Attention", "AdditiveAttention"):
        for kwargs in (
            {"mask": [query_mask, value_mask], "return_attention_scores": True},
            {"use_causal_mask": True, "mask": [None, value_mask]},
        ):
            args = (query, query) if kwargs.get("use_causal_mask") else (query, value)
            mask = [query_mask, query_mask] if kwargs.get("use_causal_mask") else kwargs["mask"]
            kwargs = {**kwargs, "mask": mask}
            assert_call_parity(getattr(keras.layers, layer)(), getattr(keramic.layers, layer)(), list(args), (layer, kwargs), **kwargs)


@pytest.mark.interop
def test_attention_takes_keras_masks_of_its_inputs_and_gives_the_query_mask(keras):
    def model(framework):
        ids = framework.Input((6,), dtype="int32")
        embedded = framework.layers.Embedding(10, 5, mask_zero=True)(ids)
        attended = framework.layers.Attention()([embedded, embedded])
        return framework.Model(ids, framework.layers.LSTM(2)(attended))

    theirs, ours = model(keras), model(keramic)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours.predict(IDS, verbose=0), theirs.predict(IDS, verbose=0), atol=ATOL)
    attended = ours.layers[2].output
    assert attended._keras_mask.shape == (None, 6)


@pytest.mark.interop
@pytest.mark.parametrize("options", [{}, {"use_gate": True, "use_bias": False}], ids=["plain", "gate"])
def test_group_query_attention_parity_with_files_and_training(keras, tmp_path, options):
    assert_layer_parity(
        keras,
        tmp_path,
        lambda: keras.layers.GroupQueryAttention(2, 4, 2, name="layer", **options),
        lambda: keramic.layers.GroupQueryAttention(2, 4, 2, name="layer", **options),
        [QUERY[:2], VALUE[:2, :, :5]],
        apply=_query_value,
    )


@pytest.mark.interop
def test_group_query_attention_masks_and_options_match_keras(keras):
    query_mask, value_mask = IDS != 0, (IDS != 0)[:, :4]
    cases = [
        ({}, (QUERY, VALUE[:, :, :5]), {"attention_mask": ATTENTION_MASK, "return_attention_scores": True}),
        ({}, (QUERY, QUERY), {"use_causal_mask": True}),
        ({"sliding_window": 2}, (QUERY, QUERY), {"use_causal_mask": True, "query_mask": query_mask}),
        ({"dropout": 0.2}, (QUERY, VALUE[:, :, :5]), {"value_mask": value_mask}),
        ({}, (QUERY, VALUE[:, :, :5], KEY), {"key_mask": value_mask, "query_mask": query_mask}),
    ]
    for options, args, kwargs in cases:
        theirs = keras.layers.GroupQueryAttention(3, 4, 1, **options)
        ours = keramic.layers.GroupQueryAttention(3, 4, 1, **options)
        _compare(theirs, ours, *args, **kwargs)
        assert json.loads(json.dumps(ours.get_config())) == json.loads(json.dumps(theirs.get_config()))
    assert keramic.saving.serialize_keras_object(ours)["class_name"] == "GroupQueryAttention"
    assert keramic.layers.GroupedQueryAttention is keramic.layers.GroupQueryAttention


def test_symbolic_attention_outputs_carry_the_query_mask():
    ids = keramic.Input((6,), dtype="int32")
    embedded = Embedding(10, 4, mask_zero=True)(ids)
    outputs = [
        MultiHeadAttention(2, 2)(embedded, embedded),
        keramic.layers.GroupQueryAttention(2, 2, 1)(embedded, embedded),
        keramic.layers.Attention()([embedded, embedded]),
    ]
    output, scores = MultiHeadAttention(2, 2)(embedded, embedded, return_attention_scores=True)
    for tensor in outputs + [output]:
        assert tensor._keras_mask is embedded._keras_mask or tensor._keras_mask.shape == (None, 6)
    assert getattr(scores, "_keras_mask", None) is None


@pytest.mark.interop
def test_symbolic_output_shapes_match_keras(keras):
    """compute_output_spec of multi-output and multi-input calls, against Keras's symbolic shapes."""

    def shapes(framework):
        L = framework.layers
        query, value = framework.Input((6, 5)), framework.Input((4, 5))
        sequences, frames = framework.Input((4, 3)), framework.Input((3, 5, 5, 2))
        results = [
            L.Attention()([query, value], return_attention_scores=True),
            L.AdditiveAttention()([query, value, value]),
            L.GroupQueryAttention(2, 4, 2)(query, value, return_attention_scores=True),
            L.MultiHeadAttention(2, 3)(query, query, return_attention_scores=True),  # Keras's spec assumes S == T
            L.RNN([L.LSTMCell(3), L.GRUCell(2)], return_state=True)(sequences),
            L.ConvLSTM2D(2, 3, return_state=True, return_sequences=True)(frames),
            L.Dot(axes=(2, 2))([query, value]),
            L.ReversibleEmbedding(9, 5)(query, reverse=True),
        ]
        flat = lambda v: [leaf for item in v for leaf in flat(item)] if isinstance(v, (list, tuple)) else [v]  # noqa: E731
        return [tuple(t.shape) for t in flat(results)]

    assert shapes(keramic) == shapes(keras)
