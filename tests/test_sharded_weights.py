"""Sharded weights (`max_shard_size`): Keras's index and shard layout, exact round trips with
optimizer state both ways with real Keras, and an index that may only name files beside it."""

import json
import os

import h5py
import numpy as np
import pytest
import torch

import keramic
from keramic.errors import FileFormatError, KeramicError, WeightsMismatchError
from keramic.saving import save_weights
from keramic.saving.formats import sharded_weights

# 0.00002 GiB = 21474 bytes: the 90x30 kernel (10800 bytes) fits, two of them do not.
SMALL_SHARDS = 0.00002


def mlp(module, compile=True):
    model = module.Sequential(
        [
            module.Input((30,), dtype="int32"),
            module.layers.Embedding(5, 3, name="embedding"),
            module.layers.Flatten(name="flatten"),
            module.layers.Dense(30, name="dense"),
            module.layers.BatchNormalization(name="batch_normalization"),
            module.layers.Dense(3, name="dense_1"),
        ],
        name="sequential",
    )
    if compile:
        model.compile(optimizer=module.optimizers.Adam(0.01, name="adam"), loss="mse")
    return model


def data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 5, size=(4, 30)).astype("int32"), rng.normal(size=(4, 3)).astype("float32")


def trained(module, steps=2):
    model = mlp(module)
    for step in range(steps):
        model.train_on_batch(*data(step))
    return model


def state(model):
    variables = list(model.weights) + (list(model.optimizer.variables) if getattr(model, "optimizer", None) else [])
    return [np.array(v.numpy()) for v in variables]


def assert_same_state(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def tree(path):
    """Every group and dataset of an HDF5 file: name -> (shape or None, attributes)."""
    entries = {}
    with h5py.File(path, "r") as h5file:
        h5file.visititems(
            lambda name, obj: entries.__setitem__(
                name, (getattr(obj, "shape", None), {k: str(v) for k, v in obj.attrs.items()})
            )
        )
    return entries


def test_index_and_shards_follow_keras_layout(tmp_path):
    model = trained(keramic)
    save_weights(model, tmp_path / "sw.weights.json", max_shard_size=SMALL_SHARDS)
    names = sorted(os.listdir(tmp_path))
    assert names == ["sw.weights.json", "sw_00000.weights.h5", "sw_00001.weights.h5", "sw_00002.weights.h5"]
    index = json.loads((tmp_path / "sw.weights.json").read_text())
    total = sum(v.numel() * v.element_size() for v in list(model.weights) + list(model.optimizer.variables))
    assert index["metadata"] == {"total_size": float(total)}
    assert isinstance(index["metadata"]["total_size"], float)
    weight_map = index["weight_map"]
    assert list(weight_map) == [
        "/layers/embedding/vars",
        "/layers/dense/vars",
        "/layers/batch_normalization/vars",
        "/layers/dense_1/vars",
        "/optimizer/vars",
    ]
    assert weight_map["/layers/embedding/vars"] == "sw_00000.weights.h5"  # one dataset: a plain string
    assert weight_map["/layers/dense/vars"] == ["sw_00000.weights.h5"]
    assert weight_map["/optimizer/vars"] == ["sw_00000.weights.h5", "sw_00001.weights.h5", "sw_00002.weights.h5"]
    first, second = tree(tmp_path / "sw_00000.weights.h5"), tree(tmp_path / "sw_00001.weights.h5")
    assert first["layers/flatten/vars"] == (None, {"name": "flatten"})  # empty groups still carry their name
    assert first["optimizer/vars"][1] == {"name": "adam"}
    assert second == {"optimizer": (None, {}), "optimizer/vars": (None, {}), "optimizer/vars/4": ((90, 30), {})}


def test_round_trip_is_exact_with_optimizer_state(tmp_path):
    model = trained(keramic)
    save_weights(model, tmp_path / "m.weights.json", max_shard_size=SMALL_SHARDS)
    fresh = mlp(keramic)  # compiled, optimizer not built yet: its slots come from the file
    fresh.load_weights(tmp_path / "m.weights.json")
    assert_same_state(state(model), state(fresh))
    np.testing.assert_array_equal(model.predict(data()[0], verbose=0), fresh.predict(data()[0], verbose=0))

    plain = mlp(keramic, compile=False)
    plain.load_weights(tmp_path / "m.weights.json")  # an uncompiled model ignores the optimizer entries
    assert_same_state([w.numpy() for w in model.weights], [w.numpy() for w in plain.weights])


def test_bfloat16_variables_round_trip_through_shards(tmp_path):
    model = keramic.Sequential([keramic.Input((8,)), keramic.layers.Dense(16, dtype="bfloat16"), keramic.layers.Dense(4)])
    save_weights(model, tmp_path / "b.weights.json", max_shard_size=0.0000003)
    assert len([n for n in os.listdir(tmp_path) if n.endswith(".h5")]) > 1
    other = keramic.Sequential([keramic.Input((8,)), keramic.layers.Dense(16, dtype="bfloat16"), keramic.layers.Dense(4)])
    other.load_weights(tmp_path / "b.weights.json")
    for a, b in zip(model.weights, other.weights):
        assert b.dtype == a.dtype
        assert torch.equal(a.detach().cpu(), b.detach().cpu())


def test_h5_path_becomes_json_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match=r"m\.weights\.json"):
        save_weights(trained(keramic), tmp_path / "m.weights.h5", max_shard_size=1.0)
    assert sorted(os.listdir(tmp_path)) == ["m.weights.json", "m_00000.weights.h5"]


