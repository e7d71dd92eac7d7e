"""String inputs end to end: `Input(dtype="string")` models built, run, trained and saved, and the
Functional `.input` / `.output` properties.

Real Keras needs TensorFlow to run string layers, so the reference outputs are the ones recorded
with TensorFlow in tests/fixtures/preprocessing/ (see `record_with_tensorflow.py` there); the
symbolic parts (dtype names, InputLayer config, `.input`/`.output`) are compared with real Keras.
"""

import json
import os
import zipfile

import numpy as np
import pytest

import keramic
from keramic import backend

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "preprocessing")
with open(os.path.join(FIXTURES, "keras_tf_recorded.json")) as _f:
    RECORDED = json.load(_f)["files"]

TEXTS = np.array([["the cat sat"], ["a dog ran"], ["the dog sat"], ["a cat ran"]])
TARGETS = np.array([[1.0], [0.0], [1.0], [0.0]], dtype="float32")


def _text_model(preprocess):
    """Keras's text classifier shape: string Input -> preprocessing -> Embedding -> pooling -> Dense."""
    keramic.utils.set_random_seed(0)
    inputs = keramic.Input(shape=(1,), dtype="string")
    x = preprocess(inputs)
    x = keramic.layers.Embedding(12, 4)(x)
    x = keramic.layers.GlobalAveragePooling1D()(x)
    return keramic.Model(inputs, keramic.layers.Dense(1)(x))


def _vectorize():
    return keramic.layers.TextVectorization(vocabulary=["the", "cat", "sat", "dog", "ran"], output_sequence_length=3)


def _lookup():
    return keramic.layers.StringLookup(vocabulary=["the cat sat", "a dog ran"])


@pytest.mark.parametrize("spelling", ["string", str])
def test_string_dtype_names_as_in_keras(keras, spelling):
    from keras.src.backend import standardize_dtype

    assert backend.standardize_dtype(spelling) == standardize_dtype(spelling) == "string"


def test_string_input_layer_matches_keras(keras):
    ours = keramic.Input(shape=(1,), dtype="string", name="text")
    theirs = keras.Input(shape=(1,), dtype="string", name="text")
    assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape)
    our_layer, their_layer = ours._keras_history[0], theirs._keras_history[0]
    assert our_layer.get_config() == their_layer.get_config()  # batch_shape a tuple, as Keras's
    assert our_layer.dtype_policy.name == their_layer.dtype_policy.name


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_keras_written_string_models_give_keras_outputs(name, tmp_path):
    """Whole `.keras` files Keras wrote (string Input -> TextVectorization / StringLookup), through
    `load_model`, `predict` and `__call__`, then through keramic's own save and load."""
    model = keramic.saving.load_model(os.path.join(FIXTURES, name))
    assert model.input.dtype == "string"
    x = np.array(RECORDED[name]["inputs"])
    expected = np.array(RECORDED[name]["outputs"])
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model(x)), expected, atol=1e-6)

    path = tmp_path / name
    model.save(path)
    with zipfile.ZipFile(path) as ours, zipfile.ZipFile(os.path.join(FIXTURES, name)) as theirs:
        our_input = json.loads(ours.read("config.json"))["config"]["layers"][0]["config"]
        their_input = json.loads(theirs.read("config.json"))["config"]["layers"][0]["config"]
        assert our_input == their_input
    np.testing.assert_allclose(keramic.saving.load_model(path).predict(x, verbose=0), expected, atol=1e-6)


