"""Keras 3 callbacks: hooks into fit / evaluate / predict, and the list that dispatches them.

`CallbackList` works out once which callbacks override each hook, so a per-batch hook that no
callback listens to costs about a microsecond. Batch logs reach the built-in callbacks as given
(floats or 0-d tensors); they read a number only when they need one, so a training step is not
forced to wait for the device. Callbacks written by users get plain floats, as in Keras.
"""

import csv
import math
import os
import warnings

import numpy as np
import torch

from keramic.distribution import collectives
from keramic.serialization.registry import keras_export
from keramic.training.compile_metrics import CompileMetrics
from keramic.training.progress import Progbar, print_msg

_BATCH_HOOKS = (
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
)
_RUN_HOOKS = (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_test_begin",
    "on_test_end",
    "on_predict_begin",
    "on_predict_end",
)
# Keras's older names: the base train-batch hooks forward to them.
_BATCH_ALIASES = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end"}


def _to_python(value):
    if isinstance(value, torch.Tensor):
        return float(value) if value.ndim == 0 and not value.is_complex() else value
    if isinstance(value, (np.ndarray, np.generic)) and value.ndim == 0 and value.dtype.kind in "biuf":
        return float(value)
    return value


def keras_ordered_logs(logs) -> list:
    """(name, value) pairs of `logs` in Keras's order: sorted by name, a nested dict (a custom
    step's `compile_metrics` result) flattened in its place."""
    items: list = []
    for key, value in sorted(logs.items()):
        items += keras_ordered_logs(value) if isinstance(value, dict) else [(key, value)]
    return items


def _plain_logs(logs):
    """A sorted, flat copy of `logs` with scalar tensors and arrays as floats, as Keras hands them out."""
    return {key: _to_python(value) for key, value in keras_ordered_logs(logs)} if logs else {}