def test_variable_larger_than_a_shard_is_refused_before_writing(tmp_path):
    with pytest.raises(KeramicError, match=r"/layers/dense/vars/0.*max_shard_size"):
        save_weights(trained(keramic), tmp_path / "m.weights.json", max_shard_size=0.000005)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("size", [0, -1.0, "big", None])
def test_shard_size_must_be_positive(tmp_path, size):
    with pytest.raises(KeramicError, match="max_shard_size"):
        sharded_weights.save(trained(keramic), tmp_path / "m.weights.json", size)


def test_sharded_saves_need_a_json_or_h5_name(tmp_path):
    with pytest.raises(FileFormatError, match=r"\.weights\.json"):
        save_weights(trained(keramic), tmp_path / "m.bin", max_shard_size=1.0)


def test_failed_save_leaves_previous_shards_and_index_untouched(tmp_path, monkeypatch):
    model = trained(keramic)
    save_weights(model, tmp_path / "m.weights.json", max_shard_size=SMALL_SHARDS)
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    model.train_on_batch(*data(5))
    written = []
    original = sharded_weights._write_shard

    def fail_on_third(path, shard):
        if len(written) == 2:
            raise OSError("disk full")
        written.append(path)
        original(path, shard)

    monkeypatch.setattr(sharded_weights, "_write_shard", fail_on_third)
    with pytest.raises(OSError, match="disk full"):
        save_weights(model, tmp_path / "m.weights.json", max_shard_size=SMALL_SHARDS)
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before


def test_strict_report_and_skip_mismatch(tmp_path):
    save_weights(trained(keramic), tmp_path / "m.weights.json", max_shard_size=SMALL_SHARDS)
    wider = keramic.Sequential(
        [
            keramic.Input((30,), dtype="int32"),
            keramic.layers.Embedding(5, 3),
            keramic.layers.Flatten(),
            keramic.layers.Dense(30),
            keramic.layers.BatchNormalization(),
            keramic.layers.Dense(4),
        ]
    )
    before = [w.numpy().copy() for w in wider.weights]
    with pytest.raises(WeightsMismatchError, match=r"layers/dense_1/vars/0 .*file \(30, 3\), model \(30, 4\)") as caught:
        wider.load_weights(tmp_path / "m.weights.json")
    assert "m.weights.json" in str(caught.value)
    assert_same_state(before, [w.numpy() for w in wider.weights])  # nothing half-loaded
    with pytest.warns(UserWarning, match="skip_mismatch"):
        wider.load_weights(tmp_path / "m.weights.json", skip_mismatch=True)
    assert not np.array_equal(before[0], wider.weights[0].numpy())


