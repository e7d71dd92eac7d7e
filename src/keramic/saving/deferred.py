"""Checkpoint keys by object path, and restoration of values into variables that do not exist yet.

A checkpoint names each variable by the attribute path that reaches it from the model
(`encoder/dense/kernel`, `optimizer/adam/momentum/encoder/dense/kernel`), never by the
auto-generated layer names, so a model rebuilt from the same code finds the same keys. Loading into
a model that is not built yet leaves the values *pending* on a `PendingRestore`; `Layer.add_weight`
and `Optimizer.add_variable` ask for them through `keramic.serialization.restore_hooks` while
creating the variable, so a restored variable never runs its initializer (nor draws from the global RNG).
"""

import warnings
import weakref

import torch

from keramic import backend
from keramic.errors import WeightsMismatchError
from keramic.saving.tree import entries, own_state
from keramic.serialization.restore_hooks import PENDING
from keramic.serialization.saveable import overrides, saving_kind
from keramic.utils.naming import to_snake_case

METRICS_PREFIX = "metrics"
OPTIMIZER_PREFIX = "optimizer"
_LISTED = 20  # entries named in an error message before "and N more"


# ---------------------------------------------------------------- keys
def _join(path, name):
    return f"{path}/{name}" if path else name


def _collect_layers(value, path, found):
    if saving_kind(value) == "layer":
        found.append((path, value))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _collect_layers(item, f"{path}/{index}", found)
    elif isinstance(value, dict):
        for key, item in value.items():
            _collect_layers(item, f"{path}/{key}", found)


def _child_layers(layer):
    """(relative path, layer) of a layer's children: attribute names, list indices and dict keys in
    assignment order; a Functional or Sequential model's layers by position (`layers/0`)."""
    if layer._structure_from_config:
        return [(f"layers/{index}", child) for index, child in enumerate(layer.layers)]
    found = []
    for attribute, value in layer._attribute_children():
        _collect_layers(value, attribute, found)
    return found


def layer_paths(model):
    """{id(layer): (path, layer)} for every layer reachable from `model`, depth first (the dict keeps
    that order); a layer reached twice keeps its first path."""
    paths = {}
    stack = [("", model)]
    while stack:
        path, layer = stack.pop()
        if id(layer) in paths:
            continue
        paths[id(layer)] = (path, layer)
        stack.extend(reversed([(_join(path, name), child) for name, child in _child_layers(layer)]))
    return paths


def _unique_names(variables):
    """Variable names made unique within one owner, in creation order: `v`, `v_1`, `v_2`, ..."""
    counts, names = {}, []
    for variable in variables:
        count = counts.get(variable.name, 0)
        counts[variable.name] = count + 1
        names.append(variable.name if count == 0 else f"{variable.name}_{count}")
    return names


def _own_variables_in_creation_order(layer):
    """A layer's own variables in the order they were created (torch registers them in that order)."""
    own = layer._saveable_variables() + layer._own_trainable + layer._own_non_trainable  # a checkpoint keeps all
    wanted = {id(v) for v in own}
    ordered, seen = [], set()
    for variable in [*layer._parameters.values(), *own]:
        if variable is not None and id(variable) in wanted and id(variable) not in seen:
            seen.add(id(variable))
            ordered.append(variable)
    return ordered


def optimizer_prefix(optimizer):
    return f"{OPTIMIZER_PREFIX}/{to_snake_case(type(optimizer).__name__)}"


