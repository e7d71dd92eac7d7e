"""`keras.saving.KerasFileEditor`: look inside a `.keras` or `.weights.h5` file and edit its weights
without building the model.

Weights read into `weights_dict`, a nested dict that follows the file's object paths
(`{"layers": {"dense": {"0": kernel, "1": bias}}}`); edits change that dict; `save` writes it as a
Keras 3 `.weights.h5` file through keramic's atomic writer. Nothing in the file is ever run.

>>> editor = KerasFileEditor("model.keras")
>>> editor.rename_object("layers/dense", "encoder")
>>> editor.save("edited.weights.h5")
"""

import os

import h5py
import numpy as np

from keramic.errors import FileFormatError
from keramic.saving.formats import keras_v3
from keramic.saving.stores import atomic, h5_preflight, h5_safety
from keramic.saving.stores.atomic import write_atomically
from keramic.saving.stores.zip_member import open_member

_VARS = "vars"


def _read_objects(h5file: h5py.File, filename: str) -> tuple[dict, dict]:
    """Nested weights (object path -> {name: array}) and each object's attributes, from a Keras 3 layout.

    The walk is h5_safety's: hard links only, bounded, and every dataset checked (no external or
    virtual storage, shape consistent with the stored bytes) before it is read."""
    weights: dict = {}
    metadata: dict = {}
    for path, item in h5_safety.walk(filename, h5file):
        parent_path, _, name = path.rpartition("/")
        if not isinstance(item, h5py.Dataset) or parent_path.rpartition("/")[2] != _VARS:
            continue
        h5_safety.check_dataset(filename, item)
        object_path = parent_path[: -len(_VARS)].rstrip("/")
        leaf = weights
        for part in [p for p in object_path.split("/") if p]:
            leaf = leaf.setdefault(part, {})
        with h5_safety.reading(filename, item.name):
            leaf[name] = item[()]
            attributes = dict((h5file[object_path] if object_path else h5file).attrs)
        if attributes:
            metadata["/" + object_path] = {k: v.decode() if isinstance(v, bytes) else v for k, v in attributes.items()}
    return weights, metadata


