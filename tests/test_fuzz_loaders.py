"""Property tests for every loader: a valid file written here, then mutated (bit flips, truncations,
insertions, JSON value swaps), must give a keramic error or an exact load, never anything else.

"Exact" means the weights of the original model. Formats that carry checksums (the `.keras` zip's
CRC-32s, a checkpoint's hashes, an export artifact's fingerprint) must catch every change to the
bytes they load; formats without any (HDF5, safetensors, a `.keras` directory) may load a changed
value, but only one the damaged file really holds: every loaded tensor's bytes must then appear
verbatim in the file, with the model's shapes and dtypes.

`KERAMIC_FUZZ_EXAMPLES` raises the example count: `tests/fuzz/run_fuzz.py` runs this module for
long; the suite runs a handful of examples per loader.
"""

import json
import os
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keramic
from keramic.errors import KeramicError

EXAMPLES = int(os.environ.get("KERAMIC_FUZZ_EXAMPLES", "8"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="KERAMIC_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])


def _model():
    keramic.utils.set_random_seed(3)
    model = keramic.Sequential([keramic.Input((3,)), keramic.layers.Dense(4, activation="relu"), keramic.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    return model


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """Every file kind written once from one model: {kind: path}, plus the model's weights."""
    root = tmp_path_factory.mktemp("originals")
    model = _model()
    paths = {
        "keras_zip": root / "model.keras",
        "keras_dir": root / "model_dir",
        "legacy_h5": root / "model.h5",
        "weights_h5": root / "model.weights.h5",
        "safetensors": root / "model.safetensors",
        "sharded": root / "sharded" / "model.weights.json",
        "checkpoint": root / "ckpt",
    }
    model.save(paths["keras_zip"])
    model.save(paths["keras_dir"], zipped=False)
    model.save(paths["legacy_h5"])
    model.save_weights(paths["weights_h5"])
    model.save_weights(paths["safetensors"])
    model.save_weights(paths["sharded"], max_shard_size=1e-7)  # one tiny shard per few tensors
    model.save_weights(paths["checkpoint"], format="checkpoint")
    return {"paths": paths, "weights": model.get_weights(), "json": model.to_json()}


# ------------------------------------------------------------------ mutations
@st.composite
def mutations(draw, size):
    """One change to a byte string of `size` bytes: ('flip', at, bit), ('truncate', at), ('insert', at, bytes)."""
    kind = draw(st.sampled_from(["flip", "flip", "truncate", "insert"]))
    at = draw(st.integers(0, max(size - 1, 0)))
    if kind == "flip":
        return ("flip", at, draw(st.integers(0, 7)))
    if kind == "truncate":
        return ("truncate", at)
    return ("insert", at, draw(st.binary(min_size=1, max_size=16)))


def mutate(data, mutation):
    if mutation[0] == "flip":
        _, at, bit = mutation
        return data[:at] + bytes([data[at] ^ (1 << bit)]) + data[at + 1 :]
    if mutation[0] == "truncate":
        return data[: mutation[1]]
    _, at, extra = mutation
    return data[:at] + extra + data[at:]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def _json_paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _json_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_paths(item, (*prefix, index))


def swap_json_value(data, draw):
    """Replace one value anywhere in a JSON document by another JSON value (or drop a key)."""
    document = json.loads(data)
    paths = list(_json_paths(document))
    path = draw(st.sampled_from(paths))
    replacement = draw(JSON_VALUES)
    if not path:
        return json.dumps(replacement).encode()
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return json.dumps(document).encode()


def damage(data, name, draw):
    """A JSON file gets a value swap or byte mutations; any other file one to three byte mutations."""
    if name.endswith(".json") and draw(st.booleans()):
        return swap_json_value(data, draw)
    for _ in range(draw(st.integers(1, 3))):
        data = mutate(data, draw(mutations(len(data)))) if data else data
    return data


# ------------------------------------------------------------------ oracles
def _all_bytes(path):
    path = Path(path)
    if path.is_dir():
        return b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())
    return path.read_bytes()


def check_outcome(load, originals, damaged_path, strict):
    """A keramic error, or the original weights; without checksums (`strict` False), weights the damaged file holds verbatim."""
    try:
        loaded = load()
    except KeramicError:
        return
    weights = loaded if isinstance(loaded, list) else loaded.get_weights()
    expected = originals["weights"]
    assert [w.shape for w in weights] == [w.shape for w in expected]
    assert [w.dtype for w in weights] == [w.dtype for w in expected]
    if all(np.array_equal(a, b) for a, b in zip(weights, expected)):
        return
    assert not strict, "a file with checksums loaded weights other than the ones written"
    held = _all_bytes(damaged_path)
    for array in weights:
        assert np.ascontiguousarray(array).tobytes() in held, "loaded a tensor the damaged file does not hold"


def _damage_one_file(source, target, draw):
    """Copy `source` (a file or a directory) to `target` with one of its files damaged."""
    if os.path.lexists(target):
        shutil.rmtree(target) if os.path.isdir(target) and not os.path.islink(target) else os.remove(target)
    if source.is_dir():
        shutil.copytree(source, target)
        files = sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file())
        victim = target / draw(st.sampled_from(files))
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        victim = target
    victim.write_bytes(damage(victim.read_bytes(), victim.name, draw))


def _weights_into_fresh_model(path):
    model = _model()
    model.load_weights(path)
    return model


# ------------------------------------------------------------------ one property per loader
WHOLE_MODELS = [("keras_zip", True), ("keras_dir", False), ("legacy_h5", False)]


@pytest.mark.parametrize(("kind", "strict"), WHOLE_MODELS)
@FUZZ
@given(data=st.data())
def test_load_model_of_damaged_file(originals, tmp_path, kind, strict, data):
    source = originals["paths"][kind]
    target = tmp_path / source.name
    _damage_one_file(source, target, data.draw)
    check_outcome(lambda: keramic.models.load_model(target), originals, target, strict)


@FUZZ
@given(data=st.data())
def test_load_model_of_rezipped_archive_with_a_damaged_member(originals, tmp_path, data):
    """One member damaged, then the archive rewritten whole with true CRCs: the parsers behind the
    zip layer (config JSON, metadata, HDF5 weights) meet the damage instead of the checksums."""
    source = originals["paths"]["keras_zip"]
    with zipfile.ZipFile(source) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    victim = data.draw(st.sampled_from([info.filename for info, _ in members]))
    target = tmp_path / "model.keras"
    with zipfile.ZipFile(target, "w") as archive:
        for info, content in members:
            archive.writestr(info, damage(content, info.filename, data.draw) if info.filename == victim else content)
    check_outcome(lambda: keramic.models.load_model(target), originals, target, strict=False)


@FUZZ
@given(data=st.data())
def test_load_model_of_h5_with_a_damaged_config_attribute(originals, tmp_path, data):
    """The legacy file's `model_config` / `training_config` JSON attributes damaged in place."""
    target = tmp_path / "model.h5"
    shutil.copyfile(originals["paths"]["legacy_h5"], target)
    with h5py.File(target, "r+") as handle:
        name = data.draw(st.sampled_from(["model_config", "training_config"]))
        text = handle.attrs[name]
        text = text.encode() if isinstance(text, str) else bytes(text)
        handle.attrs[name] = np.bytes_(damage(text, "config.json", data.draw))  # fixed-length: NULs and bad UTF-8 kept
    check_outcome(lambda: keramic.models.load_model(target), originals, target, strict=False)


@pytest.mark.parametrize(("kind", "strict"), [("weights_h5", False), ("safetensors", False), ("checkpoint", True)])
@FUZZ
@given(data=st.data())
def test_load_weights_of_damaged_file(originals, tmp_path, kind, strict, data):
    source = originals["paths"][kind]
    target = tmp_path / source.name
    _damage_one_file(source, target, data.draw)
    check_outcome(lambda: _weights_into_fresh_model(target), originals, target, strict)


@FUZZ
@given(data=st.data())
def test_load_weights_of_damaged_sharded_set(originals, tmp_path, data):
    """The index or one shard damaged (the set is copied whole, so the index finds its shards)."""
    source = originals["paths"]["sharded"].parent
    target = tmp_path / "sharded"
    _damage_one_file(source, target, data.draw)
    check_outcome(lambda: _weights_into_fresh_model(target / "model.weights.json"), originals, target, strict=False)


@FUZZ
@given(data=st.data())
def test_model_from_json_of_damaged_config(originals, data):
    """A model or a keramic error: never a layer, a callback or a raw Python exception."""
    text = originals["json"].encode()
    damaged = damage(text, "config.json", data.draw)
    try:
        model = keramic.models.model_from_json(damaged.decode("utf-8", "surrogateescape"))
    except KeramicError:
        return
    assert isinstance(model, keramic.Model)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="export artifacts need the export extra (onnx, onnxruntime)")
    directory = tmp_path_factory.mktemp("artifact") / "1"
    model = _model()
    from keramic.export import export_model

    export_model(model, directory)
    return directory, model.get_weights()


@FUZZ
@given(data=st.data())
def test_load_artifact_of_damaged_export(artifact, tmp_path, data):
    """An artifact's fingerprint covers its files: a damaged one loads exactly or is refused."""
    from keramic.export import load_artifact

    source, weights = artifact
    target = tmp_path / "1"
    _damage_one_file(source, target, data.draw)
    check_outcome(lambda: load_artifact(target), {"weights": weights}, target, strict=True)


@pytest.mark.parametrize("kind", ["keras_zip", "legacy_h5", "weights_h5", "safetensors", "checkpoint"])
@FUZZ
@given(data=st.data())
def test_inspect_of_damaged_file(originals, tmp_path, kind, data):
    """`keramic inspect` reads only metadata: a report (a dict) or a keramic error, nothing else."""
    from keramic.saving.inspect import format_report, inspect_file

    source = originals["paths"][kind]
    target = tmp_path / source.name
    _damage_one_file(source, target, data.draw)
    try:
        report = inspect_file(target)
    except KeramicError:
        return
    assert isinstance(report, dict) and isinstance(format_report(report), str)
