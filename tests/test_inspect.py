"""`keramic.saving.inspect`: reports what a file holds from metadata only, and refuses bad files
with errors that name the file and the entry."""

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import keramic
from keramic import layers
from keramic.errors import FileFormatError, KeramicError
from keramic.saving.stores import atomic
from keramic.saving.inspect import format_report, inspect_file

FIXTURES = Path(__file__).parent / "fixtures" / "keras3"
KERAS_CASES = ["seed_mlp", "sequential_mlp_adam", "cnn_small", "functional_two_in_two_out", "nested_shared", "rnn_text"]


def nbytes(variables):
    return sum(v.numel() * v.element_size() for v in variables)


def trained_sequential(name="seq"):
    model = keramic.Sequential(
        [keramic.Input(shape=(4,), name="x"), layers.Dense(3, name="d"), layers.BatchNormalization(name="bn"), layers.Dense(2, activation="softmax", name="out")],
        name=name,
    )
    model.compile(optimizer=keramic.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(np.random.rand(8, 4).astype("float32"), np.array([0, 1] * 4), epochs=1, verbose=0)
    return model


@pytest.mark.parametrize("case", KERAS_CASES)
def test_keras_archives_report_what_loading_them_builds(case):
    path = FIXTURES / case / "model.keras"
    report = inspect_file(path)
    model = keramic.saving.load_model(path)

    assert report["format"] == "keras_v3"
    assert report["keras_version"] == "3.15.1" and report["keramic_version"] is None
    assert report["model"]["name"] == model.name
    assert report["total_params"] == model.count_params()
    assert report["weights_bytes"] == nbytes(model.weights)
    params = {row["name"]: row["params"] for row in report["layers"]}
    for layer in model.layers:
        assert params[layer.name] == (layer.count_params() if layer.built else 0), layer.name
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        assert report["optimizer"] is None and report["total_weight_bytes"] == report["weights_bytes"]
    else:
        assert report["optimizer"]["state_in_file"] is True
        assert report["optimizer"]["variables"] == len(optimizer.variables)
        assert report["optimizer"]["bytes"] == nbytes(optimizer.variables)
        assert report["total_weight_bytes"] == report["weights_bytes"] + report["optimizer"]["bytes"]
    assert report["file_bytes"] == path.stat().st_size


def test_functional_inputs_outputs_and_compile_config_come_from_the_config():
    report = inspect_file(FIXTURES / "functional_two_in_two_out" / "model.keras")
    assert [(i["name"], i["shape"], i["dtype"]) for i in report["inputs"]] == [("num_a", [None, 8], "float32"), ("num_b", [None, 5], "float32")]
    assert [(o["name"], o["class_name"]) for o in report["outputs"]] == [("score", "Dense"), ("label", "Dense")]
    assert report["compile_config"]["loss"] == {"score": "mse", "label": "sparse_categorical_crossentropy"}
    assert report["optimizer"]["class_name"] == "Adam"
    text = format_report(report)
    assert "num_a shape=(None, 8) dtype=float32" in text
    assert "Adam 'adam', learning_rate=0.005" in text
    assert "state in file: 22 variables" in text


def test_keramic_files_report_their_versions_layers_and_optimizer(tmp_path):
    model = trained_sequential()
    model.save(tmp_path / "m.keras")
    report = inspect_file(tmp_path / "m.keras")

    assert report["keramic_version"] == keramic.__version__
    assert report["model"]["class_name"] == "Sequential"
    assert [(row["name"], row["class_name"]) for row in report["layers"]] == [("x", "InputLayer"), ("d", "Dense"), ("bn", "BatchNormalization"), ("out", "Dense")]
    assert [row["params"] for row in report["layers"]] == [0, 15, 12, 8]
    assert report["inputs"] == [{"key": None, "name": "x", "shape": [None, 4], "dtype": "float32"}]
    assert report["outputs"] == [{"key": None, "name": "out", "class_name": "Dense"}]
    assert report["optimizer"]["bytes"] == nbytes(model.optimizer.variables)
    assert report["compile_config"]["metrics"] == ["accuracy"]
    text = format_report(report)
    for expected in (f"keramic {keramic.__version__}", "'seq' (Sequential", "bn", "BatchNormalization", "Params:     35 (140 bytes of weights)", 'metrics=["accuracy"]'):
        assert expected in text


def test_a_model_saved_without_optimizer_or_compile_says_so(tmp_path):
    model = trained_sequential()
    model.save(tmp_path / "no_optimizer.keras", include_optimizer=False)
    report = inspect_file(tmp_path / "no_optimizer.keras")
    assert report["optimizer"] is None and report["compile_config"] is None
    assert "Compile:    not compiled" in format_report(report)

    uncompiled = keramic.Sequential([keramic.Input(shape=(2,)), layers.Dense(1)])
    uncompiled.save(tmp_path / "plain.keras")
    report = inspect_file(tmp_path / "plain.keras")
    assert report["optimizer"] is None and report["total_params"] == 3


def test_weights_file_rows_come_from_group_paths_and_name_attributes():
    report = inspect_file(FIXTURES / "nested_shared" / "model.weights.h5")
    assert report["format"] == "weights_h5" and report["keras_version"] is None
    assert report["model"] == {"class_name": None, "module": None, "registered_name": None, "name": "nested_shared"}
    rows = {row["path"]: (row["name"], row["params"]) for row in report["layers"]}
    assert rows["layers/functional"] == ("encoder", 6 * 4 + 4 + 4 * 4 + 4)  # the nested model's whole subtree
    assert rows["layers/dense"] == ("shared_proj", 6 * 6 + 6)
    assert report["optimizer"] == {"class_name": None, "name": "adam", "learning_rate": None, "state_in_file": True, "variables": 18, "bytes": 800}
    assert "[layers/functional]" in format_report(report)


def test_subclassed_model_is_described_without_importing_its_module():
    assert "keras3_fixture_custom_objects" not in sys.modules
    report = inspect_file(FIXTURES / "subclassed" / "model.keras")
    assert "keras3_fixture_custom_objects" not in sys.modules
    assert report["model"]["registered_name"] == "keras3_fixtures>TinyResidualNet"
    assert report["inputs"] == [{"key": None, "name": None, "shape": [8, 5], "dtype": None}] and report["outputs"] is None
    rows = {row["name"]: (row["path"], row["params"]) for row in report["layers"]}
    assert rows == {"head": ("head", 27), "hidden": ("hidden", 48), "norm": ("layers/batch_normalization", 32), "skip": ("layers/dense_1", 40)}


def test_config_json_has_architecture_but_no_sizes():
    report = inspect_file(FIXTURES / "rnn_text" / "config.json")
    assert report["format"] == "config_json"
    assert report["total_params"] is None and all(row["params"] is None for row in report["layers"])
    assert report["inputs"][0]["dtype"] == "int32"
    assert "n/a (the file holds no weights)" in format_report(report)


def test_names_in_a_config_are_never_imported(tmp_path):
    config = {"module": "keramic_test_never_imported", "class_name": "Evil", "config": {"name": "evil"}, "registered_name": "x>Evil"}
    (tmp_path / "evil.json").write_text(json.dumps(config))
    report = inspect_file(tmp_path / "evil.json")
    assert report["model"]["class_name"] == "Evil"
    assert "keramic_test_never_imported" not in sys.modules


def test_no_tensor_data_is_read(tmp_path, monkeypatch):
    trained_sequential().save(tmp_path / "m.keras")

    def refuse(*args, **kwargs):
        raise AssertionError("inspect read tensor data")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", refuse)
    monkeypatch.setattr(h5py.Dataset, "read_direct", refuse)
    assert inspect_file(tmp_path / "m.keras")["total_params"] == 35


def test_bfloat16_weights_count_two_bytes(tmp_path):
    model = keramic.Sequential([keramic.Input(shape=(4,)), layers.Dense(3, dtype="bfloat16")])
    model.save_weights(tmp_path / "bf.weights.h5")
    report = inspect_file(tmp_path / "bf.weights.h5")
    assert report["weight_dtypes"] == {"bfloat16": 2}
    assert report["weights_bytes"] == 15 * 2


def test_directory_form_is_read_like_the_archive(tmp_path):
    with zipfile.ZipFile(FIXTURES / "seed_mlp" / "model.keras") as archive:
        archive.extractall(tmp_path / "model_dir")
    report = inspect_file(tmp_path / "model_dir")
    archived = inspect_file(FIXTURES / "seed_mlp" / "model.keras")
    assert report["format"] == "keras_directory"
    assert report["layers"] == archived["layers"] and report["optimizer"] == archived["optimizer"]


def test_hard_link_cycles_are_counted_once(tmp_path):
    path = tmp_path / "cycle.weights.h5"
    with h5py.File(path, "w") as h5file:
        group = h5file.create_group("layers/dense/vars")
        group.attrs["name"] = "d"
        group.create_dataset("0", data=np.zeros((2, 3), "float32"))
        group["loop"] = h5file["layers"]
        h5file["layers/blocks/back"] = h5file["layers"]
    report = inspect_file(path)
    assert report["total_params"] == 6
    assert [(row["path"], row["params"]) for row in report["layers"]] == [("layers/dense", 6)]


# ------------------------------------------------------------------ refusals
def test_links_leaving_the_file_are_refused_naming_the_entry(tmp_path):
    path = tmp_path / "linked.weights.h5"
    with h5py.File(path, "w") as h5file:
        h5file.create_group("layers/dense/vars")
        h5file["layers/dense/vars/0"] = h5py.ExternalLink("/etc/passwd", "/x")
    with pytest.raises(KeramicError, match=r"linked\.weights\.h5: entry '/layers/dense/vars/0': ExternalLink"):
        inspect_file(path)


TFKERAS2 = Path(__file__).parent / "fixtures" / "tfkeras2"


@pytest.mark.parametrize("case", ["seed_mlp", "functional_multi_io", "sequential_cnn"])
def test_tf_keras_legacy_files_report_what_loading_them_builds(case):
    model = keramic.models.load_model(TFKERAS2 / case / "model.h5")
    report = inspect_file(TFKERAS2 / case / "model.h5")
    assert report["format"] == "legacy_h5" and report["keras_version"] == "2.21.0"
    assert report["model"]["name"] == model.name
    assert report["total_params"] == sum(w.numpy().size for w in model.weights)
    with_weights = {row["name"]: row["params"] for row in report["layers"] if row["params"]}
    assert with_weights == {layer.name: sum(w.numpy().size for w in layer.weights) for layer in model.layers if layer.weights}
    assert report["optimizer"]["state_in_file"] and report["optimizer"]["variables"] > 0
    assert "Optimizer:" in format_report(report)

    weights = inspect_file(TFKERAS2 / case / "weights.h5")
    assert weights["format"] == "legacy_weights" and weights["total_params"] == report["total_params"]
    assert "Compile:" not in format_report(weights)


def test_legacy_layer_without_its_group_names_the_entry(tmp_path):
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as h5file:
        h5file.attrs["layer_names"] = [b"dense"]
    with pytest.raises(KeramicError, match=r"old\.h5: entry '/dense': a layer named in 'layer_names' has no group"):
        inspect_file(path)


def test_archive_without_config_names_file_and_entry(tmp_path):
    path = tmp_path / "empty.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", "{}")
    with pytest.raises(FileFormatError, match=r"empty\.keras: the archive has no 'config\.json' entry"):
        inspect_file(path)


