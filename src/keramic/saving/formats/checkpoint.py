"""The checkpoint format: a directory of safetensors shards and a JSON index, keyed by object path.

`save_checkpoint` writes everything training needs to go on (layer variables, optimizer slots and
step counter, stateful metrics, and optionally a training state with epoch, step and RNG states)
into a temporary directory beside the target, then makes it visible with one rename: a crash
leaves the previous checkpoint or the new one, never a half-written one. `load_checkpoint`
checks sizes (always) and SHA-256 hashes (`verify=True`) of every file before it assigns
anything; values for variables the model has not created yet wait for them (`deferred.py`).
The layout is specified in `docs/checkpoint.md`.
"""

import concurrent.futures
import contextlib
import hashlib
import json
import math
import mmap
import os
import random
import re
import sys

import numpy as np
import torch

from keramic import backend
from keramic.errors import FileFormatError, KeramicError, WeightsMismatchError
from keramic.saving import deferred, remote
from keramic.saving.formats import table
from keramic.saving.stores import atomic, hashed_write, safetensors_file
from keramic.saving.version import keramic_version

FORMAT = "keramic.checkpoint"
VERSION = 1
INDEX = "checkpoint.json"
DEFAULT_SHARD_SIZE = 0.25  # GiB; several files hash in parallel, on save and on verify
TRAINING_STATE = "training_state"
INDEX_SIZE_LIMIT = 64 * 2**20
_DATA_FILE = re.compile(r"data-\d{5}-of-\d{5}\.safetensors")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class CheckpointExistsError(KeramicError, FileExistsError):
    """The target exists and is not a checkpoint: it is never replaced."""


