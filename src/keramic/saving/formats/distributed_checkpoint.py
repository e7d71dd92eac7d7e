"""Checkpoints and saves under `keras.distribution`: every process writes its part, rank 0 commits.

A checkpoint saved by N processes is the ordinary checkpoint directory (`docs/checkpoint.md`)
with one data file per process, `data-<rank>-of-<N>.safetensors`:

- replicated variables are spread over the processes (balanced by bytes), each written once;
- a variable that `ModelParallel` shards is written as pieces, one per slice, each by the first
  process that holds that slice; the index lists them under `pieces` (key -> dtype, full shape,
  axis, and each part's file and [start, stop) on that axis).

Commit protocol (all processes share one file system): rank 0 makes the temporary directory
beside the target and sends its name; each process writes and fsyncs its file there and reports
size, SHA-256 and contents (JSON over a collective: nothing is pickled); rank 0 writes the index
and renames the directory into place; then every process learns the outcome. A process that dies
mid-save stops the job before the rename, so the previous checkpoint stays as it was.

Loading assembles pieces into full tensors and keeps, on each process, the slice its current
distribution asks for: a checkpoint reshards onto any number of processes.

Under a remote URL (saving/remote.py) each process writes into a staging folder of its own: every
process then holds the index and its own data file, uploads its file under the remote temporary
prefix, and rank 0 commits once all uploads are done; no shared disk is needed.

Plain saves (`.keras`, `.h5`, weights files) under a distribution are written once, by rank 0,
from the full values (sharded variables are gathered first); the others wait for the outcome.
"""

import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any

import torch

from keramic import backend
from keramic.distribution import collectives, sharding
from keramic.distribution.steps import active
from keramic.errors import FileFormatError, KeramicError, WeightsMismatchError
from keramic.saving import deferred, remote
from keramic.saving.formats import checkpoint
from keramic.saving.stores import atomic, hashed_write, safetensors_file
from keramic.saving.version import keramic_version

PIECES = "pieces"


# ---------------------------------------------------------------- when it applies
def _sharded(model) -> bool:
    plan = sharding.plan_of(model)
    return plan is not None and bool(plan.sharded)


def saves_here() -> bool:
    """True when a checkpoint save must be collective (several processes under a distribution)."""
    return active() is not None


def loads_here(model, index: dict) -> bool:
    """True when this module must load: the checkpoint has pieces, or the model holds sharded variables."""
    return PIECES in index or _sharded(model)


# ---------------------------------------------------------------- plain saves
def write_once(model, save: Callable[[], Any]) -> Any:
    """Run `save` on rank 0 only, with full values of sharded variables; every process returns its result
    or raises its error.

    >>> write_once(model, lambda: row.save(model, "model.keras"))
    """
    if active() is None:
        return save()
    result, error = None, ""
    with sharding.full_values(model):  # a collective: every process takes part
        if collectives.is_chief():
            try:
                result = save()
            except Exception as caught:  # reported to every process, raised on rank 0 below
                error = f"{type(caught).__name__}: {caught}"
                raised = caught
    error = collectives.broadcast_json(error)
    if error:
        if collectives.is_chief():
            raise raised
        raise KeramicError(f"rank 0 failed to save: {error}")
    return result


# ---------------------------------------------------------------- collective checkpoint save
def _assign_writers(entries: list[tuple[str, torch.Tensor]], world: int) -> list[int]:
    """The process that writes each replicated entry: the least loaded so far (same answer everywhere)."""
    loads, owners = [0] * world, []
    for _, tensor in entries:
        owner = min(range(world), key=lambda r: (loads[r], r))
        owners.append(owner)
        loads[owner] += tensor.numel() * tensor.element_size() + 1
    return owners


def _my_entries(snapshot) -> tuple[list[tuple[str, torch.Tensor]], dict]:
    """(what this process writes, {key: piece record} of the slices among them)."""
    whole = [(key, tensor) for key, tensor in snapshot.entries if getattr(tensor, "_keramic_shard", None) is None]
    owners = dict(zip((key for key, _ in whole), _assign_writers(whole, collectives.world_size())))
    mine, pieces = [], {}
    for key, tensor in snapshot.entries:
        spec = getattr(tensor, "_keramic_shard", None)
        if spec is None:
            if owners[key] == collectives.rank():
                mine.append((key, tensor.detach()))
        elif spec.get("writes", True):
            mine.append((key, tensor.detach()))
            pieces[key] = {
                "dtype": backend.standardize_dtype(tensor.dtype),
                "shape": spec["full_shape"],
                "axis": spec["axis"],
                "start": spec["start"],
                "stop": spec["stop"],
            }
    return mine, pieces