@pytest.mark.parametrize(
    "member, text, message",
    [
        ("config.json", "{not json", r"entry 'config\.json': not valid JSON"),
        ("config.json", "[1, 2]", r"entry 'config\.json': expected a serialized model"),
        ("metadata.json", "[]", r"entry 'metadata\.json': expected a JSON object"),
        ("config.json", '{"class_name": "Functional", "config": {"layers": [1]}}', r"entry 'config\.json': unexpected config structure"),
    ],
)
def test_bad_json_members_name_the_entry(tmp_path, member, text, message):
    source = FIXTURES / "seed_mlp" / "model.keras"
    path = tmp_path / "bad.keras"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as archive:
        for info in original.infolist():
            archive.writestr(info.filename, text if info.filename == member else original.read(info.filename))
    with pytest.raises(FileFormatError, match=message):
        inspect_file(path)


def _mutations(value, depth=0):
    """Copies of a config with one node (up to depth 4) replaced by a value of the wrong kind."""
    if depth > 4 or not isinstance(value, (dict, list)):
        return
    keys = list(value) if isinstance(value, dict) else range(len(value))
    for key in keys:
        for odd in (None, 7, "x", [], {}, [1, 2, 3], {"class_name": 5}):
            copy = dict(value) if isinstance(value, dict) else list(value)
            copy[key] = odd
            yield copy
        for inner in _mutations(value[key], depth + 1):
            copy = dict(value) if isinstance(value, dict) else list(value)
            copy[key] = inner
            yield copy


