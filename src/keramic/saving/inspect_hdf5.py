"""HDF5 weights files described from metadata alone, for `keramic inspect`.

The walk follows hard links only and reads group names, attributes, dataset shapes and dtypes,
never tensor data, so a file from anywhere is described safely and in milliseconds. Summaries are
plain dicts (`objects`, `params`, `bytes`, `dtypes`, `optimizer`) that `inspect_summary` reports.
"""

import os
import re

import h5py
import numpy as np

from keramic.saving.stores import h5_preflight, h5_safety, zip_archive
from keramic.saving.stores.h5_weights import FileCheck
from keramic.saving.stores.zip_member import open_member


def open_hdf5(path):
    """An h5py file for reading, once its metadata reads safely in a child process; a file h5py
    cannot read is a FileFormatError naming it."""
    if os.path.exists(path):
        zip_archive.refuse_zip_ending(path)
    return h5_preflight.open_checked(path, f"{path}:")


def read_weights_member(path, archive, name):
    """The weights summary of an archive member (a `.keras` file's model.weights.h5); `open_member`
    refuses zip bombs and damaged bytes, `h5_preflight` metadata that hangs or crashes HDF5."""
    with open_member(path, archive, name) as handle:
        h5file = h5_preflight.open_checked_member(path, name, handle, archive.getinfo(name).file_size)
        with h5file, h5_safety.reading(f"{path}:{name}", "/"):
            return weights_summary(h5file, f"{path}:{name}")


