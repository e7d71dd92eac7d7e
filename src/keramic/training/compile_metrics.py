"""Keras's `compile_metrics`: every metric given to `compile`, per output, held as one Metric.

Keras 3 lists this one container in `model.metrics` (after the `loss` tracker), not each metric.
Code written for Keras leans on that: a custom `train_step` that loops over `self.metrics` and
calls `update_state(y, y_pred, sample_weight=...)` reaches every compiled metric through it, and
the container gives the weights only to `weighted_metrics`; its `result()` is a dict that the
logs flatten in place.
"""

import torch

from keramic import metrics as metrics_module
from keramic.symbolic import flatten
from keramic.training.compile import check_metrics_arguments, match_targets, per_output_metrics, per_output_weights


class CompileMetrics(metrics_module.Metric):
    """The compiled metrics of a model, resolved at the first batch (accuracy depends on shapes).

    Example:
        >>> model.compile(loss="mse", metrics=["mae"])            # doctest: +SKIP
        >>> model.metrics                                         # doctest: +SKIP
        [<Mean name=loss>, <CompileMetrics name=compile_metrics>]
    """

    def __init__(self, metrics, weighted_metrics, output_names=None, compiled_loss=None, name: str = "compile_metrics"):
        check_metrics_arguments(metrics, weighted_metrics)
        super().__init__(name=name)
        self._user_metrics = metrics
        self._user_weighted_metrics = weighted_metrics
        self.output_names = None if output_names is None else list(output_names)
        self._compiled_loss = compiled_loss
        self._entries: list = []  # [(output index, metric, weighted)], in Keras's log order
        self._log_names: list[str] = []
        self._structure = None  # the predictions as the model returns them (list, tuple or dict): for errors
        self._named_outputs = False
        self.built = False

    def __repr__(self) -> str:
        return f"<CompileMetrics name={self.name}>"

    def bind(self, output_names, compiled_loss, structure=None, named_outputs: bool = False) -> None:
        """The model's output names and compiled loss, known once its outputs have been seen
        (`structure`: its predictions; `named_outputs`: the names are the functional model's own)."""
        self.output_names = list(output_names)
        self._compiled_loss = compiled_loss
        self._structure, self._named_outputs = _skeleton(structure), named_outputs

    @property
    def metrics(self) -> list:
        """The metric objects, unweighted ones first, each output in turn (Keras's order)."""
        return [metric for _, metric, _ in self._entries]

    @property
    def variables(self) -> list:
        return [variable for _, metric, _ in self._entries for variable in metric.variables]

    def build(self, targets: list, predictions: list) -> None:
        """Resolve each output's metrics from its first target and prediction (flat lists)."""
        names = self.output_names or _default_names(len(predictions))
        losses = self._compiled_loss.losses if self._compiled_loss is not None and self._compiled_loss.losses else [None] * len(names)
        self._entries = []
        structure = self._structure if self._structure is not None else predictions
        for weighted, spec in ((False, self._user_metrics), (True, self._user_weighted_metrics)):
            argument = "weighted_metrics" if weighted else "metrics"
            specs = per_output_metrics(spec, names, structure, argument, self._named_outputs)
            for index, (y_true, y_pred) in enumerate(zip(targets, predictions)):
                if y_true is None:  # as Keras: an output no target pairs with gets no metrics
                    continue
                for item in specs[index] or []:
                    self._entries.append((index, metrics_module.resolve_metric(item, y_true, y_pred, losses[index]), weighted))
        self._log_names = _log_names(self._entries, names)
        self.built = True

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        """Update every metric with a batch; only `weighted_metrics` see `sample_weight` (Keras)."""
        specs = self._compiled_loss._specs if self._compiled_loss is not None else None
        names = self.output_names or _structure_names(y_pred)
        targets, predictions = match_targets(y_true, y_pred, names, specs)
        with torch.no_grad():
            if not self.built:
                if self._structure is None:
                    self._structure = _skeleton(y_pred)
                self.build(targets, predictions)
            self.update_flat(targets, predictions, per_output_weights(sample_weight, len(predictions), names))

    def update_flat(self, targets: list, predictions: list, sample_weights: list) -> None:
        """`update_state` on per-output lists (the trainer's step has them already)."""
        for index, metric, weighted in self._entries:
            metric.update_state(targets[index], predictions[index], sample_weights[index] if weighted else None)

    def reset_state(self) -> None:
        for _, metric, _ in self._entries:
            metric.reset_state()

    def result(self) -> dict:
        """{log name: value}: output-prefixed on a multi-output model, clashes renamed as Keras does."""
        if not self.built:
            raise ValueError("Cannot get result() since the metric has not yet been built.")
        return {name: metric.result() for name, (_, metric, _) in zip(self._log_names, self._entries)}

    def named_metrics(self) -> list:
        """[(log name, metric)]: how checkpoints key each compiled metric's state."""
        return list(zip(self._log_names, self.metrics))

    def get_config(self):
        raise NotImplementedError("CompileMetrics is made by `compile()` and has no config.")


def _skeleton(y_pred):
    """The predictions' container with no tensors in it (a first batch's graph must not be kept)."""
    if isinstance(y_pred, dict):
        return dict.fromkeys(y_pred)
    if isinstance(y_pred, (list, tuple)):
        return type(y_pred)([None] * len(y_pred)) if type(y_pred) in (list, tuple) else [None] * len(y_pred)
    return None


def _default_names(count):
    return ["output"] if count == 1 else [f"output_{i + 1}" for i in range(count)]


def _structure_names(y_pred):
    """Output names of a container used before the model bound its own: a dict's sorted keys."""
    return sorted(y_pred) if isinstance(y_pred, dict) else _default_names(len(flatten(y_pred)))


def _log_names(entries, output_names):
    """Keras's names in the logs: `<output>_<metric>` on a multi-output model; a weighted metric
    that clashes becomes `weighted_<metric>`; further clashes get `_1`, `_2`..."""
    counts, names = {}, []
    for index, metric, weighted in entries:
        prefix = f"{output_names[index]}_" if len(output_names) > 1 else ""
        name = prefix + metric.name
        if name in counts and weighted:
            name = f"{prefix}weighted_{metric.name}"
        if name in counts:
            counts[name] += 1
            name = f"{name}_{counts[name] - 1}"
        else:
            counts[name] = 1
        names.append(name)
    return names
