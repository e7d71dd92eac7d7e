"""Variable groups <-> HDF5 in Keras 3's weights layout (`<path>/vars/<index>` datasets).

Reading is defensive: links, external or virtual storage and shapes that disagree with the model
are refused before any data is read, and data goes straight into each variable's memory. Whole
files are written by `h5_layout` (h5py per dataset is slow); `write_dataset` and
`read_dataset_into` serve the other HDF5 formats (legacy `.h5`, shards, `keramic convert`).
"""

import warnings
from collections.abc import Mapping

import h5py
import numpy as np
import torch

from keramic import backend
from keramic.errors import FileFormatError, WeightsMismatchError
from keramic.saving.stores import bulk_io, h5_preflight, h5_safety, zip_archive
from keramic.saving.stores.h5_layout import SIGNATURE
from keramic.serialization.saveable import saving_kind


def open_hdf5(path, subject):
    """Open an HDF5 file for reading once its signature checks out, it does not also read as a zip
    archive and its metadata reads safely in a child process (`h5_preflight`); errors start with
    `subject`."""
    with open(path, "rb") as handle:
        head = handle.read(len(SIGNATURE))
    if head != SIGNATURE:
        raise FileFormatError(f"{subject} not an HDF5 file (starts with {head!r}).")
    zip_archive.refuse_zip_ending(path)
    return h5_preflight.open_checked(path, subject)


def _group_name(path):
    return f"{path}/vars" if path else "vars"


def write_dataset(group, key, variable):
    """One variable as a dataset of `group` (bfloat16 as 2-byte opaque values tagged as Keras does)."""
    value = variable.detach()
    if value.dtype == torch.bfloat16:
        raw = value.cpu().contiguous().view(torch.int16).numpy().view(np.dtype("V2"))
        dataset = group.create_dataset(key, data=raw)
        dataset.attrs["dtype"] = "bfloat16"
        return
    group.create_dataset(key, data=value.cpu().numpy())


class FileCheck:
    """Refuses HDF5 features a weights file never needs and that could reach outside the file: every
    component of a name is a hard link (`h5_safety.resolve`), datasets hold their own bytes."""

    def __init__(self, filename):
        self.filename = filename
        self._file_sizes = {}  # h5py file number -> size in bytes, asked once per file

    def error(self, entry, message):
        return h5_safety.entry_error(self.filename, entry, message)

    def dataset(self, group, key):
        dataset = h5_safety.resolve(self.filename, group, key)
        if dataset is None:
            return None
        if not isinstance(dataset, h5py.Dataset):
            raise self.error(dataset.name, f"expected a dataset, found {_kind(dataset)}.")
        return self.verify(dataset)

    def verify(self, dataset):
        """`dataset` once its storage lies in the file and fits its shape, and its dtype is a tensor's."""
        fileno = dataset.id.fileno
        if fileno not in self._file_sizes:
            with h5_safety.reading(self.filename, "/"):
                self._file_sizes[fileno] = dataset.file.id.get_filesize()
        h5_safety.check_dataset(self.filename, dataset, self._file_sizes[fileno])
        try:
            dtype = dataset.dtype
            tensor = dtype.kind in "biufc" or (dtype.itemsize == 2 and dtype.kind == "V" and _is_bfloat16(dataset))
        except h5_safety.H5_DAMAGE as error:
            raise h5_safety.damaged(self.filename, dataset.name, error) from None
        if not tensor:
            raise self.error(dataset.name, f"dtype {dtype} is not a tensor dtype (numbers, booleans or bfloat16).")
        return dataset

    def group(self, parent, name):
        group = h5_safety.resolve(self.filename, parent, name)
        if group is not None and not isinstance(group, h5py.Group):
            raise self.error(group.name, f"expected a group, found {_kind(group)}.")
        return group


def _kind(node):
    return {h5py.Group: "a group", h5py.Dataset: "a dataset"}.get(type(node), "a named datatype")


def _is_bfloat16(dataset):
    return dataset.attrs.get("dtype") in ("bfloat16", b"bfloat16")


