"""Safe mode: no code from a file runs unless the caller passes `safe_mode=False`; classes come
only from keramic's registry and registered custom objects; nothing named in a file is imported;
no pickle or marshal on any safe load; zip members are read by name and never extracted."""

import json
import marshal
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import keramic
from keramic import layers
from keramic.errors import FileFormatError, UnknownObjectError, UnsafeDeserializationError
from keramic.models import Functional, Sequential
from keramic.saving import deserialize_keras_object

import helpers

FIXTURES = Path(__file__).parent / "fixtures" / "keras3"
X = np.linspace(-1, 1, 12, dtype="float32").reshape(4, 3)


def lambda_model(module):
    inputs = module.Input((3,), name="x")
    outputs = module.layers.Lambda(lambda x: x * 2.0 + 1.0, name="affine")(inputs)
    return module.Model(inputs, module.layers.Dense(2, name="head")(outputs), name="with_lambda")


def keras_archive(source, target, replacements=None, extra=None):
    """Copy archive `source` to `target`, replacing members and adding raw-named extra members."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            new.writestr(info.filename, (replacements or {}).get(info.filename, old.read(info.filename)))
        for name, content in (extra or {}).items():
            new.writestr(zipfile.ZipInfo(name), content)
    return target


# ---------------------------------------------------------------- Python lambdas
def test_lambda_in_our_archive_needs_safe_mode_false(tmp_path):
    model = lambda_model(keramic)
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(UnsafeDeserializationError, match="safe_mode=False") as caught:
        keramic.models.load_model(tmp_path / "lambda.keras")
    assert "lambda.keras" in str(caught.value) and "config.json" in str(caught.value)
    loaded = keramic.models.load_model(tmp_path / "lambda.keras", safe_mode=False)
    np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0), rtol=1e-6)


def test_lambda_in_a_model_directory_needs_safe_mode_false(tmp_path):
    model = lambda_model(keramic)
    model.save(tmp_path / "lambda_dir", zipped=False)
    with pytest.raises(UnsafeDeserializationError, match="safe_mode=False") as caught:
        keramic.models.load_model(tmp_path / "lambda_dir")
    assert "config.json" in str(caught.value)
    keramic.models.load_model(tmp_path / "lambda_dir", safe_mode=False)


def test_every_config_reader_is_safe_by_default():
    model = lambda_model(keramic)
    config = model.get_config()
    layer_config = keramic.saving.serialize_keras_object(model.get_layer("affine"))
    readers = [
        lambda: keramic.models.model_from_json(model.to_json()),
        lambda: deserialize_keras_object(keramic.saving.serialize_keras_object(model)),
        lambda: deserialize_keras_object(layer_config),
        lambda: Functional.from_config(config),
        lambda: keramic.Model.from_config(config),
        lambda: layers.Lambda.from_config(layer_config["config"]),
        lambda: Sequential.from_config(Sequential([keramic.Input((3,)), layers.Lambda(lambda x: x + 1)]).get_config()),
    ]
    for read in readers:
        with pytest.raises(UnsafeDeserializationError, match="safe_mode=False"):
            read()
    assert isinstance(keramic.models.model_from_json(model.to_json(), safe_mode=False), Functional)
    assert isinstance(deserialize_keras_object(layer_config, safe_mode=False), layers.Lambda)


def test_unsafe_loading_does_not_leak_into_later_loads(tmp_path):
    model = lambda_model(keramic)
    model.save(tmp_path / "lambda.keras")
    keramic.models.load_model(tmp_path / "lambda.keras", safe_mode=False)
    with pytest.raises(UnsafeDeserializationError):
        keramic.models.model_from_json(model.to_json())
    broken = keras_archive(tmp_path / "lambda.keras", tmp_path / "broken.keras", {"model.weights.h5": b"junk"})
    with pytest.raises(keramic.errors.KeramicError):
        keramic.models.load_model(broken, safe_mode=False)
    with pytest.raises(UnsafeDeserializationError):
        keramic.models.load_model(tmp_path / "lambda.keras")


@pytest.mark.interop
def test_keras_written_lambda_loads_only_with_safe_mode_false(keras, tmp_path):
    theirs = lambda_model(keras)
    theirs.save(tmp_path / "keras_lambda.keras")
    with pytest.raises(UnsafeDeserializationError, match="safe_mode=False") as caught:
        keramic.models.load_model(tmp_path / "keras_lambda.keras")
    assert "keras_lambda.keras" in str(caught.value)
    ours = keramic.models.load_model(tmp_path / "keras_lambda.keras", safe_mode=False)
    np.testing.assert_allclose(ours.predict(X, verbose=0), theirs.predict(X, verbose=0), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- nothing imported or called
@pytest.fixture
def tripwires(tmp_path, monkeypatch):
    """A canary module that records being imported, and os.system / subprocess.Popen that fail if called."""
    marker = tmp_path / "imported"
    (tmp_path / "keramic_canary_module.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Boom:\n    def __init__(self, **kwargs):\n        raise SystemExit('built')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    def called(*args, **kwargs):
        raise AssertionError(f"called with {args} {kwargs}")

    monkeypatch.setattr(os, "system", called)
    monkeypatch.setattr(subprocess, "Popen", called)
    yield marker
    assert not marker.exists() and "keramic_canary_module" not in sys.modules


HOSTILE_OBJECTS = [
    ({"module": "os", "class_name": "system", "config": {"command": "echo pwned"}}, "system"),
    ({"module": "subprocess", "class_name": "Popen", "config": {"args": ["echo", "pwned"]}}, "Popen"),
    ({"module": "builtins", "class_name": "eval", "config": {"source": "1"}}, "eval"),
    ({"module": "builtins", "class_name": "function", "config": "eval", "registered_name": "function"}, "eval"),
    ({"module": "os", "class_name": "function", "config": "system", "registered_name": "function"}, "system"),
    ({"module": "keramic_canary_module", "class_name": "Boom", "config": {}, "registered_name": "keramic_canary_module>Boom"}, "Boom"),
    ({"module": "keramic_canary_module", "class_name": "Boom", "config": {}}, "Boom"),
]


@pytest.mark.parametrize("config, name", HOSTILE_OBJECTS)
def test_module_names_in_configs_are_never_imported(tripwires, config, name):
    for safe_mode in (True, False):  # registry-only resolution does not depend on safe mode
        with pytest.raises(UnknownObjectError, match=rf"'{name}'.*register_keras_serializable.*custom_objects"):
            deserialize_keras_object(config, safe_mode=safe_mode)


@pytest.mark.parametrize("config, name", HOSTILE_OBJECTS)
def test_hostile_objects_inside_a_saved_model(tmp_path, tripwires, config, name):
    model = keramic.Sequential([keramic.Input((3,)), layers.Dense(2, name="d")], name="s")
    model.save(tmp_path / "good.keras")
    full = json.loads(model.to_json())
    dense = full["config"]["layers"][1]
    dense["config"]["activation"] = config
    archive = keras_archive(tmp_path / "good.keras", tmp_path / "evil.keras", {"config.json": json.dumps(full)})
    with pytest.raises(UnknownObjectError, match=rf"'{name}'") as caught:
        keramic.models.load_model(archive)
    assert "evil.keras" in str(caught.value)
    top = dict(config)
    archive = keras_archive(tmp_path / "good.keras", tmp_path / "top.keras", {"config.json": json.dumps(top)})
    with pytest.raises(UnknownObjectError, match=rf"'{name}'"):
        keramic.models.load_model(archive)


def test_dotted_string_identifiers_are_not_imported(tripwires):
    config = keramic.saving.serialize_keras_object(layers.Dense(2))
    config["config"]["activation"] = "os.system"
    with pytest.raises(UnknownObjectError, match="os.system"):
        deserialize_keras_object(config)


# ---------------------------------------------------------------- custom objects
class Scale(layers.Layer):
    """Not registered globally: only `custom_objects` can make it loadable."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def scaled_config():
    model = keramic.Sequential([keramic.Input((3,)), Scale(3.0, name="scale")], name="scaled")
    config = json.loads(model.to_json())
    entry = config["config"]["layers"][1]
    entry.update(module=None, class_name="Scale", registered_name="mypkg>Scale")  # as Keras writes a registered class
    return json.dumps(config)


