"""`keramic.r_api`: the R interface's verbs round-trip models and are thin calls into the Python API."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

import keramic
from keramic import layers, r_api
from keramic.errors import ConfigError, FileFormatError, UnknownObjectError, WeightsMismatchError
from keramic.saving import api

ROOT = Path(__file__).parent.parent
X = np.random.default_rng(0).random((16, 6)).astype("float32")
Y = np.arange(16) % 3


def trained_model():
    inputs = keramic.Input(shape=(6,), name="features")
    hidden = layers.Dense(5, activation="relu", name="hidden")(inputs)
    outputs = layers.Dense(3, activation="softmax", name="out")(hidden)
    model = keramic.Model(inputs, outputs, name="small")
    model.compile(optimizer=keramic.optimizers.RMSprop(), loss="sparse_categorical_crossentropy")
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    return model


def optimizer_state(model):
    return [v.numpy() for v in model.optimizer.variables]


def same(first, second):
    return len(first) == len(second) and all(np.array_equal(a, b) for a, b in zip(first, second))


def test_save_model_tf_round_trips_the_whole_model_as_keras(tmp_path):
    model = trained_model()
    path = tmp_path / "model.keras"
    r_api.save_model_tf(model, path)
    assert api.sniff(path) == "zip"
    restored = r_api.load_model_tf(path)
    assert np.array_equal(restored.predict(X, verbose=0), model.predict(X, verbose=0))
    assert same(optimizer_state(restored), optimizer_state(model))
    assert r_api.load_model_tf(path, compile=False).optimizer is None


def test_save_model_tf_explains_it_writes_a_keras_archive(tmp_path):
    with pytest.raises(FileFormatError, match=r"save_model_tf writes keramic's whole-model `\.keras` archive"):
        r_api.save_model_tf(trained_model(), tmp_path / "path_to_my_model")
    assert not (tmp_path / "path_to_my_model").exists()


def test_keras3_verbs_round_trip(tmp_path):
    model = trained_model()
    r_api.save_model(model, tmp_path / "m.keras")
    restored = r_api.load_model(tmp_path / "m.keras")
    assert same(restored.get_weights(), model.get_weights())
    r_api.save_model_weights(model, tmp_path / "m.weights.h5")
    fresh = r_api.from_config(r_api.get_config(model))
    assert r_api.load_model_weights(fresh, tmp_path / "m.weights.h5") is fresh
    assert same(fresh.get_weights(), model.get_weights())


def test_hdf5_verbs_are_thin_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(api, "save_model", lambda *args, **kwargs: calls.append(("save_model", args, kwargs)))
    monkeypatch.setattr(api, "load_model", lambda *args, **kwargs: calls.append(("load_model", args, kwargs)) or "model")
    model = object()
    r_api.save_model_hdf5(model, "m.h5", include_optimizer=False)
    assert r_api.load_model_hdf5("m.h5", custom_objects={"A": int}) == "model"
    assert calls == [
        ("save_model", (model, "m.h5"), {"overwrite": True, "include_optimizer": False}),
        ("load_model", ("m.h5",), {"custom_objects": {"A": int}, "compile": True}),
    ]


def test_weights_hdf5_verbs_round_trip_and_stay_strict(tmp_path):
    model = trained_model()
    path = tmp_path / "w.weights.h5"
    r_api.save_model_weights_hdf5(model, path)
    fresh = r_api.model_from_json(r_api.model_to_json(model))
    assert r_api.load_model_weights_hdf5(fresh, path) is fresh
    assert np.array_equal(fresh.predict(X, verbose=0), model.predict(X, verbose=0))
    assert same(optimizer_state(fresh), optimizer_state(model))

    inputs = keramic.Input(shape=(6,))
    other = keramic.Model(inputs, layers.Dense(3)(layers.Dense(7)(inputs)))
    with pytest.raises(WeightsMismatchError):
        r_api.load_model_weights_hdf5(other, path)
    with pytest.warns(UserWarning, match="skip_mismatch=True"):
        r_api.load_model_weights_hdf5(other, path, skip_mismatch=True)


def test_model_to_json_and_back_keep_the_architecture_and_compile_config():
    model = trained_model()
    text = r_api.model_to_json(model)
    assert text == model.to_json()
    rebuilt = r_api.model_from_json(text)
    assert json.loads(r_api.model_to_json(rebuilt)) == json.loads(text)
    assert type(rebuilt.optimizer).__name__ == "RMSprop"


def test_get_config_from_config_rebuild_each_model_kind():
    functional = trained_model()
    sequential = keramic.Sequential([keramic.Input(shape=(4,)), layers.Dense(2)], name="seq")
    for model in (functional, sequential):
        config = r_api.get_config(model)
        assert config == model.get_config() and config.config_class is type(model)
        rebuilt = r_api.from_config(config)
        assert type(rebuilt) is type(model) and rebuilt.get_config() == model.get_config()


def test_from_config_needs_the_class_recorded_by_get_config():
    with pytest.raises(ConfigError, match="needs the result of get_config"):
        r_api.from_config(trained_model().get_config())


class Scale(layers.Layer):
    """An unregistered custom layer: only `custom_objects` can name it."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, inputs):
        return inputs * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def test_from_config_resolves_custom_objects():
    model = keramic.Sequential([keramic.Input(shape=(3,)), Scale(3.0, name="scale")])
    config = r_api.get_config(model)
    with pytest.raises(UnknownObjectError):
        r_api.from_config(config)
    rebuilt = r_api.from_config(config, custom_objects={"Scale": Scale})
    assert isinstance(rebuilt.layers[0], Scale) and rebuilt.layers[0].factor == 3.0


