"""safetensors weights: exact round trips with optimizer state, strict loading, Hugging Face style
sharding, tied weights stored once, hostile headers refused before any tensor is read, lazy
reads, and files exchanged both ways with the `safetensors` library."""

import json
import os
import struct

import numpy as np
import pytest
import torch

import keramic
from keramic.errors import FileFormatError, KeramicError, NotBuiltError, WeightsMismatchError
from keramic.saving import load_model, load_weights, save_weights
from keramic.saving.formats import safetensors_weights
from keramic.saving.stores import safetensors_file
from keramic.saving.stores.safetensors_file import SafetensorsFile

safetensors_torch = pytest.importorskip("safetensors.torch")


def mlp(width=6, compile=True, dtype=None):
    model = keramic.Sequential(
        [
            keramic.Input((4,)),
            keramic.layers.Dense(width, name="dense", dtype=dtype),
            keramic.layers.BatchNormalization(name="batch_normalization", dtype=dtype),
            keramic.layers.Dense(2, name="dense_1", dtype=dtype),
        ],
        name="mlp",
    )
    if compile:
        model.compile(optimizer=keramic.optimizers.Adam(0.01), loss="mse")
    return model


def data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")


def trained(steps=2, **kwargs):
    model = mlp(**kwargs)
    for step in range(steps):
        model.train_on_batch(*data(step))
    return model


def state(model):
    optimizer = getattr(model, "optimizer", None)
    variables = list(model.weights) + (list(optimizer.variables) if optimizer is not None else [])
    return [v.detach().clone() for v in variables]


def assert_same_state(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype
        assert torch.equal(x, y)


# ---------------------------------------------------------------- round trips and layout
def test_round_trip_restores_weights_and_optimizer_state_and_training_continues_identically(tmp_path):
    ours = trained()
    save_weights(ours, tmp_path / "w.safetensors")
    fresh = mlp()  # compiled, never trained: its optimizer slots are created from the file
    fresh.load_weights(tmp_path / "w.safetensors")
    assert_same_state(state(ours), state(fresh))
    x, y = data(9)
    ours.train_on_batch(x, y)
    fresh.train_on_batch(x, y)
    assert_same_state(state(ours), state(fresh))


def test_keys_are_the_weights_h5_entry_paths(tmp_path):
    import h5py

    model = trained()
    save_weights(model, tmp_path / "w.safetensors")
    save_weights(model, tmp_path / "w.weights.h5")
    datasets = []
    with h5py.File(tmp_path / "w.weights.h5", "r") as h5file:
        h5file.visititems(lambda name, obj: datasets.append(name) if hasattr(obj, "shape") else None)
    with SafetensorsFile(tmp_path / "w.safetensors") as file:
        assert sorted(file.entries) == sorted(datasets)
        assert file.metadata == {"format": "pt"}
        assert file.entries["layers/dense/vars/0"].shape == (4, 6)
        assert file.entries["optimizer/vars/0"].dtype == model.optimizer.iterations.dtype
    assert (tmp_path / "w.safetensors").read_bytes()[:8] == struct.pack("<Q", file.data_start - 8)


def test_header_is_padded_with_spaces_to_eight_bytes(tmp_path):
    save_weights(trained(), tmp_path / "w.safetensors")
    raw = (tmp_path / "w.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    assert length % 8 == 0
    header = raw[8 : 8 + length]
    assert header.rstrip(b" ").endswith(b"}")
    json.loads(header)


def test_uncompiled_model_saves_no_optimizer_and_ignores_optimizer_entries(tmp_path):
    save_weights(mlp(compile=False), tmp_path / "plain.safetensors")
    with SafetensorsFile(tmp_path / "plain.safetensors") as file:
        assert not [key for key in file.entries if key.startswith("optimizer/")]
    source = trained()
    save_weights(source, tmp_path / "w.safetensors")
    plain = mlp(compile=False)
    plain.load_weights(tmp_path / "w.safetensors")  # groups the model does not ask for are ignored
    assert_same_state(state(plain), [v.detach() for v in source.weights])


def test_bfloat16_round_trips_exactly_and_reads_in_the_library(tmp_path):
    model = mlp(dtype="bfloat16", compile=False)
    generator = torch.Generator().manual_seed(1)
    for variable in model.weights:
        variable.assign(torch.randn(tuple(variable.shape), generator=generator))
    assert model.layers[0].kernel.dtype == torch.bfloat16
    save_weights(model, tmp_path / "b.safetensors")
    theirs = safetensors_torch.load_file(str(tmp_path / "b.safetensors"))
    assert theirs["layers/dense/vars/0"].dtype == torch.bfloat16
    assert torch.equal(theirs["layers/dense/vars/0"], model.layers[0].kernel.detach())
    fresh = mlp(dtype="bfloat16", compile=False)
    fresh.load_weights(tmp_path / "b.safetensors")
    assert_same_state(state(model), state(fresh))


def test_file_dtype_is_cast_to_the_variable_dtype(tmp_path):
    model = mlp(compile=False)
    values = {key: torch.randn(tuple(v.shape), dtype=torch.float64) for key, v in safetensors_weights.model_tensors(model)[0]}
    safetensors_torch.save_file(values, str(tmp_path / "f64.safetensors"))
    model.load_weights(tmp_path / "f64.safetensors")
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), values["layers/dense/vars/0"].float().numpy())