def test_custom_objects_with_package_keys_as_in_keras():
    text = scaled_config()
    with pytest.raises(UnknownObjectError, match=r"'Scale'.*register_keras_serializable"):
        keramic.models.model_from_json(text)
    model = keramic.models.model_from_json(text, custom_objects={"mypkg>Scale": Scale})
    assert isinstance(model.layers[0], Scale) and model.layers[0].factor == 3.0
    with keramic.saving.custom_object_scope({"mypkg>Scale": Scale}):
        assert isinstance(keramic.models.model_from_json(text).layers[0], Scale)


@pytest.mark.interop
def test_keras_registered_custom_layer_loads_with_package_key(keras, tmp_path):
    @keras.saving.register_keras_serializable("mypkg")
    class KerasScale(keras.layers.Layer):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    try:
        theirs = keras.Sequential([keras.Input((3,)), KerasScale(3.0), keras.layers.Dense(2)])
        theirs.save(tmp_path / "custom.keras")
    finally:
        keras.saving.get_custom_objects().pop("mypkg>KerasScale", None)
    with pytest.raises(UnknownObjectError, match="KerasScale"):
        keramic.models.load_model(tmp_path / "custom.keras")
    ours = keramic.models.load_model(tmp_path / "custom.keras", custom_objects={"mypkg>KerasScale": Scale})
    np.testing.assert_allclose(ours.predict(X, verbose=0), theirs.predict(X, verbose=0), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- no pickle, no marshal
def forbid_pickle_and_marshal(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle/marshal used while loading")

    for module, names in ((pickle, ("loads", "load", "Unpickler")), (marshal, ("loads", "load"))):
        for name in names:
            monkeypatch.setattr(module, name, refuse)


@pytest.fixture
def no_pickle_or_marshal(monkeypatch):
    forbid_pickle_and_marshal(monkeypatch)


@pytest.mark.parametrize("archive", sorted(FIXTURES.glob("*/model.keras")), ids=lambda p: p.parent.name)
def test_fixtures_load_without_pickle_or_marshal(no_pickle_or_marshal, archive):
    model = keramic.models.load_model(archive, custom_objects={"keras3_fixtures>TinyResidualNet": helpers.TinyResidualNet})
    assert model.built
    model.load_weights(archive)


def test_directory_and_sharded_loads_use_no_pickle_or_marshal(tmp_path, monkeypatch):
    model = keramic.models.load_model(FIXTURES / "cnn_small" / "model.keras")
    model.save(tmp_path / "dir", zipped=False)
    keramic.saving.save_weights(model, tmp_path / "w.weights.json", max_shard_size=0.00001)
    with monkeypatch.context() as patch:
        forbid_pickle_and_marshal(patch)
        loaded = keramic.models.load_model(tmp_path / "dir")
        loaded.load_weights(tmp_path / "w.weights.json")
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_refused_lambda_never_reaches_marshal(tmp_path, monkeypatch):
    lambda_model(keramic).save(tmp_path / "lambda.keras")
    calls = []
    monkeypatch.setattr(marshal, "loads", lambda *args: calls.append(args))
    with pytest.raises(UnsafeDeserializationError):
        keramic.models.load_model(tmp_path / "lambda.keras")
    assert calls == []


# ---------------------------------------------------------------- zip member names
def test_members_with_escaping_names_are_refused_and_nothing_is_written(tmp_path, monkeypatch):
    """Such members were once skipped; an archive holding them is now refused whole (a writer
    that produced them is not one to trust), and nothing is ever written outside."""
    model = keramic.Sequential([keramic.Input((3,)), layers.Dense(2)])
    model.save(tmp_path / "good.keras")
    work = tmp_path / "deep" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    absolute = tmp_path / "absolute_evil"
    extra = {
        "../evil": b"x",
        "../../evil": b"x",
        str(absolute): b"x",
        "/abs/path": b"x",
        "assets/../../evil_asset": b"x",
        "assets/layer/../../../evil_too": b"x",
    }
    archive = keras_archive(tmp_path / "good.keras", work / "hostile.keras", extra=extra)
    with zipfile.ZipFile(archive) as check:
        assert set(extra) <= set(check.namelist())  # names kept exactly as written
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(FileFormatError, match=r"hostile\.keras.*not a plain relative name"):
        keramic.models.load_model(archive)
    with pytest.raises(FileFormatError, match=r"hostile\.keras.*not a plain relative name"):
        model.load_weights(archive)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert not absolute.exists() and not os.path.exists("/abs/path")
