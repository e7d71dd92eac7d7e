"""What `compile()` sets up: losses matched to the model's outputs, and the per-output spreading of metrics."""

import torch

from keramic import losses as losses_module
from keramic.symbolic import flatten


def _outputs_as_list(y_pred):
    return y_pred if isinstance(y_pred, (list, tuple)) else flatten(y_pred) if isinstance(y_pred, dict) else [y_pred]


def match_targets(y_true, y_pred, output_names, loss_specs=None, pad_missing=False):
    """Flatten targets in the order of the flattened predictions (dicts matched by output name).

    As Keras, fewer targets than outputs are accepted when they pair with the outputs that have a
    loss (`loss=[fn, None]`): the outputs without one get None. With `pad_missing` (a model's own
    `compute_loss` reads the targets), the targets pair with the first outputs and the rest get None.
    """
    predictions = _outputs_as_list(y_pred)
    if isinstance(y_true, dict):
        if isinstance(y_pred, dict):
            names = sorted(y_pred)
        else:
            names = output_names
        missing = [n for n in names if n not in y_true]
        if missing:
            raise ValueError(f"Targets are missing for outputs {missing}; targets were given for {sorted(y_true)}.")
        targets = [y_true[n] for n in names]
    elif isinstance(y_true, (list, tuple)):
        targets = list(y_true)
    else:
        targets = [y_true]
    if len(targets) != len(predictions) and loss_specs is not None:
        with_loss = [index for index, spec in enumerate(loss_specs) if spec is not None]
        if len(with_loss) == len(targets) and len(loss_specs) == len(predictions):
            spread = [None] * len(predictions)
            for index, target in zip(with_loss, targets):
                spread[index] = target
            targets = spread
    if pad_missing and len(targets) < len(predictions):
        targets = targets + [None] * (len(predictions) - len(targets))
    if len(targets) != len(predictions):
        raise ValueError(f"The model has {len(predictions)} output(s) but {len(targets)} target(s) were given.")
    return targets, predictions


def _metric_list(item):
    """One output's metrics as a list (None when it has none)."""
    return item if item is None or isinstance(item, (list, tuple)) else [item]


def per_output(spec, output_names: list, kind: str) -> list:
    """Spread a single value, list or dict of `spec` over the outputs (None where absent)."""
    count = len(output_names)
    if isinstance(spec, dict):
        unknown = [k for k in spec if k not in output_names]
        if unknown:
            raise ValueError(f"{kind} given for unknown outputs {unknown}; the outputs are {output_names}.")
        return [spec.get(name) for name in output_names]
    if isinstance(spec, (list, tuple)):
        if len(spec) != count:
            raise ValueError(f"{kind} has {len(spec)} entries but the model has {count} outputs.")
        return list(spec)
    return [spec] * count


def _flat_metrics(spec) -> list:
    """Every metric in nested lists / dict values, in order (a single output takes them all)."""
    if isinstance(spec, dict):
        spec = list(spec.values())
    if not isinstance(spec, (list, tuple)):
        return [spec]
    return [metric for item in spec for metric in _flat_metrics(item)]


def per_output_metrics(spec, output_names: list, structure, argument: str = "metrics", named_outputs: bool = True) -> list:
    """`metrics` / `weighted_metrics` spread over the outputs as Keras reads them.

    A single output takes every metric found (nested lists and dict values flattened, whatever
    the keys). Several outputs take a dict keyed by (some of) their names, or a list with one entry
    (a metric, a list of metrics, or None) per output; anything else is a ValueError at the first
    batch, naming the outputs' structure (`structure`: the predictions as the model returned them).
    """
    if not spec:
        return [None] * len(output_names)
    if len(output_names) == 1:
        return [_flat_metrics(spec)]
    if isinstance(spec, dict) and all(key in output_names for key in spec):
        return [_metric_list(spec.get(name)) for name in output_names]
    if isinstance(spec, (list, tuple)) and len(spec) == len(output_names):
        return [_metric_list(item) for item in spec]
    raise ValueError(_structure_mismatch(spec, output_names, structure, argument, named_outputs))


