"""Masks in Functional graphs as Keras 3 records them.

Keras runs `compute_mask` on KerasTensors, so the ops it uses (`NotEqual` after an
`Embedding(mask_zero=True)`, `NotEqual` -> `Any` for `Masking`, the `LogicalOr` / `Concatenate`
chains of merging layers, `ConvertToTensor` for `Attention`) become graph nodes that feed the next
layer's `mask=`, and each node records the `training` / `mask` arguments Keras filled in. These
tests build the same graphs in real Keras and here and compare the saved configs, then cross the
files both ways; the legacy `.h5` form leaves the mask nodes out, as tf.keras 2 wrote it.
"""

import json

import h5py
import numpy as np
import pytest
from tests.helpers import run_tf_keras

import keramic


def _embedded(K, ids):
    return K.layers.Embedding(10, 4, mask_zero=True)(ids)


def embedding_lstm(K):
    ids = K.Input((5,), dtype="int32")
    x = K.layers.LSTM(3, return_sequences=True)(_embedded(K, ids))
    x = K.layers.Dropout(0.1)(x)
    return [ids], K.layers.GRU(2)(x)


def masking_dense_gru(K):
    x = K.Input((5, 3))
    h = K.layers.Masking(mask_value=2.0)(x)
    h = K.layers.Dense(3)(h)
    return [x], K.layers.GRU(2)(h)


def merging(K):
    a, b, c = K.Input((5,), dtype="int32"), K.Input((5, 4)), K.Input((5,), dtype="int32")
    joined = K.layers.LSTM(2)(K.layers.Concatenate()([_embedded(K, a), b]))
    summed = K.layers.LSTM(2)(K.layers.Average()([_embedded(K, a), _embedded(K, c), _embedded(K, a)]))
    unmasked = K.layers.LSTM(2)(K.layers.Add()([_embedded(K, a), b]))
    return [a, b, c], [joined, summed, unmasked]


def attention(K):
    ids = K.Input((5,), dtype="int32")
    e = _embedded(K, ids)
    dot = K.layers.GlobalAveragePooling1D()(K.layers.Attention()([e, e]))
    heads = K.layers.GlobalAveragePooling1D()(K.layers.MultiHeadAttention(2, 2)(e, e))
    return [ids], [dot, heads]


def wrappers(K):
    ids = K.Input((5,), dtype="int32")
    e = _embedded(K, ids)
    x = K.layers.TimeDistributed(K.layers.Dense(3))(e)
    x = K.layers.Bidirectional(K.layers.LSTM(2, return_sequences=True))(x)
    x = K.layers.BatchNormalization()(x)
    return [ids], K.layers.GlobalAveragePooling1D()(x)


def nested_models(K):
    """A nested model records its `mask` argument whatever its inputs' dtype (Keras takes a model's
    inputs as they come); the inner model's output mask does not reach the outer graph."""
    inner_ids = K.Input((5,), dtype="int32")
    inner = K.Model(inner_ids, _embedded(K, inner_ids), name="inner")
    stack = K.Sequential([K.Input((5,), dtype="int32"), K.layers.Embedding(10, 4, mask_zero=True), K.layers.LSTM(2)])
    ids = K.Input((5,), dtype="int32")
    return [ids], [K.layers.LSTM(2)(inner(ids)), K.layers.Dense(1)(stack(ids))]


BUILDERS = [embedding_lstm, masking_dense_gru, merging, attention, wrappers, nested_models]


def _build(K, builder):
    inputs, outputs = builder(K)
    return K.Model(inputs, outputs)


def _plain(config):
    return json.loads(json.dumps(config))


def _graph_form(model):
    """What a saved config says about the graph: every node's class, name, op config and calls."""
    entries = []
    for entry in _plain(model.get_config())["layers"]:
        op = str(entry.get("module", "")).startswith("keras.src.ops.")
        entries.append((entry["class_name"], entry["name"], entry["config"] if op else None, entry["inbound_nodes"]))
    return entries


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_mask_nodes_and_filled_in_arguments_are_saved_as_keras_saves_them(keras, builder):
    keramic.utils.clear_session()
    ours = _build(keramic, builder)
    theirs = _build(keras, builder)
    assert [type(op).__name__ for op in ours.operations] == [type(op).__name__ for op in theirs.operations]
    assert _graph_form(ours) == _graph_form(theirs)