# ---------------------------------------------------------------- tied weights
class TiedProjection(keramic.layers.Layer):
    """Projects back through another layer's kernel (a tied weight), plus a bias of its own."""

    def __init__(self, source=None, **kwargs):
        super().__init__(**kwargs)
        self.source = source

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(self.source.kernel.shape[0],), initializer="zeros", name="bias")
        self.tied = self.source.kernel

    def call(self, inputs):
        return inputs @ self.tied.T + self.bias


def tied_model():
    inputs = keramic.Input((4,))
    encode = keramic.layers.Dense(3, name="encode")
    hidden = encode(inputs)
    outputs = TiedProjection(encode, name="decode")(hidden)
    model = keramic.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_tied_weights_are_stored_once_and_restored_at_every_path(tmp_path):
    model = tied_model()
    model.train_on_batch(np.ones((2, 4), "float32"), np.zeros((2, 4), "float32"))
    save_weights(model, tmp_path / "t.safetensors")
    with SafetensorsFile(tmp_path / "t.safetensors") as file:
        kernels = [key for key, entry in file.entries.items() if entry.shape == (4, 3)]
        aliases = json.loads(file.metadata[safetensors_weights.ALIASES_KEY])
    assert len(kernels) == 1
    assert list(aliases.values()) == kernels
    theirs = safetensors_torch.load_file(str(tmp_path / "t.safetensors"))  # the library has no complaint
    assert torch.equal(theirs[kernels[0]], model.get_layer("encode").kernel.detach())
    fresh = tied_model()
    fresh.load_weights(tmp_path / "t.safetensors")
    assert fresh.get_layer("decode").tied is fresh.get_layer("encode").kernel
    assert_same_state(state(model), state(fresh))


# ---------------------------------------------------------------- strictness
def test_mismatch_raises_naming_each_entry_and_assigns_nothing(tmp_path):
    save_weights(trained(), tmp_path / "w.safetensors")
    other = mlp(width=5)
    before = [v.detach().clone() for v in other.weights]
    with pytest.raises(WeightsMismatchError) as raised:
        other.load_weights(tmp_path / "w.safetensors")
    message = str(raised.value)
    assert "w.safetensors" in message
    assert "layers/dense/vars/0" in message and "file (4, 6), model (4, 5)" in message
    assert "layers/dense_1/vars/0" in message
    assert_same_state(before, list(other.weights))


def test_skip_mismatch_warns_and_loads_what_fits(tmp_path):
    source = trained()
    save_weights(source, tmp_path / "w.safetensors")
    other = mlp(width=5, compile=False)
    with pytest.warns(UserWarning, match="layers/dense/vars/0"):
        other.load_weights(tmp_path / "w.safetensors", skip_mismatch=True)
    assert torch.equal(other.layers[2].bias.detach(), source.layers[2].bias.detach())


def test_missing_entries_are_reported(tmp_path):
    small = keramic.Sequential([keramic.Input((4,)), keramic.layers.Dense(6, name="dense")])
    save_weights(small, tmp_path / "small.safetensors")
    with pytest.raises(WeightsMismatchError, match=r"missing \(6\)[\s\S]*layers/batch_normalization/vars/0"):
        mlp(compile=False).load_weights(tmp_path / "small.safetensors")


def test_a_file_keyed_for_another_library_is_refused_with_its_keys(tmp_path):
    safetensors_torch.save_file({"bert.embeddings.weight": torch.zeros(2, 2)}, str(tmp_path / "hf.safetensors"))
    with pytest.raises(WeightsMismatchError, match=r"hf\.safetensors.*keramic variable path.*'bert\.embeddings\.weight'"):
        mlp().load_weights(tmp_path / "hf.safetensors")