class _SlotNamer:
    """Keys of optimizer variables from their names: a slot is named `<reference path with / as _>_<slot>`
    (Keras's rule), so `dense_kernel_momentum` becomes `optimizer/adam/momentum/<key of dense/kernel>`.

    The i-th slot of a given name and reference path belongs to the i-th such reference variable,
    which settles references whose paths read the same once their slashes are underscores.
    """

    def __init__(self, optimizer, var_list, key_of):
        self.prefix = optimizer_prefix(optimizer)
        self.references = {}
        for variable in var_list:
            path = getattr(variable, "path", None) or variable.name
            key = key_of.get(id(variable), path)
            self.references.setdefault(path.replace("/", "_"), []).append(key)
        self.seen = {}
        self.plain = {}  # how often each non-slot name came (a MultiOptimizer's inner `iteration`s)

    def key(self, name):
        cut = len(name)
        while True:
            cut = name.rfind("_", 0, cut)
            if cut <= 0:
                count = self.plain.get(name, 0)
                self.plain[name] = count + 1
                return f"{self.prefix}/{name}" + (f"_{count}" if count else "")
            keys = self.references.get(name[:cut])
            if keys is not None:
                slot = name[cut + 1 :]
                index = self.seen.get((cut, name), 0)
                if index < len(keys):
                    self.seen[(cut, name)] = index + 1
                    return f"{self.prefix}/{slot}/{keys[index]}"


def saves_its_own(layer):
    """Whether the layer's class overrides Keras's hooks: its checkpoint entries are then what
    `save_own_variables` stores (`<path>/<key>`), read back by `load_own_variables`."""
    return overrides(layer, "save_own_variables") or overrides(layer, "load_own_variables")


def own_store_entries(model):
    """[(key, tensor)] of the layers that save their own state, as their `save_own_variables` stores it."""
    return [(_join(path, key), value) for path, layer in layer_paths(model).values() if saves_its_own(layer) for key, value in entries(own_state(layer))]


def own_store_of(path, keys):
    """{store key: checkpoint key} of the `keys` directly under `path` (a layer saving its own state)."""
    prefix = f"{path}/" if path else ""
    return {key[len(prefix) :]: key for key in keys if key.startswith(prefix) and "/" not in key[len(prefix) :]}


def load_own_store(layer, path, values, source):
    """Hand a layer its stored entries through its `load_own_variables` (numpy arrays, as Keras does)."""
    store = {key: value if value.dtype == torch.bfloat16 else value.numpy() for key, value in values.items()}
    try:
        layer.load_own_variables(store)
    except (KeyError, ValueError, TypeError, IndexError) as error:
        raise WeightsMismatchError(
            f"{source}: layer '{layer.name}' (at '{path or 'the model'}') could not load its stored entries {sorted(store)}: {error!r}"
        ) from None


def object_keys(model, include_optimizer=True, include_metrics=True):
    """[(key, variable)] for every variable reachable from `model`, each once, in a stable order:
    layers (depth first, own variables in creation order), then the optimizer, then metrics.
    Layers that save their own state are left out (`own_store_entries` lists what they store)."""
    result, seen = [], set()

    def add(key, variable):
        if id(variable) not in seen:
            seen.add(id(variable))
            result.append((key, variable))

    for path, layer in layer_paths(model).values():
        if saves_its_own(layer):
            continue
        own = _own_variables_in_creation_order(layer)
        for name, variable in zip(_unique_names(own), own):
            add(_join(path, name), variable)
    optimizer = getattr(model, "optimizer", None)
    if include_optimizer and optimizer is not None:
        key_of = {id(variable): key for key, variable in result}
        namer = _SlotNamer(optimizer, optimizer._trainable_variables, key_of)
        for variable in optimizer.variables:
            add(namer.key(variable.name), variable)
    if include_metrics:
        for key, variable in metric_keys(model):
            add(key, variable)
    return result


def metric_keys(model):
    """[(key, variable)] of the model's stateful metrics: `metrics/<metric name>/<variable name>`
    (the compiled metrics each under their name in the logs, not under their container's)."""
    result, used = [], set()
    named = []
    for metric in getattr(model, "metrics", None) or ():
        named += metric.named_metrics() if hasattr(metric, "named_metrics") else [(metric.name, metric)]
    for metric_name, metric in named:
        base = _join(METRICS_PREFIX, metric_name)
        name, count = base, 0
        while name in used:
            count += 1
            name = f"{base}_{count}"
        used.add(name)
        variables = metric.variables
        result.extend((_join(name, unique), v) for unique, v in zip(_unique_names(variables), variables))
    return result


