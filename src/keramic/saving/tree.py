"""Model -> ordered variable tree with Keras 3's group paths (keras-v3-format.md section 5.3).

One walk over the saving protocol (`keramic.serialization.saveable`): each object names its
children and own variables, and the walk turns attribute names and containers into Keras's paths
(`layers/dense`, `optimizer`, `encoder/container_1/dense`). `saveable_objects(model)` lists
`(path, object)` in the order Keras saves them; `variable_groups(model)` adds what each object
stores, so a file written from it is the file Keras writes, and a file Keras wrote is read back by
walking the freshly built model the same way. Formats see only this tree, never layer classes.
"""

from typing import Any, Iterable, Iterator, NamedTuple

import numpy as np
import torch

from keramic.errors import KeramicError
from keramic.serialization.saveable import overrides, saving_kind
from keramic.utils.naming import to_snake_case


class VariableGroup(NamedTuple):
    """One object's stored state: `variables` is a list saved as "0", "1", ... (the bulk path), or a
    dict {key: tensor} when the object's own `save_own_variables` chose the keys."""

    path: str
    owner: Any
    variables: Any


def group_name(path: str) -> str:
    """The HDF5 group (and key prefix) holding the variables of the object at `path`."""
    return f"{path}/vars" if path else "vars"


def entries(variables: Any) -> Iterable[tuple[str, Any]]:
    """(key, tensor) pairs of a group's variables, whichever form they take."""
    if isinstance(variables, dict):
        return variables.items()
    return ((str(index), variable) for index, variable in enumerate(variables))


def saveable_objects(model: Any, include_optimizer: bool = True) -> list[tuple[str, Any]]:
    """Every object the walk reaches from `model`, each once: a list of (path, object) in Keras's order."""
    visited: set[int] = set()
    found: list[tuple[str, Any]] = []

    def visit(obj: Any, path: str) -> None:
        if id(obj) in visited:
            return
        visited.add(id(obj))
        found.append((path, obj))
        for name, value in obj._saveable_children():
            if name == "optimizer" and not include_optimizer and obj is model:
                # Only the top-level optimizer is left out (a nested compiled model keeps its own, as
                # in Keras's files); marked seen, so `_compile_args` does not reach it by another path.
                visited.add(id(value))
                continue
            child_path = f"{path}/{name}" if path else name
            if saving_kind(value):
                visit(value, child_path)
            elif isinstance(value, (list, tuple, dict)):
                container(value, child_path)

    def container(value: Any, path: str) -> None:
        items = list(value.values()) if isinstance(value, dict) else list(value)
        counts: dict[str, int] = {}
        for item in items:
            if saving_kind(item):
                base = to_snake_case(type(item).__name__)
            elif isinstance(item, (list, tuple, dict)):
                base = "container"
            else:
                continue
            name = base if base not in counts else f"{base}_{counts[base]}"
            counts[base] = counts.get(base, 0) + 1
            if saving_kind(item):
                visit(item, f"{path}/{name}")
            else:
                container(item, f"{path}/{name}")

    visit(model, "")
    return found


def _as_tensor(value: Any, owner: Any, key: str) -> Any:
    """A value a `save_own_variables` override stored, as a CPU-or-device tensor."""
    if isinstance(value, torch.Tensor):
        return value
    array = np.asarray(value)
    if array.dtype.kind not in "biufc":
        raise KeramicError(
            f"'{getattr(owner, 'name', type(owner).__name__)}'.save_own_variables stored '{key}' as {array.dtype} "
            "values; a weights file holds numbers and booleans only (put other data in save_assets)."
        )
    return torch.from_numpy(np.ascontiguousarray(array))


def own_state(obj: Any) -> Any:
    """What `obj` stores: its own variables (bulk), or the dict its `save_own_variables` override fills."""
    if not overrides(obj, "save_own_variables"):
        return obj._saveable_variables()
    store: dict[str, Any] = {}
    obj.save_own_variables(store)
    for key in store:
        if not isinstance(key, str) or key in ("", ".", "..") or "/" in key:
            raise KeramicError(
                f"'{getattr(obj, 'name', type(obj).__name__)}'.save_own_variables stored the key {key!r}; keys name "
                "entries of a weights file: non-empty strings without '/'."
            )
    return {key: _as_tensor(value, obj, key) for key, value in store.items()}


def variable_groups(model: Any, include_optimizer: bool = True) -> list[VariableGroup]:
    """Every saveable object reachable from `model` with what it stores, for writing a file."""
    return [VariableGroup(path, obj, own_state(obj)) for path, obj in saveable_objects(model, include_optimizer)]


def loading_groups(model: Any, include_optimizer: bool = True) -> tuple[list[VariableGroup], list[tuple[str, Any]]]:
    """([groups read in bulk], [(path, object) whose `load_own_variables` override reads its own store])."""
    bulk, custom = [], []
    for path, obj in saveable_objects(model, include_optimizer):
        if overrides(obj, "load_own_variables"):
            custom.append((path, obj))
        else:
            bulk.append(VariableGroup(path, obj, obj._saveable_variables()))
    return bulk, custom


def asset_owners(model: Any, hook: str) -> Iterator[tuple[str, Any]]:
    """(path, object) of the objects whose class overrides `hook` ("save_assets" or "load_assets")."""
    for path, obj in saveable_objects(model):
        if overrides(obj, hook):
            yield path, obj