def read_dataset_into(dataset, variable):
    """Copy a dataset's data into the variable's own memory (no intermediate copy on CPU)."""
    if _is_bfloat16(dataset):
        raw = dataset[()]
        value = torch.from_numpy(np.ascontiguousarray(raw).view(np.int16).copy()).view(torch.bfloat16)
        with torch.no_grad():
            variable.copy_(value.reshape(variable.shape))
        return
    target_dtype = np.dtype(backend.standardize_dtype(variable.dtype))
    if variable.device.type == "cpu" and dataset.dtype == target_dtype and variable.is_contiguous() and variable.numel() > 0:
        with torch.no_grad():
            dataset.read_direct(variable.detach().numpy())
        # The write bypassed torch: tell it the value changed (optimizers cache host copies by version).
        torch.autograd.graph.increment_version(variable)
        return
    value = dataset[()]
    with torch.no_grad():
        variable.copy_(torch.from_numpy(np.asarray(value, dtype=target_dtype)).reshape(variable.shape))


class LoadReport:
    """What did not match while loading: missing, unexpected and shape-mismatched entries."""

    def __init__(self, filename):
        self.filename = filename
        self.missing = []
        self.unexpected = []
        self.mismatched = []

    def __bool__(self):
        return bool(self.missing or self.unexpected or self.mismatched)

    def message(self):
        lines = [f"Weights in '{self.filename}' do not match the model:"]
        for title, entries in (("missing", self.missing), ("unexpected", self.unexpected), ("shape mismatch", self.mismatched)):
            if entries:
                lines.append(f"  {title} ({len(entries)}):")
                lines.extend(f"    {entry}" for entry in entries[:50])
                if len(entries) > 50:
                    lines.append(f"    ... and {len(entries) - 50} more")
        return "\n".join(lines)

    def finish(self, skip_mismatch):
        if not self:
            return
        if skip_mismatch:
            warnings.warn(self.message() + "\n(skip_mismatch=True: these entries were skipped.)", stacklevel=3)
        else:
            raise WeightsMismatchError(self.message() + "\nPass skip_mismatch=True to load what matches and skip the rest.")


class H5Weights:
    """Variable groups read from an open h5py file: `stored(path)` lists datasets, `read(plan)` fills variables.

    With `raw=(fd, base, size)`, the file's bytes are also reachable at `fd` offsets [base, base + size):
    plain contiguous datasets are then read straight from there in bulk (offsets checked against
    `size`), the rest through h5py.
    """

    def __init__(self, h5file, filename, raw=None):
        self.h5file, self.check, self.raw = h5file, FileCheck(filename), raw

    def stored(self, group_path):
        group = find_group(self.check, self.h5file, group_path)
        return [] if group is None else _numbered_datasets(self.check, group)

    def _value(self, dataset):
        with h5_safety.reading(self.check.filename, dataset.name):
            return dataset_value(dataset)

    def store(self, group_path):
        """The group's datasets by name, for a `load_own_variables` override (empty when absent)."""
        group = find_group(self.check, self.h5file, group_path)
        if group is None:
            return GroupStore({}, self._value)
        with h5_safety.reading(self.check.filename, group.name):
            keys = list(group)
        items = {}
        for key in keys:
            dataset = self.check.dataset(group, key)
            if dataset is not None:
                items[key] = dataset
        return GroupStore(items, self._value)

    def read(self, plan):
        jobs, direct = [], []
        for dataset, variable in plan:
            span = self._raw_span(dataset, variable)
            if span is None:
                with h5_safety.reading(self.check.filename, dataset.name):
                    read_dataset_into(dataset, variable)
            else:
                jobs.append((variable.detach().numpy(), span))
                direct.append(variable)
        if jobs:
            bulk_io.scatter_read(self.raw[0], jobs, self.check.filename)
            for variable in direct:
                torch.autograd.graph.increment_version(variable)

    def _raw_span(self, dataset, variable):
        """Absolute offset of a dataset's bytes when they can be copied as they are, else None."""
        with h5_safety.reading(self.check.filename, dataset.name):
            return self._contiguous_span(dataset, variable)

    def _contiguous_span(self, dataset, variable):
        if self.raw is None or variable.device.type != "cpu" or not variable.is_contiguous() or variable.numel() == 0:
            return None
        if "dtype" in dataset.attrs or dataset.dtype != np.dtype(backend.standardize_dtype(variable.dtype)):
            return None
        if dataset.dtype.byteorder == ">":
            return None
        plist = dataset.id.get_create_plist()
        if plist.get_layout() != h5py.h5d.CONTIGUOUS or plist.get_nfilters():
            return None
        offset, size = dataset.id.get_offset(), dataset.id.get_storage_size()
        _, base, limit = self.raw
        if offset is None or size != variable.numel() * variable.element_size() or offset + size > limit:
            return None
        return base + offset