@keras_export("keras.callbacks")
class Callback:
    """Base class: override the hooks you need; the rest do nothing and are never called in a loop."""

    def __init__(self):
        self.model = None
        self.params = None

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_batch_begin(self, batch, logs=None):
        """Older name for `on_train_batch_begin`."""

    def on_batch_end(self, batch, logs=None):
        """Older name for `on_train_batch_end`."""

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch, logs=None):
        pass

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_predict_batch_begin(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass


def _overrides(callback, hook):
    """Whether `callback` does something in `hook` (a method of its own, or a function set on it)."""
    method = getattr(callback, hook)
    return getattr(method, "__func__", None) is not getattr(Callback, hook)


def _listens(callback, hook):
    alias = _BATCH_ALIASES.get(hook)
    return _overrides(callback, hook) or (alias is not None and _overrides(callback, alias))


def _call_batch_hook(listeners, batch, logs):
    logs = {} if logs is None else logs
    plain = None
    for method, wants_plain in listeners:
        if wants_plain:
            if plain is None:
                plain = _plain_logs(logs)
            method(batch, logs=plain)
        else:
            method(batch, logs=logs)


@keras_export("keras.callbacks")
class CallbackList(Callback):
    """Calls every hook on each callback in order: the user's, then `History`, then `ProgbarLogger`."""

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None, **params):
        super().__init__()
        if isinstance(callbacks, Callback):
            callbacks = [callbacks]
        self.callbacks = list(callbacks or ())
        chief_only = [cb for cb in self.callbacks if getattr(cb, "_chief_only", False)]
        if not collectives.is_chief():  # callbacks that print or write log files run on rank 0 only
            self.callbacks = [cb for cb in self.callbacks if not getattr(cb, "_chief_only", False)]
        self.history = next((cb for cb in self.callbacks if isinstance(cb, History)), None)
        if self.history is None and add_history:
            self.history = History()
            self.callbacks.append(self.history)
        if add_progbar and not any(isinstance(cb, ProgbarLogger) for cb in self.callbacks):
            self.callbacks.append(ProgbarLogger())
        self.set_model(model)
        self.set_params(params)
        # hook -> bound methods of the callbacks that act on it. Batch hooks pair each with whether
        # it wants plain floats: only classes with `_takes_tensor_logs = True` read tensors themselves.
        self._listeners = {}
        for hook in _RUN_HOOKS + _BATCH_HOOKS:
            listening = [cb for cb in self.callbacks if _listens(cb, hook)]
            if hook in _BATCH_HOOKS:
                self._listeners[hook] = tuple((getattr(cb, hook), not getattr(cb, "_takes_tensor_logs", False)) for cb in listening)
            else:
                self._listeners[hook] = tuple(getattr(cb, hook) for cb in listening)
        # Whether the loops compute logs for a batch hook at all. Every process decides alike (rank 0's
        # own callbacks count everywhere): under keras.distribution the logs are a collective.
        self.wants_batch_logs = {
            hook: bool(self._listeners[hook]) or any(_listens(cb, hook) for cb in chief_only) for hook in _BATCH_HOOKS
        }

    def set_model(self, model):
        if model is None:
            return
        super().set_model(model)
        if self.history is not None:
            model.history = self.history
        for callback in self.callbacks:
            callback.set_model(model)

    def set_params(self, params):
        self.params = params
        if params:
            for callback in self.callbacks:
                callback.set_params(params)

    def _run_hook(self, hook, logs):
        listeners = self._listeners[hook]
        if listeners:
            logs = _plain_logs(logs)
            for method in listeners:
                method(logs)

    def _epoch_hook(self, hook, epoch, logs):
        listeners = self._listeners[hook]
        if listeners:
            logs = _plain_logs(logs)
            for method in listeners:
                method(epoch, logs)

    def on_train_begin(self, logs=None):
        self._run_hook("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._run_hook("on_train_end", logs)

    def on_test_begin(self, logs=None):
        self._run_hook("on_test_begin", logs)

    def on_test_end(self, logs=None):
        self._run_hook("on_test_end", logs)

    def on_predict_begin(self, logs=None):
        self._run_hook("on_predict_begin", logs)

    def on_predict_end(self, logs=None):
        self._run_hook("on_predict_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_hook("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._epoch_hook("on_epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        listeners = self._listeners["on_train_batch_begin"]
        if listeners:
            _call_batch_hook(listeners, batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        listeners = self._listeners["on_train_batch_end"]
        if listeners:
            _call_batch_hook(listeners, batch, logs)

    def on_test_batch_begin(self, batch, logs=None):
        listeners = self._listeners["on_test_batch_begin"]
        if listeners:
            _call_batch_hook(listeners, batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        listeners = self._listeners["on_test_batch_end"]
        if listeners:
            _call_batch_hook(listeners, batch, logs)

    def on_predict_batch_begin(self, batch, logs=None):
        listeners = self._listeners["on_predict_batch_begin"]
        if listeners:
            _call_batch_hook(listeners, batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        listeners = self._listeners["on_predict_batch_end"]
        if listeners:
            _call_batch_hook(listeners, batch, logs)


@keras_export("keras.callbacks")
class History(Callback):
    """Records the epoch logs; `fit` returns it. `history[name]` lists one value per epoch."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            self.model.history = self


@keras_export("keras.callbacks")
class ProgbarLogger(Callback):
    """Prints the progress bar for fit, evaluate and predict (validation inside fit stays quiet)."""

    _takes_tensor_logs = True
    _chief_only = True  # under keras.distribution only rank 0 prints

    def __init__(self):
        super().__init__()
        self.verbose = 1
        self.epochs = 1
        self.target = None
        self.seen = 0
        self.progbar = None
        self._in_fit = False

    def set_params(self, params):
        super().set_params(params)
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else verbose
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def _start_bar(self):
        self.seen = 0
        # Every value is shown as given: the trainer's logs are already running means.
        self.progbar = Progbar(self.target, verbose=self.verbose, stateless_metrics=())

    def _update(self, batch, logs):
        if self.progbar is None:  # a hand-written loop may skip the begin hook
            self._start_bar()
        self.seen = batch + 1
        # Values matter only to a bar that redraws; the others still learn the step count and time.
        values = keras_ordered_logs(logs) if logs and self.progbar.live else None
        self.progbar.update(self.seen, values, finalize=False)

    def _finish(self, logs):
        if self.progbar.target is None:
            self.progbar.target = self.seen
        self.progbar.update(self.progbar.target, list((logs or {}).items()), finalize=True)

    def on_train_begin(self, logs=None):
        self._in_fit = True

    def on_train_end(self, logs=None):
        self._in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        self._start_bar()
        if self.verbose and self.epochs > 1:
            print_msg(f"Epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch, logs=None):
        self._update(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._finish(logs)

    def on_test_begin(self, logs=None):
        if not self._in_fit:
            self._start_bar()

    def on_test_batch_end(self, batch, logs=None):
        if not self._in_fit:
            self._update(batch, logs)

    def on_test_end(self, logs=None):
        if not self._in_fit:
            self._finish(logs)

    def on_predict_begin(self, logs=None):
        self._start_bar()

    def on_predict_batch_end(self, batch, logs=None):
        self._update(batch, None)  # the logs hold the predictions, not metrics

    def on_predict_end(self, logs=None):
        self._finish(logs)


class _MonitorCallback(Callback):
    """Watches one logged quantity and decides whether a new value improves on a reference."""

    def __init__(self, monitor, mode, min_delta):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"{type(self).__name__} mode '{mode}' is unknown, fallback to auto mode.", stacklevel=3)
            mode = "auto"
        self.monitor = monitor
        self.mode = mode
        self.min_delta = abs(min_delta)
        self.best = None
        self._lower_is_better = None

    def _resolve_direction(self):
        if self._lower_is_better is None:
            self._lower_is_better = self._direction_is_down()

    def _direction_is_down(self):
        if self.mode != "auto":
            return self.mode == "min"
        name = self.monitor.removeprefix("val_")
        if name == "loss":
            return True
        tracked = []
        for metric in getattr(self.model, "metrics", None) or ():  # Keras looks inside `compile_metrics`
            tracked += metric.metrics if isinstance(metric, CompileMetrics) else [metric]
        for metric in tracked:
            direction = getattr(metric, "_direction", None)
            if getattr(metric, "name", None) == name and direction in ("up", "down"):
                return direction == "down"
        raise ValueError(
            f"{type(self).__name__} callback received monitor={self.monitor}, but it cannot tell whether "
            "that metric should be maximized or minimized. Pass `mode='max'` in order to monitor based on "
            "the highest metric value, or pass `mode='min'` in order to use the lowest value."
        )

    def _is_improvement(self, value, reference):
        if reference is None:
            return True
        if self._lower_is_better:
            return value + self.min_delta < reference
        return value - self.min_delta > reference


@keras_export("keras.callbacks")
class EarlyStopping(_MonitorCallback):
    """Stops training once `monitor` has not improved for `patience` epochs."""

    def __init__(
        self,
        monitor="val_loss",
        min_delta=0,
        patience=0,
        verbose=0,
        mode="auto",
        baseline=None,
        restore_best_weights=False,
        start_from_epoch=0,
    ):
        super().__init__(monitor, mode, min_delta)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait = 0
        self.stopped_epoch = 0
        self.best_weights = None
        self.best_epoch = 0

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        self._resolve_direction()
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # Something to restore even when no epoch beats the baseline.
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(
                f"Early stopping conditioned on metric `{self.monitor}` which is not available. "
                f"Available metrics are: {','.join(logs)}",
                stacklevel=2,
            )
        return value


def _learning_rate(optimizer):
    return float(optimizer.learning_rate)


@keras_export("keras.callbacks")
class LearningRateScheduler(Callback):
    """Sets the learning rate at the start of each epoch to `schedule(epoch, lr)` (or `schedule(epoch)`)."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        if not hasattr(optimizer, "learning_rate"):
            raise ValueError('Optimizer must have a "learning_rate" attribute.')
        try:
            learning_rate = self.schedule(epoch, _learning_rate(optimizer))
        except TypeError:  # a one-argument schedule, as older Keras accepted
            learning_rate = self.schedule(epoch)
        if isinstance(learning_rate, torch.Tensor) and learning_rate.ndim == 0 and learning_rate.is_floating_point():
            learning_rate = float(learning_rate)
        if not isinstance(learning_rate, (float, np.floating)):
            raise ValueError(f"The output of the `schedule` function should be a float. Got: {learning_rate}")
        optimizer.learning_rate = learning_rate
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {learning_rate}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _learning_rate(self.model.optimizer)


@keras_export("keras.callbacks")
class ReduceLROnPlateau(_MonitorCallback):
    """Multiplies the learning rate by `factor` once `monitor` has not improved for `patience` epochs."""

    def __init__(
        self,
        monitor="val_loss",
        factor=0.1,
        patience=10,
        verbose=0,
        mode="auto",
        min_delta=1e-4,
        cooldown=0,
        min_lr=0.0,
    ):
        super().__init__(monitor, mode, min_delta)
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}")
        self.factor = factor
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.cooldown_counter = 0
        self.wait = 0

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def on_train_begin(self, logs=None):
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def on_epoch_end(self, epoch, logs=None):
        self._resolve_direction()
        logs = {} if logs is None else logs
        logs["learning_rate"] = _learning_rate(self.model.optimizer)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(
                f"Learning rate reduction is conditioned on metric `{self.monitor}` which is not available. "
                f"Available metrics are: {','.join(logs)}.",
                stacklevel=2,
            )
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience and self._reduce(epoch):
                self.cooldown_counter = self.cooldown
                self.wait = 0

    def _reduce(self, epoch):
        old_lr = _learning_rate(self.model.optimizer)
        # The rate is stored in float32: a rate already at `min_lr` reads back as float32(min_lr).
        if old_lr <= float(np.float32(self.min_lr)):
            return False
        new_lr = max(old_lr * self.factor, self.min_lr)
        self.model.optimizer.learning_rate = new_lr
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
        return True


def _csv_value(value):
    if isinstance(value, np.ndarray) and value.ndim > 0:
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return f"[{', '.join(map(str, value))}]"
    return value


@keras_export("keras.callbacks")
class CSVLogger(Callback):
    """Writes one CSV row per epoch: `epoch`, then the logged values in sorted key order."""

    _chief_only = True  # under keras.distribution only rank 0 writes the file

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = append
        self.keys = None
        self.csv_file = None
        self.writer = None
        self.append_header = True

    def on_train_begin(self, logs=None):
        if self.append:
            if os.path.exists(self.filename):
                with open(self.filename, encoding="utf-8") as existing:
                    self.append_header = not existing.readline()
            mode = "a"
        else:
            mode = "w"
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, mode, newline="", encoding="utf-8")
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(key.startswith("val_") for key in self.keys):
                # Reserve validation columns so later epochs with validation still fit the header.
                self.keys += [f"val_{key}" for key in self.keys]
        if self.writer is None:
            self.writer = csv.writer(self.csv_file, delimiter=self.sep)
            if self.append_header:
                self.writer.writerow(["epoch", *self.keys])
        self.writer.writerow([epoch, *(_csv_value(logs.get(key, "NA")) for key in self.keys)])
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None


@keras_export("keras.callbacks")
class LambdaCallback(Callback):
    """A callback made of plain functions: `LambdaCallback(on_epoch_end=lambda epoch, logs: ...)`.

    Functions for the other hooks are passed by hook name, e.g. `on_test_end=fn`.
    """

    def __init__(
        self,
        on_epoch_begin=None,
        on_epoch_end=None,
        on_train_begin=None,
        on_train_end=None,
        on_train_batch_begin=None,
        on_train_batch_end=None,
        **kwargs,
    ):
        super().__init__()
        unknown = sorted(name for name in kwargs if not (name.startswith("on_") and hasattr(Callback, name)))
        if unknown:
            raise TypeError(f"LambdaCallback got unknown hooks: {unknown}")
        hooks = dict(
            kwargs,
            on_epoch_begin=on_epoch_begin,
            on_epoch_end=on_epoch_end,
            on_train_begin=on_train_begin,
            on_train_end=on_train_end,
            on_train_batch_begin=on_train_batch_begin,
            on_train_batch_end=on_train_batch_end,
        )
        for name, function in hooks.items():
            if function is not None:
                setattr(self, name, function)


@keras_export("keras.callbacks")
class TerminateOnNaN(Callback):
    """Stops training when a batch loss is NaN or infinite (or raises, with `raise_error=True`)."""

    _takes_tensor_logs = True

    def __init__(self, raise_error=False):
        super().__init__()
        self.raise_error = raise_error

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        if math.isfinite(loss):
            return
        if self.raise_error:
            raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: {loss}. Terminating training immediately.")
        print(f"Batch {batch}: Invalid loss, terminating training")
        self.model.stop_training = True