def _write_rank_file(temporary: str, directory: str, entries, fsync: bool) -> dict:
    """Write this process's data file into the temporary directory; returns its index record."""
    name = f"data-{collectives.rank():05d}-of-{collectives.world_size():05d}.safetensors"
    head, buffers = safetensors_file.layout(os.path.join(directory, name), entries, {"format": "pt"})
    size, sha256 = hashed_write.write_hashed(os.path.join(temporary, name), [head, *buffers], fsync)
    return {"name": name, "size": size, "sha256": sha256}


def _refuse_foreign_target(directory: str) -> None:
    if os.path.lexists(directory) and not checkpoint.is_checkpoint(directory) and not (os.path.isdir(directory) and not os.listdir(directory)):
        raise checkpoint.CheckpointExistsError(f"{directory}: exists and is not a keramic checkpoint (no {checkpoint.INDEX}); refusing to replace it.")


def save(snapshot, directory, fsync: bool = True, metadata: dict | None = None) -> str:
    """Write `snapshot` (taken on every process) as one checkpoint at `directory`, all processes together."""
    directory = os.path.abspath(os.fspath(directory))
    if threading.current_thread() is not threading.main_thread():
        raise KeramicError(
            f"{directory}: under keras.distribution checkpoints are saved by all processes together, from the main thread: use async_save=False."
        )
    mine, pieces = _my_entries(snapshot)
    chief = collectives.is_chief()
    private = remote.is_private(directory)  # a staging folder or mirror of one process: each writes its own copy
    writes_here = chief or private
    raised: Exception | None = None
    with contextlib.ExitStack() as stack:
        temporary, problem = "", ""
        if writes_here:
            try:
                _refuse_foreign_target(directory)
                temporary = stack.enter_context(atomic.directory_atomically(directory, fsync=fsync, remove_old_later=True))
            except Exception as error:
                problem, raised = f"{type(error).__name__}: {error}", error
        starts = collectives.all_gather_json([temporary, problem])
        problems = [f"rank {r}: {p}" for r, (_, p) in enumerate(starts) if p]
        if problems:
            if raised is not None:
                raise raised
            raise KeramicError(f"{directory}: the checkpoint could not start: " + "; ".join(problems))
        temporary = temporary if private else starts[0][0]
        record: dict[str, Any] = {"pieces": pieces, "tensors": {}}
        try:
            record.update(_write_rank_file(temporary, directory, mine, fsync))
            record["tensors"] = {key: {"dtype": backend.standardize_dtype(t.dtype), "shape": list(t.shape)} for key, t in mine if key not in pieces}
        except Exception as error:  # reported to every process: nobody commits
            record["error"] = f"{type(error).__name__}: {error}"
        records = collectives.all_gather_json(record)
        failures = [f"rank {r}: {rec['error']}" for r, rec in enumerate(records) if "error" in rec]
        if failures:
            raise KeramicError(f"{directory}: the checkpoint was not written: " + "; ".join(failures))
        index = _index(snapshot, records, metadata) if chief else None  # builds a dict from the gathered records
        if private:  # every copy gets the index: each process can list it; the upload sends one
            index = collectives.broadcast_json(index)
        outcome = ""
        if writes_here:
            try:
                atomic.write_json(os.path.join(temporary, checkpoint.INDEX), index, fsync=fsync, indent=1)
                stack.close()  # the rename: the checkpoint appears, complete
            except Exception as error:
                outcome, raised = f"{type(error).__name__}: {error}", error
    outcomes = [f"rank {r}: {o}" for r, o in enumerate(collectives.all_gather_json(outcome)) if o]
    if outcomes:
        if raised is not None:
            raise raised
        raise KeramicError(f"{directory}: the checkpoint was not committed: " + "; ".join(outcomes))
    return directory


def _index(snapshot, records: list[dict], metadata: dict | None) -> dict:
    files: dict[str, dict] = {}
    tensors: dict[str, dict] = {}
    pieces: dict[str, dict] = {}
    for record in records:
        files[record["name"]] = {"size": record["size"], "sha256": record["sha256"]}
        for key, description in record["tensors"].items():
            tensors[key] = {"file": record["name"], **description}
        for key, piece in record["pieces"].items():
            entry = pieces.setdefault(key, {"dtype": piece["dtype"], "shape": piece["shape"], "axis": piece["axis"], "parts": []})
            entry["parts"].append({"file": record["name"], "start": piece["start"], "stop": piece["stop"]})
    index = {
        "format": checkpoint.FORMAT,
        "version": checkpoint.VERSION,
        "keramic_version": keramic_version(),
        "model_class": snapshot.model_class,
        "files": files,
        "tensors": tensors,
        "training_state": snapshot.training_state,
        "metadata": dict(metadata or {}, writers=len(records)),
    }
    if pieces:
        index[PIECES] = {key: dict(entry, parts=sorted(entry["parts"], key=lambda p: p["start"])) for key, entry in pieces.items()}
    return index