def _inputs(model, seed=0):
    rng = np.random.default_rng(seed)
    arrays = []
    for tensor in model.inputs:
        shape = (3, *tensor.shape[1:])
        if "int" in str(tensor.dtype):
            array = rng.integers(0, 10, shape).astype("int32")
            array[:, -2:] = 0  # padded tail: the mask matters
        else:
            array = rng.normal(size=shape).astype("float32")
            array[:, -1] = 2.0  # a Masking(mask_value=2.0) step
        arrays.append(array)
    return arrays


@pytest.mark.parametrize("builder", [embedding_lstm, masking_dense_gru, merging], ids=lambda b: b.__name__)
def test_masked_graphs_cross_both_ways_with_keras(keras, builder, tmp_path):
    ours = _build(keramic, builder)
    x = _inputs(ours)
    ours.save(tmp_path / "ours.keras")
    loaded = keras.saving.load_model(tmp_path / "ours.keras")
    assert [type(op).__name__ for op in loaded.operations] == [type(op).__name__ for op in ours.operations]
    for got, want in zip(keras.tree.flatten(loaded.predict(x, verbose=0)), keras.tree.flatten(ours.predict(x, verbose=0))):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    theirs = _build(keras, builder)
    theirs.save(tmp_path / "theirs.keras")
    back = keramic.saving.load_model(tmp_path / "theirs.keras")
    assert [type(op).__name__ for op in back.operations] == [type(op).__name__ for op in theirs.operations]
    assert _graph_form(back) == _graph_form(theirs)
    for got, want in zip(keramic.tree.flatten(back.predict(x, verbose=0)), keras.tree.flatten(theirs.predict(x, verbose=0))):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


TF_KERAS_PREDICT = """
import sys
import numpy as np
import tensorflow as tf
for index, path in enumerate(sys.argv[1::2]):
    model = tf.keras.models.load_model(path, compile=False)
    inputs = dict(np.load(sys.argv[2 + 2 * index]))
    outputs = model.predict([inputs[f"x{i}"] for i in range(len(inputs))], verbose=0)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    np.savez(path + ".out.npz", *outputs)
"""


def test_legacy_h5_leaves_mask_nodes_to_the_readers_which_recompute_them(keras, tmp_path):
    """tf.keras 2 recorded no mask nodes, and Keras 3 reads no op node from a `.h5` (not even in its
    own masked files), so `.h5` files leave them out: both readers recompute the masks. tf.keras 2
    merges masks by its own rules (`all` where Keras 3 takes `any`; a partly masked `Add` keeps a
    mask), so a graph that merges masked inputs is written in Keras 3's form, which Keras 3 reads."""
    args = []
    expected = {}
    for builder in (embedding_lstm, masking_dense_gru, merging):
        model = _build(keramic, builder)
        path = tmp_path / f"{builder.__name__}.h5"
        model.save(path)
        with h5py.File(path, "r") as h5file:
            config = json.loads(h5file.attrs["model_config"])
        entries = config["config"]["layers"]
        assert not {"NotEqual", "Any", "LogicalOr", "ExpandDims", "ZerosLike", "OnesLike"} & {e["class_name"] for e in entries}
        keras3_form = all(isinstance(node, dict) for entry in entries for node in entry["inbound_nodes"])
        assert keras3_form == (builder is merging)
        x = _inputs(model)
        want = [np.asarray(o) for o in keramic.tree.flatten(model.predict(x, verbose=0))]
        # keramic and Keras 3 read the file with the same numbers (keramic rebuilds the mask nodes).
        back = keramic.saving.load_model(path)
        assert [type(op).__name__ for op in back.operations] == [type(op).__name__ for op in model.operations]
        theirs = keras.saving.load_model(path)
        for reader in (back, theirs):
            for got, value in zip(keras.tree.flatten(reader.predict(x, verbose=0)), want):
                np.testing.assert_allclose(got, value, rtol=1e-5, atol=1e-6)
        if builder is not merging:
            np.savez(tmp_path / f"{builder.__name__}.in.npz", **{f"x{i}": a for i, a in enumerate(x)})
            expected[path] = want
            args += [path, tmp_path / f"{builder.__name__}.in.npz"]
    run_tf_keras(TF_KERAS_PREDICT, *args)
    for path, want in expected.items():
        with np.load(str(path) + ".out.npz") as got:
            for index, array in enumerate(want):
                np.testing.assert_allclose(got[f"arr_{index}"], array, rtol=1e-5, atol=1e-6)
