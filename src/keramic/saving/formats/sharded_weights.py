"""Sharded weights, as Keras 3 writes them with `max_shard_size` (keras-v3-format.md section 7).

`name.weights.json` is an index: `{"metadata": {"total_size": bytes}, "weight_map": {"/<path>/vars":
shard or [shards]}}`; the shards `name_00000.weights.h5`, ... use the `.weights.h5` layout, and a
group's datasets may be spread over several of them. The index names the files to open, so each
name must be a plain file name in the index's own directory before anything is opened.
"""

import contextlib
import json
import os
import re
import warnings

import h5py

from keramic.errors import FileFormatError, KeramicError, NotBuiltError
from keramic.saving import inspect_hdf5, inspect_summary
from keramic.saving.formats import keras_v3, table
from keramic.saving.stores import atomic, h5_safety, h5_weights
from keramic.saving.tree import entries, variable_groups

# An index lists each group once; a model whose index passes this has millions of groups.
INDEX_SIZE_LIMIT = 64 * 1024**2


def _group_name(path):
    return f"{path}/vars" if path else "vars"


def index_path(filepath):
    """The index path Keras uses: a `*.weights.h5` path becomes `*.weights.json` (with a warning)."""
    filepath = os.fspath(filepath)
    if not filepath.endswith(("weights.h5", "weights.json")):
        raise FileFormatError(f"The filename must end in `.weights.json` when `max_shard_size` is given. Received: filepath={filepath}")
    if filepath.endswith(".h5"):
        renamed = filepath[: -len(".h5")] + ".json"
        warnings.warn(f"Saving sharded weights requires `*.json` as the extension; writing {renamed} instead of {filepath}.", stacklevel=3)
        return renamed
    return filepath


def shard_file_name(filepath, number):
    """`dir/name.weights.json` -> `name_00003.weights.h5` (Keras's numbering)."""
    return f"{_base(filepath)}_{number:05d}.weights.h5"


def plan_shards(groups, max_bytes):
    """Split `(path, owner, variables)` groups into shards in Keras's order.

    Returns `(shards, total_bytes)`; each shard is a list of `(group name, name attribute or None,
    [(index, variable), ...])`. A group is opened (with its `name`) in the shard current when it is
    reached; it continues, without `name`, in the next shard when a variable would overflow.
    """
    shards, used, total = [[]], 0, 0
    for path, owner, variables in groups:
        name = _group_name(path)
        shards[-1].append((name, str(getattr(owner, "name", "")), []))
        for index, variable in entries(variables):
            size = variable.numel() * variable.element_size()
            if size > max_bytes:
                raise KeramicError(
                    f"Variable '{getattr(variable, 'path', index)}' (entry '/{name}/{index}', shape {tuple(variable.shape)}) takes "
                    f"{size} bytes, more than max_shard_size ({max_bytes:.0f} bytes); increase `max_shard_size`."
                )
            total += size
            used += size
            if used > max_bytes:
                shards.append([])
                used = size
            if shards[-1][-1:] and shards[-1][-1][0] == name:
                shards[-1][-1][2].append((index, variable))
            else:
                shards[-1].append((name, None, [(index, variable)]))
    return shards, total


def weight_map(shards, file_names):
    """`/<path>/vars` -> shard name when the group has one dataset, else the list of its shards."""
    files, counts = {}, {}
    for shard, file_name in zip(shards, file_names):
        for name, _, datasets in shard:
            if not datasets:
                continue
            key = f"/{name}"
            counts[key] = counts.get(key, 0) + len(datasets)
            if file_name not in files.setdefault(key, []):
                files[key].append(file_name)
    return {key: names[0] if counts[key] == 1 else names for key, names in files.items()}


def save(model, filepath, max_shard_size):
    """Write the model's variables as shards plus an index; each file atomically, the index last.

    >>> save(model, "ckpt/model.weights.json", max_shard_size=2.0)  # GiB per shard
    """
    filepath = index_path(filepath)
    if not model.built:
        raise NotBuiltError(f"Model '{model.name}' has not been built yet; call it on data or build() it before saving weights.")
    try:
        max_bytes = float(max_shard_size) * 1024**3
    except (TypeError, ValueError):
        max_bytes = 0.0
    if not max_bytes > 0:
        raise KeramicError(f"max_shard_size must be a positive number of GiB; got {max_shard_size!r}.")
    shards, total = plan_shards(variable_groups(model), max_bytes)
    wanted = [shard_file_name(filepath, number) for number in range(len(shards))]
    with atomic.file_set_atomically(filepath, wanted, _named_shards, _tagged_names, _shard_pattern(filepath).fullmatch) as files:
        for shard, file_name in zip(shards, files.names):
            _write_shard(files.temporaries[file_name], shard)
        index = {"metadata": {"total_size": float(total)}, "weight_map": weight_map(shards, files.names)}
        with open(files.index_temporary, "w", encoding="utf-8") as handle:
            json.dump(index, handle, indent=4)