def _structure_mismatch(spec, output_names, structure, argument, named_outputs) -> str:
    """Keras's message for metrics that fit neither the output names nor the output structure."""
    if isinstance(structure, dict):
        shape = "{" + ", ".join(f"{key!r}: 'X'" for key in structure) + "}"
        if not isinstance(spec, dict):
            problem = "Node type mismatch; expected <class 'dict'>, but got <class 'tuple'>."
        elif len(spec) != len(structure):
            problem = f"Node arity mismatch; expected {len(structure)}, but got {len(spec)}."
        else:
            missing, extra = set(structure) - set(spec), set(spec) - set(structure)
            problem = f"Node keys mismatch; missing key(s): {missing}; extra key(s): {extra}."
    else:
        shape = ", ".join("'X'" for _ in output_names)
        shape = f"({shape})" if isinstance(structure, tuple) else f"[{shape}]"
        if isinstance(spec, dict):
            problem = "Node type mismatch; expected <class 'tuple'>, but got <class 'dict'>."
        else:
            problem = f"Node arity mismatch; expected {len(output_names)}, but got {len(spec)}."
    names = f"either be a dict or a list matching the output names of the functional model {output_names} or " if named_outputs else ""
    return (
        f"{problem}\nInvalid `{argument}`. `{argument}` should contain metrics objects and {names}"
        f"match the output structure of the model: {shape}.\nReceived: {argument}={spec}"
    )


class CompiledLoss:
    """The weighted sum of per-output losses (plus regularization, added by the trainer)."""

    def __init__(self, loss, loss_weights, output_names):
        self.output_names = list(output_names)
        self._specs = per_output(loss, self.output_names, "loss")
        self.losses = None  # resolved on the first batch ("crossentropy" depends on the shapes)
        weights = per_output(loss_weights, self.output_names, "loss_weights") if loss_weights is not None else [None] * len(self.output_names)
        self.weights = [1.0 if w is None else float(w) for w in weights]
        self.multi_output = sum(spec is not None for spec in self._specs) > 1  # Keras tracks per-output losses then

    def build(self, targets, predictions):
        self.losses = [
            losses_module.resolve_loss(spec, y_true, y_pred) if spec is not None else None
            for spec, y_true, y_pred in zip(self._specs, targets, predictions)
        ]

    def __call__(self, targets, predictions, sample_weights):
        if self.losses is None:
            self.build(targets, predictions)
        total = None
        values = []
        for loss_fn, weight, y_true, y_pred, sample_weight in zip(self.losses, self.weights, targets, predictions, sample_weights):
            if loss_fn is None:
                values.append(None)
                continue
            value = loss_fn(y_true, y_pred, sample_weight)
            values.append(value)
            value = value if weight == 1.0 else value * weight
            total = value if total is None else total + value
        if total is None:
            total = torch.zeros((), device=predictions[0].device)
        return total, values


def check_metrics_arguments(metrics, weighted_metrics) -> None:
    """Raise at compile time, as Keras does, when metrics are not a list, tuple or dict (a lone string)."""
    for argument, value in (("metrics", metrics), ("weighted_metrics", weighted_metrics)):
        if value and not isinstance(value, (list, tuple, dict)):
            raise ValueError(
                f"Expected `{argument}` argument to be a list, tuple, or dict. "
                f"Received instead: {argument}={value} of type {type(value)}"
            )


def per_output_weights(sample_weight, count: int, output_names: list) -> list:
    """Sample weights per output: one array serves every output, a list or dict gives each its own."""
    if isinstance(sample_weight, dict):
        return [sample_weight.get(name) for name in output_names]
    if isinstance(sample_weight, (list, tuple)):
        return list(sample_weight) if len(sample_weight) >= count else [sample_weight[0]] * count
    return [sample_weight] * count