def natural_key(name):
    """'dense_2' before 'dense_10': HDF5 lists names as plain strings."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (None if value is None else str(value))


class Walker:
    """Walks an HDF5 tree by hard links only, reading headers and never data. All its walks share
    one budget of objects, so hard links that make a small file look huge cannot multiply the work."""

    def __init__(self, filename):
        self.check = FileCheck(filename)
        self.budget = h5_safety.WalkBudget(filename)

    def child(self, group, name):
        """The group or dataset `name` (one or more components) in `group`, or None; links that
        could leave the file are refused, datasets checked."""
        node = h5_safety.resolve(self.check.filename, group, name)
        return self.check.verify(node) if isinstance(node, h5py.Dataset) else node

    def children(self, group):
        """(name, group or dataset) pairs in natural name order."""
        with h5_safety.reading(self.check.filename, group.name):
            names = list(group.keys())
        return [(name, self.child(group, name)) for name in sorted(names, key=natural_key)]

    def stats(self, group, skip=()):
        """Parameters, bytes and dtype counts of every dataset below `group` (children in `skip` left out)."""
        params, size, dtypes = 0, 0, {}
        for _, node in h5_safety.walk(self.check.filename, group, skip, self.budget):
            if not isinstance(node, h5py.Dataset):
                continue
            self.check.verify(node)
            with h5_safety.reading(self.check.filename, node.name):
                count = int(node.size or 0)
                params += count
                size += count * node.dtype.itemsize
                dtype = dataset_dtype(node)
            dtypes[dtype] = dtypes.get(dtype, 0) + 1
        return params, size, dtypes

    def vars_group(self, group):
        found = self.child(group, "vars")
        return found if isinstance(found, h5py.Group) else None

    def name_of(self, group):
        """The informational `name` attribute Keras puts on an object's `vars` group (the layer's name)."""
        found = self.vars_group(group)
        if found is None:
            return None
        with h5_safety.reading(self.check.filename, f"{found.name} attribute name"):
            return text(found.attrs.get("name"))

    def objects(self, root):
        """(path, group) of each saved object below `root`, in path order: a group holding `vars` is an
        object, one without is a container (`layers`, a list attribute) whose items are objects."""
        found, seen, stack = [], {root.id}, [("", root, 0)]
        while stack:
            path, group, depth = stack.pop()
            for name, child in self.children(group):
                if name == "vars" or not isinstance(child, h5py.Group) or child.id in seen or (group is root and name == "optimizer"):
                    continue
                seen.add(child.id)
                self.budget.spend(child.name, depth + 1)
                child_path = f"{path}/{name}" if path else name
                if self.vars_group(child) is not None:
                    found.append((child_path, child))
                else:
                    stack.append((child_path, child, depth + 1))
        return sorted(found, key=lambda item: natural_key(item[0]))


def dataset_dtype(dataset):
    if text(dataset.attrs.get("dtype")) == "bfloat16":
        return "bfloat16"
    return dataset.dtype.name if dataset.dtype.names is None else str(dataset.dtype)


def weights_summary(h5file, filename):
    """A Keras 3 weights layout (`<path>/vars/<key>` datasets, `optimizer/vars`) summarized per saved object."""
    walker = Walker(filename)
    params, size, dtypes = walker.stats(h5file, skip=("optimizer",))
    objects = []
    for path, group in walker.objects(h5file):
        object_params, object_bytes, _ = walker.stats(group)
        objects.append({"path": path, "name": walker.name_of(group), "params": object_params, "bytes": object_bytes})
    own = walker.vars_group(h5file)
    own_params, own_bytes, _ = (0, 0, {}) if own is None else walker.stats(own)
    optimizer = None
    optimizer_group = walker.child(h5file, "optimizer")
    if isinstance(optimizer_group, h5py.Group):
        _, optimizer_bytes, _ = walker.stats(optimizer_group)
        variables = walker.vars_group(optimizer_group)
        with h5_safety.reading(filename, optimizer_group.name):
            count = 0 if variables is None else len(variables)
        optimizer = {
            "name": walker.name_of(optimizer_group),
            "variables": count,
            "bytes": optimizer_bytes,
        }
    return {
        "model_name": walker.name_of(h5file),
        "objects": objects,
        "own_params": own_params,
        "own_bytes": own_bytes,
        "params": params,
        "bytes": size,
        "dtypes": dtypes,
        "optimizer": optimizer,
    }


def _names(node, attribute, filename):
    """A legacy name list attribute, which h5py may split into `<attribute>0`, `<attribute>1`, ...;
    a repeated name is refused before any is looked up (so a long list costs what the file holds)."""
    entry = f"{node.name} attribute {attribute}"
    with h5_safety.reading(filename, entry):
        if attribute in node.attrs:
            names = [text(name) for name in np.asarray(node.attrs[attribute]).reshape(-1)]
        else:
            names, chunk = [], 0
            while f"{attribute}{chunk}" in node.attrs:
                names.extend(text(name) for name in np.asarray(node.attrs[f"{attribute}{chunk}"]).reshape(-1))
                chunk += 1
    if len(set(names)) != len(names):
        raise h5_safety.entry_error(filename, entry, "lists a name more than once.")
    return names


def legacy_weights_summary(h5file, filename):
    """The legacy layout (tf.keras 2 and Keras 3 `.h5`): `layer_names`, each layer's `weight_names`
    datasets, under `model_weights` in a whole-model file or at the root of a weights-only one."""
    walker = Walker(filename)
    root = walker.child(h5file, "model_weights")
    root = root if isinstance(root, h5py.Group) else h5file
    objects, params, size, dtypes = [], 0, 0, {}
    for name in _names(root, "layer_names", filename):
        group = walker.child(root, name)
        if not isinstance(group, h5py.Group):
            raise walker.check.error(f"{root.name.rstrip('/')}/{name}", "a layer named in 'layer_names' has no group.")
        layer_params, layer_bytes, layer_dtypes = walker.stats(group)
        params, size = params + layer_params, size + layer_bytes
        for dtype, count in layer_dtypes.items():
            dtypes[dtype] = dtypes.get(dtype, 0) + count
        if layer_params or _names(group, "weight_names", filename):
            objects.append({"path": name, "name": name, "params": layer_params, "bytes": layer_bytes})
    optimizer = None
    optimizer_group = walker.child(h5file, "optimizer_weights")
    if isinstance(optimizer_group, h5py.Group):
        _, optimizer_bytes, _ = walker.stats(optimizer_group)
        optimizer = {"name": None, "variables": len(_names(optimizer_group, "weight_names", filename)), "bytes": optimizer_bytes}
    return {
        "model_name": None,
        "objects": objects,
        "own_params": 0,
        "own_bytes": 0,
        "params": params,
        "bytes": size,
        "dtypes": dtypes,
        "optimizer": optimizer,
    }