def _base(filepath):
    stem = os.path.basename(filepath)[: -len(".json")]
    return stem[: -len(".weights")] if stem.endswith(".weights") else stem


def _tagged_names(names, token):
    """Shard names while a save replaces a set that holds Keras's names: `name_<token>_00000.weights.h5`.

    The committed set then gets Keras's names back (`atomic.file_set_atomically`): real Keras opens
    `name_00000.weights.h5` before it reads the index.
    """
    tagged = []
    for name in names:
        head, number = name.rsplit("_", 1)
        tagged.append(f"{head}_{token}_{number}")
    return tagged


def _shard_pattern(filepath):
    return re.compile(re.escape(_base(filepath)) + r"_(?:[0-9a-f]{8}_)?\d{5}\.weights\.h5")


def _named_shards(filepath):
    """The shard names the index at `filepath` names now (none when it is missing or unreadable)."""
    try:
        return {name for names in read_index(filepath).values() for name in names}
    except (OSError, KeramicError):
        return set()


def _write_shard(path, shard):
    with h5py.File(path, "w") as h5file:
        for name, owner_name, datasets in shard:
            group = h5file.require_group(name)
            if owner_name is not None:
                group.attrs["name"] = owner_name
            for index, variable in datasets:
                h5_weights.write_dataset(group, str(index), variable)


def read_index(filepath):
    """The index's `weight_map` as `{"/<path>/vars": [shard names]}`, every name checked to be plain."""
    try:
        index = atomic.read_json_file(filepath, INDEX_SIZE_LIMIT, what="a sharded weights index")
    except OSError as error:
        raise FileFormatError(f"{filepath}: cannot read the sharded weights index ({error}).") from None
    mapping = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(mapping, dict):
        raise FileFormatError(f"{filepath}: entry 'weight_map': missing or not an object, so this is not a sharded weights index.")
    checked = {}
    for key, names in mapping.items():
        if not (key == "/vars" or (key.startswith("/") and key.endswith("/vars"))):
            raise FileFormatError(f"{filepath}: weight_map entry '{key}': expected a '/<path>/vars' group name.")
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names:
            raise FileFormatError(f"{filepath}: weight_map entry '{key}': expected a shard file name or a list of them.")
        for name in names:
            _check_shard_name(filepath, key, name)
        checked[key] = list(dict.fromkeys(names))
    return checked


def _check_shard_name(filepath, key, name):
    """A shard must be a plain file name: nothing in the index may point outside its directory."""
    plain = (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
        and not os.path.isabs(name)
        and os.path.basename(name) == name
    )
    if not plain:
        raise FileFormatError(
            f"{filepath}: weight_map entry '{key}': shard {name!r} is not a plain file name in the index's directory; "
            "shard names may not contain path separators or '..'."
        )


def _open_shard(index_file, path):
    """Open a shard the index names: a regular file with one link, inside the index's folder."""
    atomic.contained_file(os.path.dirname(path), os.path.basename(path), index_file, single_link=True, what="shard")
    return h5_weights.open_hdf5(path, f"{path}: shard named in {index_file} is")


class ShardedWeights:
    """A weights source for `h5_weights.read_groups` over the shards an index names: each group's
    numbered datasets are gathered from every shard the index lists for it."""

    def __init__(self, index_file, mapping, shards):
        self.index_file = index_file
        self.directory = os.path.dirname(os.path.abspath(index_file))
        self.mapping = mapping
        self.shards = shards  # shard path -> h5_weights.H5Weights over that open shard

    def stored(self, group_path):
        """The datasets `0, 1, ...` of `group_path` ("layers/dense/vars"), every entry checked."""
        found = {}
        for name in self.mapping.get(f"/{group_path}", ()):
            path = os.path.join(self.directory, name)
            shard = self.shards[path]
            group = shard.h5file
            for part in group_path.split("/"):
                group = shard.check.group(group, part)
                if group is None:
                    break
            if group is None:
                continue
            with h5_safety.reading(path, group.name):
                keys = list(group.keys())
            for key in keys:
                if not key.isdigit() or str(int(key)) != key:
                    continue
                if int(key) in found:
                    raise FileFormatError(
                        f"{path}: entry '/{group_path}/{key}' is also stored in {found[int(key)].file.filename}; the shards named by {self.index_file} overlap."
                    )
                dataset = shard.check.dataset(group, key)
                _check_dtype(shard.check, dataset)
                found[int(key)] = dataset
        datasets = []
        while len(datasets) in found:
            datasets.append(found[len(datasets)])
        return datasets

    def store(self, group_path):
        """Every dataset of `group_path` by name, across the shards, for a `load_own_variables` override."""
        items = {}
        for name in self.mapping.get(f"/{group_path}", ()):
            shard = self.shards[os.path.join(self.directory, name)]
            group = h5_weights.find_group(shard.check, shard.h5file, group_path)
            for key in () if group is None else group.keys():
                dataset = shard.check.dataset(group, key)
                if dataset is not None:
                    _check_dtype(shard.check, dataset)
                    items[key] = dataset
        return h5_weights.GroupStore(items, h5_weights.dataset_value)

    def read(self, plan):
        """Fill the variables, each shard's part by that shard's own (bulk) reader."""
        by_shard = {}
        for dataset, variable in plan:
            by_shard.setdefault(dataset.file.filename, []).append((dataset, variable))
        for path, part in by_shard.items():
            self.shards[path].read(part)