# ---------------------------------------------------------------- api dispatch
def test_api_edges(tmp_path):
    model = trained()
    save_weights(model, tmp_path / "w.safetensors")
    with pytest.raises(FileExistsError):
        save_weights(model, tmp_path / "w.safetensors", overwrite=False)
    with pytest.raises(FileFormatError, match="max_shard_size"):
        save_weights(model, tmp_path / "x.safetensors.index.json")
    with pytest.raises(FileFormatError, match="by_name"):
        load_weights(model, tmp_path / "w.safetensors", by_name=True)
    with pytest.raises(FileFormatError, match="no model architecture"):
        load_model(tmp_path / "w.safetensors")
    unbuilt = keramic.Sequential([keramic.layers.Dense(2)])
    with pytest.raises(NotBuiltError):
        save_weights(unbuilt, tmp_path / "u.safetensors")
    with pytest.raises(NotBuiltError):
        unbuilt.load_weights(tmp_path / "w.safetensors")


def test_loading_goes_by_content_not_name(tmp_path):
    model = trained()
    save_weights(model, tmp_path / "w.safetensors")
    os.rename(tmp_path / "w.safetensors", tmp_path / "renamed.bin")
    fresh = mlp()
    fresh.load_weights(tmp_path / "renamed.bin")
    assert_same_state(state(model), state(fresh))


def test_a_failed_save_leaves_the_previous_file_intact(tmp_path):
    save_weights(trained(), tmp_path / "w.safetensors")
    before = (tmp_path / "w.safetensors").read_bytes()
    model = trained()
    model.layers[0].add_weight(shape=(2,), initializer="zeros", dtype="complex128", name="phase")
    model.layers[0]._saved_variable_names = None  # Dense saves only kernel and bias (as Keras): save all here
    with pytest.raises(KeramicError, match=r"w\.safetensors: entry 'layers/dense/vars/2': dtype torch\.complex128"):
        save_weights(model, tmp_path / "w.safetensors")
    assert (tmp_path / "w.safetensors").read_bytes() == before
    assert os.listdir(tmp_path) == ["w.safetensors"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")
def test_overwriting_saves_leave_no_file_open(tmp_path):
    import threading

    model = trained()
    save_weights(model, tmp_path / "w.safetensors")
    save_weights(model, tmp_path / "s.safetensors", max_shard_size=SHARD)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):  # each save holds the file it replaces open and closes it on a thread
        save_weights(model, tmp_path / "w.safetensors")
        save_weights(model, tmp_path / "s.safetensors", max_shard_size=SHARD)
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and thread.daemon:
            thread.join(5)
    assert len(os.listdir("/proc/self/fd")) == before
    fresh = mlp()
    fresh.load_weights(tmp_path / "w.safetensors")
    assert_same_state(state(model), state(fresh))


# ---------------------------------------------------------------- sharding
SHARD = 200 / 1024**3  # 200 bytes per shard


def test_sharded_save_writes_hugging_face_index_and_shards(tmp_path):
    model = trained()
    save_weights(model, tmp_path / "model.safetensors", max_shard_size=SHARD)
    names = sorted(os.listdir(tmp_path))
    shards = [name for name in names if name != "model.safetensors.index.json"]
    count = len(shards)
    assert count > 2 and "model.safetensors.index.json" in names
    assert shards == [f"model-{n:05d}-of-{count:05d}.safetensors" for n in range(1, count + 1)]
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    tensors, _ = safetensors_weights.model_tensors(model)
    assert index["metadata"] == {"total_size": sum(v.numel() * v.element_size() for _, v in tensors)}
    assert sorted(index["weight_map"]) == sorted(key for key, _ in tensors)
    for shard in shards:
        with SafetensorsFile(tmp_path / shard) as file:
            sizes = [entry.nbytes for entry in file.entries.values()]
            assert sum(sizes) <= 200 or len(sizes) == 1
            assert all(index["weight_map"][key] == shard for key in file.entries)
    fresh = mlp()
    fresh.load_weights(tmp_path / "model.safetensors.index.json")
    assert_same_state(state(model), state(fresh))
    again = mlp()
    again.load_weights(tmp_path / "model.safetensors")  # no such file: its index is used, as Hugging Face does
    assert_same_state(state(model), state(again))