def test_missing_groups_are_reported(tmp_path):
    save_weights(trained(keramic), tmp_path / "m.weights.json", max_shard_size=SMALL_SHARDS)
    index = json.loads((tmp_path / "m.weights.json").read_text())
    del index["weight_map"]["/layers/dense/vars"]
    (tmp_path / "m.weights.json").write_text(json.dumps(index))
    with pytest.raises(WeightsMismatchError, match=r"missing \(2\)"):
        mlp(keramic).load_weights(tmp_path / "m.weights.json")


def _write_index(folder, weight_map):
    path = folder / "evil.weights.json"
    path.write_text(json.dumps({"metadata": {"total_size": 0.0}, "weight_map": weight_map}))
    return path


@pytest.mark.parametrize(
    "name",
    ["../outside.weights.h5", "/etc/passwd", "sub/m_00000.weights.h5", "..\\outside.weights.h5", "..", ".", "", 7, None],
)
def test_index_may_not_point_outside_its_directory(tmp_path, name):
    inner = tmp_path / "inner"
    inner.mkdir()
    model = trained(keramic)
    save_weights(model, tmp_path / "outside.weights.h5")  # a real file the index tries to reach
    (inner / "sub").mkdir()
    save_weights(model, inner / "sub" / "m_00000.weights.h5")
    path = _write_index(inner, {"/layers/dense/vars": [name]})
    target = mlp(keramic)
    before = state(target)
    with pytest.raises(FileFormatError, match=r"evil\.weights\.json: weight_map entry '/layers/dense/vars'"):
        target.load_weights(path)
    assert_same_state(before, state(target))


@pytest.mark.parametrize(
    "index, message",
    [
        ("{ not json", "not valid JSON"),
            ("not json at all", "unrecognised file format"),
        ("[1, 2]", "weight_map"),
        ('{"weight_map": []}', "weight_map"),
        ('{"weight_map": {"layers/dense": "a.h5"}}', "'/<path>/vars'"),
        ('{"weight_map": {"/layers/dense/vars": []}}', "shard file name"),
        ('{"weight_map": {"/layers/dense/vars": {"a": 1}}}', "shard file name"),
    ],
)
def test_malformed_indexes_are_file_format_errors(tmp_path, index, message):
    path = tmp_path / "bad.weights.json"
    path.write_text(index)
    with pytest.raises(FileFormatError, match=message) as caught:
        mlp(keramic).load_weights(path)
    assert "bad.weights.json" in str(caught.value)


def test_oversized_index_is_refused_before_parsing(tmp_path, monkeypatch):
    save_weights(trained(keramic), tmp_path / "m.weights.json", max_shard_size=SMALL_SHARDS)
    monkeypatch.setattr(sharded_weights, "INDEX_SIZE_LIMIT", 100)
    with pytest.raises(FileFormatError, match="limit"):
        mlp(keramic).load_weights(tmp_path / "m.weights.json")