# ---------------------------------------------------------------- status
def _listing(keys):
    keys = sorted(keys)
    shown = ", ".join(f"'{k}'" for k in keys[:_LISTED])
    return shown + (f" and {len(keys) - _LISTED} more" if len(keys) > _LISTED else "")


class LoadStatus:
    """What a checkpoint load matched: values wait for variables created later, and entries that
    never find one are reported (by the assertions, or as a warning when the status is dropped).

    Metric entries are reported apart, in `unmatched_metrics`, and never fail an assertion: `fit`
    and `evaluate` reset metrics before using them and create most of them at their first batch,
    so their saved state matters only to exact resumption (`BackupAndRestore` restores it with
    `restore_metric_state`). Metrics that exist at load time take their values at once.

    >>> status = load_checkpoint(model, "ckpt")
    >>> model.compile(optimizer="adam", loss="mse"); model.fit(x, y)
    >>> status.assert_consumed()
    """

    def __init__(self, model, source, keys, metric_values, metric_ids_at_load):
        self._model = weakref.ref(model)
        self.source = source
        self._keys = set(keys)
        self._unmatched = {key for key in keys if key not in metric_values}
        self._metric_values = metric_values  # key -> saved value of each metric variable
        self._unmatched_metrics = set(metric_values)
        self._metric_ids_at_load = metric_ids_at_load
        self.training_state = {}
        self._silenced = [False]
        weakref.finalize(self, _warn_unmatched, source, self._unmatched, self._silenced)

    def _matched(self, key):
        self._unmatched.discard(key)
        self._unmatched_metrics.discard(key)

    @property
    def unmatched(self):
        """Checkpoint entries (metrics aside) that have not found a variable yet, sorted."""
        return sorted(self._unmatched)

    @property
    def unmatched_metrics(self):
        """Metric entries whose metric did not exist when they were restored, sorted."""
        return sorted(self._unmatched_metrics)

    def _missing(self):
        """Keys of variables the model has now that got no value from the checkpoint.

        Waiting values first go to variables created since without asking for them (the
        optimizer's step counter when `compile` came after the load)."""
        model = self._model()
        if model is None:
            return []
        for restore in list(PENDING):
            if restore.status is self:
                restore.assign_existing(model)
        missing = [key for key, _ in object_keys(model, include_metrics=False) if key not in self._keys or key in self._unmatched]
        missing += [key for key, v in metric_keys(model) if id(v) in self._metric_ids_at_load and key not in self._keys]
        return missing

    def assert_existing_objects_matched(self):
        """Raise unless every variable the model has now (metrics: those that existed at load time)
        has its value from the checkpoint; entries with no variable yet are allowed."""
        missing = self._missing()
        if missing:
            raise WeightsMismatchError(f"{self.source}: variables of the model that have no value from the checkpoint: {_listing(missing)}.")
        return self

    def assert_consumed(self):
        """Raise unless every checkpoint entry (metrics aside) found its variable and every
        variable got a value."""
        self.assert_existing_objects_matched()
        if self._unmatched:
            raise WeightsMismatchError(
                f"{self.source}: checkpoint entries that matched no variable of the model: {_listing(self._unmatched)}. "
                "Variables the model creates later (on its first call, or an optimizer's slots at its first "
                "step) still take their values then; call this once they exist."
            )
        return self

    def expect_partial(self):
        """Say that entries left unmatched are expected: no warning when the status goes away."""
        self._silenced[0] = True
        return self


def _warn_unmatched(source, unmatched, silenced):
    if unmatched and not silenced[0]:
        warnings.warn(
            f"{source}: checkpoint entries never matched a variable: {_listing(unmatched)}. Call `expect_partial()` on the load status when that is intended.",
            stacklevel=2,
        )


