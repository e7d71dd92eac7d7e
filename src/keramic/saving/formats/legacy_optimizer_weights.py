"""Optimizer weights of legacy `.h5` files, mapped onto keramic's optimizer variables.

Three writers, three layouts (keras-legacy-h5-format.md section 1.4):
- Keras 3 (and keramic): exactly `optimizer.variables` (iteration, learning_rate, slots);
- tf.keras 2.11+ optimizers: `iteration:0`, then the slots; no learning rate; SGD keeps an `m`
  slot even without momentum;
- tf.keras OptimizerV2 (TF 2.0-2.10, `optimizers.legacy`): `iter:0`, then one block per slot.
Names only tell the writers apart: values are matched by position in the writer's order, every
shape is checked, and nothing is read unless the whole layout fits.
"""

import re

from keramic.errors import KeramicError

KERAS3 = "Keras 3"
TF_KERAS = "tf.keras 2.11+ optimizer"
TF_KERAS_V2 = "tf.keras OptimizerV2"


def _always(optimizer):
    return True


def _momentum(optimizer):
    return optimizer.momentum > 0


def _centered(optimizer):
    return optimizer.centered


def _amsgrad(optimizer):
    return optimizer.amsgrad


# The writer's slot layout after its prefix: (slot names interleaved per variable, present when).
# A single name is a block over all variables. Slot names are keramic's (Keras 3's).
_TF_LAYOUTS = {
    TF_KERAS: {
        "SGD": [(("momentum",), _always)],
        "RMSprop": [(("velocity",), _always), (("momentum",), _momentum), (("average_gradient",), _centered)],
        "Adam": [(("momentum", "velocity"), _always), (("velocity_hat",), _amsgrad)],
        "Adagrad": [(("accumulator",), _always)],
        "Adadelta": [(("accumulated_grad", "accumulated_delta_var"), _always)],
        "Adamax": [(("momentum", "norm"), _always)],
        "Nadam": [(("momentum", "velocity"), _always)],
    },
    TF_KERAS_V2: {
        "SGD": [(("momentum",), _momentum)],
        "RMSprop": [(("velocity",), _always), (("momentum",), _momentum), (("average_gradient",), _centered)],
        "Adam": [(("momentum",), _always), (("velocity",), _always), (("velocity_hat",), _amsgrad)],
        "Adagrad": [(("accumulator",), _always)],
        "Adadelta": [(("accumulated_grad",), _always), (("accumulated_delta_var",), _always)],
        "Adamax": [(("momentum",), _always), (("norm",), _always)],
        "Nadam": [(("momentum",), _always), (("velocity",), _always)],
    },
}
# Scalars OptimizerV2 saved besides `iter`: its hyperparameters in TF1 graph mode
# (`training/Adam/beta_1:0`; only the learning rate is kept) and Nadam's momentum-schedule
# product (`Nadam/momentum_cache:0`, which restarts at 1 like tf.keras's own reloaded Nadam).
_V2_SCALAR_NAMES = re.compile(r"^(?:training/)?[^/]+/([^/]+):\d+$")


class OptimizerLayoutError(KeramicError):
    """The file's optimizer weights do not fit this optimizer; the message says why."""


def writer_of(names, keras_version, optimizer_config):
    """Which optimizer generation wrote these weight names (their order depends on it)."""
    last = names[0].rsplit("/", 1)[-1] if names else ""
    if last.startswith("iter:"):
        return TF_KERAS_V2
    if last.startswith("iteration:"):
        return TF_KERAS
    if last == "iteration":
        return KERAS3
    legacy = (optimizer_config or {}).get("config", {}).get("is_legacy_optimizer")
    if legacy is not None:
        return TF_KERAS_V2 if legacy else TF_KERAS
    parts = str(keras_version).split(".")
    if parts[0] != "2":
        return KERAS3
    return TF_KERAS if len(parts) > 1 and parts[1].isdigit() and int(parts[1]) >= 11 else TF_KERAS_V2


def plan(optimizer, writer_variables, names, shapes, writer):
    """Pairs `(file position, optimizer variable)` to assign, checked for count and shape.

    `writer_variables` are the model's trainable variables in the order the writer built its
    optimizer with. Slots this optimizer does not keep at all (tf.keras SGD's `m` without
    momentum, which it never reads) are left out. Raises OptimizerLayoutError when the layout
    does not fit.
    """
    variables = optimizer.variables
    counters = [v for v in variables[:2] if v.name in ("iteration", "learning_rate")]
    if writer == KERAS3:
        if len(names) == len(variables):
            pairs = list(enumerate(variables))
        elif len(names) == len(counters):
            pairs = list(enumerate(counters))  # compiled, never trained: only the counters exist
        else:
            raise OptimizerLayoutError(f"the file has {len(names)} optimizer weights, this optimizer has {len(variables)}.")
    else:
        pairs = _tf_pairs(optimizer, counters, writer_variables, names, shapes, writer)
    for position, variable in pairs:
        if tuple(shapes[position]) != tuple(variable.shape):
            raise OptimizerLayoutError(
                f"weight '{names[position]}' has shape {tuple(shapes[position])}, but it maps to '{variable.path}' of shape {tuple(variable.shape)}."
            )
    return pairs


def _layout(optimizer, writer):
    table = _TF_LAYOUTS[writer]
    for cls in type(optimizer).__mro__:
        if cls.__name__ in table:
            return table[cls.__name__]
    raise OptimizerLayoutError(f"keramic does not know how a {writer} stores the state of {type(optimizer).__name__}.")


def _tf_pairs(optimizer, counters, writer_variables, names, shapes, writer):
    positions = list(range(len(names)))
    pairs = [(0, counters[0])]
    if writer == TF_KERAS_V2:
        scalars = [p for p in positions[1:] if tuple(shapes[p]) == () and _V2_SCALAR_NAMES.match(names[p])]
        for position in scalars:
            if _V2_SCALAR_NAMES.match(names[position]).group(1) in ("learning_rate", "lr") and len(counters) == 2:
                pairs.append((position, counters[1]))
        positions = [p for p in positions if p not in scalars]
    if len(positions) == 1:
        return pairs  # compiled, never trained: only the counter exists
    groups = [("average",)] if optimizer.use_ema else []
    groups += [slots for slots, present in _layout(optimizer, writer) if present(optimizer)]
    expected = 1 + sum(len(slots) for slots in groups) * len(writer_variables)
    if len(positions) != expected:
        raise OptimizerLayoutError(
            f"the file has {len(positions)} optimizer weights; a {writer} {type(optimizer).__name__} with this "
            f"configuration and {len(writer_variables)} trainable variables writes {expected}."
        )
    by_name = {variable.name: variable for variable in optimizer.variables}
    kept = {slot for slots in groups for slot in slots if any(name.endswith("_" + slot) for name in by_name)}
    cursor = iter(positions[1:])
    for slots in groups:
        for variable in writer_variables:
            for slot in slots:
                position = next(cursor)
                target = by_name.get(f"{variable.path.replace('/', '_')}_{slot}")
                if target is not None:
                    pairs.append((position, target))
                elif slot in kept:
                    raise OptimizerLayoutError(f"this optimizer has no '{slot}' slot for variable '{variable.path}'.")
    return pairs
