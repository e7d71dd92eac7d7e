"""`keramic convert IN OUT`: move a model or its weights between `.keras`, legacy `.h5`,
`.weights.h5` and `.safetensors`, and say what the target kept and what it dropped.

The source's kind comes from its bytes, the target's from its extension. A whole-model source is
loaded (architecture, compile config, weights, optimizer state) and saved in the target's format.
Between weights-only formats the tensors are copied key for key with no model at all: a
`.weights.h5` dataset `<path>/vars/<index>` and the safetensors key of the same name are the same
entry. A weights-only source becomes a whole model only with its architecture, given as `config`
(the JSON of `model.to_json()`, or a `.keras` archive's `config.json`).
"""

import contextlib
import os

import h5py
import numpy as np
import torch

from keramic.errors import FileFormatError, KeramicError
from keramic.saving import api
from keramic.saving.formats import safetensors_weights, sharded_weights, table
from keramic.saving.stores import bulk_io, h5_layout, h5_safety, h5_weights
from keramic.saving.stores.atomic import write_atomically

TARGETS = "`.keras`, `.h5` (legacy whole model), `.weights.h5`, `.safetensors` (or `.safetensors.index.json` with a shard size)"
KEYED = ("weights_h5", "weights_json", "safetensors")  # weights formats copied key for key, with no model


def source_kind(path):
    """The table name of what `path` holds, from its bytes (a sharded safetensors index: from its name)."""
    row = table.detect(path)
    if row.name == "config_json":
        raise FileFormatError(
            f"{path}: a JSON file that is not a sharded weights index; a model config (`model.to_json()`) is "
            "not a saved model: pass it with --config to convert a weights file into a whole model."
        )
    if row.load is None and row.load_weights is None:
        raise FileFormatError(f"{path}: {row.description} cannot be converted.")
    return row.name


def target_kind(path, max_shard_size=None):
    """The table name of the format a target path asks for, from its extension."""
    if safetensors_weights.is_safetensors_path(path):
        return "safetensors"
    if max_shard_size is not None:
        raise KeramicError(f"{path}: a shard size only applies to a `.safetensors` target.")
    row = table.for_target(path)
    if row is not None and row.name in ("keras_v3", "legacy_h5", "weights_h5"):
        return row.name
    raise KeramicError(f"{path}: cannot tell the target format from its extension; use {TARGETS}.")


class Report:
    """What a conversion kept and dropped, one line per part of a saved model."""

    def __init__(self, source, source_kind, target, target_kind):
        self.source, self.source_kind, self.target, self.target_kind = source, source_kind, target, target_kind
        self.parts = []

    def add(self, part, verdict):
        self.parts.append((part, verdict))

    def __str__(self):
        lines = [f"{self.source} ({table.get(self.source_kind).title}) -> {self.target} ({table.get(self.target_kind).title})"]
        lines.extend(f"  {part}: {verdict}" for part, verdict in self.parts)
        return "\n".join(lines)


def convert(source, target, config=None, max_shard_size=None):
    """Convert `source` into `target`'s format (by extension); returns the `Report`.

    >>> print(convert("model.keras", "model.safetensors"))
    >>> convert("model.weights.h5", "model.keras", config="model.json")
    """
    source, target = os.fspath(source), os.fspath(target)
    from_kind, to_kind = source_kind(source), target_kind(target, max_shard_size)
    if to_kind == "safetensors":
        target = safetensors_weights.target_path(target, max_shard_size)  # with shards: the index
    if os.path.exists(target) and os.path.realpath(source) == os.path.realpath(target):
        raise KeramicError(f"{target}: the target is the source file itself; write the conversion to a new path.")
    report = Report(source, from_kind, target, to_kind)
    whole_source, whole_target = table.get(from_kind).holds_model, table.get(to_kind).holds_model
    if whole_source and config is not None:
        raise KeramicError(f"{source}: holds its own architecture already; --config is only for weights-only sources.")
    if whole_source:
        model = api.load_model(source)
        _describe_model(report, model, "kept", whole_target)
    elif config is not None:
        model = _model_from_config(config)
        stored_optimizer = _stored_optimizer_count(source, from_kind)
        api.load_weights(model, source)
        _describe_model(report, model, f"from {config}", whole_target, stored_optimizer)
    elif whole_target or from_kind not in KEYED:
        why = "a whole model" if whole_target else "keyed weights (a legacy .h5 weights file pairs tensors with layers by name)"
        raise KeramicError(
            f"{source}: holds weights only; converting it to {target} ({why}) needs the model's architecture: pass "
            "--config model.json (the output of `model.to_json()`, or a .keras archive's config.json)."
        )
    else:
        _copy_tensors(report, source, from_kind, target, to_kind, max_shard_size)
        return report
    _save(model, target, to_kind, max_shard_size)
    return report


