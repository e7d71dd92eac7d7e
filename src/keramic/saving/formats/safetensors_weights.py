"""Weights (and optimizer state) as safetensors: one `name.safetensors` file, or with
`max_shard_size` a Hugging Face style `name.safetensors.index.json` plus
`name-00001-of-0000N.safetensors` shards.

Keys are the entry paths of Keras 3's weights layout, `<object path>/vars/<index>` (e.g.
`layers/dense/vars/0`, `optimizer/vars/3`): the same names `.weights.h5` uses for its datasets,
so both formats convert into each other without a model, mismatch reports read the same, and a
key is unique and stable by construction (it depends on the model's structure, not on layer or
variable names). A variable reached at several paths (tied weights) is stored once, under its
first key; the others are recorded as aliases in the metadata (`keramic.aliases`).
"""

import contextlib
import gc
import json
import os
import re
import threading

import torch

from keramic.errors import FileFormatError, KeramicError, NotBuiltError, WeightsMismatchError
from keramic.saving import inspect_summary
from keramic.saving.formats import keras_v3, table
from keramic.saving.formats.sharded_weights import _check_shard_name
from keramic.saving.stores import atomic, h5_weights, safetensors_file
from keramic.saving.stores.atomic import write_atomically
from keramic.saving.tree import entries, variable_groups

SUFFIX = ".safetensors"
INDEX_SUFFIX = ".safetensors.index.json"
ALIASES_KEY = "keramic.aliases"
# An index lists each tensor once; one that passes this names millions of tensors.
INDEX_SIZE_LIMIT = 64 * 1024**2
_KEY = re.compile(r"(?:(.+)/)?vars/(0|[1-9][0-9]*)")


def is_safetensors_path(filepath):
    """Whether a save path asks for safetensors (by extension: a save has no bytes to read yet)."""
    return os.fspath(filepath).endswith((SUFFIX, INDEX_SUFFIX))


def target_path(filepath, max_shard_size=None):
    """Where a save lands: the `.safetensors` file itself, or with `max_shard_size` its index."""
    filepath = os.fspath(filepath)
    if max_shard_size is None:
        if filepath.endswith(INDEX_SUFFIX):
            raise FileFormatError(f"{filepath}: a sharded safetensors index is only written with `max_shard_size`.")
        return filepath
    return filepath if filepath.endswith(INDEX_SUFFIX) else filepath + ".index.json"


def recognise(filepath):
    """The safetensors file or index to load for `filepath`, or None when it holds something else.

    A file counts by its bytes (a header length, then `{`); an index by its name. A missing
    `name.safetensors` whose `name.safetensors.index.json` exists means the index (as Hugging Face
    loaders do).
    """
    filepath = os.fspath(filepath)
    if filepath.endswith(INDEX_SUFFIX):
        return filepath
    if os.path.isfile(filepath):
        with open(filepath, "rb") as handle:
            return filepath if safetensors_file.looks_like_safetensors(handle.read(9)) else None
    if filepath.endswith(SUFFIX) and not os.path.exists(filepath) and os.path.isfile(filepath + ".index.json"):
        return filepath + ".index.json"
    return None


def split_key(key):
    """`layers/dense/vars/3` -> ("layers/dense", 3); None for a key outside the layout."""
    match = _KEY.fullmatch(key)
    return None if match is None else (match.group(1) or "", int(match.group(2)))