@pytest.mark.parametrize("case", ["functional_two_in_two_out", "sequential_mlp_adam", "subclassed"])
def test_malformed_configs_give_a_report_or_a_format_error(tmp_path, case):
    config = json.loads((FIXTURES / case / "config.json").read_text())
    path = tmp_path / "config.json"
    count = 0
    for mutated in _mutations(config):
        path.write_text(json.dumps(mutated))
        try:
            format_report(inspect_file(path))
        except FileFormatError:
            pass
        count += 1
    assert count > 200


def test_oversized_json_is_refused_before_parsing(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "MAX_JSON_BYTES", 100)
    with pytest.raises(FileFormatError, match=r"entry 'config\.json' declares 4,542 bytes \(limit 100\)"):
        inspect_file(FIXTURES / "seed_mlp" / "model.keras")
    shutil.copy(FIXTURES / "seed_mlp" / "config.json", tmp_path / "config.json")
    with pytest.raises(FileFormatError, match="too large for a config JSON file"):
        inspect_file(tmp_path / "config.json")


def test_truncated_weights_file_is_a_format_error(tmp_path):
    data = (FIXTURES / "seed_mlp" / "model.weights.h5").read_bytes()
    (tmp_path / "cut.weights.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(FileFormatError, match=r"cut\.weights\.h5"):
        inspect_file(tmp_path / "cut.weights.h5")


def test_other_files_are_refused_with_the_reason(tmp_path):
    (tmp_path / "index.weights.json").write_text(json.dumps({"metadata": {}, "weight_map": {"/dense/vars": ["gone.h5"]}}))
    with pytest.raises(FileFormatError, match=r"index\.weights\.json: shard 'gone\.h5' does not exist"):
        inspect_file(tmp_path / "index.weights.json")
    os.mkdir(tmp_path / "folder")
    with pytest.raises(FileFormatError, match="a directory without 'config.json'"):
        inspect_file(tmp_path / "folder")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FileFormatError, match="unrecognised file format"):
        inspect_file(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError):
        inspect_file(tmp_path / "missing.keras")


