"""String and hashing preprocessing layers against outputs recorded from real Keras 3.15.1.

Real Keras needs TensorFlow for these layers on the torch backend; keramic does not. The expected
values in tests/fixtures/preprocessing/ were recorded once with TensorFlow by
`record_with_tensorflow.py` there (its docstring says how); these tests never import TensorFlow.
"""

import json
import os
import zipfile

import numpy as np
import pytest
import torch

import keramic
from keramic.layers.preprocessing import HashedCrossing, Hashing, IntegerLookup, StringLookup, TextVectorization
from keramic.layers.preprocessing.fingerprint import fingerprint64, siphash64

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "preprocessing")
with open(os.path.join(FIXTURES, "keras_tf_recorded.json")) as _f:
    RECORDED = json.load(_f)


def _plain(value):
    """Outputs as (dtype name, nested lists), the form the recording used."""
    if isinstance(value, list):
        return ["list", value]
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return [str(array.dtype), array.tolist()]


def _check_outputs(layer, case):
    for x, (dtype, expected) in zip(case["inputs"], case["outputs"]):
        kind, actual = _plain(layer(x))
        if dtype in ("float32", "float64"):
            assert kind == dtype, (case["kwargs"], x)
            np.testing.assert_allclose(np.array(actual), np.array(expected), atol=1e-6, err_msg=str(case["kwargs"]))
        elif dtype in ("object", "list"):
            assert np.array(actual, dtype=object).tolist() == expected, (case["kwargs"], x)
        else:
            assert (kind, actual) == (dtype, expected), (case["kwargs"], x)


def test_fingerprint64_and_siphash_equal_tensorflow_for_every_length():
    recorded = RECORDED["fingerprint64"]
    for text, value, bucket, big in zip(
        recorded["strings"], recorded["values"], recorded["strong_bucket_1000_key_7_11"], recorded["strong_bucket_97_key_big"]
    ):
        data = text.encode("utf-8")
        assert fingerprint64(data) == int(value), text
        assert siphash64((7, 11), data) % 1000 == bucket, text
        assert siphash64((2**40 + 5, 123456789), data) % 97 == big, text


def test_hashing_matches_keras():
    recorded = RECORDED["hashing"]
    for case in recorded["cases"]:
        x = np.array(recorded[case["input"]], dtype=object if case["input"] == "words" else "int64")
        layer = Hashing(**case["kwargs"], name="h")
        expected = np.array(case["output"])
        actual = layer(x).numpy()
        np.testing.assert_array_equal(actual, expected, err_msg=str(case["kwargs"]))
        assert layer.get_config() == case["config"], case["kwargs"]
        assert Hashing.from_config(layer.get_config()).get_config() == case["config"]
        assert tuple(layer.compute_output_shape(x.shape)) == actual.shape


def test_hashed_crossing_matches_keras():
    recorded = RECORDED["hashed_crossing"]
    for case in recorded["cases"]:
        layer = HashedCrossing(**case["kwargs"], name="c")
        actual = layer((recorded["a"], np.array(recorded["b"]))).numpy()
        np.testing.assert_array_equal(actual, np.array(case["output"]), err_msg=str(case["kwargs"]))
        assert layer.get_config() == case["config"]
    strings_only = HashedCrossing(num_bins=1000)((recorded["a"], np.array(["x", "y", "z", "x", "y", "z"])))
    assert strings_only.tolist() == recorded["strings_only_1000"]


@pytest.mark.parametrize("key,layer_class", [("string_lookup", StringLookup), ("integer_lookup", IntegerLookup), ("text_vectorization", TextVectorization)])
def test_lookup_layers_match_keras(key, layer_class):
    for case in RECORDED[key]:
        kwargs = dict(case["kwargs"])
        if isinstance(kwargs.get("ngrams"), list):
            kwargs["ngrams"] = tuple(kwargs["ngrams"])
        layer = layer_class(**kwargs, name="layer")
        if case["adapt"] is not None:
            layer.adapt(case["adapt"])
        assert layer.get_vocabulary() == case["vocabulary"], case["kwargs"]
        assert json.loads(json.dumps(layer.get_config())) == case["config"], case["kwargs"]
        _check_outputs(layer, case)
        if case["adapt"] is None:  # an adapted vocabulary travels as an asset, not in the config
            clone = layer_class.from_config(layer.get_config())
            assert json.loads(json.dumps(clone.get_config())) == case["config"], case["kwargs"]
            _check_outputs(clone, case)


def _layer_config(archive, class_name):
    config = json.loads(archive.read("config.json"))
    return next(layer for layer in config["config"]["layers"] if layer["class_name"] == class_name)


def test_state_from_files_keras_wrote(tmp_path):
    """Keras's own `.keras` files: the layer config, `vocabulary.txt` asset and `idf_weights` give Keras's outputs."""
    import h5py

    recorded = RECORDED["files"]
    for name, layer_class, asset_dir, weights_group in (
        ("text_vectorization_adapted.keras", TextVectorization, "assets/layers/text_vectorization/", "layers/text_vectorization/vars"),
        ("string_lookup_tf_idf.keras", StringLookup, "assets/layers/string_lookup/", "layers/string_lookup/vars"),
    ):
        with zipfile.ZipFile(os.path.join(FIXTURES, name)) as archive:
            entry = _layer_config(archive, layer_class.__name__)
            layer = layer_class.from_config(entry["config"])
            assets = tmp_path / name
            assets.mkdir()
            (assets / "vocabulary.txt").write_bytes(archive.read(asset_dir + "vocabulary.txt"))
            with h5py.File(archive.open("model.weights.h5")) as h5:
                layer.load_own_variables({key: value[()] for key, value in h5[weights_group].items()})
        layer.load_assets(str(assets))
        x = np.array(recorded[name]["inputs"], dtype=object)
        np.testing.assert_allclose(np.asarray(layer(x)), np.array(recorded[name]["outputs"]), atol=1e-6, err_msg=name)


def test_adapted_vocabulary_and_idf_travel_in_the_keras_file(tmp_path):
    """An adapted IntegerLookup in a model: `vocabulary.txt` and `idf_weights` where Keras puts them, and back."""
    import h5py

    layer = IntegerLookup(output_mode="tf_idf", name="lookup")
    layer.adapt(np.array([[12, 36, 12], [7, 36, 36]]))
    inputs = keramic.Input((3,), dtype="int64")
    model = keramic.Model(inputs, layer(inputs))
    x = np.array([[12, 5, 36], [7, 7, 7]])
    expected = model.predict(x, verbose=0)
    path = tmp_path / "lookup.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        assert archive.read("assets/layers/integer_lookup/vocabulary.txt").decode() == "-1\n36\n12\n7"
        with h5py.File(archive.open("model.weights.h5")) as h5:
            assert list(h5["layers/integer_lookup/vars"]) == ["idf_weights"]
    loaded = keramic.saving.load_model(path)
    assert loaded.layers[-1].get_vocabulary() == [-1, 36, 12, 7]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-7)


def test_a_config_naming_a_vocabulary_file_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("a\nb\n")
    config = StringLookup(vocabulary=["a"]).get_config()
    config["vocabulary"] = str(secret)
    with pytest.raises(ValueError, match="outside of the model archive"):
        StringLookup.from_config(config)
    config = TextVectorization(vocabulary=["a"]).get_config()
    config["vocabulary"] = str(secret)
    with pytest.raises(ValueError, match="outside of the model archive"):
        TextVectorization.from_config(config)
    # A path the user passes in code is read.
    assert StringLookup(vocabulary=str(secret)).get_vocabulary() == ["[UNK]", "a", "b"]
