"""What `compile()` sets up: losses and metrics matched to the model's outputs."""

import torch

from keramic import losses as losses_module
from keramic import metrics as metrics_module
from keramic.symbolic import flatten


def _outputs_as_list(y_pred):
    return y_pred if isinstance(y_pred, (list, tuple)) else flatten(y_pred) if isinstance(y_pred, dict) else [y_pred]


def match_targets(y_true, y_pred, output_names, loss_specs=None):
    """Flatten targets in the order of the flattened predictions (dicts matched by output name).

    As Keras, fewer targets than outputs are accepted when they pair with the outputs that have a
    loss (`loss=[fn, None]`): the outputs without one get None.
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
    if len(targets) != len(predictions):
        raise ValueError(f"The model has {len(predictions)} output(s) but {len(targets)} target(s) were given.")
    return targets, predictions


def _metric_list(item):
    """One output's metrics as a list (None when it has none)."""
    return item if item is None or isinstance(item, (list, tuple)) else [item]


def _per_output(spec, output_names, kind):
    """Spread a single value, list or dict of `spec` over the outputs (None where absent)."""
    count = len(output_names)
    if isinstance(spec, dict):
        unknown = [k for k in spec if k not in output_names]
        if unknown:
            raise ValueError(f"{kind} given for unknown outputs {unknown}; the outputs are {output_names}.")
        entries = [spec.get(name) for name in output_names]
        return [_metric_list(item) for item in entries] if kind == "metrics" else entries
    if isinstance(spec, (list, tuple)) and kind != "metrics":
        if len(spec) != count:
            raise ValueError(f"{kind} has {len(spec)} entries but the model has {count} outputs.")
        return list(spec)
    if kind == "metrics" and isinstance(spec, (list, tuple)) and count > 1 and len(spec) == count:
        # One entry per output, as Keras reads a list as long as the outputs (an entry may be None).
        return [_metric_list(item) for item in spec]
    return [spec] * count


class CompiledLoss:
    """The weighted sum of per-output losses (plus regularization, added by the trainer)."""

    def __init__(self, loss, loss_weights, output_names):
        self.output_names = list(output_names)
        self._specs = _per_output(loss, self.output_names, "loss")
        self.losses = None  # resolved on the first batch ("crossentropy" depends on the shapes)
        weights = _per_output(loss_weights, self.output_names, "loss_weights") if loss_weights is not None else [None] * len(self.output_names)
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
        per_output = []
        for loss_fn, weight, y_true, y_pred, sample_weight in zip(self.losses, self.weights, targets, predictions, sample_weights):
            if loss_fn is None:
                per_output.append(None)
                continue
            value = loss_fn(y_true, y_pred, sample_weight)
            per_output.append(value)
            value = value if weight == 1.0 else value * weight
            total = value if total is None else total + value
        if total is None:
            total = torch.zeros((), device=predictions[0].device)
        return total, per_output


def check_metrics_arguments(metrics, weighted_metrics) -> None:
    """Raise at compile time, as Keras does, when metrics are not a list, tuple or dict (a lone string)."""
    for argument, value in (("metrics", metrics), ("weighted_metrics", weighted_metrics)):
        if value and not isinstance(value, (list, tuple, dict)):
            raise ValueError(
                f"Expected `{argument}` argument to be a list, tuple, or dict. "
                f"Received instead: {argument}={value} of type {type(value)}"
            )


class CompiledMetrics:
    """Metrics per output, resolved on the first batch (accuracy depends on the target shapes)."""

    def __init__(self, metrics, weighted_metrics, output_names, compiled_loss):
        check_metrics_arguments(metrics, weighted_metrics)
        self.output_names = list(output_names)
        self._specs = _per_output(metrics, self.output_names, "metrics") if metrics is not None else [None] * len(self.output_names)
        self._weighted_specs = (
            _per_output(weighted_metrics, self.output_names, "metrics") if weighted_metrics is not None else [None] * len(self.output_names)
        )
        self._compiled_loss = compiled_loss
        self.metrics = None  # [(output index, metric, weighted)]

    def build(self, targets, predictions):
        """Resolve the metrics in Keras's log order (every output's metrics, then the weighted ones)."""
        self.metrics = []
        counts = {}
        for weighted, all_specs in ((False, self._specs), (True, self._weighted_specs)):
            for index, (y_true, y_pred) in enumerate(zip(targets, predictions)):
                for spec in all_specs[index] or []:
                    metric = metrics_module.resolve_metric(spec, y_true, y_pred, self._compiled_loss.losses[index])
                    metric.name = self._log_name(metric, index, weighted, counts)
                    self.metrics.append((index, metric, weighted))

    def _log_name(self, metric, index, weighted, counts):
        """Keras's name in the logs: output-prefixed on a multi-output model, `weighted_` for a weighted
        metric that clashes, `_1`, `_2`... for further clashes. The unprefixed name is kept on the
        metric, so that a recompile reusing the object does not prefix it twice."""
        base = metric.__dict__.setdefault("_compiled_base_name", metric.name)
        prefix = f"{self.output_names[index]}_" if len(self.output_names) > 1 else ""
        name = prefix + base
        if name in counts and weighted:
            name = f"{prefix}weighted_{base}"
        if name in counts:
            counts[name] += 1
            return f"{name}_{counts[name] - 1}"
        counts[name] = 1
        return name

    def update(self, targets, predictions, sample_weights):
        if self.metrics is None:
            self.build(targets, predictions)
        for index, metric, weighted in self.metrics:
            metric.update_state(targets[index], predictions[index], sample_weights[index] if weighted else None)

    def reset(self):
        for _, metric, _ in self.metrics or []:
            metric.reset_state()

    def results(self):
        return {metric.name: metric.result() for _, metric, _ in self.metrics or []}