def _check_dtype(check, dataset):
    """Numbers, booleans or Keras's bfloat16 (2-byte opaque + `dtype` attribute) only: anything else
    would fail half-way through assigning, after other variables already changed."""
    if dataset.dtype.kind in "biuf":
        return
    marker = dataset.attrs.get("dtype")
    if isinstance(marker, bytes):
        marker = marker.decode("utf-8", "replace")
    if dataset.dtype.kind == "V" and dataset.dtype.itemsize == 2 and marker == "bfloat16":
        return
    raise check.error(dataset.name, f"holds {dataset.dtype} data, not numbers; a weights file stores numeric tensors only.")


def load(model, filepath, skip_mismatch=False):
    """Load an index and its shards into a built model: strict, and nothing assigned unless all fits.

    >>> load(model, "ckpt/model.weights.json")
    """
    filepath = os.fspath(filepath)
    keras_v3.check_built(model, filepath)
    atomic.read_while_replaced(filepath, lambda: _load_once(model, filepath, skip_mismatch))


def _load_once(model, filepath, skip_mismatch):
    mapping = read_index(filepath)
    directory = os.path.dirname(os.path.abspath(filepath))
    paths = dict.fromkeys(os.path.join(directory, name) for names in mapping.values() for name in names)
    with contextlib.ExitStack() as open_files:
        shards = {}
        for path in paths:
            h5file = open_files.enter_context(_open_shard(filepath, path))
            fd = os.open(path, os.O_RDONLY)
            open_files.callback(os.close, fd)
            shards[path] = h5_weights.H5Weights(h5file, path, (fd, 0, os.fstat(fd).st_size))
        source = ShardedWeights(filepath, mapping, shards)
        keras_v3.read_state(model, source, filepath, skip_mismatch)


# ---------------------------------------------------------------- the table row
def recognise(path):
    """A JSON file holding an object with a `weight_map` (whatever its name)."""
    if not os.path.isfile(path) or table.head(path, 1).lstrip()[:1] != b"{":
        return False
    try:
        index = atomic.read_json_file(path, INDEX_SIZE_LIMIT)
    except FileFormatError:
        return False
    return isinstance(index, dict) and "weight_map" in index


def _merge(summaries):
    """One weights summary from each shard's: objects split over shards are added up."""
    merged = {"model_name": None, "objects": [], "own_params": 0, "own_bytes": 0, "params": 0, "bytes": 0, "dtypes": {}, "optimizer": None}
    objects = {}
    for summary in summaries:
        merged["model_name"] = merged["model_name"] or summary["model_name"]
        for key in ("own_params", "own_bytes", "params", "bytes"):
            merged[key] += summary[key]
        for dtype, count in summary["dtypes"].items():
            merged["dtypes"][dtype] = merged["dtypes"].get(dtype, 0) + count
        for item in summary["objects"]:
            row = objects.setdefault(item["path"], {"path": item["path"], "name": item["name"], "params": 0, "bytes": 0})
            row["params"] += item["params"]
            row["bytes"] += item["bytes"]
        stored = summary["optimizer"]
        if stored is not None:
            optimizer = merged["optimizer"] = merged["optimizer"] or {"name": stored["name"], "variables": 0, "bytes": 0}
            optimizer["variables"] += stored["variables"]
            optimizer["bytes"] += stored["bytes"]
    merged["objects"] = [objects[path] for path in sorted(objects, key=inspect_hdf5.natural_key)]
    return merged


def inspect(path):
    """The index and the layout of every shard it names (metadata only)."""
    mapping = read_index(path)
    directory = os.path.dirname(os.path.abspath(path))
    summaries = []
    for name in dict.fromkeys(name for names in mapping.values() for name in names):
        shard = os.path.join(directory, name)
        with _open_shard(path, shard) as h5file:
            summaries.append(inspect_hdf5.weights_summary(h5file, shard))
    report = inspect_summary.summarize(path, "weights_json", SHARDED.description, weights=_merge(summaries))
    report["shards"] = len(summaries)
    return report


def load_weights_into(model, path, skip_mismatch=False, by_name=False, verify=True):
    table.refuse_by_name(path, by_name)
    return load(model, path, skip_mismatch)


SHARDED = table.register(
    table.FileFormat(
        name="weights_json",
        title="Keras 3 sharded weights",
        description="Keras 3 sharded weights (a .weights.json index and its .weights.h5 shards)",
        recognise=recognise,
        suffixes=(".weights.json",),
        save=save,
        load_weights=load_weights_into,
        inspect=inspect,
        hint="a sharded weights index holds no model architecture: build the model in code and call `model.load_weights(...)` on it.",
        target_path=lambda path, max_shard_size=None: index_path(path),
        order=40,
    )
)