class KerasFileEditor:
    """Read a saved model's config and weights, edit the weights, and write them as a `.weights.h5` file."""

    def __init__(self, filepath: str | os.PathLike):
        filepath = os.fspath(filepath)
        self.filepath = filepath
        self.model = None
        self.config: dict | None = None
        self.metadata: dict | None = None
        if filepath.endswith(".keras"):
            with keras_v3.open_archive(filepath) as archive:
                self.config = keras_v3.read_config(filepath, archive)
                if keras_v3.METADATA in archive.namelist():
                    self.metadata = atomic.read_json_member(filepath, archive, keras_v3.METADATA)
                if keras_v3.WEIGHTS not in archive.namelist():
                    raise FileFormatError(f"{filepath}: the archive has no '{keras_v3.WEIGHTS}' entry.")
                with open_member(filepath, archive, keras_v3.WEIGHTS) as handle:
                    size = archive.getinfo(keras_v3.WEIGHTS).file_size
                    with h5_preflight.open_checked_member(filepath, keras_v3.WEIGHTS, handle, size) as h5file:
                        self.weights_dict, self.object_metadata = _read_objects(h5file, f"{filepath}:{keras_v3.WEIGHTS}")
        elif filepath.endswith(".weights.h5"):
            with h5_preflight.open_checked(filepath, f"{filepath}:") as h5file:
                self.weights_dict, self.object_metadata = _read_objects(h5file, filepath)
        else:
            raise FileFormatError(f"{filepath}: KerasFileEditor reads '.keras' and '.weights.h5' files only.")

    # ------------------------------------------------------------------------------ lookups
    def _parent_and_leaf(self, object_path: str) -> tuple[dict, str]:
        parts = [p for p in object_path.split("/") if p]
        if not parts:
            raise ValueError(f"Expected an object path such as 'layers/dense'; received {object_path!r}.")
        parent = self.weights_dict
        for part in parts[:-1]:
            if not isinstance(parent.get(part), dict):
                raise ValueError(f"Path {object_path!r} not found in model.")
            parent = parent[part]
        return parent, parts[-1]

    def _object(self, object_path: str) -> dict:
        parent, leaf = self._parent_and_leaf(object_path)
        if not isinstance(parent.get(leaf), dict):
            raise ValueError(f"Path {object_path!r} not found in model.")
        return parent[leaf]

    # -------------------------------------------------------------------------------- edits
    def rename_object(self, object_name: str, new_name: str) -> None:
        """Rename the object at `object_name` (a path) to the leaf name `new_name`."""
        if "/" in new_name:
            raise ValueError(f"Argument `target_name` should be a leaf name, not a full path name. Received: target_name={new_name!r}")
        parent, leaf = self._parent_and_leaf(object_name)
        if not isinstance(parent.get(leaf), dict):
            raise ValueError(f"Path {object_name!r} not found in model.")
        if new_name in parent:
            raise ValueError(f"Cannot rename {object_name!r} to {new_name!r}: that name is already used.")
        parent[new_name] = parent.pop(leaf)

    def delete_object(self, object_name: str) -> None:
        """Remove the object at `object_name` and every weight below it."""
        parent, leaf = self._parent_and_leaf(object_name)
        if leaf not in parent:
            raise ValueError(f"Path {object_name!r} not found in model.")
        del parent[leaf]

    def add_object(self, object_path: str, weights: dict) -> None:
        """Add a new object holding `weights` ({name: array})."""
        parent, leaf = self._parent_and_leaf(object_path)
        if leaf in parent:
            raise ValueError(f"Cannot add object {object_path!r}: it already exists.")
        parent[leaf] = self._checked_weights(weights, object_path)

    def delete_weight(self, object_name: str, weight_name: str) -> None:
        """Remove one weight of an object."""
        target = self._object(object_name)
        if weight_name not in target or isinstance(target[weight_name], dict):
            raise ValueError(f"Weight {weight_name!r} not found in object {object_name!r}.")
        del target[weight_name]

    def add_weights(self, object_name: str, weights: dict) -> None:
        """Add (or replace) weights of an existing object."""
        self._object(object_name).update(self._checked_weights(weights, object_name))

    @staticmethod
    def _checked_weights(weights: dict, where: str) -> dict:
        if not isinstance(weights, dict):
            raise ValueError(f"Weights for {where!r} must be a dict of name -> array; received {type(weights).__name__}.")
        return {str(name): np.asarray(value) for name, value in weights.items()}

    # ------------------------------------------------------------------------------ output
    def save(self, filepath: str | os.PathLike) -> None:
        """Write the (edited) weights as a Keras 3 `.weights.h5` file, atomically."""
        filepath = os.fspath(filepath)
        if not filepath.endswith(".weights.h5"):
            raise ValueError(f"Invalid `filepath` argument: expected a `.weights.h5` extension. Received: filepath={filepath}")
        with write_atomically(filepath) as temporary:
            with h5py.File(temporary, "w") as h5file:
                self._write(h5file, self.weights_dict)

    resave_weights = save

    def _write(self, group: h5py.Group, node: dict) -> None:
        arrays = {name: value for name, value in node.items() if not isinstance(value, dict)}
        if arrays:
            variables = group.require_group(_VARS)
            for name, value in arrays.items():
                variables.create_dataset(name, data=value)
        for name, child in node.items():
            if isinstance(child, dict):
                self._write(group.require_group(name), child)

    def summary(self) -> str:
        """One line per object: its path and the shape and dtype of each weight."""
        lines = [f"Keras model file '{self.filepath}'"]
        if self.metadata:
            lines.append(f"Saved with Keras {self.metadata.get('keras_version')} - date: {self.metadata.get('date_saved')}")

        def walk(node: dict, path: str) -> None:
            arrays = [(n, v) for n, v in node.items() if not isinstance(v, dict)]
            if arrays:
                shapes = ", ".join(f"{n}: {tuple(v.shape)} {v.dtype}" for n, v in arrays)
                lines.append(f"{path}: {shapes}")
            for name, child in node.items():
                if isinstance(child, dict):
                    walk(child, f"{path}/{name}" if path else name)

        walk(self.weights_dict, "")
        text = "\n".join(lines)
        print(text)
        return text