@pytest.mark.parametrize("preprocess", [_vectorize, _lookup], ids=["TextVectorization", "StringLookup"])
def test_text_model_predicts_fits_and_round_trips(preprocess, tmp_path):
    model = _text_model(preprocess())
    assert model.predict(TEXTS, verbose=0).shape == (4, 1)
    model.compile(optimizer=keramic.optimizers.Adam(0.1), loss="mse")
    history = model.fit(TEXTS, TARGETS, epochs=5, batch_size=2, shuffle=True, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert np.isfinite(model.evaluate(TEXTS, TARGETS, verbose=0))
    expected = model.predict(TEXTS, verbose=0)

    path = tmp_path / "text.keras"
    model.save(path)
    loaded = keramic.saving.load_model(path)
    assert loaded.input.dtype == "string"
    np.testing.assert_allclose(loaded.predict(TEXTS, verbose=0), expected, atol=1e-6)
    np.testing.assert_allclose(loaded(TEXTS.astype(object)).detach().cpu().numpy(), expected, atol=1e-6)


def test_string_inputs_split_for_validation():
    model = _text_model(_vectorize())
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(TEXTS, TARGETS, epochs=1, batch_size=2, validation_split=0.5, verbose=0)
    assert "val_loss" in history.history


def test_string_and_float_inputs_together():
    """A string input stays numpy while the float input beside it becomes a tensor as before."""
    text = keramic.Input(shape=(1,), dtype="string", name="text")
    number = keramic.Input(shape=(2,), name="number")
    pooled = keramic.layers.GlobalAveragePooling1D()(keramic.layers.Embedding(8, 2)(_vectorize()(text)))
    model = keramic.Model([text, number], keramic.layers.Concatenate()([pooled, number]))
    out = model.predict([TEXTS, np.ones((4, 2))], verbose=0)
    assert out.shape == (4, 4)
    np.testing.assert_allclose(out[:, 2:], 1.0)


def _structures(module):
    a = module.Input(shape=(2,), name="a")
    b = module.Input(shape=(3,), name="b")
    dense = module.layers.Dense(1)
    return [
        module.Model(a, dense(a)),
        module.Model([a, b], [a, b]),
        module.Model({"a": a, "b": b}, {"out": a}),
        module.Model([a], [a]),
    ]


def _kind(structure):
    """The nesting of a structure with tensors replaced by their shapes."""
    if isinstance(structure, (list, tuple)):
        return [type(structure).__name__, [_kind(item) for item in structure]]
    if isinstance(structure, dict):
        return {key: _kind(value) for key, value in structure.items()}
    return tuple(structure.shape)


def test_functional_input_and_output_as_in_keras(keras):
    """Keras returns the structures the model was built with: one tensor, or the list / dict given."""
    for ours, theirs in zip(_structures(keramic), _structures(keras)):
        assert _kind(ours.input) == _kind(theirs.input)
        assert _kind(ours.output) == _kind(theirs.output)
    single = _structures(keramic)[0]
    assert single.input is single.inputs[0] and single.output is single.outputs[0]


@pytest.mark.parametrize("preprocess", [_vectorize, _lookup], ids=["TextVectorization", "StringLookup"])
def test_sequential_with_a_string_input_end_to_end(preprocess, tmp_path):
    """`Sequential([Input(dtype="string"), ...])`: predict, fit, save and load, as the Functional form does."""
    keramic.utils.set_random_seed(0)
    model = keramic.Sequential([
        keramic.Input(shape=(1,), dtype="string"), preprocess(), keramic.layers.Embedding(12, 4),
        keramic.layers.GlobalAveragePooling1D(), keramic.layers.Dense(1),
    ])  # fmt: skip
    assert model.input.dtype == "string"
    twin = _text_model(preprocess())  # the same layers, seeded alike, in Functional form
    twin.set_weights(model.get_weights())
    np.testing.assert_allclose(model.predict(TEXTS, verbose=0), twin.predict(TEXTS, verbose=0), atol=1e-6)
    model.compile(optimizer=keramic.optimizers.Adam(0.1), loss="mse")
    history = model.fit(TEXTS, TARGETS, epochs=5, batch_size=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    expected = model.predict(TEXTS, verbose=0)
    path = tmp_path / "sequential_text.keras"
    model.save(path)
    loaded = keramic.saving.load_model(path)
    assert isinstance(loaded, keramic.Sequential) and loaded.input.dtype == "string"
    np.testing.assert_allclose(loaded.predict(TEXTS, verbose=0), expected, atol=1e-6)