class GroupStore(Mapping):
    """One group's stored values, read-only, for a `load_own_variables` override: `store[key]` is a
    numpy array (a torch tensor for bfloat16), read when asked for."""

    def __init__(self, items, read):
        self._items, self._read = items, read  # {key: entry}, entry -> value

    def __getitem__(self, key):
        return self._read(self._items[key])

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)


def dataset_value(dataset):
    """A dataset's whole value: numpy, or a torch tensor for Keras's bfloat16."""
    if _is_bfloat16(dataset):
        raw = np.ascontiguousarray(dataset[()])
        return torch.from_numpy(raw.view(np.int16).copy()).view(torch.bfloat16)
    return np.asarray(dataset[()])


def read_groups(source, groups, filename, skip_mismatch=False):
    """Assign every variable of `groups` from `source`, after checking counts and shapes of all.

    `source` is an h5py file or anything with `stored(group_path)` and `read(plan)`. Nothing is
    assigned when a mismatch is found and `skip_mismatch` is false.
    """
    if isinstance(source, h5py.Group):
        source = H5Weights(source, filename)
    report = LoadReport(filename)
    plan = []
    for path, owner, variables in groups:
        stored = source.stored(_group_name(path))
        name = getattr(owner, "name", path or "model")
        if len(stored) != len(variables) and saving_kind(owner) == "optimizer":
            # As Keras: an optimizer whose state has another size (another optimizer, or a loss
            # scale wrapper in the file but not here) keeps its fresh state, with a warning.
            warnings.warn(
                f"Skipping variable loading for optimizer '{name}', because it has {len(variables)} variables whereas "
                f"the saved optimizer in '{filename}' has {len(stored)} variables.",
                stacklevel=3,
            )
            continue
        if len(stored) == len(variables) - 1 and hasattr(owner, "_variables_for_saved"):
            variables = owner._variables_for_saved(len(stored))  # Keras 3.15 saves GPTQ/AWQ without zero points
        for index, variable in enumerate(variables):
            entry = f"{_group_name(path)}/{index}"
            if index >= len(stored):
                report.missing.append(f"{entry} ({name}: {variable.path}, shape {tuple(variable.shape)})")
                continue
            dataset = stored[index]
            if tuple(dataset.shape) != tuple(variable.shape):
                report.mismatched.append(f"{entry} ({name}: {variable.path}): file {tuple(dataset.shape)}, model {tuple(variable.shape)}")
                continue
            plan.append((dataset, variable))
        for index in range(len(variables), len(stored)):
            report.unexpected.append(f"{_group_name(path)}/{index} (shape {tuple(stored[index].shape)}; '{name}' has {len(variables)} variables)")
    report.finish(skip_mismatch)
    source.read(plan)
    return report


def find_group(check, h5file, name):
    node = h5file
    for part in name.split("/"):
        node = check.group(node, part)
        if node is None:
            return None
    return node


def _numbered_datasets(check, group):
    datasets = []
    while True:
        dataset = check.dataset(group, str(len(datasets)))
        if dataset is None:
            return datasets
        datasets.append(dataset)