# ---------------------------------------------------------------- checkpoint directories
class _Net(keramic.Model):
    def __init__(self):
        super().__init__()
        self.encoder = layers.Dense(8)
        self.norm = layers.BatchNormalization()
        self.head = layers.Dense(2)

    def call(self, x, training=None):
        return self.head(self.norm(self.encoder(x), training=training))


def test_checkpoints_report_variables_by_attribute_optimizer_and_training_state(tmp_path, monkeypatch):
    from keramic.saving.formats.checkpoint import RngState, save_checkpoint
    from keramic.saving.stores import safetensors_file

    model = _Net()
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    model.fit(np.ones((16, 4), "float32"), np.zeros((16, 2), "float32"), verbose=0)
    save_checkpoint(model, tmp_path / "ckpt", training_state={"epoch": 3, "rng": RngState.capture()})

    def refuse(*args, **kwargs):
        raise AssertionError("inspect opened a data file")

    monkeypatch.setattr(safetensors_file, "SafetensorsFile", refuse)
    report = inspect_file(tmp_path / "ckpt")
    assert report["format"] == "keramic_checkpoint" and report["model_class"] == "_Net"
    by_attribute = {row["attribute"]: (row["tensors"], row["params"]) for row in report["layers"]}
    assert by_attribute == {"encoder": (2, 4 * 8 + 8), "norm": (4, 4 * 8), "head": (2, 8 * 2 + 2)}
    assert report["total_params"] == sum(w.numpy().size for w in model.weights)
    assert report["optimizer"]["class_name"] == "adam" and report["optimizer"]["variables"] == len(model.optimizer.variables)
    assert report["metric_variables"] == sum(len(m.variables) for m in model.metrics)
    assert report["training_state"] == {"epoch": 3, "rng": "(RNG state)"}
    assert report["file_bytes"] == sum(p.stat().st_size for p in (tmp_path / "ckpt").iterdir())
    text = format_report(report)
    assert "encoder" in text and "Optimizer:  adam; state: " in text and "Training:   epoch=3, rng=(RNG state)" in text