def test_get_weights_set_weights_transfer_to_a_fresh_model():
    model = trained_model()
    fresh = r_api.from_config(r_api.get_config(model))
    assert r_api.set_weights(fresh, r_api.get_weights(model)) is fresh
    assert np.array_equal(fresh.predict(X, verbose=0), model.predict(X, verbose=0))


def test_save_model_config_writes_to_json_atomically(tmp_path):
    model = trained_model()
    path = tmp_path / "config.json"
    r_api.save_model_config(model, path)
    assert path.read_text() == model.to_json()
    assert os.listdir(tmp_path) == ["config.json"]
    with pytest.raises(FileExistsError):
        r_api.save_model_config(model, path)
    r_api.save_model_config(model, path, overwrite=True)
    rebuilt = r_api.load_model_config(path)
    assert rebuilt.get_config() == model.get_config()


@pytest.mark.parametrize("document", ["README.md", "docs/saving.md"])
def test_every_verb_is_in_the_documented_table(document):
    text = (ROOT / document).read_text()
    rows = set(re.findall(r"^\| `(\w+)\(", text, flags=re.MULTILINE))
    assert set(r_api.__all__) <= rows


def test_saved_model_verbs_export_reload_and_predict(tmp_path):
    pytest.importorskip("onnxruntime", reason="export needs onnx and onnxruntime (the `export` extra)")
    model = trained_model()
    r_api.model_to_saved_model(model, tmp_path / "artifact")
    restored = r_api.model_from_saved_model(tmp_path / "artifact")
    np.testing.assert_array_equal(restored.predict(X, verbose=0), model.predict(X, verbose=0))
    r_api.export_savedmodel(model, tmp_path / "serving")
    predictions = r_api.predict_savedmodel(X, str(tmp_path / "serving"))
    predictions = predictions if isinstance(predictions, np.ndarray) else list(predictions.values())[0]
    np.testing.assert_allclose(predictions, model.predict(X, verbose=0), atol=1e-5)


def test_checkpoint_verbs_restore_into_a_never_called_model(tmp_path):
    model = trained_model()
    r_api.save_model_weights_tf(model, tmp_path / "ckpt")
    fresh = r_api.model_from_json(r_api.model_to_json(model))
    r_api.load_model_weights_tf(fresh, tmp_path / "ckpt")
    np.testing.assert_array_equal(fresh.predict(X, verbose=0), model.predict(X, verbose=0))