# ---------------------------------------------------------------- RNG state
class RngState:
    """The global random generators' states (torch CPU, each CUDA device, NumPy, Python `random`):
    restoring them makes dropout, shuffling and initialisers draw the same numbers again.

    >>> state = RngState.capture()
    >>> ...  # anything that draws random numbers
    >>> state.restore()
    """

    def __init__(self, torch_cpu, torch_cuda, numpy_state, python_state):
        self.torch_cpu = torch_cpu
        self.torch_cuda = list(torch_cuda)
        self.numpy_state = numpy_state
        self.python_state = python_state

    @classmethod
    def capture(cls):
        kind, keys, position, has_gauss, cached = np.random.get_state()
        version, words, gauss_next = random.getstate()
        return cls(
            torch.get_rng_state(),
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            {"kind": kind, "keys": keys.tolist(), "pos": int(position), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            {"version": version, "state": list(words), "gauss_next": gauss_next},
        )

    def restore(self):
        torch.set_rng_state(self.torch_cpu)
        if torch.cuda.is_available():
            for device, state in enumerate(self.torch_cuda[: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(state, device)
        numpy_state = self.numpy_state
        np.random.set_state(
            (
                numpy_state["kind"],
                np.asarray(numpy_state["keys"], dtype=np.uint32),
                numpy_state["pos"],
                numpy_state["has_gauss"],
                numpy_state["cached_gaussian"],
            )
        )
        python_state = self.python_state
        random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss_next"]))

    def _entries(self, prefix):
        """(tensors {key: tensor}, JSON description) as stored in a checkpoint."""
        tensors = {f"{prefix}/torch_cpu": self.torch_cpu}
        tensors.update({f"{prefix}/torch_cuda_{i}": state for i, state in enumerate(self.torch_cuda)})
        return tensors, {"rng": {"cuda_devices": len(self.torch_cuda), "numpy": self.numpy_state, "python": self.python_state}}

    @classmethod
    def _from_entries(cls, prefix, description, tensor, where):
        try:
            cuda = [tensor(f"{prefix}/torch_cuda_{i}") for i in range(int(description["cuda_devices"]))]
            return cls(tensor(f"{prefix}/torch_cpu"), cuda, dict(description["numpy"]), dict(description["python"]))
        except (KeyError, TypeError, ValueError) as error:
            raise FileFormatError(f"{where}: entry '{prefix}': not a valid RNG state ({error!r}).") from None


# ---------------------------------------------------------------- snapshot
class Snapshot:
    """What one checkpoint holds, taken at one moment: [(key, tensor)] and the index's JSON parts.
    The tensors are the live variables until someone copies them (`CheckpointManager` does, for
    async saves)."""

    def __init__(self, entries, training_state, model_class):
        self.entries = entries
        self.training_state = training_state
        self.model_class = model_class


def take_snapshot(model, training_state=None, include_optimizer=True, include_metrics=True):
    """The model's variables by checkpoint key, plus `training_state` (JSON values and `RngState`s).

    >>> snapshot = take_snapshot(model, {"epoch": 3, "rng": RngState.capture()})
    """
    entries = deferred.object_keys(model, include_optimizer, include_metrics) + deferred.own_store_entries(model)
    state_json = {}
    for name, value in (training_state or {}).items():
        if not isinstance(name, str) or not name or "/" in name:
            raise KeramicError(f"training_state: entry {name!r}: names must be non-empty strings without '/'.")
        if isinstance(value, RngState):
            tensors, state_json[name] = value._entries(f"{TRAINING_STATE}/{name}")
            entries.extend(tensors.items())
        else:
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as error:
                raise KeramicError(f"training_state: entry '{name}': must be JSON (numbers, strings, lists, dicts) or an RngState ({error}).") from None
            state_json[name] = {"value": value}
    return Snapshot(entries, state_json, type(model).__name__)


# ---------------------------------------------------------------- writing
def _shards(entries, max_shard_bytes):
    shards, current, size = [], [], 0
    for key, tensor in entries:
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append((key, tensor))
        size += nbytes
    shards.append(current)
    return shards


def _workers(count):
    return max(1, min(count, os.cpu_count() or 1))


def is_checkpoint(path):
    """True when `path` is a checkpoint directory (it holds the index file)."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, INDEX))


def write_snapshot(snapshot, directory, max_shard_size=DEFAULT_SHARD_SIZE, fsync=True, metadata=None):
    """Write `snapshot` as a checkpoint at `directory`, atomically; returns the directory.

    An existing checkpoint there is replaced; anything else there is refused, never deleted.
    `metadata` (JSON) is stored in the index as is, for whoever wrote the checkpoint.
    """
    from keramic.saving.formats import distributed_checkpoint

    if distributed_checkpoint.saves_here():  # under keras.distribution: every process writes its part
        return distributed_checkpoint.save(snapshot, directory, fsync, metadata)
    directory = os.path.abspath(os.fspath(directory))
    if os.path.lexists(directory) and not is_checkpoint(directory) and not (os.path.isdir(directory) and not os.listdir(directory)):
        raise CheckpointExistsError(f"{directory}: exists and is not a keramic checkpoint (no {INDEX}); refusing to replace it.")
    if sys.byteorder != "little":
        raise KeramicError(f"{directory}: checkpoints are little-endian; this machine is not.")
    with atomic.directory_atomically(directory, fsync=fsync, remove_old_later=True) as temporary:
        shards = _shards(snapshot.entries, max_shard_size * 2**30)
        names = [f"data-{number:05d}-of-{len(shards):05d}.safetensors" for number in range(len(shards))]

        def write_shard(name, shard):
            head, buffers = safetensors_file.layout(os.path.join(directory, name), shard, {"format": "pt"})
            return hashed_write.write_hashed(os.path.join(temporary, name), [head, *buffers], fsync)

        with concurrent.futures.ThreadPoolExecutor(_workers(len(shards))) as pool:
            written = list(pool.map(write_shard, names, shards))
        files, tensors = {}, {}
        for name, shard, (size, sha256) in zip(names, shards, written):
            files[name] = {"size": size, "sha256": sha256}
            for key, tensor in shard:
                tensors[key] = {"file": name, "dtype": backend.standardize_dtype(tensor.dtype), "shape": list(tensor.shape)}
        index = {
            "format": FORMAT,
            "version": VERSION,
            "keramic_version": keramic_version(),
            "model_class": snapshot.model_class,
            "files": files,
            "tensors": tensors,
            "training_state": snapshot.training_state,
            "metadata": metadata or {},
        }
        atomic.write_json(os.path.join(temporary, INDEX), index, fsync=fsync, indent=1)
    return directory


def save_checkpoint(model, directory, training_state=None, include_optimizer=True, include_metrics=True, max_shard_size=DEFAULT_SHARD_SIZE, fsync=True):
    """Save every variable of `model` (and its optimizer and metrics) as a checkpoint directory.

    `training_state` adds JSON values and `RngState`s (e.g. epoch, step, RNG states);
    `max_shard_size` (GiB, as for `save_weights`) splits the data over several files. The directory appears only once
    complete.

    >>> save_checkpoint(model, "ckpt")
    >>> save_checkpoint(model, "ckpt", training_state={"epoch": 3, "rng": RngState.capture()})
    """
    if remote.is_url(directory):  # written locally, then uploaded and committed
        options = (training_state, include_optimizer, include_metrics, max_shard_size, fsync)
        return remote.save_through_local(directory, lambda local: save_checkpoint(model, local, *options))
    snapshot = take_snapshot(model, training_state, include_optimizer, include_metrics)
    return write_snapshot(snapshot, directory, max_shard_size, fsync)


# ---------------------------------------------------------------- reading
def _index_error(directory, entry, message):
    return FileFormatError(f"{os.path.join(directory, INDEX)}: entry '{entry}': {message}")


def read_index(directory):
    """The validated index of the checkpoint at `directory`."""
    path = os.path.join(directory, INDEX)
    if os.path.lexists(path):
        atomic.contained_file(directory, INDEX, directory, what="index")
    try:
        index = atomic.read_json_file(path, INDEX_SIZE_LIMIT, f"{path}: entry 'index'", "a checkpoint index")
    except (FileNotFoundError, NotADirectoryError):
        raise FileFormatError(f"{directory}: not a keramic checkpoint (no {INDEX}).") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise _index_error(directory, "format", f"expected '{FORMAT}'.")
    if not isinstance(index.get("version"), int) or index["version"] > VERSION:
        raise _index_error(directory, "version", f"{index.get('version')!r} is not a version this keramic reads (up to {VERSION}).")
    files, tensors = index.get("files"), index.get("tensors")
    if not isinstance(files, dict) or not isinstance(tensors, dict) or not isinstance(index.get("training_state", {}), dict):
        raise _index_error(directory, "files", "expected objects 'files', 'tensors' and 'training_state'.")
    for name, record in files.items():
        if not _DATA_FILE.fullmatch(name):
            raise _index_error(directory, f"files/{name}", "not a data file name of this format.")
        if not isinstance(record, dict) or type(record.get("size")) is not int or not _SHA256.fullmatch(str(record.get("sha256"))):
            raise _index_error(directory, f"files/{name}", "expected an integer 'size' and a hex 'sha256'.")
    for key, record in tensors.items():
        if not isinstance(record, dict) or not isinstance(record.get("file"), str) or record["file"] not in files:
            raise _index_error(directory, f"tensors/{key}", "names no data file listed under 'files'.")
        shape = record.get("shape")
        if not isinstance(record.get("dtype"), str) or not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise _index_error(directory, f"tensors/{key}", "shape and dtype: expected a 'dtype' name and a 'shape' list of sizes.")
    return index


def _hash_file(fd, size):
    if size == 0:
        return hashlib.sha256().hexdigest()
    with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped:
        return hashlib.sha256(mapped).hexdigest()


def _open_data_file(directory, name, record, expected, verify):
    """Open one data file after checking its size, hash and header against the index."""
    path = os.path.join(directory, name)
    if os.path.lexists(path):  # a regular file with one link, inside the checkpoint
        atomic.contained_file(directory, name, os.path.join(directory, INDEX), single_link=True, what="data file")
    try:
        data = safetensors_file.SafetensorsFile(path)
    except FileNotFoundError:
        raise FileFormatError(f"{path}: entry 'files/{name}': the data file is missing.") from None
    except FileFormatError:
        size = os.path.getsize(path)
        if size != record["size"]:
            raise FileFormatError(f"{path}: entry 'size': the file has {size} bytes, the index records {record['size']} (truncated or replaced).") from None
        raise
    try:
        if data.size != record["size"]:
            raise FileFormatError(f"{path}: entry 'size': the file has {data.size} bytes, the index records {record['size']} (truncated or replaced).")
        if verify:
            found = _hash_file(data.fd, data.size)
            if found != record["sha256"]:
                raise FileFormatError(f"{path}: entry 'sha256': the file hashes to {found}, the index records {record['sha256']} (altered or damaged).")
        if set(data.entries) != set(expected):
            extra = sorted(set(data.entries) ^ set(expected))[:5]
            raise FileFormatError(f"{path}: entry '{extra[0]}': the file's tensors differ from the index ({extra}).")
        for key, record_of_tensor in expected.items():
            entry = data.entries[key]
            if entry.dtype != backend.torch_dtype(record_of_tensor.get("dtype")) or list(entry.shape) != record_of_tensor.get("shape"):
                raise FileFormatError(
                    f"{path}: entry '{key}': the file holds {entry.dtype_name} {entry.shape}, the index records "
                    f"{record_of_tensor.get('dtype')} {record_of_tensor.get('shape')}."
                )
    except BaseException:
        data.close()
        raise
    return data


def _training_state(directory, index, tensor):
    state = {}
    for name, description in index.get("training_state", {}).items():
        where = os.path.join(directory, INDEX)
        if isinstance(description, dict) and "rng" in description:
            state[name] = RngState._from_entries(f"{TRAINING_STATE}/{name}", description["rng"], tensor, where)
        elif isinstance(description, dict) and "value" in description:
            state[name] = description["value"]
        else:
            raise FileFormatError(f"{where}: entry 'training_state/{name}': expected a 'value' or an 'rng' object.")
    return state


def load_checkpoint(model, directory, verify=True):
    """Restore `model` (built or not) from a checkpoint directory; returns a `LoadStatus`.

    Every file's size, and with `verify=True` its SHA-256, is checked before anything is
    assigned. Variables that exist take their values now (all or nothing on a shape mismatch);
    the others take theirs when created (the model's first call or `build`, the optimizer's first
    step or `optimizer.build`). `status.training_state` holds the saved training state.

    >>> status = load_checkpoint(model, "ckpt")
    >>> model.compile(optimizer="adam", loss="mse"); model(x)
    >>> status.assert_existing_objects_matched()
    """
    if remote.is_url(directory):  # downloaded into a private temp directory first
        return remote.load_through_local(directory, lambda local: load_checkpoint(model, local, verify))
    directory = os.fspath(directory)
    atomic.recover_directory(directory)
    # A save replacing the checkpoint meanwhile fails the size checks before anything is assigned: read again.
    return atomic.read_while_replaced(directory, lambda: _load_local(model, directory, verify))


def _load_local(model, directory, verify):
    from keramic.saving.formats import distributed_checkpoint

    index = read_index(directory)
    if distributed_checkpoint.loads_here(model, index):  # pieces of sharded variables, or a sharded model
        return distributed_checkpoint.load(model, directory, verify)
    expected = {name: {} for name in index["files"]}
    for key, record in index["tensors"].items():
        expected[record["file"]][key] = record
    opened = []
    try:
        with concurrent.futures.ThreadPoolExecutor(_workers(len(index["files"]))) as pool:
            futures = [pool.submit(_open_data_file, directory, name, record, expected[name], verify) for name, record in index["files"].items()]
            for future in futures:  # every file is opened (or fails) before the first error is raised
                with contextlib.suppress(Exception):
                    opened.append(future.result())
        for future in futures:
            future.result()
        location = {key: data for data in opened for key in data.entries}

        def tensor(key):
            if key not in location:
                raise FileFormatError(f"{os.path.join(directory, INDEX)}: entry '{key}': listed nowhere in the data files.")
            return location[key].tensor(key).clone()

        training_state = _training_state(directory, index, tensor)
        model_keys = [key for key in location if not key.startswith(f"{TRAINING_STATE}/")]
        existing = deferred.object_keys(model)
        metric_ids = {id(variable) for _, variable in deferred.metric_keys(model)}
        mismatched, pairs = [], []
        for key, variable in existing:
            data = location.get(key)
            if data is None:
                continue
            entry = data.entries[key]
            if tuple(entry.shape) != tuple(variable.shape):
                mismatched.append(f"'{key}': checkpoint {tuple(entry.shape)}, model {tuple(variable.shape)}")
            pairs.append((key, data, entry, variable))
        if mismatched:
            raise WeightsMismatchError(f"{directory}: shapes differ, nothing was loaded: " + "; ".join(mismatched[:20]))
        metric_values = {key: tensor(key) for key in model_keys if key.startswith(f"{deferred.METRICS_PREFIX}/")}
        status = deferred.LoadStatus(model, directory, model_keys, metric_values, metric_ids)
        status.training_state = training_state
        for data in opened:
            data.read_into([(entry, variable) for _, owner, entry, variable in pairs if owner is data])
        for key, *_ in pairs:
            status._matched(key)
        matched = {key for key, *_ in pairs}
        for path, layer in deferred.layer_paths(model).values():
            if deferred.saves_its_own(layer) and layer.built:
                own = deferred.own_store_of(path, [key for key in model_keys if key not in matched])
                if own:
                    deferred.load_own_store(layer, path, {key: tensor(full) for key, full in own.items()}, directory)
                    for full in own.values():
                        matched.add(full)
                        status._matched(full)
        waiting = {key: location[key].tensor(key) for key in model_keys if key not in matched and key not in metric_values}
        deferred.register(model, waiting, status)
    finally:
        for data in opened:
            data.close()
    return status


def restore_metric_state(model, status):
    """Set the model's metrics that exist now to the values of the checkpoint `status` came from
    (used after `fit` resets its trackers at an epoch's start)."""
    with torch.no_grad():
        for key, variable in deferred.metric_keys(model):
            value = status._metric_values.get(key)
            if value is not None and tuple(value.shape) == tuple(variable.shape):
                variable.copy_(value)
                status._matched(key)


# ---------------------------------------------------------------- the table row
def _optional_text(value):
    return None if value is None else str(value)


def _tensor_size(path, key, record):
    """(elements, bytes) of one index entry, whose shape and dtype are checked first."""
    shape, dtype = record.get("shape"), record.get("dtype")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise FileFormatError(f"{os.path.join(path, INDEX)}: entry 'tensors/{key}': shape {shape!r} is not a list of sizes.")
    try:
        itemsize = backend.torch_dtype(dtype).itemsize
    except (KeyError, ValueError, TypeError):
        raise FileFormatError(f"{os.path.join(path, INDEX)}: entry 'tensors/{key}': unknown dtype {dtype!r}.") from None
    elements = math.prod(shape)
    return elements, elements * itemsize


def inspect(path):
    """A checkpoint's index, grouped: the model's variables by top-level attribute, the optimizer's
    state, metrics and the training state (JSON values as stored; RNG states only named)."""
    index = read_index(path)
    special = (deferred.OPTIMIZER_PREFIX, deferred.METRICS_PREFIX, TRAINING_STATE)
    totals = {group: [0, 0, 0] for group in ("model", *special)}  # tensors, elements, bytes
    rows, dtypes, optimizer_class = {}, {}, None
    for key, record in index["tensors"].items():
        counts = (1, *_tensor_size(path, key, record))
        parts = key.split("/")
        group = parts[0] if parts[0] in special else "model"
        totals[group] = [total + count for total, count in zip(totals[group], counts)]
        if group == "model":
            dtypes[record["dtype"]] = dtypes.get(record["dtype"], 0) + 1
            # A Functional or Sequential model's layers are `layers/<index>`: one row each.
            row = "(model's own variables)" if len(parts) == 1 else "/".join(parts[:2]) if parts[0] == "layers" and len(parts) > 2 else parts[0]
            rows[row] = [total + count for total, count in zip(rows.get(row, [0, 0, 0]), counts)]
        elif group == deferred.OPTIMIZER_PREFIX and len(parts) > 2:
            optimizer_class = parts[1]
    training_state = {
        name: description.get("value") if isinstance(description, dict) and "value" in description else "(RNG state)"
        for name, description in index.get("training_state", {}).items()
    }
    metadata = index.get("metadata") if isinstance(index.get("metadata"), dict) else {}
    return {
        "file": path,
        "format": "keramic_checkpoint",
        "format_description": CHECKPOINT.description,
        "keramic_version": _optional_text(index.get("keramic_version")),
        "model_class": _optional_text(index.get("model_class")),
        "files": [{"name": name, "bytes": record["size"], "sha256": record["sha256"]} for name, record in index["files"].items()],
        "tensors": len(index["tensors"]),
        "layers": [{"attribute": name, "tensors": row[0], "params": row[1], "bytes": row[2]} for name, row in rows.items()],
        "total_params": totals["model"][1],
        "weights_bytes": totals["model"][2],
        "weight_dtypes": dtypes,
        "optimizer": {"class_name": optimizer_class, "variables": totals[deferred.OPTIMIZER_PREFIX][0], "bytes": totals[deferred.OPTIMIZER_PREFIX][2]},
        "metric_variables": totals[deferred.METRICS_PREFIX][0],
        "training_state": training_state,
        "metadata": metadata,
        "total_weight_bytes": sum(total[2] for total in totals.values()),
    }


def save_into(model, path, max_shard_size=None, fsync=True):
    options = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    return save_checkpoint(model, path, fsync=fsync, **options)


def load_weights_into(model, path, skip_mismatch=False, by_name=False, verify=True):
    if by_name:
        raise FileFormatError(f"{path}: `by_name` only supports loading legacy '.h5' or '.hdf5' files.")
    return load_checkpoint(model, path, verify=verify)


CHECKPOINT = table.register(
    table.FileFormat(
        name="keramic_checkpoint",
        title="keramic checkpoint",
        description="keramic checkpoint directory (checkpoint.json index + safetensors data files)",
        recognise=is_checkpoint,
        save=save_into,
        load_weights=load_weights_into,
        inspect=inspect,
        hint="a checkpoint holds variables keyed by attribute path, not an architecture: build the model in code and call `model.load_weights(...)` on it.",
        order=10,
    )
)