# ---------------------------------------------------------------- loading
def _checked_pieces(directory: str, index: dict) -> dict:
    """The index's pieces, each checked to tile its tensor exactly along its axis."""
    pieces = index.get(PIECES, {})
    where = os.path.join(directory, checkpoint.INDEX)
    if not isinstance(pieces, dict):
        raise FileFormatError(f"{where}: entry '{PIECES}': expected an object.")
    for key, entry in pieces.items():
        try:
            shape, axis, parts = [int(d) for d in entry["shape"]], int(entry["axis"]), entry["parts"]
            backend.torch_dtype(entry["dtype"])
            if not 0 <= axis < len(shape) or not parts:
                raise ValueError("axis out of range or no parts")
            cursor = 0
            for part in parts:
                if part["file"] not in index["files"] or int(part["start"]) != cursor or not cursor < int(part["stop"]) <= shape[axis]:
                    raise ValueError(f"part {part} does not continue at {cursor} within {shape[axis]}")
                cursor = int(part["stop"])
            if cursor != shape[axis]:
                raise ValueError(f"parts cover [0, {cursor}) of {shape[axis]}")
        except (KeyError, TypeError, ValueError) as error:
            raise FileFormatError(f"{where}: entry '{PIECES}/{key}': not a valid piece list ({error}).") from None
    return pieces


def _piece_shape(entry: dict, part: dict) -> list[int]:
    shape = list(entry["shape"])
    shape[entry["axis"]] = part["stop"] - part["start"]
    return shape


def _full_values(directory: str, index: dict, verify: bool) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint, whole (pieces assembled), after checking sizes and hashes."""
    pieces = _checked_pieces(directory, index)
    expected: dict[str, dict] = {name: {} for name in index["files"]}
    for key, record in index["tensors"].items():
        expected[record["file"]][key] = record
    for key, entry in pieces.items():
        for part in entry["parts"]:
            expected[part["file"]][key] = {"dtype": entry["dtype"], "shape": _piece_shape(entry, part)}
    opened = []
    try:
        with concurrent.futures.ThreadPoolExecutor(checkpoint._workers(len(index["files"]))) as pool:
            futures = {
                name: pool.submit(checkpoint._open_data_file, directory, name, record, expected[name], verify) for name, record in index["files"].items()
            }
            for future in futures.values():
                with contextlib.suppress(Exception):
                    opened.append(future.result())
        files = {name: future.result() for name, future in futures.items()}
        values = {key: files[record["file"]].tensor(key).clone() for key, record in index["tensors"].items()}
        for key, entry in pieces.items():
            full = torch.empty(entry["shape"], dtype=backend.torch_dtype(entry["dtype"]))
            for part in entry["parts"]:
                full.narrow(entry["axis"], part["start"], part["stop"] - part["start"]).copy_(files[part["file"]].tensor(key))
            values[key] = full
        return values
    finally:
        for data in opened:
            data.close()


def _full_shape(variable) -> tuple[int, ...]:
    spec = getattr(variable, "_keramic_shard", None)
    return tuple(variable.shape) if spec is None else tuple(spec["full_shape"])


def load(model, directory, verify: bool = True):
    """Restore `model` from a checkpoint written by any number of processes; returns a `LoadStatus`.

    Each variable takes its full value, or this process's slice of it when the model is sharded.
    """
    directory = os.fspath(directory)
    index = checkpoint.read_index(directory)
    values = _full_values(directory, index, verify)
    prefix = f"{checkpoint.TRAINING_STATE}/"
    training_state = checkpoint._training_state(directory, index, lambda key: values[key])
    model_keys = [key for key in values if not key.startswith(prefix)]
    existing = deferred.object_keys(model)
    metric_ids = {id(variable) for _, variable in deferred.metric_keys(model)}
    pairs = [(key, variable) for key, variable in existing if key in values]
    mismatched = [f"'{key}': checkpoint {tuple(values[key].shape)}, model {_full_shape(v)}" for key, v in pairs if tuple(values[key].shape) != _full_shape(v)]
    if mismatched:
        raise WeightsMismatchError(f"{directory}: shapes differ, nothing was loaded: " + "; ".join(mismatched[:20]))
    metric_values = {key: values[key] for key in model_keys if key.startswith(f"{deferred.METRICS_PREFIX}/")}
    status = deferred.LoadStatus(model, directory, model_keys, metric_values, metric_ids)
    status.training_state = training_state
    for key, variable in pairs:
        sharding.load_full_value(variable, values[key])
        status._matched(key)
    matched = {key for key, _ in pairs}
    deferred.register(model, {key: values[key] for key in model_keys if key not in matched and key not in metric_values}, status)
    return status