@contextlib.contextmanager
def paused_gc():
    """Pause the cyclic garbage collector: a header and a load plan allocate tens of thousands of
    short-lived, acyclic objects, which would otherwise set off full collections of the whole heap
    (~70 ms each with torch loaded; reference counting frees these objects anyway)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# ---------------------------------------------------------------- saving
def _identity(variable):
    """Two variables are one stored tensor when they are the same memory seen the same way."""
    if variable.numel() == 0:
        return id(variable)
    return (str(variable.device), variable.data_ptr(), variable.dtype, tuple(variable.shape), variable.stride())


def model_tensors(model):
    """([(key, variable)] in the tree's order, {alias key: stored key}) for every variable of
    `model`, optimizer included when compiled; tied variables are stored once."""
    tensors, aliases, first = [], {}, {}
    for path, _, variables in variable_groups(model):
        group = f"{path}/vars" if path else "vars"
        for index, variable in entries(variables):
            key = f"{group}/{index}"
            identity = _identity(variable)
            if identity in first:
                aliases[key] = first[identity]
            else:
                first[identity] = key
                tensors.append((key, variable))
    return tensors, aliases


def save(model, filepath, max_shard_size=None, fsync=True):
    """Write the model's variables (optimizer state when compiled) atomically.

    `fsync=False` skips the flush to disk (a killed process still never leaves a broken file).

    >>> save(model, "model.safetensors")
    >>> save(model, "big/model.safetensors", max_shard_size=2.0)  # GiB per shard, plus the index
    """
    if not model.built:
        raise NotBuiltError(f"Model '{model.name}' has not been built yet; call it on data or build() it before saving weights.")
    with paused_gc():
        tensors, aliases = model_tensors(model)
        return write_tensors(filepath, tensors, aliases, max_shard_size, fsync)


def write_tensors(filepath, tensors, aliases=None, max_shard_size=None, fsync=True):
    """Write [(key, tensor)] (plus aliases) as one file, or as shards and an index; returns the path written."""
    filepath = target_path(filepath, max_shard_size)
    aliases = dict(aliases or {})
    if max_shard_size is None:
        metadata = {"format": "pt"}
        if aliases:
            metadata[ALIASES_KEY] = json.dumps(aliases, separators=(",", ":"))
        with _old_file_released_later(filepath), write_atomically(filepath, fsync=fsync) as temporary:
            safetensors_file.write(temporary, tensors, metadata, name=filepath)
        return filepath
    _write_sharded(filepath, tensors, aliases, _shard_bytes(max_shard_size), fsync)
    return filepath


@contextlib.contextmanager
def _old_file_released_later(path):
    """Hold the file a save replaces open across the rename, then close it on a background thread.

    The kernel frees a file's cached pages and blocks when its last reference goes; without this
    that happens inside the rename, on the caller's clock (~0.25 s per GiB on the benchmark VM).
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # nothing to replace (or not ours to read): nothing to hold
        yield
        return
    try:
        yield
    finally:
        threading.Thread(target=os.close, args=(fd,), daemon=True).start()


def _shard_bytes(max_shard_size):
    try:
        max_bytes = float(max_shard_size) * 1024**3
    except (TypeError, ValueError):
        max_bytes = 0.0
    if not max_bytes > 0:
        raise KeramicError(f"max_shard_size must be a positive number of GiB; got {max_shard_size!r}.")
    return max_bytes


def _nbytes(tensor):
    return tensor.numel() * tensor.element_size()


def plan_shards(tensors, max_bytes):
    """Split [(key, tensor)] into shards of at most `max_bytes`, in order; a tensor larger than
    that gets a shard of its own (as Hugging Face's splitter does)."""
    shards, used = [[]], 0
    for key, tensor in tensors:
        size = _nbytes(tensor)
        if shards[-1] and used + size > max_bytes:
            shards.append([])
            used = 0
        shards[-1].append((key, tensor))
        used += size
    return shards


def shard_name(index_file, number, count):
    """`dir/model.safetensors.index.json` -> `model-00002-of-00005.safetensors` (1-based)."""
    stem = os.path.basename(index_file)[: -len(INDEX_SUFFIX)]
    return f"{stem}-{number:05d}-of-{count:05d}{SUFFIX}"


def _write_sharded(index_file, tensors, aliases, max_bytes, fsync):
    """Shards and their index over any earlier set, so that the index names the complete old set
    or the complete new one at every moment (`atomic.file_set_atomically`)."""
    shards = plan_shards(tensors, max_bytes)
    wanted = [shard_name(index_file, number + 1, len(shards)) for number in range(len(shards))]
    metadata = {"total_size": sum(_nbytes(tensor) for _, tensor in tensors)}
    if aliases:
        metadata[ALIASES_KEY] = aliases
    owned = _shard_pattern(index_file).fullmatch
    with atomic.file_set_atomically(index_file, wanted, _named_shards, _tagged_names, owned, fsync=fsync) as files:
        for shard, name in zip(shards, files.names):
            safetensors_file.write(files.temporaries[name], shard, {"format": "pt"}, name=os.path.join(os.path.dirname(index_file), name))
        index = {"metadata": metadata, "weight_map": {key: name for shard, name in zip(shards, files.names) for key, _ in shard}}
        with open(files.index_temporary, "w", encoding="utf-8") as handle:
            json.dump(index, handle, indent=2)


def _shard_pattern(index_file):
    stem = os.path.basename(index_file)[: -len(INDEX_SUFFIX)]
    return re.compile(re.escape(stem) + r"-(?:[0-9a-f]{8}-)?\d{5}-of-\d{5}" + re.escape(SUFFIX))


def _tagged_names(names, token):
    """Names for a save over a set that holds the plain ones: `model-<token>-00001-of-00002.safetensors`."""
    tagged = []
    for name in names:
        head, number, of, count = name[: -len(SUFFIX)].rsplit("-", 3)
        tagged.append(f"{head}-{token}-{number}-{of}-{count}{SUFFIX}")
    return tagged


def _named_shards(index_file):
    """Shard names the index at `index_file` names now (none when it is missing or unreadable)."""
    try:
        return set(read_index(index_file)[0].values())
    except (OSError, KeramicError):
        return set()


# ---------------------------------------------------------------- loading
def read_index(index_file):
    """({key: shard name}, {alias: key}) from a sharded index, every shard name checked to be plain."""
    try:
        index = atomic.read_json_file(index_file, INDEX_SIZE_LIMIT, what="a safetensors index")
    except OSError as error:
        raise FileFormatError(f"{index_file}: cannot read the safetensors index ({error}).") from None
    mapping = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(mapping, dict):
        raise FileFormatError(f"{index_file}: entry 'weight_map': missing or not an object, so this is not a safetensors index.")
    for key, name in mapping.items():
        if not isinstance(name, str):
            raise FileFormatError(f"{index_file}: weight_map entry '{key}': expected a shard file name, found {name!r:.100}.")
        _check_shard_name(index_file, key, name)
    metadata = index.get("metadata") or {}
    aliases = metadata.get(ALIASES_KEY, {}) if isinstance(metadata, dict) else {}
    return mapping, _checked_aliases(index_file, aliases)


def _checked_aliases(filename, aliases):
    if not isinstance(aliases, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()):
        raise FileFormatError(f"{filename}: entry '{ALIASES_KEY}': expected an object mapping keys to keys.")
    return aliases


class SafetensorsWeights:
    """A weights source for `h5_weights.read_groups` over one or more open safetensors files.

    `stored(group_path)` lists the entries `<group_path>/0, 1, ...` (aliases resolved); `read(plan)`
    fills variables, reading only the tensors in the plan.
    """

    def __init__(self, filename, located, aliases):
        self.located = located  # key -> SafetensorsFile holding it
        self.aliases = aliases  # alias key -> stored key
        for alias, key in aliases.items():
            if key not in located:
                raise FileFormatError(f"{filename}: entry '{ALIASES_KEY}/{alias}': points to '{key}', which the file does not hold.")
            if alias in located:
                raise FileFormatError(f"{filename}: entry '{ALIASES_KEY}/{alias}': is also stored as a tensor.")

    def keys(self):
        """Every key the source answers for: stored tensors, then aliases."""
        return [*self.located, *self.aliases]

    def entry(self, key):
        """(SafetensorsFile, Entry) for a key or alias, or None."""
        key = self.aliases.get(key, key)
        file = self.located.get(key)
        return None if file is None else (file, file.entries[key])

    def tensor(self, key):
        """The tensor for a key or alias: a lazy view over the file's memory map."""
        file, entry = self.entry(key)
        return file.tensor(entry.key)

    def stored(self, group_path):
        entries = []
        while True:
            found = self.entry(f"{group_path}/{len(entries)}")
            if found is None:
                return entries
            entries.append(found[1])

    def store(self, group_path):
        """The group's tensors by name (`<group_path>/<key>`), for a `load_own_variables` override."""
        prefix = group_path + "/"
        items = {key[len(prefix) :]: key for key in self.keys() if key.startswith(prefix) and "/" not in key[len(prefix) :]}
        return h5_weights.GroupStore(items, lambda key: _owned_value(self.tensor(key)))

    def read(self, plan):
        by_file, seen = {}, set()
        for entry, variable in plan:
            if id(variable) in seen:  # a tied variable, asked for at each of its paths
                continue
            seen.add(id(variable))
            by_file.setdefault(self.located[entry.key], []).append((entry, variable))
        for file, pairs in by_file.items():
            file.read_into(pairs)


@contextlib.contextmanager
def open_weights(filepath):
    """A `SafetensorsWeights` over a `.safetensors` file or an index and its shards; every header
    is validated on opening, no tensor data is read.

    >>> with open_weights("model.safetensors") as weights:
    ...     kernel = weights.tensor("layers/dense/vars/0")
    """
    filepath = os.fspath(filepath)
    with contextlib.ExitStack() as open_files:
        if not filepath.endswith(INDEX_SUFFIX):
            file = open_files.enter_context(safetensors_file.SafetensorsFile(filepath))
            aliases = atomic.parse_json(file.metadata.get(ALIASES_KEY, "{}").encode("utf-8"), f"{filepath}: entry '__metadata__/{ALIASES_KEY}'")
            aliases = _checked_aliases(filepath, aliases)
            yield SafetensorsWeights(filepath, {key: file for key in file.entries}, aliases)
            return
        mapping, aliases = read_index(filepath)
        directory = os.path.dirname(os.path.abspath(filepath))
        files = {}
        for name in dict.fromkeys(mapping.values()):
            path = atomic.contained_file(directory, name, filepath, single_link=True, what="shard")
            files[name] = open_files.enter_context(safetensors_file.SafetensorsFile(path))
        located = {}
        for key, name in mapping.items():
            if key not in files[name].entries:
                raise FileFormatError(f"{filepath}: weight_map entry '{key}': shard '{name}' holds no tensor of that name.")
            located[key] = files[name]
        yield SafetensorsWeights(filepath, located, aliases)


def load(model, filepath, skip_mismatch=False):
    """Load a `.safetensors` file or index into a built model: optimizer slots are created when the
    file holds them; strict (nothing assigned on a mismatch) unless `skip_mismatch`.

    >>> load(model, "model.safetensors")
    """
    filepath = os.fspath(filepath)
    keras_v3.check_built(model, filepath)
    atomic.read_while_replaced(filepath, lambda: _load_once(model, filepath, skip_mismatch))


def _load_once(model, filepath, skip_mismatch):
    with paused_gc(), open_weights(filepath) as source:
        keys = source.keys()
        if keys and not any(split_key(key) for key in keys):
            raise WeightsMismatchError(
                f"{filepath}: none of its {len(keys)} tensors is keyed by a keramic variable path "
                f"('<object path>/vars/<index>', e.g. 'layers/dense/vars/0'); it holds "
                f"{', '.join(repr(k) for k in keys[:3])}{', ...' if len(keys) > 3 else ''}: it was written for "
                "another model or library."
            )
        keras_v3.read_state(model, source, filepath, skip_mismatch)


def _owned_value(tensor):
    """A tensor of its own (not a view of the memory map), as numpy unless bfloat16."""
    value = tensor.clone()
    return value if value.dtype == torch.bfloat16 else value.numpy()


# ---------------------------------------------------------------- the table row
def inspect(path):
    """Every stored tensor's key, dtype and shape (headers only; no tensor data read), by object."""
    source = recognise(path)
    entries, itemsizes = [], {}
    with open_weights(source) as weights:
        for key, file in weights.located.items():
            entry = file.entries[key]
            dtype = str(entry.dtype).removeprefix("torch.")
            entries.append((key, dtype, entry.shape))
            itemsizes[dtype] = entry.dtype.itemsize
        tied = len(weights.aliases)
    summary = inspect_summary.keyed_weights_summary(entries, itemsizes.__getitem__)
    report = inspect_summary.summarize(path, "safetensors", SAFETENSORS.description, weights=summary)
    report["tied_tensors"] = tied
    return report


def load_weights_into(model, path, skip_mismatch=False, by_name=False, verify=True):
    table.refuse_by_name(path, by_name)
    return load(model, recognise(path), skip_mismatch)


SAFETENSORS = table.register(
    table.FileFormat(
        name="safetensors",
        title="safetensors weights",
        description="safetensors weights (.safetensors, or a .safetensors.index.json and its shards)",
        recognise=lambda path: recognise(path) is not None,
        suffixes=(SUFFIX, INDEX_SUFFIX),
        save=save,
        load_weights=load_weights_into,
        inspect=inspect,
        hint="a safetensors weights file holds no model architecture: build the model in code and call `model.load_weights(...)` on it.",
        target_path=target_path,
        name_based=True,
        order=15,
    )
)