def test_sharded_files_load_in_the_library(tmp_path):
    model = trained()
    save_weights(model, tmp_path / "model.safetensors", max_shard_size=SHARD)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    merged = {}
    for shard in set(index["weight_map"].values()):
        merged.update(safetensors_torch.load_file(str(tmp_path / shard)))
    for key, variable in safetensors_weights.model_tensors(model)[0]:
        assert torch.equal(merged[key], variable.detach())


def test_a_smaller_sharded_save_removes_the_old_shards_it_replaces(tmp_path):
    save_weights(trained(), tmp_path / "model.safetensors", max_shard_size=SHARD)
    (tmp_path / "model-00001-of-00099.safetensors").write_bytes(b"not ours")  # never named by an index
    save_weights(trained(), tmp_path / "model.safetensors", max_shard_size=1.0)
    assert sorted(os.listdir(tmp_path)) == [
        "model-00001-of-00001.safetensors",
        "model-00001-of-00099.safetensors",
        "model.safetensors.index.json",
    ]


def test_a_tensor_over_the_shard_size_gets_a_shard_of_its_own():
    tensors = [("a", torch.zeros(10)), ("b", torch.zeros(100)), ("c", torch.zeros(10)), ("d", torch.zeros(10))]
    shards = safetensors_weights.plan_shards(tensors, 100)
    assert [[key for key, _ in shard] for shard in shards] == [["a"], ["b"], ["c", "d"]]


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda index: index["weight_map"].__setitem__("layers/dense/vars/0", "../outside.safetensors"), "not a plain file name"),
        (lambda index: index["weight_map"].__setitem__("layers/dense/vars/0", "/etc/passwd"), "not a plain file name"),
        (lambda index: index["weight_map"].__setitem__("layers/dense/vars/0", "absent.safetensors"), "does not exist"),
        (lambda index: index["weight_map"].__setitem__("layers/dense/vars/9", index["weight_map"]["layers/dense/vars/0"]), "holds no tensor of that name"),
        (lambda index: index.pop("weight_map"), "weight_map"),
        (lambda index: index["weight_map"].__setitem__("layers/dense/vars/0", 7), "expected a shard file name"),
        (lambda index: index["metadata"].__setitem__("keramic.aliases", {"a": "nowhere"}), "keramic.aliases/a"),
    ],
)
def test_a_damaged_index_is_refused_naming_the_entry(tmp_path, change, match):
    save_weights(trained(), tmp_path / "model.safetensors", max_shard_size=SHARD)
    path = tmp_path / "model.safetensors.index.json"
    index = json.loads(path.read_text())
    change(index)
    path.write_text(json.dumps(index))
    with pytest.raises(FileFormatError, match=match) as raised:
        mlp().load_weights(path)
    assert "model.safetensors.index.json" in str(raised.value)


