"""Embedding: lookups, the zero mask, weights and config against Keras."""

import json

import numpy as np
import pytest
import torch

import keramic
from keramic.layers.embedding import Embedding
from keramic.saving import deserialize_keras_object, serialize_keras_object

IDS = np.array([[3, 4, 5, 0], [0, 0, 9, 1]], dtype="int32")


@pytest.mark.interop
def test_lookup_mask_weights_and_config_match_keras(keras):
    for options in ({}, {"mask_zero": True, "embeddings_regularizer": "l2", "activity_regularizer": "l1"}):
        theirs, ours = keras.layers.Embedding(10, 3, name="emb", **options), Embedding(10, 3, name="emb", **options)
        theirs(IDS)
        ours(IDS)
        ours.set_weights(theirs.get_weights())
        expected, got = theirs(IDS), ours(IDS)
        np.testing.assert_allclose(got.detach().numpy(), np.asarray(expected.detach().cpu()), atol=1e-6)
        expected_mask = getattr(expected, "_keras_mask", None)
        if expected_mask is None:
            assert getattr(got, "_keras_mask", None) is None
        else:
            np.testing.assert_array_equal(got._keras_mask.numpy(), np.asarray(expected_mask.cpu()))
        assert [(w.path, tuple(w.shape)) for w in ours.weights] == [(w.path, tuple(w.shape)) for w in theirs.weights]
        keras_envelope = json.loads(json.dumps(keras.saving.serialize_keras_object(theirs)))
        our_envelope = json.loads(json.dumps(serialize_keras_object(ours)))
        assert list(our_envelope["config"]) == list(keras_envelope["config"])
        assert our_envelope["config"] == keras_envelope["config"]
        assert our_envelope["build_config"] == keras_envelope["build_config"]
        loaded = deserialize_keras_object(keras_envelope)
        assert loaded.built and loaded.mask_zero == options.get("mask_zero", False)


def test_ids_of_any_integer_or_float_dtype_and_symbolic_shape():
    layer = Embedding(10, 4)
    out = layer(IDS)
    for ids in (IDS.astype("int64"), IDS.astype("float32"), torch.tensor(IDS, dtype=torch.int16)):
        assert torch.equal(layer(ids), out)
    assert out.dtype == torch.float32 and out.shape == (2, 4, 4)
    assert Embedding(10, 4)(keramic.Input((7,), dtype="int32")).shape == (None, 7, 4)


def test_legacy_and_initial_weight_arguments():
    table = np.arange(12, dtype="float32").reshape(6, 2)
    with pytest.warns(UserWarning, match="input_length"):
        layer = Embedding(6, 2, input_length=4, weights=[table])
    assert layer.built
    np.testing.assert_array_equal(layer(np.array([[5]])).detach().numpy()[0, 0], table[5])
    assert layer.get_config()["mask_zero"] is False


def test_invalid_sizes_and_unsupported_features_are_refused():
    with pytest.raises(ValueError, match="input_dim"):
        Embedding(0, 2)
    with pytest.raises(ValueError, match="output_dim"):
        Embedding(3, 2.5)


def test_gradients_reach_the_table():
    layer = Embedding(5, 2)
    layer(np.array([[1, 1, 3]])).sum().backward()
    grad = layer.embeddings.grad.numpy()
    np.testing.assert_array_equal(grad[1], [2.0, 2.0])
    np.testing.assert_array_equal(grad[0], [0.0, 0.0])