def test_missing_damaged_and_overlapping_shards(tmp_path):
    model = trained(keramic)
    save_weights(model, tmp_path / "m.weights.json", max_shard_size=SMALL_SHARDS)
    target = mlp(keramic)
    target.build((None, 30))
    before = state(target)

    (tmp_path / "m_00001.weights.h5").rename(tmp_path / "moved.h5")
    with pytest.raises(FileFormatError, match=r"m\.weights\.json: shard 'm_00001\.weights\.h5'.*does not exist"):
        target.load_weights(tmp_path / "m.weights.json")

    (tmp_path / "m_00001.weights.h5").write_bytes(b"not an hdf5 file")
    with pytest.raises(FileFormatError, match=r"m_00001\.weights\.h5: shard named in .*m\.weights\.json is not an HDF5 file"):
        target.load_weights(tmp_path / "m.weights.json")

    good = (tmp_path / "moved.h5").read_bytes()
    (tmp_path / "m_00001.weights.h5").write_bytes(good[: len(good) // 2])
    with pytest.raises(FileFormatError, match=r"m_00001\.weights\.h5: shard .* not a readable HDF5 file"):
        target.load_weights(tmp_path / "m.weights.json")

    (tmp_path / "moved.h5").rename(tmp_path / "m_00001.weights.h5")
    with h5py.File(tmp_path / "m_00001.weights.h5", "a") as h5file:
        h5file["optimizer/vars/5"] = np.zeros((90, 30), "float32")  # also in shard 2
    with pytest.raises(FileFormatError, match=r"entry '/optimizer/vars/5' is also stored in"):
        target.load_weights(tmp_path / "m.weights.json")
    assert_same_state(before, state(target))


@pytest.mark.parametrize("hostile", ["soft_link", "external_link", "group", "strings"])
def test_hostile_entries_inside_a_shard(tmp_path, hostile):
    save_weights(trained(keramic), tmp_path / "m.weights.json", max_shard_size=SMALL_SHARDS)
    with h5py.File(tmp_path / "m_00002.weights.h5", "a") as h5file:
        group = h5file["optimizer/vars"]
        del group["15"]
        if hostile == "soft_link":
            h5file["elsewhere"] = np.zeros(3, "float32")
            group["15"] = h5py.SoftLink("/elsewhere")
        elif hostile == "external_link":
            group["15"] = h5py.ExternalLink(str(tmp_path / "m_00000.weights.h5"), "/layers/dense_1/vars/1")
        elif hostile == "group":
            group.create_group("15")
        else:
            group["15"] = np.array([b"a", b"b", b"c"])
    target = mlp(keramic)
    target.build((None, 30))
    target.optimizer.build(target.trainable_variables)
    before = state(target)
    with pytest.raises(KeramicError, match=r"m_00002\.weights\.h5: entry '/optimizer/vars/15'"):
        target.load_weights(tmp_path / "m.weights.json")
    assert_same_state(before, state(target))


# ---------------------------------------------------------------- real Keras, both ways
@pytest.mark.interop
def test_keras_sharded_weights_load_here_with_optimizer_state(keras, tmp_path):
    theirs = trained(keras)
    theirs.save_weights(tmp_path / "k.weights.json", max_shard_size=SMALL_SHARDS)
    assert len([n for n in os.listdir(tmp_path) if n.startswith("k_")]) == 3
    ours = mlp(keramic)
    ours.load_weights(tmp_path / "k.weights.json")
    assert_same_state(state(theirs), state(ours))
    x, y = data(7)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.train_on_batch(x, y), theirs.train_on_batch(x, y), rtol=1e-5, atol=1e-6)


@pytest.mark.interop
def test_our_sharded_weights_load_in_keras_with_optimizer_state(keras, tmp_path):
    ours = trained(keramic)
    save_weights(ours, tmp_path / "o.weights.json", max_shard_size=SMALL_SHARDS)
    theirs = mlp(keras)
    theirs.build((None, 30))
    theirs.optimizer.build(theirs.trainable_variables)
    theirs.load_weights(tmp_path / "o.weights.json")
    assert_same_state(state(ours), state(theirs))
    assert int(theirs.optimizer.iterations.numpy()) == 2


@pytest.mark.interop
def test_index_and_shards_match_what_keras_writes(keras, tmp_path):
    (tmp_path / "k").mkdir()
    (tmp_path / "o").mkdir()
    trained(keras).save_weights(tmp_path / "k" / "w.weights.json", max_shard_size=SMALL_SHARDS)
    save_weights(trained(keramic), tmp_path / "o" / "w.weights.json", max_shard_size=SMALL_SHARDS)
    assert sorted(os.listdir(tmp_path / "k")) == sorted(os.listdir(tmp_path / "o"))
    theirs = json.loads((tmp_path / "k" / "w.weights.json").read_text())
    ours = json.loads((tmp_path / "o" / "w.weights.json").read_text())
    assert ours == theirs
    assert list(ours["weight_map"]) == list(theirs["weight_map"])
    for name in os.listdir(tmp_path / "k"):
        if name.endswith(".h5"):
            assert tree(tmp_path / "o" / name) == tree(tmp_path / "k" / name), name