def test_a_checkpoint_index_with_a_bad_shape_names_the_entry(tmp_path):
    from keramic.saving.formats.checkpoint import save_checkpoint

    model = keramic.Sequential([keramic.Input((3,)), layers.Dense(2)])
    save_checkpoint(model, tmp_path / "ckpt")
    index_path = tmp_path / "ckpt" / "checkpoint.json"
    index = json.loads(index_path.read_text())
    index["tensors"]["layers/0/kernel"]["shape"] = [3, -2]
    index_path.write_text(json.dumps(index))
    with pytest.raises(FileFormatError, match=r"checkpoint\.json: entry 'tensors/layers/0/kernel': shape"):
        inspect_file(tmp_path / "ckpt")


# ---------------------------------------------------------------- weights formats by key
def _expected_rows(model):
    """{tree path: params} of every object with variables, and the optimizer's variable count."""
    from keramic.saving import tree

    groups = tree.variable_groups(model)
    rows = {g.path: sum(v.numel() for v in g.variables) for g in groups if g.variables and g.path and not g.path.startswith("optimizer")}
    optimizer = sum(len(g.variables) for g in groups if g.path.startswith("optimizer"))
    return rows, optimizer


@pytest.mark.parametrize("name, options", [
    ("w.safetensors", {}),
    ("w.safetensors", {"max_shard_size": 0.0000001}),
    ("w.weights.json", {"max_shard_size": 0.0000001}),
])
def test_keyed_weights_files_and_sharded_indexes_are_described(tmp_path, name, options):
    model = trained_sequential()
    written = keramic.saving.save_weights(model, tmp_path / name, **options) or str(tmp_path / name)
    report = inspect_file(written)
    rows, optimizer_variables = _expected_rows(model)
    assert {row["path"]: row["params"] for row in report["layers"]} == rows
    assert report["total_params"] == sum(rows.values())
    assert report["weights_bytes"] == nbytes(model.weights)
    assert report["optimizer"]["variables"] == optimizer_variables
    assert report["weight_dtypes"] == {"float32": len(model.weights)}
    if report["format"] == "weights_json":
        assert report["shards"] > 1
    text = format_report(report)
    assert "Params:" in text and "Compile:" not in text