# ---------------------------------------------------------------- hostile files
def raw_file(path, header, data=b"", length=None):
    """Write a safetensors file by hand: any header (dict or raw bytes), any data, any declared length."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
    return path


def kernel(offsets=(0, 96), dtype="F32", shape=(4, 6)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


FULL = bytes(96)
HOSTILE = {
    "huge length": (dict(), b"", 2**40, "header", "over the"),
    "length past the end": ({"layers/dense/vars/0": kernel()}, FULL, 10_000, "header", "runs past the end"),
    "bad json": (b"{not json at all", b"", None, "header", "not valid JSON"),
    "truncated json": (b'{"x": [1, 2', b"", None, "header", "not valid JSON"),
    "entry not an object": (b'{"layers/dense/vars/0": 1}', b"", None, "layers/dense/vars/0", "expected an object with exactly"),
    "duplicate keys": (b'{"a": 1, "a": 2}', b"", None, "header", "appears twice"),
    "unknown dtype": ({"layers/dense/vars/0": kernel(dtype="F128")}, FULL, None, "layers/dense/vars/0", "unknown or unsupported dtype"),
    "size disagrees with shape": ({"layers/dense/vars/0": kernel(offsets=(0, 95))}, FULL[:95], None, "layers/dense/vars/0", "takes 96"),
    "offsets out of range": ({"layers/dense/vars/0": kernel(offsets=(96, 192))}, FULL, None, "layers/dense/vars/0", "end past the data region"),
    "truncated data": ({"layers/dense/vars/0": kernel()}, FULL[:50], None, "layers/dense/vars/0", "truncated"),
    "overlapping offsets": (
        {"layers/dense/vars/0": kernel(), "layers/dense/vars/1": kernel(offsets=(72, 96), shape=(6,))},
        FULL,
        None,
        "layers/dense/vars/1",
        "overlap entry 'layers/dense/vars/0'",
    ),
    "gap between tensors": (
        {"layers/dense/vars/0": kernel(offsets=(8, 104))},
        FULL + bytes(8),
        None,
        "layers/dense/vars/0",
        "leave a gap",
    ),
    "trailing bytes": ({"layers/dense/vars/0": kernel()}, FULL + b"hidden", None, "data", "bytes follow the header"),
    "decreasing offsets": ({"layers/dense/vars/0": kernel(offsets=(96, 0))}, FULL, None, "layers/dense/vars/0", "increasing pair"),
    "negative shape": ({"layers/dense/vars/0": kernel(shape=(-4, -6))}, FULL, None, "layers/dense/vars/0", "non-negative integers"),
    "boolean shape": ({"layers/dense/vars/0": kernel(shape=(True, 6))}, FULL, None, "layers/dense/vars/0", "non-negative integers"),
    "extra field": ({"layers/dense/vars/0": {**kernel(), "code": "x"}}, FULL, None, "layers/dense/vars/0", "exactly"),
    "metadata not strings": ({"__metadata__": {"a": 1}}, b"", None, "__metadata__", "strings to strings"),
    "dangling alias": ({"__metadata__": {"keramic.aliases": '{"vars/0": "nowhere"}'}}, b"", None, "keramic.aliases/vars/0", "points to 'nowhere'"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_files_are_refused_naming_file_and_entry_before_anything_is_read(tmp_path, monkeypatch, case):
    header, data, length, entry, match = HOSTILE[case]
    path = raw_file(tmp_path / "hostile.safetensors", header, data, length)
    model = mlp(compile=False)
    before = state(model)
    reads = []
    real_preadv = os.preadv
    monkeypatch.setattr(os, "preadv", lambda fd, buffers, offset: reads.append(offset) or real_preadv(fd, buffers, offset))
    with pytest.raises(FileFormatError, match=match) as raised:
        model.load_weights(path)
    assert str(path) in str(raised.value)
    assert f"entry '{entry}'" in str(raised.value)
    assert reads == []
    assert_same_state(before, state(model))


def test_an_empty_header_is_a_valid_empty_file(tmp_path):
    path = raw_file(tmp_path / "empty.safetensors", b"{}")
    with SafetensorsFile(path) as file:
        assert file.entries == {} and file.metadata == {}


def test_too_short_files_and_non_object_headers_are_refused(tmp_path):
    (tmp_path / "short.safetensors").write_bytes(b"\x02\0\0")
    with pytest.raises(FileFormatError, match=r"short\.safetensors: 3 bytes is too short"):
        SafetensorsFile(tmp_path / "short.safetensors")
    path = raw_file(tmp_path / "list.safetensors", b"[1, 2]")
    with pytest.raises(FileFormatError, match=r"list\.safetensors: entry 'header': does not start with '\{'"):
        SafetensorsFile(path)


def test_a_file_shrunk_after_its_header_was_checked_is_refused(tmp_path):
    save_weights(trained(), tmp_path / "w.safetensors")
    model = mlp()
    with safetensors_weights.open_weights(tmp_path / "w.safetensors") as source:
        os.truncate(tmp_path / "w.safetensors", 200)
        entry = source.entry("layers/dense_1/vars/0")[1]
        with pytest.raises(FileFormatError, match=r"w\.safetensors: entry 'data': the file ended"):
            source.read([(entry, model.layers[2].kernel)])


# ---------------------------------------------------------------- laziness
def test_opening_reads_only_the_header(tmp_path, monkeypatch):
    save_weights(trained(), tmp_path / "w.safetensors")
    reads = []
    real_pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, size, offset: reads.append((offset, size)) or real_pread(fd, size, offset))
    monkeypatch.setattr(os, "preadv", lambda *args: pytest.fail("tensor data read on opening"))
    with SafetensorsFile(tmp_path / "w.safetensors") as file:
        assert reads == [(0, 8), (8, file.data_start - 8)]


def test_loading_reads_only_the_tensors_the_model_needs(tmp_path, monkeypatch):
    source = trained()
    save_weights(source, tmp_path / "w.safetensors")
    with SafetensorsFile(tmp_path / "w.safetensors") as file:
        spans = {key: (entry.begin, entry.end) for key, entry in file.entries.items()}
    read = []
    real_preadv = os.preadv

    def observed(fd, buffers, offset):
        count = real_preadv(fd, buffers, offset)
        read.append((offset, offset + count))
        return count

    monkeypatch.setattr(os, "preadv", observed)
    plain = mlp(compile=False)  # needs no optimizer entry
    plain.load_weights(tmp_path / "w.safetensors")
    touched = {key for key, (begin, end) in spans.items() if any(b < end and begin < e for b, e in read)}
    assert touched == {key for key in spans if not key.startswith("optimizer/")}
    assert sum(e - b for b, e in read) == sum(end - begin for key, (begin, end) in spans.items() if key in touched)


def test_reads_split_into_pieces_threads_and_short_reads_fill_every_byte(tmp_path, monkeypatch):
    from keramic.saving.stores import bulk_io

    source = trained()
    save_weights(source, tmp_path / "w.safetensors")
    monkeypatch.setattr(bulk_io, "PIECE_BYTES", 40)  # tensors split over several runs
    monkeypatch.setattr(bulk_io, "PARALLEL_BYTES", 0)  # and read on threads
    monkeypatch.setattr(bulk_io, "_IOV_MAX", 3)
    real_preadv = os.preadv

    def short(fd, buffers, offset):  # the kernel may return fewer bytes than asked
        first = memoryview(buffers[0])[:7]
        return real_preadv(fd, [first], offset)

    monkeypatch.setattr(os, "preadv", short)
    fresh = mlp()
    fresh.load_weights(tmp_path / "w.safetensors")
    assert_same_state(state(source), state(fresh))


def test_tensor_is_a_view_of_the_mapped_file(tmp_path, monkeypatch):
    model = trained()
    save_weights(model, tmp_path / "w.safetensors")
    monkeypatch.setattr(os, "preadv", lambda *args: pytest.fail("tensor() must not read through preadv"))
    with SafetensorsFile(tmp_path / "w.safetensors") as file:
        kernel_view = file.tensor("layers/dense/vars/0")
    assert torch.equal(kernel_view, model.layers[0].kernel.detach())  # still valid after close
    kernel_view.add_(1)  # a private mapping: the file is never changed through it
    with SafetensorsFile(tmp_path / "w.safetensors") as file:
        assert torch.equal(file.tensor("layers/dense/vars/0"), model.layers[0].kernel.detach())


# ---------------------------------------------------------------- interop with the safetensors library
ALL_DTYPES = [
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.uint8, torch.int16,
    torch.int32, torch.int64, torch.bool, torch.complex64, torch.uint16, torch.uint32, torch.uint64,
    torch.float8_e4m3fn, torch.float8_e5m2,
]


def sample_tensors():
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for number, dtype in enumerate(ALL_DTYPES):
        raw = torch.randint(0, 256, (3, 8 * (1 + number % 3)), dtype=torch.uint8, generator=generator)
        if dtype == torch.bool:
            raw = raw % 2  # only 0 and 1 are booleans
        tensors[f"t/{dtype}"] = raw.view(dtype)  # random bytes: every bit pattern, NaNs included
    tensors["scalar"] = torch.tensor(3.5)
    tensors["empty"] = torch.zeros((0, 4))
    return tensors


def same(a, b):
    """Equal dtype, shape and bytes (NaN bit patterns included)."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def test_files_written_here_load_in_the_library(tmp_path):
    tensors = sample_tensors()
    safetensors_file.write(tmp_path / "ours.safetensors", list(tensors.items()), {"who": "keramic"})
    theirs = safetensors_torch.load_file(str(tmp_path / "ours.safetensors"))
    assert set(theirs) == set(tensors)
    assert all(same(theirs[key], tensors[key]) for key in tensors)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ours.safetensors"), framework="pt") as handle:
        assert handle.metadata() == {"who": "keramic"}


def test_files_written_by_the_library_load_here(tmp_path):
    tensors = sample_tensors()
    safetensors_torch.save_file(tensors, str(tmp_path / "theirs.safetensors"), metadata={"format": "pt"})
    with SafetensorsFile(tmp_path / "theirs.safetensors") as file:
        assert file.metadata == {"format": "pt"}
        assert set(file.entries) == set(tensors)
        for key, tensor in tensors.items():
            assert same(file.tensor(key), tensor)


def test_weights_saved_by_the_library_load_into_a_model(tmp_path):
    source = trained()
    tensors, _ = safetensors_weights.model_tensors(source)
    safetensors_torch.save_file({key: v.detach() for key, v in tensors}, str(tmp_path / "lib.safetensors"))
    fresh = mlp()
    fresh.load_weights(tmp_path / "lib.safetensors")
    assert_same_state(state(source), state(fresh))
