"""Model -> ordered variable tree with Keras 3's group paths (keras-v3-format.md section 5.3).

`variable_groups(model)` lists `(path, owner, variables)` in the order Keras saves them, so a
file written from it is the file Keras writes, and a file Keras wrote is read back by walking the
freshly built model the same way. Formats see only this tree, never layers.
"""

from keramic.layers.base import Layer
from keramic.utils.naming import to_snake_case


def _is_saveable(value):
    from keramic.optimizers.base import Optimizer

    return isinstance(value, (Layer, Optimizer))


_BASE_ATTRIBUTES = {}


def _base_attributes(kind):
    """Attribute names a bare instance has: they never name children (Keras skips them too)."""
    names = _BASE_ATTRIBUTES.get(kind)
    if names is None:
        if kind == "layer":
            bare = Layer.__new__(Layer)
            Layer.__init__(bare, name="bare")
            names = set(vars(bare)) | set(bare._modules) | {"_functional", "_graph_layers", "_plan", "_run_kwargs"}
        else:
            names = {"_variables", "_iterations", "_learning_rate"}
        _BASE_ATTRIBUTES[kind] = names
    return names


def _sort_key(name):
    return "~" + name if name.startswith("_") else name


def _children(obj):
    """(attribute name, value) pairs in Keras's visiting order."""
    from keramic.models.functional import Functional
    from keramic.models.model import Model
    from keramic.models.sequential import Sequential

    pairs = []
    if isinstance(obj, (Functional, Sequential)):
        pairs.append(("layers", obj.layers))
    if isinstance(obj, Layer):
        names = set(vars(obj)) | set(obj._modules)
        names -= _base_attributes("layer")
        if isinstance(obj, Model) and not isinstance(obj, (Functional, Sequential)):
            names.add("layers")  # a subclassed Model's `layers` property sorts among its attributes
        if isinstance(obj, (Functional, Sequential)):
            names.discard("_layers")
        for name in sorted((n for n in names if not n.startswith("__")), key=_sort_key):
            pairs.append((name, obj.layers if name == "layers" else getattr(obj, name, None)))
    return pairs


def _own_variables(obj):
    from keramic.optimizers.base import Optimizer

    if isinstance(obj, Optimizer):
        return list(obj.variables)
    return obj._own_trainable + obj._own_non_trainable


def variable_groups(model, include_optimizer=True):
    """Every saveable object reachable from `model`: a list of (path, object, own variables)."""
    visited = set()
    groups = []

    def save(obj, path):
        if id(obj) in visited:
            return
        visited.add(id(obj))
        groups.append((path, obj, _own_variables(obj)))
        for name, value in _children(obj):
            if name == "optimizer" and not include_optimizer:
                continue
            child_path = f"{path}/{name}" if path else name
            if _is_saveable(value):
                save(value, child_path)
            elif isinstance(value, (list, tuple, dict)):
                container(value, child_path)

    def container(value, path):
        items = list(value.values()) if isinstance(value, dict) else list(value)
        counts = {}
        for item in items:
            if _is_saveable(item):
                base = to_snake_case(type(item).__name__)
            elif isinstance(item, (list, tuple, dict)):
                base = "container"
            else:
                continue
            name = base if base not in counts else f"{base}_{counts[base]}"
            counts[base] = counts.get(base, 0) + 1
            if _is_saveable(item):
                save(item, f"{path}/{name}")
            else:
                container(item, f"{path}/{name}")

    save(model, "")
    return groups
