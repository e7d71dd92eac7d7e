"""compile / fit / evaluate / predict for models, with Keras 3's semantics and a lean training step."""

import inspect
import itertools
import warnings

import numpy as np
import torch

from keramic import backend, config
from keramic import metrics as metrics_module
from keramic import optimizers as optimizers_module
from keramic.distribution import steps as distributed
from keramic.errors import NotCompiledError
from keramic.layers.base import Layer, _call_signature_flags, pending_call_losses
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object
from keramic.symbolic import build_only_call, flatten, map_structure
from keramic.training import data as data_module
from keramic.training.compile import CompiledLoss, check_metrics_arguments, match_targets, per_output_weights
from keramic.training.compile_metrics import CompileMetrics


def _to_numpy(structure):
    return map_structure(lambda t: backend.convert_to_numpy(t) if isinstance(t, torch.Tensor) else t, structure)


def _concat(batches):
    """Per-batch outputs joined along the batch axis; a leaf a custom `predict_step` gives as numpy
    joins as Keras joins it, and a scalar or `None` leaf (or batches whose other axes differ) raises
    Keras's ValueError."""
    first = batches[0]
    if isinstance(first, torch.Tensor) and first.ndim > 0 and all(isinstance(b, torch.Tensor) and b.shape[1:] == first.shape[1:] for b in batches):
        return backend.convert_to_numpy(torch.cat(batches))
    if isinstance(first, (list, tuple)):
        return type(first)(_concat([b[i] for b in batches]) for i in range(len(first)))
    if isinstance(first, dict):
        return {key: _concat([b[key] for b in batches]) for key in first}
    return np.concatenate([backend.convert_to_numpy(b) if isinstance(b, torch.Tensor) else np.asarray(b) for b in batches])


def _pythonify(logs, keep_nesting=False):
    """Logs as Python floats, in Keras's order (sorted by name, a nested dict flattened in its
    place, or kept for the callbacks to flatten so with `keep_nesting`); a metric with one value per
    class (`F1Score(average=None)`) stays a numpy array, as Keras keeps it in logs and history."""
    result = {}
    for key, value in sorted(logs.items()):
        if isinstance(value, dict):
            if keep_nesting:
                result[key] = _pythonify(value, keep_nesting)
            else:
                result.update(_pythonify(value))
            continue
        array = backend.convert_to_numpy(value) if isinstance(value, torch.Tensor) else np.asarray(value)
        result[key] = float(array) if array.ndim == 0 else array
    return result


class _FirstSteps:
    """The first `limit` batches of each epoch: `keras.config.max_steps_per_epoch()` at work."""

    def __init__(self, batches, limit):
        self.batches, self.limit = batches, limit
        self.steps = limit if batches.steps is None else min(batches.steps, limit)

    def first_batch_draws(self):
        getattr(self.batches, "first_batch_draws", lambda: None)()

    def __iter__(self):
        if isinstance(self.batches, data_module.EpochSteps):  # already stops at `limit`, and must see its epoch end
            return iter(self.batches)
        return itertools.islice(self.batches, self.limit)


def _detached(predictions):
    """Predictions cut from the graph for the metrics, keeping the Keras mask they carry (metrics honour it)."""
    detached = []
    for prediction in predictions:
        mask = getattr(prediction, "_keras_mask", None)
        prediction = prediction.detach()
        if mask is not None:
            prediction._keras_mask = mask
        detached.append(prediction)
    return detached


def _make_batches(x, y, sample_weight, batch_size, shuffle, steps, device, class_weight=None):
    """`data.make_batches`, capped (with Keras's warning) by `keras.config.max_steps_per_epoch()`."""
    limit = config.max_steps_per_epoch()
    if limit and (not steps or limit < steps):
        warnings.warn(f"Limiting steps_per_epoch to {limit}")
        batches = data_module.make_batches(x, y, sample_weight, batch_size, shuffle, limit, device, class_weight)
        return _FirstSteps(batches, limit)
    return data_module.make_batches(x, y, sample_weight, batch_size, shuffle, steps, device, class_weight)


def _py_dataset(batches):
    """The PyDataset that `batches` read, under their step and shuffle wrappers; else None."""
    source = batches
    while hasattr(source, "batches"):  # `_FirstSteps`, `data.EpochSteps`
        source = source.batches
    source = getattr(source, "iterable", None)
    source = getattr(source, "dataset", source) if isinstance(source, data_module.ShuffledPyDataset) else source
    return source if isinstance(source, data_module.PyDataset) else None


def _default_verbose(verbose):
    return distributed.verbose_here(1 if verbose == "auto" else verbose)