# ---------------------------------------------------------------- pending values
class PendingRestore:
    """Values of one checkpoint load that wait for variables of `model` to be created."""

    def __init__(self, model, values, status):
        self.model = weakref.ref(model, self._forget)
        self.values = values  # key -> CPU tensor (often a view of a memory-mapped file)
        self.status = status
        self._paths = {}
        self._foreign = weakref.WeakSet()  # layers known not to belong to the model
        self._namers = {}

    def _forget(self, _reference=None):
        self.values = {}
        if self in PENDING:
            PENDING.remove(self)

    def _take(self, key, shape, dtype, what):
        value = self.values.get(key)
        if value is None:
            return None
        if tuple(value.shape) != tuple(shape):
            raise WeightsMismatchError(f"{self.status.source}: entry '{key}' has shape {tuple(value.shape)}, but {what} creates it with shape {tuple(shape)}.")
        del self.values[key]
        self.status._matched(key)
        if not self.values:
            self._forget()
        # A tensor of its own on the variable's device: the variable wraps it without another copy.
        return value.to(device=backend.get_device(), dtype=backend.torch_dtype(dtype), copy=True)

    def _layer_path(self, layer):
        """The layer's path in the model; layers attached since the last walk are found by walking again."""
        found = self._paths.get(id(layer))
        if found is not None and found[1]() is layer:
            return found[0]
        if layer in self._foreign:
            return None
        model = self.model()
        if model is not None:
            # Weak references: a pending restore must not keep the model it waits for alive.
            paths = {key: (path, weakref.ref(item)) for key, (path, item) in layer_paths(model).items()}
            if paths.keys() != self._paths.keys():
                self._foreign = weakref.WeakSet()  # the model gained layers: earlier verdicts may be stale
            self._paths = paths
            found = paths.get(id(layer))
            if found is not None and found[1]() is layer:
                return found[0]
        self._foreign.add(layer)  # a layer of another model: do not walk again for each of its weights
        return None

    def take_for_layer(self, layer, name, shape, dtype):
        if saves_its_own(layer):
            return None  # its entries are its store's, handed over whole once it is built
        path = self._layer_path(layer)
        if path is None:
            return None
        taken = sum(v.name == name for v in layer._saveable_variables())
        key = _join(path, name if taken == 0 else f"{name}_{taken}")
        return self._take(key, shape, dtype, f"layer '{layer.name}' (at '{path or 'the model'}')")

    def layer_built(self, layer):
        """A layer that saves its own state got built: hand it its waiting entries."""
        if not saves_its_own(layer):
            return
        path = self._layer_path(layer)
        if path is None:
            return
        own = own_store_of(path, self.values)
        if not own:
            return
        load_own_store(layer, path, {key: self.values[full] for key, full in own.items()}, self.status.source)
        for full in own.values():
            del self.values[full]
            self.status._matched(full)
        if not self.values:
            self._forget()

    def optimizer_building(self, optimizer, var_list):
        """Restore the optimizer's own variables and learn how its slots will be named."""
        model = self.model()
        if model is None or getattr(model, "optimizer", None) is not optimizer:
            return
        self.assign_existing(model)
        key_of = {id(variable): key for key, variable in object_keys(model, include_optimizer=False, include_metrics=False)}
        self._namers[id(optimizer)] = (weakref.ref(optimizer), _SlotNamer(optimizer, var_list, key_of))

    def take_for_optimizer(self, optimizer, name, shape, dtype):
        entry = self._namers.get(id(optimizer))
        if entry is None or entry[0]() is not optimizer:
            return None
        return self._take(entry[1].key(name), shape, dtype, f"optimizer '{optimizer.name}'")

    def assign_existing(self, model):
        """Give waiting values to variables that exist by now but were created without asking
        (weights made in a layer's `__init__` before it was attached, the optimizer's step counter)."""
        for key, variable in object_keys(model, include_metrics=False):
            if key in self.values:
                value = self._take(key, variable.shape, variable.dtype, f"variable '{variable.path}'")
                with torch.no_grad():
                    variable.copy_(value)


def register(model, values, status):
    """Keep `values` waiting for `model`'s future variables (replacing an earlier load's)."""
    for restore in list(PENDING):
        if restore.model() is model:
            restore._forget()
    if values:
        PENDING.append(PendingRestore(model, values, status))