def _model_from_config(config):
    try:
        with open(config, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise FileFormatError(f"{config}: cannot read the model config ({error}).") from None
    try:
        return api.model_from_json(text)
    except KeramicError as error:
        raise type(error)(f"{config}: {error}") from None


def _describe_model(report, model, origin, whole_target, stored_optimizer=None):
    """Fill `report` for a model going to the target; `stored_optimizer` counts the optimizer
    variables a weights source held (None: the source was a whole model)."""
    optimizer = getattr(model, "optimizer", None)
    dropped = "dropped (weights-only target)"
    report.add("architecture", origin if whole_target else dropped)
    if optimizer is None:
        report.add("compile config", "none (the model is not compiled)")
    else:
        report.add("compile config", origin if whole_target else dropped)
    report.add("weights", f"kept ({len(model.weights)} variables)")
    if optimizer is None:
        if stored_optimizer:
            report.add("optimizer state", f"dropped ({stored_optimizer} variables; the config compiles no optimizer)")
        else:
            report.add("optimizer state", "none in the source")
    elif stored_optimizer == 0:
        report.add("optimizer state", "none in the source")
    else:
        report.add("optimizer state", f"kept ({len(optimizer.variables)} variables)")


def _save(model, target, kind, max_shard_size):
    if table.get(kind).holds_model:
        api.save_model(model, target)
    else:
        api.save_weights(model, target, max_shard_size=max_shard_size)


# ---------------------------------------------------------------- weights-only, key for key
def _stored_optimizer_count(source, kind):
    if kind not in KEYED:
        return 0  # legacy weights never hold optimizer state; a checkpoint's is not keyed this way
    with _open_entries(source, kind) as (entries, aliases, _):
        return sum(1 for key in [*(key for key, _ in entries), *aliases] if key.startswith("optimizer/"))


def _copy_tensors(report, source, from_kind, target, to_kind, max_shard_size):
    with _open_entries(source, from_kind) as (entries, aliases, tensor_of):
        tensors = [(key, tensor_of(key, item)) for key, item in entries]
        if to_kind == "safetensors":
            safetensors_weights.write_tensors(target, tensors, aliases, max_shard_size)
        else:
            _write_weights_h5(source, target, tensors, aliases)
    keys = [key for key, _ in entries] + list(aliases)
    optimizer = sum(1 for key in keys if key.startswith("optimizer/"))
    report.add("architecture", "none in the source (weights only)")
    report.add("weights", f"kept ({len(keys) - optimizer} variables)")
    report.add("optimizer state", f"kept ({optimizer} variables)" if optimizer else "none in the source")


@contextlib.contextmanager
def _open_entries(source, kind):
    """Yield ([(key, item)], {alias: key}, tensor_of) for a keyed weights source, reading no data:
    `tensor_of(key, item)` gives the tensor (safetensors: a lazy view of the file; HDF5: read into
    memory)."""
    if kind == "safetensors":
        with safetensors_weights.open_weights(safetensors_weights.recognise(source)) as weights:
            yield [(key, None) for key in weights.located], dict(weights.aliases), lambda key, _: weights.tensor(key)
        return
    if kind == "weights_h5":
        with h5_weights.open_hdf5(source, f"{source}:") as h5file:
            reader = h5_weights.H5Weights(h5file, source)
            groups = _vars_groups(reader.check, h5file)
            yield _datasets(reader, groups), {}, lambda key, dataset: _dataset_tensor(source, key, dataset)
        return
    with contextlib.ExitStack() as open_files:
        mapping = sharded_weights.read_index(source)
        directory = os.path.dirname(os.path.abspath(source))
        shards = {}
        for name in dict.fromkeys(name for names in mapping.values() for name in names):
            path = os.path.join(directory, name)
            shards[path] = h5_weights.H5Weights(open_files.enter_context(sharded_weights._open_shard(source, path)), path)
        reader = sharded_weights.ShardedWeights(source, mapping, shards)
        yield _datasets(reader, [key[1:] for key in mapping]), {}, lambda key, dataset: _dataset_tensor(source, key, dataset)


def _vars_groups(check, root):
    """Paths of every `vars` group under `root` (hard links only, each object once), in the file's order."""
    walked = h5_safety.walk(check.filename, root)
    return [path for path, node in walked if isinstance(node, h5py.Group) and path.rsplit("/", 1)[-1] == "vars"]


def _datasets(reader, group_paths):
    """[(`<group>/<index>`, dataset)] for the numbered datasets of each group, every entry checked."""
    return [(f"{group}/{index}", dataset) for group in group_paths for index, dataset in enumerate(reader.stored(group))]


def _dataset_tensor(filename, key, dataset):
    """A dataset's values as a CPU tensor of its own dtype (bfloat16 from Keras's marked 2-byte type),
    allocated only once the declared shape agrees with the bytes the file stores for it."""
    with h5_safety.reading(filename, key):
        h5_safety.check_dataset(filename, dataset)
        if h5_weights._is_bfloat16(dataset):
            dtype = torch.bfloat16
        else:
            dtype = torch.from_numpy(np.empty(0, dataset.dtype.newbyteorder("="))).dtype
        tensor = torch.empty(dataset.shape, dtype=dtype)
        h5_weights.read_dataset_into(dataset, tensor)
    return tensor


def _write_weights_h5(source, target, tensors, aliases):
    """Write keyed tensors in Keras 3's weights layout; every key must be `<path>/vars/<index>`."""
    by_key = dict(tensors)
    groups = {}
    for key in [*by_key, *aliases]:
        split = safetensors_weights.split_key(key)
        if split is None:
            raise KeramicError(
                f"{source}: entry '{key}': not a keramic variable path ('<object path>/vars/<index>'), so it has no "
                f"place in {target}; convert to `.safetensors` instead, or load it into a model in code."
            )
        groups.setdefault(split[0], {})[split[1]] = by_key[aliases.get(key, key)]
    planned = []
    for path, items in groups.items():
        group = f"{path}/vars" if path else "vars"
        missing = [index for index in range(len(items)) if index not in items]
        if missing:
            raise KeramicError(f"{source}: entry '{group}/{missing[0]}': missing, while '{group}/{max(items)}' exists.")
        planned.append((path, None, [items[index] for index in range(len(items))]))
    image = h5_layout.WeightsImage(planned)
    with write_atomically(target) as temporary:
        fd = os.open(temporary, os.O_WRONLY)
        try:
            bulk_io.write_buffers(fd, image.buffers(), 0, checksum=False)
        finally:
            os.close(fd)