class Trainer:
    """Training and inference methods mixed into `Model`."""

    def __init__(self):
        self.optimizer = None
        self.loss = None
        self.compiled = False
        self.stop_training = False
        self.history = None
        self._compile_args = None
        self._compiled_loss = None
        self._compiled_metrics = None
        self._metrics_created = False
        self._loss_tracker = None
        self._regularized_variables = None
        self.train_function = self.test_function = self.predict_function = None

    # ------------------------------------------------------------------ compile
    def compile(
        self,
        optimizer="rmsprop",
        loss=None,
        loss_weights=None,
        metrics=None,
        weighted_metrics=None,
        run_eagerly=False,
        steps_per_execution=1,
        jit_compile="auto",
        auto_scale_loss=True,
    ):
        """Choose the optimizer, loss(es) and metrics (strings, objects, or per-output lists/dicts).

        `jit_compile=True` runs the forward and loss of the train, test and predict steps through
        `torch.compile` (the optimizer update stays eager); `"auto"` leaves them eager, as Keras does
        on torch. A `mixed_float16` model's optimizer is wrapped in a `LossScaleOptimizer`.
        """
        check_metrics_arguments(metrics, weighted_metrics)
        self.optimizer = optimizers_module.get(optimizer)
        previous = self._compile_args if self.compiled else None
        if loss is None and previous is not None:  # as Keras: a recompile without a loss keeps the last one
            loss, loss_weights = previous["loss"], previous["loss_weights"]
        if metrics is None and weighted_metrics is None and previous is not None:  # and the last metrics
            metrics, weighted_metrics = previous["metrics"], previous["weighted_metrics"]
        self.loss = loss  # as passed, as Keras keeps it
        self._compile_args = {
            "optimizer": self.optimizer,
            "loss": loss,
            "loss_weights": loss_weights,
            "metrics": metrics,
            "weighted_metrics": weighted_metrics,
            "run_eagerly": run_eagerly,
            "steps_per_execution": steps_per_execution,
            "jit_compile": False if jit_compile == "auto" else jit_compile,
        }
        self._compiled_loss = None
        # As Keras: one `compile_metrics` container, made when metrics are given, built at the first batch.
        self._compiled_metrics = CompileMetrics(metrics, weighted_metrics) if metrics is not None or weighted_metrics is not None else None
        self._metrics_created = False
        self._loss_tracker = metrics_module.Mean(name="loss")
        self._output_loss_trackers = {}  # per-output loss trackers of a multi-output model, made at its first batch
        if auto_scale_loss and self.dtype_policy.name == "mixed_float16" and self.optimizer is not None:
            if not isinstance(self.optimizer, optimizers_module.LossScaleOptimizer):
                self.optimizer = optimizers_module.LossScaleOptimizer(self.optimizer, name="loss_scale_optimizer")
        self.run_eagerly = run_eagerly
        self.jit_compile = self._compile_args["jit_compile"] is True and not run_eagerly
        self.__dict__.pop("_built_from_a_batch", None)
        self.compiled = True

    @property
    def run_eagerly(self) -> bool:
        """As Keras: True keeps every step eager, whatever `jit_compile` says."""
        return self.__dict__.get("_run_eagerly", False)

    @run_eagerly.setter
    def run_eagerly(self, value):
        self.__dict__["_run_eagerly"] = bool(value)

    @property
    def jit_compile(self) -> bool:
        """Whether steps run through `torch.compile` (settable, as in Keras)."""
        return self.__dict__.get("_jit_steps") is not None

    @jit_compile.setter
    def jit_compile(self, value):
        self.__dict__["_jit_steps"] = {} if value else None

    @property
    def steps_per_execution(self) -> int:
        return self._compile_args["steps_per_execution"] if self._compile_args else 1

    def make_train_function(self, force=False):
        """As Keras: the function `fit` runs on each batch, also kept as `train_function`."""
        self.__dict__["train_function"] = self.train_step
        return self.train_step

    def make_test_function(self, force=False):
        self.__dict__["test_function"] = self.test_step
        return self.test_step

    def make_predict_function(self, force=False):
        self.__dict__["predict_function"] = self.predict_step
        return self.predict_step

    def get_compile_config(self):
        """What `compile` was called with, serialized (empty when not compiled)."""
        if not self.compiled:
            return {}
        return serialize_keras_object(self._compile_args)

    def compile_from_config(self, config, custom_objects=None):
        """Compile from `get_compile_config()` output; builds the optimizer when the model is built.

        As Keras: a model whose class writes its own `compile` is not compiled (its arguments may
        mean something else), only warned about."""
        if type(self).compile is not Trainer.compile:
            warnings.warn(
                "`compile()` was not called as part of model loading because the model's `compile()` method is custom. "
                "All subclassed Models that have `compile()` overridden should also override `get_compile_config()` and "
                "`compile_from_config(config)`. Alternatively, you can call `compile()` manually after loading.",
                stacklevel=2,
            )
            return
        config = {key: deserialize_keras_object(value, custom_objects=custom_objects) if key in ("optimizer",) else value for key, value in config.items()}
        config["loss"] = _deserialize_losses(config.get("loss"), custom_objects)
        config["metrics"] = _deserialize_metrics(config.get("metrics"), custom_objects)
        config["weighted_metrics"] = _deserialize_metrics(config.get("weighted_metrics"), custom_objects)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _assert_compiled(self, method):
        if not self.compiled:
            raise NotCompiledError(f"You must call `compile()` before calling `{method}()`.")
        self._assert_buildable()

    def _compiles_outputs(self):
        """Whether `compile` was given a loss or metrics (built from the model's outputs)."""
        args = self._compile_args or {}
        return any(args.get(key) is not None for key in ("loss", "metrics", "weighted_metrics"))

    def _assert_buildable(self):
        """As Keras: fit and evaluate build unbuilt layers, loss and metrics by calling the model,
        so a model without `call` (a GAN-style one) must come to them built and compiled without a
        loss or metrics; Keras refuses it otherwise, before any step runs."""
        if type(self).call is not Layer.call:
            return
        layers_built = all(getattr(layer, "built", True) for layer in self._flatten_layers())
        if layers_built and not (self._compiles_outputs() and not self._metrics_created):
            return
        raise RuntimeError(
            f"Unable to automatically build the model: {type(self).__name__} has no `call()` to run on a batch, and "
            "its layers, or the loss and metrics given to `compile()`, need one to be built. Build its layers and "
            "set `self.built = True` (and compile it without a loss or metrics), or implement `call()`."
        )

    def _output_names_for(self, y_pred):
        if isinstance(y_pred, dict):
            return sorted(y_pred)
        names = getattr(self, "output_names", None)
        count = len(y_pred) if isinstance(y_pred, (list, tuple)) else 1
        if names and len(names) == count:
            return list(names)
        return ["output"] if count == 1 else [f"output_{i + 1}" for i in range(count)]

    def _ensure_compiled_objects(self, y_pred):
        if self._compiled_loss is None:
            names = self._output_names_for(y_pred)
            args = self._compile_args
            self._compiled_loss = CompiledLoss(args["loss"], args["loss_weights"], names)
            if self._compiled_metrics is not None:
                named = bool(getattr(self, "output_names", None))  # a functional model's own names
                self._compiled_metrics.bind(names, self._compiled_loss, y_pred, named)

    @property
    def metrics(self):
        """Keras's list: the loss tracker, the `compile_metrics` container (when `compile` got
        metrics), the per-output loss trackers of a multi-output model (after its first batch),
        then the metrics kept as attributes of the model and its layers (Keras resets and logs those too)."""
        result = []
        if self.compiled:
            result = [self._loss_tracker] + ([self._compiled_metrics] if self._compiled_metrics is not None else [])
            result += getattr(self, "_output_loss_trackers", {}).values()
        cached = self.__dict__.get("_attribute_metrics")
        extra = self._find_attribute_metrics() if cached is None else cached
        return result + [metric for metric in extra if all(metric is not known for known in result)]

    def _find_attribute_metrics(self):
        """Metrics held in public attributes of this model and of its layers, nested models left
        out as in Keras (their metrics belong to their own training)."""
        return self._metrics_in_attributes(skip=lambda layer: isinstance(layer, Trainer))

    @property
    def metrics_names(self):
        """As Keras: the name of each entry of `metrics` (`compile_metrics` for the compiled ones)."""
        return [metric.name for metric in self.metrics]

    def reset_metrics(self):
        for metric in self.metrics:
            metric.reset_state()

    def stateless_compute_loss(
        self, trainable_variables, non_trainable_variables, metrics_variables, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        """`compute_loss` on the given variable values (Keras's stateless API, for steps written for
        JAX); returns the loss and the three lists of values as the computation left them."""
        from keramic.stateless_scope import StatelessScope

        groups = (self.trainable_variables, self.non_trainable_variables, self.metrics_variables)
        values = (trainable_variables, non_trainable_variables, metrics_variables)
        with StatelessScope([pair for group, given in zip(groups, values) for pair in zip(group, given)]) as scope:
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        return loss, tuple([scope.get_current_value(variable) for variable in group] for group in groups)

    # ------------------------------------------------------------------ steps
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The scalar loss of a batch, as Keras 3: compiled losses plus every regularization and
        `add_loss` term. Override it to change the loss; `fit` then calls the override."""
        return self._loss_parts(x, y, y_pred, sample_weight, training)[0]

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Update the compiled metrics with a batch and return every metric's result (Keras 3)."""
        targets, predictions, weights = self._match_batch(y, y_pred, sample_weight)
        with torch.no_grad():
            if not self._metrics_created:
                self._create_metrics(targets, predictions)
            if self._compiled_metrics is not None:
                self._compiled_metrics.update_flat(targets, _detached(predictions), weights)
        return self.get_metrics_result()

    def _metrics_result_or_logs(self, logs):
        """As Keras: a custom step's last logs, unless their names are exactly the model's metrics',
        in which case the metrics' results stand in (a step returning `{"loss": ...}` without
        updating the loss tracker logs the tracker's 0)."""
        results = self.get_metrics_result()
        return results if isinstance(logs, dict) and set(logs) == set(results) else logs

    def get_metrics_result(self):
        """{name: result} of each entry of `metrics`, a dict result (`compile_metrics`) flattened
        in, as Keras: a class that lists its own `metrics` gets those. As Keras, compiled metrics
        not yet built by a first batch raise (a ValueError), and an uncompiled model gives {}."""
        if type(self).metrics is Trainer.metrics and self.compiled:
            if self._compiled_metrics is not None and not self._compiled_metrics.built:
                self._compiled_metrics.result()  # raises Keras's "not yet been built" error
            return self._logs()
        metrics = self.metrics
        results = {}
        with distributed.summed_metric_states(metrics):
            for metric in metrics:
                value = metric.result()
                if isinstance(value, dict):
                    results.update(value)
                else:
                    results[metric.name] = value
        return results

    def _match_batch(self, y, y_pred, sample_weight, pad_missing=False):
        """Targets, predictions and sample weights as per-output lists (losses resolved on first use)."""
        self._ensure_compiled_objects(y_pred)
        targets, predictions = match_targets(y, y_pred, self._compiled_loss.output_names, self._compiled_loss._specs, pad_missing)
        weights = per_output_weights(sample_weight, len(predictions), self._compiled_loss.output_names)
        if self._compiled_loss.losses is None:
            self._compiled_loss.build(targets, predictions)
        return targets, predictions, weights

    def _loss_parts(self, x, y, y_pred, sample_weight, training):
        """(total loss, per-output losses, targets, predictions, sample weights) of a batch."""
        targets, predictions, weights = self._match_batch(y, y_pred, sample_weight)
        total, per_output = self._compiled_loss(targets, predictions, weights)
        extra = self._step_losses()
        if not extra and all(loss is None for loss in self._compiled_loss.losses):
            raise ValueError("No loss to compute. Provide a `loss` argument in `compile()`.")  # as Keras
        if extra:
            total = total + torch.stack([torch.as_tensor(v, dtype=total.dtype, device=total.device).sum() for v in extra]).sum()
        return total, per_output, targets, predictions, weights

    def _record(self, loss, per_output, targets, predictions, weights, batch_size):
        with torch.no_grad():
            if not self._metrics_created:
                self._create_metrics(targets, predictions)
            compiled_metrics = self._compiled_metrics
            if batch_size == 0:  # an empty shard under keras.distribution: its NaN loss must not count (NaN x 0 is NaN)
                if compiled_metrics is not None:
                    compiled_metrics.update_flat(targets, _detached(predictions), weights)
                return
            self._loss_tracker.update_state(loss.detach(), sample_weight=batch_size)
            if self._compiled_loss.multi_output:
                for name, value in zip(self._compiled_loss.output_names, per_output):
                    if value is not None:
                        self._output_loss_trackers[name].update_state(value.detach(), sample_weight=batch_size)
            if compiled_metrics is not None and not self._overrides("compute_metrics"):
                compiled_metrics.update_flat(targets, _detached(predictions), weights)

    def _create_metrics(self, targets, predictions):
        """Create the compiled metrics (they depend on the first batch's shapes) and the per-output
        loss trackers, then run the hook `BackupAndRestore` leaves in `_on_metrics_created` (it
        gives a resumed epoch's metrics their saved totals before they count this batch)."""
        if self._compiled_metrics is not None and not self._compiled_metrics.built:
            self._compiled_metrics.build(targets, predictions)
        self._metrics_created = True
        if self._compiled_loss.multi_output and not self._output_loss_trackers:
            self._output_loss_trackers = {name: metrics_module.Mean(name=f"{name}_loss") for name in self._compiled_loss.output_names}
        self.__dict__["_attribute_metrics"] = self._find_attribute_metrics()  # the model is built by now
        hook = self.__dict__.pop("_on_metrics_created", None)
        if hook is not None:
            hook()

    def _logs(self):
        with distributed.summed_metric_states(self.metrics):  # the global batch's values under a distribution
            return self._local_logs()

    def _local_logs(self):
        # Keras's order: loss, compiled metrics, per-output losses, metrics held by the model and its layers
        logs = {"loss": self._loss_tracker.result()}
        if self._compiled_metrics is not None and self._compiled_metrics.built:
            logs.update(self._compiled_metrics.result())
        if self._compiled_loss is not None and self._compiled_loss.multi_output:
            for name, tracker in getattr(self, "_output_loss_trackers", {}).items():
                logs[tracker.name] = tracker.result()
        for metric in self.__dict__.get("_attribute_metrics") or []:
            logs[metric.name] = metric.result()  # as Keras, a later metric of the same name wins
        return logs

    def _reset_trackers(self):
        self._loss_tracker.reset_state()
        for tracker in getattr(self, "_output_loss_trackers", {}).values():
            tracker.reset_state()
        if self._compiled_metrics is not None:
            self._compiled_metrics.reset_state()
        self._reset_attribute_metrics()

    def _reset_attribute_metrics(self):
        """Find the metrics the model and its layers hold (again: layers may have made some while
        building) and reset them, as Keras does at each epoch's start."""
        self.__dict__["_attribute_metrics"] = self._find_attribute_metrics()
        for metric in self.__dict__["_attribute_metrics"]:
            metric.reset_state()

    def _step_losses(self):
        """Regularization penalties and `add_loss` terms of this step (cached walk while training)."""
        regularized = self._regularized_variables
        if regularized is None:
            return self.losses
        return [regularizer(v) for v, regularizer in regularized if v.trainable] + pending_call_losses()

    def _trainable_for_step(self):
        distributed.prepare_model(self)
        self._regularized_variables = [
            (v, v.regularizer)
            for layer in self._flatten_layers()
            for v in layer._own_trainable + layer._own_non_trainable
            if getattr(v, "regularizer", None) is not None
        ]
        variables = [v for v in self.trainable_variables if v.requires_grad]
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)
        distributed.after_optimizer_built(self)
        return variables

    def _forward_and_loss(self, x, y, sample_weight, training):
        y_pred = self._call_in_step(x, training)
        if self._overrides("compute_metrics"):
            self.__dict__["_step_prediction"] = y_pred  # for `_overriding_metrics_logs`
        if type(self).compute_loss is Trainer.compute_loss:
            return self._loss_parts(x, y, y_pred, sample_weight, training)
        # As Keras: positional arguments, and `training` only to overrides that take it (it came in Keras 3.3).
        if "training" in inspect.signature(self.compute_loss).parameters:
            loss = self.compute_loss(x, y, y_pred, sample_weight, training=training)
        else:
            loss = self.compute_loss(x, y, y_pred, sample_weight)
        if y is None:
            self._ensure_compiled_objects(y_pred)
            return loss, [], [], [], []
        # As Keras: the override reads the targets, so fewer of them than outputs is no error.
        targets, predictions, weights = self._match_batch(y, y_pred, sample_weight, pad_missing=True)
        return loss, [None] * len(predictions), targets, predictions, weights

    def _forward(self, x):
        return self._call_in_step(x, False)

    def _call_in_step(self, x, training):
        """As Keras's built-in steps: `training` goes only to a `call` that declares it; other
        models run with it unset, so their layers take their own defaults (inference)."""
        return self(x, training=training) if _call_signature_flags(type(self))[0] else self(x)

    def _step_function(self, name):
        """The eager method `name`, or (with `jit_compile=True`, after one eager batch has created
        the losses and metrics) its `torch.compile`d version, made once per compile."""
        function = getattr(self, name)
        jitted = self.__dict__.get("_jit_steps")
        if jitted is None or self.run_eagerly:
            return function
        if name not in jitted:
            jitted[name] = None  # the first batch runs eagerly
            return function
        if jitted[name] is None:
            jitted[name] = torch.compile(function)
        return jitted[name]

    def train_step(self, data):
        """One optimizer update on a batch `(x, y[, sample_weight])`; returns the logs (Keras 3).

        Override it with Keras 3's torch-backend code (`self.zero_grad()`, `loss.backward()`,
        `self.optimizer.apply(...)`) to take over the update; `fit` then calls the override.
        """
        x, y, sample_weight = data_module.unpack(data)
        self._train_batch(x, y, sample_weight, self._trainable_for_step())
        return self.get_metrics_result()

    def test_step(self, data):
        """Loss and metrics of a batch `(x, y[, sample_weight])`; returns the logs (Keras 3)."""
        x, y, sample_weight = data_module.unpack(data)
        self._test_batch(x, y, sample_weight)
        return self.get_metrics_result()

    def predict_step(self, data):
        """The model's outputs for a batch (Keras 3); `data` is `x` or `(x,)`."""
        x, _, _ = data_module.unpack(data)
        return self._predict_batch(x)

    def _train_batch(self, x, y, sample_weight, variables):
        """The default update: forward, loss, gradients, optimizer step, metrics."""
        with distributed.compute_scope(self):
            loss, per_output, targets, predictions, weights = self._step_function("_forward_and_loss")(x, y, sample_weight, True)
            grads = torch.autograd.grad(self.optimizer.scale_loss(loss), variables, allow_unused=True) if variables else ()
        if variables:
            grads = distributed.reduce_gradients(self, grads, variables, _batch_size(x))
            pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
            self.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        else:
            warnings.warn("The model does not have any trainable weights.", stacklevel=2)
        self._record(loss, per_output, targets, predictions, weights, _batch_size(x))
        return self._overriding_metrics_logs(x, y, sample_weight)

    def _overriding_metrics_logs(self, x, y, sample_weight):
        """As Keras: a `compute_metrics` override replaces the compiled metrics' update of the
        built-in steps, and what it returns is the step's logs (None without an override)."""
        if not self._overrides("compute_metrics"):
            return None
        with torch.no_grad():
            return self.compute_metrics(x, y, self.__dict__.pop("_step_prediction"), sample_weight)

    def _test_batch(self, x, y, sample_weight):
        with torch.no_grad(), distributed.compute_scope(self):
            loss, per_output, targets, predictions, weights = self._step_function("_forward_and_loss")(x, y, sample_weight, False)
            self._record(loss, per_output, targets, predictions, weights, _batch_size(x))
        return self._overriding_metrics_logs(x, y, sample_weight)

    def _predict_batch(self, x):
        with torch.no_grad(), distributed.compute_scope(self):
            return self._step_function("_forward")(x)

    def _overrides(self, name):
        """True when the model's class replaces Trainer's `name` (a Keras-style custom step), or the
        model itself does (`self.train_step = self.train_step_torch`: Keras calls `self.train_step`)."""
        return name in self.__dict__ or getattr(type(self), name) is not getattr(Trainer, name)

    def _prepare_custom_step(self, x, y):
        """Before a custom `train_step` / `test_step` first runs: create the compiled metrics from
        one forward pass, so that iterating `self.metrics` finds them as in Keras. Keras makes that
        pass symbolically, so a `call` that assigns a variable (a usage counter) keeps nothing."""
        if y is None or not self.compiled or self._metrics_created or not self._compiles_outputs():
            return
        if type(self).call is Layer.call:  # a GAN-style model with no `call` of its own has no outputs to match
            return
        with torch.no_grad(), build_only_call():
            y_pred = self(x, training=False)
            targets, predictions, _ = self._match_batch(y, y_pred, None)
            self._create_metrics(targets, predictions)

    def _first_batch_draws(self, batches):
        """As Keras: the first `fit` / `evaluate` after `compile` (or on a model with unbuilt layers)
        reads one batch to build the model, loss and metrics; on arrays that read draws from
        torch's global generator, which keramic reproduces so that later unseeded draws match."""
        built_from_a_batch = self.__dict__.get("_built_from_a_batch", False)
        self.__dict__["_built_from_a_batch"] = True
        args = self._compile_args or {}
        structures = args.get("loss") is not None or args.get("metrics") is not None or args.get("weighted_metrics") is not None
        layers_built = all(getattr(layer, "built", True) for layer in self._flatten_layers())
        if not (layers_built and (built_from_a_batch or not structures)) and hasattr(batches, "first_batch_draws"):
            batches.first_batch_draws()
        py_dataset = _py_dataset(batches)
        if py_dataset is not None:  # as Keras's `epoch_iterator.reset()` after that build, built or not
            py_dataset.on_epoch_end()  # (a dataset that reshuffles there trains its first epoch on the new order)

    def _build_before_training(self, x):
        """Build the model (a first call) so that the optimizer can see every variable."""
        # As Keras: any unbuilt layer (one a custom RNN cell makes in its first step) asks for the call.
        unbuilt = not all(getattr(layer, "built", True) for layer in self._flatten_layers())
        if unbuilt and type(self).call is not Layer.call:  # a GAN-style model may have no `call`
            try:
                with build_only_call():
                    self._predict_batch(x)
            except ValueError:
                raise
            except Exception as error:  # as Keras: a model whose `call` cannot take the batch
                raise RuntimeError(
                    "Unable to automatically build the model. Please build it yourself before calling "
                    "fit/evaluate/predict. A model is 'built' when its variables have been created and its "
                    "`self.built` attribute is True. Usually, calling the model on a batch of data is the right "
                    f"way to build it.\nException encountered:\n'{error}'"
                ) from error

    # ------------------------------------------------------------------ loops
    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        validation_split=0.0,
        validation_data=None,
        shuffle=True,
        class_weight=None,
        sample_weight=None,
        initial_epoch=0,
        steps_per_epoch=None,
        validation_steps=None,
        validation_batch_size=None,
        validation_freq=1,
    ):
        """Train for `epochs` epochs; returns a `History` whose `.history` maps log names to lists."""
        from keramic.training.callbacks import CallbackList

        self._assert_compiled("fit")
        verbose = _default_verbose(verbose)
        max_epochs = config.max_epochs()
        if max_epochs and max_epochs < epochs:
            warnings.warn(f"Limiting epochs to {max_epochs}")
            epochs = max_epochs
        if validation_split and validation_data is None:
            x, y, sample_weight = map(data_module.to_tensors, (x, y, sample_weight))
            (x, y, sample_weight), validation_data = data_module.split_validation(x, y, sample_weight, validation_split)
        if class_weight is not None:
            if sample_weight is not None:
                raise ValueError("Arguments `sample_weight` and `class_weight` cannot be given together.")
            if y is not None:
                sample_weight = data_module.class_weights_to_sample_weights(data_module.to_tensors(y), class_weight)
                class_weight = None  # a dataset's batches get theirs as they are read
        batches = _make_batches(x, y, sample_weight, batch_size, shuffle, steps_per_epoch, self._device, class_weight)
        validation = None
        if validation_data is not None:
            vx, vy, vw = data_module.unpack(validation_data)
            validation = _make_batches(vx, vy, vw, validation_batch_size or batch_size, False, validation_steps, self._device)

        self._first_batch_draws(batches)
        callback_list = CallbackList(
            callbacks, add_history=True, add_progbar=verbose != 0, model=self, verbose=verbose, epochs=epochs, steps=batches.steps
        )
        self.stop_training = False
        callback_list.on_train_begin()
        # `BackupAndRestore` resumes an interrupted fit: at its epoch, skipping the batches that epoch
        # had trained (drawn in the same order: the callback restored the RNG at the epoch's start).
        initial_epoch, skip = self.__dict__.pop("_resume_at", (initial_epoch, 0))
        epoch_logs = {}
        variables = None
        custom = self._overrides("train_step")
        own_logs = custom or self._overrides("compute_metrics")  # the step's logs, not the trackers'
        for epoch in range(initial_epoch, epochs):
            self._reset_trackers()
            if custom or self._overrides("metrics"):
                self.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            step, logs = -1, {}
            for step, batch in enumerate(batches):
                bx, by, bw = batch
                if skip:
                    skip -= 1
                    if not skip:  # before the next batch is read: `BackupAndRestore` puts back the RNG of that moment
                        after_skip = self.__dict__.pop("_after_skipped_batches", None)
                        if after_skip is not None:
                            after_skip()
                    continue
                if variables is None:
                    self._build_before_training(bx)
                    variables = self._trainable_for_step()
                    self._reset_attribute_metrics()  # the building call must not count in them
                    if custom:
                        self._prepare_custom_step(bx, by)
                callback_list.on_train_batch_begin(step)
                if custom:
                    with distributed.global_gradients_in_custom_steps(self, _batch_size(bx)):
                        logs = self.train_step(_step_data(batch)) or {}  # as returned: callbacks flatten it as Keras does
                else:
                    logs = self._train_batch(bx, by, bw, variables)
                    if logs is None:
                        logs = self._logs() if callback_list.wants_batch_logs["on_train_batch_end"] else None
                callback_list.on_train_batch_end(step, logs)
                if self.stop_training:
                    break
            if step < 0:
                raise ValueError("fit() received no data: the input produced no batches.")
            epoch_logs = _pythonify(self._metrics_result_or_logs(logs), keep_nesting=True) if own_logs else _pythonify(self._logs())
            if validation is not None and (epoch + 1) % validation_freq == 0:
                # As Keras: validation runs the test hooks (SwapEMAWeights, TensorBoard use them), after
                # the draws of its build from a batch (each time while some layer is still unbuilt).
                self._first_batch_draws(validation)
                callback_list.on_test_begin()
                val_logs = self._evaluate_batches(validation, callbacks=callback_list)
                callback_list.on_test_end(val_logs)
                epoch_logs.update({f"val_{key}": value for key, value in val_logs.items()})
            callback_list.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        if hasattr(self.optimizer, "finalize_variable_values") and variables:
            self.optimizer.finalize_variable_values(variables)
        callback_list.on_train_end(epoch_logs)
        self.history = callback_list.history
        return self.history

    def _evaluate_batches(self, batches, callbacks):
        source = batches.batches if isinstance(batches, _FirstSteps) else batches
        if isinstance(source, data_module.EpochSteps):
            source.restart()  # as Keras: each validation reads `validation_steps` from the data's start
        self._reset_trackers()
        custom = self._overrides("test_step")
        own_logs = custom or self._overrides("compute_metrics")
        if custom or self._overrides("metrics"):
            self.reset_metrics()
        step, logs = -1, {}
        for step, batch in enumerate(batches):
            bx, by, bw = batch
            if callbacks is not None:
                callbacks.on_test_batch_begin(step)
            if custom:
                if step == 0:
                    self._prepare_custom_step(bx, by)
                logs = self.test_step(_step_data(batch)) or {}
            else:
                logs = self._test_batch(bx, by, bw)
                if logs is None:
                    logs = self._logs() if callbacks is not None and callbacks.wants_batch_logs["on_test_batch_end"] else None
            if callbacks is not None:
                callbacks.on_test_batch_end(step, logs)
        if step < 0:
            raise ValueError("evaluate() received no data: the input produced no batches.")
        return _pythonify(self._metrics_result_or_logs(logs) if own_logs else self._logs())

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None, callbacks=None, return_dict=False):
        """Loss and metrics on the data: a scalar, a list in `metrics_names` order, or a dict."""
        from keramic.training.callbacks import CallbackList

        self._assert_compiled("evaluate")
        verbose = _default_verbose(verbose)
        batches = _make_batches(x, y, sample_weight, batch_size, False, steps, self._device)
        self._first_batch_draws(batches)
        callback_list = CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose, epochs=1, steps=batches.steps)
        callback_list.on_test_begin()
        logs = self._evaluate_batches(batches, callback_list)
        self._build_optimizer_as_evaluation_does()
        callback_list.on_test_end(logs)
        return self._format_results(logs, return_dict)

    def _build_optimizer_as_evaluation_does(self):
        """Keras's evaluate and test_on_batch build the optimizer too (its variables then show in
        `summary()` and go into saved files)."""
        if self.optimizer is not None and not self.optimizer.built and self.built:
            self.optimizer.build(self.trainable_variables)

    def _format_results(self, logs, return_dict):
        if return_dict:
            return logs
        order = self._result_order()
        values = [logs[name] for name in order if name in logs] + [logs[key] for key in sorted(logs) if key not in order]
        return values[0] if len(values) == 1 else values

    def _result_order(self):
        """The names Keras lists results by: each entry of `metrics`, the compiled metrics' own
        (unprefixed) names in place of `compile_metrics`; the logs' other entries follow, sorted."""
        order = []
        for metric in self.metrics:
            order += [sub.name for sub in metric.metrics] if isinstance(metric, CompileMetrics) else [metric.name]
        return order

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Outputs for `x` as numpy arrays (batched; `training=False`)."""
        from keramic.training.callbacks import CallbackList

        verbose = _default_verbose(verbose)
        batches = _make_batches(x, None, None, batch_size, False, steps, self._device)
        callback_list = CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose, epochs=1, steps=batches.steps)
        callback_list.on_predict_begin()
        outputs = []
        custom = self._overrides("predict_step")
        for step, (bx, _, _) in enumerate(batches):
            callback_list.on_predict_batch_begin(step)
            if custom:
                with torch.no_grad():
                    outputs.append(self.predict_step(bx))
            else:
                outputs.append(self._predict_batch(bx))
            outputs[-1] = distributed.gather_outputs(outputs[-1])  # every process's rows of the global batch
            callback_list.on_predict_batch_end(step, {"outputs": outputs[-1]})
        callback_list.on_predict_end()
        if not outputs:
            raise ValueError("predict() received no data: the input produced no batches.")
        return _concat(outputs)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One update on one batch; returns the loss (and metrics) of that batch."""
        self._assert_compiled("train_on_batch")
        x, y, sample_weight = (data_module.to_tensors(part, self._device) for part in (x, y, sample_weight))
        if class_weight is not None:
            if sample_weight is not None:
                raise ValueError("Arguments `sample_weight` and `class_weight` cannot be given together.")
            sample_weight = data_module.class_weights_to_sample_weights(y, class_weight)
        self._build_before_training(x)
        variables = self._trainable_for_step()
        self.__dict__["_built_from_a_batch"] = True  # as Keras's build from this batch (no draws)
        if self._overrides("train_step"):  # as Keras: the model's own step on `(x, y, sample_weight)`
            self._prepare_custom_step(x, y)
            with distributed.global_gradients_in_custom_steps(self, _batch_size(x)):
                return self._format_results(_pythonify(self.train_step((x, y, sample_weight))), return_dict)
        self._reset_trackers()
        self._train_batch(x, y, sample_weight, variables)
        return self._format_results(_pythonify(self._logs()), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._assert_compiled("test_on_batch")
        x, y, sample_weight = (data_module.to_tensors(part, self._device) for part in (x, y, sample_weight))
        self.__dict__["_built_from_a_batch"] = True  # as Keras's build from this batch (no draws)
        if self._overrides("test_step"):  # as Keras: the model's own step on `(x, y, sample_weight)`
            self._prepare_custom_step(x, y)
            return self._format_results(_pythonify(self.test_step((x, y, sample_weight))), return_dict)
        self._reset_trackers()
        self._test_batch(x, y, sample_weight)
        self._build_optimizer_as_evaluation_does()
        return self._format_results(_pythonify(self._logs()), return_dict)

    def predict_on_batch(self, x):
        return _to_numpy(self._predict_batch(data_module.to_tensors(x, self._device)))


def _step_data(batch):
    """What a custom step receives: an iterable source's batch as Keras passes it, else `_pack`."""
    return batch.step_data if isinstance(batch, data_module.StepBatch) else _pack(*batch)


def _pack(x, y, sample_weight):
    """A batch as Keras hands it to `train_step`: `x`, `(x, y)` or `(x, y, sample_weight)`; as
    `keras.utils.pack_x_y_sample_weight`, an `x` that is a list or tuple comes as `(x,)`, so that
    `fit([a, b])` is not read as `(x, y)`."""
    if y is None and sample_weight is None:
        return (x,) if isinstance(x, (list, tuple)) else x
    return (x, y) if sample_weight is None else (x, y, sample_weight)


def _batch_size(x):
    return int(flatten(x)[0].shape[0])


def _deserialize_losses(spec, custom_objects):
    if spec is None or isinstance(spec, str):
        return spec
    if isinstance(spec, list):
        return [_deserialize_losses(item, custom_objects) for item in spec]
    if isinstance(spec, dict) and "class_name" not in spec:
        return {key: _deserialize_losses(value, custom_objects) for key, value in spec.items()}
    return deserialize_keras_object(spec, ("keras.losses",), custom_objects)


def _deserialize_metrics(spec, custom_objects):
    if spec is None or isinstance(spec, str):
        return spec
    if isinstance(spec, list):
        return [_deserialize_metrics(item, custom_objects) for item in spec]
    if isinstance(spec, dict) and "class_name" not in spec:
        return {key: _deserialize_metrics(value, custom_objects) for key, value in spec.items()}
    return deserialize_keras_object(spec, ("keras.metrics",), custom_objects)

