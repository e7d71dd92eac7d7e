"""Masks through the full parity harness (tests/layer_parity.py): models built in real Keras and in
keramic where a mask is made by one layer and consumed by the next, or fed as a boolean input, and
layers with several outputs; numbers, output masks, configs, files both ways and one training step
must agree with Keras."""

import numpy as np
import pytest
from tests.layer_parity import assert_layer_parity, framework_of

import keramic
from keramic.utils import naming

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True)
def fresh_names():
    """Auto-named sub-layers (Bidirectional's `forward_lstm`) start from the same counters as Keras's
    after its `clear_session`, whatever ran before."""
    naming.reset_names()

RNG = np.random.default_rng(0)
# Token ids with trailing padding (0), one row fully padded after its first step.
IDS = np.array([[3, 5, 2, 0, 0], [1, 4, 4, 7, 6], [9, 0, 0, 0, 0]], dtype="int64")
# Float sequences whose padded steps are all zeros, for `Masking`.
SEQUENCES = RNG.normal(size=(3, 5, 4)).astype("float32") * (IDS != 0)[..., None]


def _after_embedding(layer, tensors):
    return layer(framework_of(layer).layers.Embedding(10, 4, mask_zero=True, name="embedding")(tensors[0]))


def _after_masking(layer, tensors):
    return layer(framework_of(layer).layers.Masking(mask_value=0.0, name="masking")(tensors[0]))


def test_masking_layer_output_and_mask(keras, tmp_path):
    assert_layer_parity(
        keras, tmp_path,
        lambda: keras.layers.Masking(mask_value=0.0, name="layer"),
        lambda: keramic.layers.Masking(mask_value=0.0, name="layer"),
        SEQUENCES, masks=True,
    )  # fmt: skip


def test_embedding_mask_zero_output_mask(keras, tmp_path):
    assert_layer_parity(
        keras, tmp_path,
        lambda: keras.layers.Embedding(10, 3, mask_zero=True, name="layer"),
        lambda: keramic.layers.Embedding(10, 3, mask_zero=True, name="layer"),
        IDS, masks=True, train=False,
    )  # fmt: skip


# (layer, options, files and training step too): the full check on a representative subset keeps
# the file fast; the rest compare numbers, masks and configs.
RECURRENT = [
    ("LSTM", {"units": 3}, False),
    ("LSTM", {"units": 3, "return_sequences": True}, True),
    ("GRU", {"units": 3, "return_sequences": True, "return_state": True}, True),
    ("SimpleRNN", {"units": 2, "return_sequences": True, "go_backwards": True}, False),
]


@pytest.mark.parametrize("name, options, full", RECURRENT, ids=lambda v: str(v))
@pytest.mark.parametrize("before", [_after_embedding, _after_masking], ids=["embedding", "masking"])
def test_recurrent_layers_consume_masks(keras, tmp_path, name, options, full, before):
    inputs = IDS if before is _after_embedding else SEQUENCES
    assert_layer_parity(
        keras, tmp_path,
        lambda: getattr(keras.layers, name)(name="layer", **options),
        lambda: getattr(keramic.layers, name)(name="layer", **options),
        inputs, apply=before, masks=True, rtol=1e-4, atol=1e-5, train_atol=1e-5,
        files=full and before is _after_embedding, train=full,
    )  # fmt: skip


@pytest.mark.parametrize("merge_mode", ["concat", "sum", None])
def test_bidirectional_consumes_the_embedding_mask(keras, tmp_path, merge_mode):
    def make(framework):
        return lambda: framework.layers.Bidirectional(
            framework.layers.LSTM(2, return_sequences=True), merge_mode=merge_mode, name="layer"
        )

    assert_layer_parity(
        keras, tmp_path, make(keras), make(keramic), IDS,
        apply=_after_embedding, masks=True, rtol=1e-4, train_atol=1e-5,
        files=merge_mode == "concat", train=merge_mode != "sum",
    )  # fmt: skip


def _attention_with_mask_and_scores(layer, tensors):
    query, value, mask = tensors
    return layer(query, value, attention_mask=mask, return_attention_scores=True)


def _attention_with_mask(layer, tensors):
    query, value, mask = tensors
    return layer(query, value, attention_mask=mask)


@pytest.mark.parametrize("scores", [False, True], ids=["output", "output-and-scores"])
def test_multi_head_attention_with_attention_mask(keras, tmp_path, scores):
    query = RNG.normal(size=(2, 3, 4)).astype("float32")
    value = RNG.normal(size=(2, 5, 4)).astype("float32")
    mask = RNG.uniform(size=(2, 3, 5)) > 0.3
    mask[:, :, 0] = True  # every query attends to something
    assert_layer_parity(
        keras, tmp_path,
        lambda: keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, name="layer"),
        lambda: keramic.layers.MultiHeadAttention(num_heads=2, key_dim=3, name="layer"),
        [query, value, mask], apply=_attention_with_mask_and_scores if scores else _attention_with_mask,
        # Keras's own `train_on_batch` fails on a model whose output is the (output, scores) tuple,
        # so the training step is compared on the plain output only.
        train=not scores,
    )  # fmt: skip


def _self_attention_after_embedding(layer, tensors):
    x = framework_of(layer).layers.Embedding(10, 4, mask_zero=True, name="embedding")(tensors[0])
    return layer(x, x, use_causal_mask=True)


def test_multi_head_attention_uses_the_embedding_mask(keras, tmp_path):
    assert_layer_parity(
        keras, tmp_path,
        lambda: keras.layers.MultiHeadAttention(num_heads=2, key_dim=2, name="layer"),
        lambda: keramic.layers.MultiHeadAttention(num_heads=2, key_dim=2, name="layer"),
        IDS, apply=_self_attention_after_embedding, masks=True, atol=1e-5,
    )  # fmt: skip
