"""Callbacks on scripted log sequences against a fake model, the dispatch fast path, and Keras parity."""

import io
import math
import re
import sys

import numpy as np
import pytest
import torch

from keramic.serialization.registry import public_objects
from keramic.training import callbacks as cbs
from keramic.training.callbacks import (
    Callback,
    CallbackList,
    CSVLogger,
    EarlyStopping,
    History,
    LambdaCallback,
    LearningRateScheduler,
    ProgbarLogger,
    ReduceLROnPlateau,
    TerminateOnNaN,
)

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TIME = r"\d+s \d+(?:s|ms|us)/step"


class FakeOptimizer:
    """Keeps its rate as a float32 0-d tensor, like an optimizer's `learning_rate` variable."""

    def __init__(self, learning_rate=0.01):
        self.learning_rate = learning_rate

    @property
    def learning_rate(self):
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self._learning_rate = torch.tensor(float(value), dtype=torch.float32)


class FakeModel:
    def __init__(self, learning_rate=0.01, metrics=()):
        self.stop_training = False
        self.optimizer = FakeOptimizer(learning_rate)
        self.metrics = list(metrics)
        self.weights = [np.zeros(2)]

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]


class FakeMetric:
    def __init__(self, name, direction):
        self.name = name
        self._direction = direction


class Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


class Recorder(Callback):
    """Records every hook call as (hook, index or None, logs)."""

    def __init__(self):
        super().__init__()
        self.calls = []


def _recording(hook):
    def record(self, *args, **kwargs):
        self.calls.append((hook, args, kwargs))

    return record


for _hook in cbs._RUN_HOOKS + cbs._BATCH_HOOKS:
    setattr(Recorder, _hook, _recording(_hook))


def fit_epochs(callback, model, epoch_logs):
    """Drive the epoch-level hooks of a fit over scripted logs; returns the number of epochs run.

    The weights become `[epoch, epoch]` during each epoch so restored weights name their epoch.
    Works for keramic's and real Keras's callbacks alike.
    """
    callback.set_model(model)
    callback.on_train_begin({})
    ran = 0
    for epoch, logs in enumerate(epoch_logs):
        callback.on_epoch_begin(epoch, {})
        model.weights = [np.full(2, float(epoch))]
        callback.on_epoch_end(epoch, dict(logs))
        ran += 1
        if model.stop_training:
            break
    callback.on_train_end({})
    return ran


def losses(*values, key="val_loss"):
    return [{key: v} for v in values]


# ---------------------------------------------------------------- CallbackList
def test_order_is_user_callbacks_then_history_then_progbar():
    user = Recorder()
    model = FakeModel()
    callback_list = CallbackList([user], add_history=True, add_progbar=True, model=model, verbose=1, epochs=2, steps=3)
    history, progbar = callback_list.callbacks[1:]
    assert callback_list.callbacks[0] is user and isinstance(history, History) and isinstance(progbar, ProgbarLogger)
    assert callback_list.history is history and model.history is history
    assert all(cb.model is model for cb in callback_list.callbacks)
    assert user.params == {"verbose": 1, "epochs": 2, "steps": 3} and progbar.target == 3


def test_user_history_and_progbar_are_reused_not_duplicated():
    history, progbar = History(), ProgbarLogger()
    callback_list = CallbackList([progbar, history], add_history=True, add_progbar=True, verbose=0, epochs=1, steps=1)
    assert callback_list.callbacks == [progbar, history] and callback_list.history is history
    assert CallbackList(Recorder()).history is None  # a single callback is accepted too


def test_every_hook_reaches_every_callback_in_order_with_keras_argument_style():
    first, second = Recorder(), Recorder()
    callback_list = CallbackList([first, second])
    callback_list.on_train_begin()
    callback_list.on_epoch_begin(0)
    callback_list.on_train_batch_begin(0)
    callback_list.on_train_batch_end(0, {"loss": 1.0})
    callback_list.on_test_batch_end(4, {"loss": 2.0})
    callback_list.on_predict_batch_begin(5)
    callback_list.on_epoch_end(0, {"loss": 1.0})
    callback_list.on_test_end({"loss": 2.0})
    callback_list.on_train_end()
    expected = [
        ("on_train_begin", ({},), {}),
        ("on_epoch_begin", (0, {}), {}),
        ("on_train_batch_begin", (0,), {"logs": {}}),
        ("on_train_batch_end", (0,), {"logs": {"loss": 1.0}}),
        ("on_test_batch_end", (4,), {"logs": {"loss": 2.0}}),
        ("on_predict_batch_begin", (5,), {"logs": {}}),
        ("on_epoch_end", (0, {"loss": 1.0}), {}),
        ("on_test_end", ({"loss": 2.0},), {}),
        ("on_train_end", ({},), {}),
    ]
    assert first.calls == expected and second.calls == expected


def test_batch_hooks_with_no_listener_never_reach_the_base_no_ops(monkeypatch):
    calls = []
    for hook in cbs._BATCH_HOOKS + ("on_batch_begin", "on_batch_end"):
        monkeypatch.setattr(Callback, hook, lambda self, batch, logs=None, hook=hook: calls.append(hook))
    callback_list = CallbackList(add_history=True, add_progbar=True, model=FakeModel(), verbose=2, epochs=1, steps=100)
    progbar = callback_list.callbacks[1]
    for hook in cbs._BATCH_HOOKS:
        listeners = [method.__self__ for method, _ in callback_list._listeners[hook]]
        assert listeners == ([progbar] if hook.endswith("_end") else []), hook
    callback_list.on_epoch_begin(0)
    for step in range(100):
        callback_list.on_train_batch_begin(step)
        callback_list.on_train_batch_end(step, {"loss": torch.tensor(0.5)})
        callback_list.on_test_batch_begin(step)
        callback_list.on_test_batch_end(step)
        callback_list.on_predict_batch_begin(step)
        callback_list.on_predict_batch_end(step)
    assert calls == []


def test_older_on_batch_names_still_fire_for_training_batches():
    seen = []

    class Legacy(Callback):
        def on_batch_begin(self, batch, logs=None):
            seen.append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            seen.append(("end", batch, logs))

    callback_list = CallbackList([Legacy()])
    callback_list.on_train_batch_begin(3)
    callback_list.on_train_batch_end(3, {"loss": 1.0})
    callback_list.on_test_batch_end(3, {"loss": 1.0})
    assert seen == [("begin", 3), ("end", 3, {"loss": 1.0})]


def test_user_callbacks_get_plain_sorted_floats_and_builtins_the_raw_values():
    raw_seen, plain_seen = [], []

    class RawReader(Callback):
        _takes_tensor_logs = True

        def on_train_batch_end(self, batch, logs=None):
            raw_seen.append(logs)

    loss = torch.tensor(0.25)
    logs = {"loss": loss, "accuracy": torch.tensor(0.5, dtype=torch.float64), "outputs": torch.ones(2)}
    callback_list = CallbackList([RawReader(), LambdaCallback(on_train_batch_end=lambda batch, logs: plain_seen.append(logs))])
    callback_list.on_train_batch_end(0, logs)
    assert raw_seen[0] is logs
    assert list(plain_seen[0]) == ["accuracy", "loss", "outputs"]
    assert plain_seen[0]["loss"] == 0.25 and type(plain_seen[0]["loss"]) is float
    assert plain_seen[0]["outputs"] is logs["outputs"]  # not a scalar: passed through


def test_epoch_logs_are_converted_copies_and_history_records_floats():
    model = FakeModel()
    callback_list = CallbackList([ReduceLROnPlateau(monitor="loss")], add_history=True, model=model)
    callback_list.on_train_begin()
    logs = {"loss": torch.tensor(0.5), "accuracy": np.float32(0.75)}
    callback_list.on_epoch_end(0, logs)
    callback_list.on_epoch_end(1, {"loss": 0.25, "accuracy": 0.875})
    history = callback_list.history
    assert history.epoch == [0, 1]
    assert history.history == {"accuracy": [0.75, 0.875], "loss": [0.5, 0.25], "learning_rate": [pytest.approx(0.01)] * 2}
    assert all(type(v) is float for values in history.history.values() for v in values)
    assert set(logs) == {"loss", "accuracy"}  # the caller's dict is untouched


# ---------------------------------------------------------------- EarlyStopping
def test_early_stopping_waits_patience_epochs_without_improvement():
    model = FakeModel()
    stopper = EarlyStopping(patience=2)
    assert fit_epochs(stopper, model, losses(1.0, 0.8, 0.9, 0.85, 0.7)) == 4
    assert stopper.stopped_epoch == 3 and stopper.best == 0.8 and stopper.best_epoch == 1 and model.stop_training


def test_early_stopping_min_delta_baseline_and_start_epoch():
    assert fit_epochs(EarlyStopping(min_delta=0.1, patience=1), FakeModel(), losses(1.0, 0.95, 0.5)) == 2
    # above the baseline, the first epoch does not reset the wait; a new best still defers stopping
    assert fit_epochs(EarlyStopping(baseline=0.5, patience=2), FakeModel(), losses(0.9, 0.95, 0.97)) == 2
    assert fit_epochs(EarlyStopping(baseline=0.5, patience=1), FakeModel(), losses(0.9, 0.8, 0.7, 0.6)) == 4
    assert fit_epochs(EarlyStopping(start_from_epoch=3), FakeModel(), losses(1.0, 2.0, 3.0, 4.0, 5.0)) == 5
    assert fit_epochs(EarlyStopping(), FakeModel(), losses(1.0, 2.0)) == 2  # never stops at epoch 0


def test_early_stopping_restores_the_best_weights(capsys):
    model = FakeModel()
    stopper = EarlyStopping(monitor="loss", patience=1, restore_best_weights=True, verbose=1)
    fit_epochs(stopper, model, losses(1.0, 0.5, 0.7, 0.6, key="loss"))
    np.testing.assert_array_equal(model.weights[0], [1.0, 1.0])
    assert capsys.readouterr().out == "Epoch 3: early stopping\nRestoring model weights from the end of the best epoch: 2.\n"


def test_early_stopping_mode_max_and_auto_from_metric_direction():
    assert fit_epochs(EarlyStopping("acc", mode="max", patience=1), FakeModel(), losses(0.5, 0.6, 0.55, key="acc")) == 3
    model = FakeModel(metrics=[FakeMetric("accuracy", "up")])
    assert fit_epochs(EarlyStopping("val_accuracy", patience=1), model, losses(0.5, 0.6, 0.7, key="val_accuracy")) == 3
    with pytest.raises(ValueError, match="maximized or minimized"):
        fit_epochs(EarlyStopping("val_accuracy"), FakeModel(), losses(0.5, key="val_accuracy"))
    with pytest.warns(UserWarning, match="mode 'sideways' is unknown"):
        assert EarlyStopping(mode="sideways").mode == "auto"


def test_early_stopping_warns_when_the_monitored_value_is_missing():
    model = FakeModel()
    with pytest.warns(UserWarning, match="`val_loss` which is not available. Available metrics are: loss"):
        assert fit_epochs(EarlyStopping(), model, losses(1.0, 2.0, key="loss")) == 2
    assert not model.stop_training


# ---------------------------------------------------------------- learning rate callbacks
def lr_of(model):
    return float(model.optimizer.learning_rate)


def test_learning_rate_scheduler_sets_the_rate_and_logs_it(capsys):
    model = FakeModel(learning_rate=0.1)
    scheduler = LearningRateScheduler(lambda epoch, lr: lr / 2 if epoch else lr, verbose=1)
    callback_list = CallbackList([scheduler], add_history=True, model=model)
    callback_list.on_train_begin()
    for epoch in range(3):
        callback_list.on_epoch_begin(epoch)
        callback_list.on_epoch_end(epoch, {"loss": 1.0})
    assert callback_list.history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.025])
    assert "\nEpoch 3: LearningRateScheduler setting learning rate to 0.02500000037252903.\n" in capsys.readouterr().out


def test_learning_rate_scheduler_accepts_one_argument_schedules_and_rejects_non_floats():
    model = FakeModel()
    scheduler = LearningRateScheduler(lambda epoch: 0.5 ** epoch)
    scheduler.set_model(model)
    scheduler.on_epoch_begin(3)
    assert lr_of(model) == 0.125
    scheduler = LearningRateScheduler(lambda epoch, lr: torch.tensor(0.25))
    scheduler.set_model(model)
    scheduler.on_epoch_begin(0)
    assert lr_of(model) == 0.25
    scheduler = LearningRateScheduler(lambda epoch, lr: 1)
    scheduler.set_model(model)
    with pytest.raises(ValueError, match="should be a float"):
        scheduler.on_epoch_begin(0)


def test_reduce_lr_on_plateau_reduces_then_cools_down_and_stops_at_min_lr(capsys):
    model = FakeModel(learning_rate=1.0)
    reducer = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, cooldown=2, min_lr=0.25, verbose=1)
    reducer.set_model(model)
    reducer.on_train_begin()
    rates = []
    for epoch, loss in enumerate([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]):
        logs = {"loss": loss}
        reducer.on_epoch_end(epoch, logs)
        rates.append((logs["learning_rate"], lr_of(model)))
    # reduce at epoch 1, cool down for epoch 2 (the counter ends within epoch 3), reduce to the floor, stay there
    assert rates == [(1.0, 1.0), (1.0, 0.5), (0.5, 0.5), (0.5, 0.25), (0.25, 0.25), (0.25, 0.25), (0.25, 0.25)]
    assert capsys.readouterr().out == (
        "\nEpoch 2: ReduceLROnPlateau reducing learning rate to 0.5.\n\nEpoch 4: ReduceLROnPlateau reducing learning rate to 0.25.\n"
    )


def test_reduce_lr_on_plateau_min_delta_mode_and_checks():
    model = FakeModel(learning_rate=1.0)
    reducer = ReduceLROnPlateau(monitor="acc", mode="max", factor=0.1, patience=2, min_delta=0.05)
    fit_epochs(reducer, model, losses(0.5, 0.52, 0.54, 0.7, key="acc"))  # +0.02 steps are not improvements
    assert lr_of(model) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="factor >= 1.0"):
        ReduceLROnPlateau(factor=1.0)
    with pytest.warns(UserWarning, match="conditioned on metric `val_loss`"):
        fit_epochs(ReduceLROnPlateau(patience=0), model, losses(1.0, key="loss"))


# ---------------------------------------------------------------- CSVLogger
def test_csv_logger_writes_sorted_columns_with_reserved_validation_columns(tmp_path):
    path = tmp_path / "log.csv"
    logger = CSVLogger(path)
    fit_epochs(logger, FakeModel(), [{"loss": 0.5, "accuracy": 0.25}, {"loss": 0.375, "accuracy": 0.5, "val_loss": 0.75}])
    assert path.read_bytes() == (
        b"epoch,accuracy,loss,val_accuracy,val_loss\r\n0,0.25,0.5,NA,NA\r\n1,0.5,0.375,NA,0.75\r\n"
    )
    assert logger.csv_file.closed


def test_csv_logger_flushes_each_epoch_and_appends_without_a_second_header(tmp_path):
    path = tmp_path / "log.csv"
    logger = CSVLogger(str(path), separator=";", append=True)
    logger.set_model(FakeModel())
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 1.5, "val_loss": 2.0})
    assert path.read_bytes() == b"epoch;loss;val_loss\r\n0;1.5;2.0\r\n"  # readable mid-training
    logger.on_train_end()
    fit_epochs(CSVLogger(path, separator=";", append=True), FakeModel(), [{"loss": 1.0, "val_loss": 1.25}])
    assert path.read_bytes() == b"epoch;loss;val_loss\r\n0;1.5;2.0\r\n0;1.0;1.25\r\n"


# ---------------------------------------------------------------- LambdaCallback and TerminateOnNaN
def test_lambda_callback_calls_the_given_functions():
    events = []
    callback = LambdaCallback(
        on_epoch_end=lambda epoch, logs: events.append(("epoch_end", epoch, logs)),
        on_train_batch_begin=lambda batch, logs: events.append(("batch_begin", batch)),
        on_test_end=lambda logs: events.append(("test_end", logs)),
    )
    callback_list = CallbackList([callback])
    callback_list.on_train_batch_begin(0)
    callback_list.on_epoch_end(1, {"loss": 1.0})
    callback_list.on_test_end({"loss": 2.0})
    callback_list.on_train_begin()  # not given: nothing happens
    assert events == [("batch_begin", 0), ("epoch_end", 1, {"loss": 1.0}), ("test_end", {"loss": 2.0})]
    with pytest.raises(TypeError, match="unknown hooks"):
        LambdaCallback(on_epoch_ends=print)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), torch.tensor(float("nan"))])
def test_terminate_on_nan_stops_training(bad, capsys):
    model = FakeModel()
    callback_list = CallbackList([TerminateOnNaN()], model=model)
    callback_list.on_train_batch_end(0, {"loss": torch.tensor(1.0)})
    callback_list.on_train_batch_end(1, {})
    assert not model.stop_training
    callback_list.on_train_batch_end(2, {"loss": bad})
    assert model.stop_training and capsys.readouterr().out == "Batch 2: Invalid loss, terminating training\n"


def test_terminate_on_nan_can_raise():
    callback = TerminateOnNaN(raise_error=True)
    callback.set_model(FakeModel())
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 7"):
        callback.on_train_batch_end(7, {"loss": math.nan})


# ---------------------------------------------------------------- ProgbarLogger
def run_fit(monkeypatch, tty, verbose=1, epochs=2, steps=3, batch_loss=None):
    if not tty:  # as Keras, a POSIX system redraws any stream: these tests want one that is not redrawn
        monkeypatch.delitem(sys.modules, "posix", raising=False)
    stream = Stream(tty)
    monkeypatch.setattr("sys.stdout", stream)
    callback_list = CallbackList(add_history=True, add_progbar=True, model=FakeModel(), verbose=verbose, epochs=epochs, steps=steps)
    callback_list.on_train_begin()
    for epoch in range(epochs):
        callback_list.on_epoch_begin(epoch)
        for step in range(3):
            callback_list.on_train_batch_begin(step)
            callback_list.on_train_batch_end(step, {"loss": batch_loss or torch.tensor(0.5), "accuracy": 0.25})
        # validation inside fit is silent
        callback_list.on_test_begin()
        callback_list.on_test_batch_end(0, {"loss": 9.0})
        callback_list.on_test_end({"loss": 9.0})
        callback_list.on_epoch_end(epoch, {"loss": 0.5, "accuracy": 0.25, "val_loss": 0.75})
    callback_list.on_train_end()
    return stream.getvalue()


def test_progbar_logger_non_terminal_prints_a_header_and_the_final_line_per_epoch(monkeypatch):
    out = run_fit(monkeypatch, tty=False)
    line = rf"3/3 ━{{20}} {TIME} - accuracy: 0\.2500 - loss: 0\.5000 - val_loss: 0\.7500\n"
    assert re.fullmatch(rf"Epoch 1/2\n{line}Epoch 2/2\n{line}", out), out


def test_progbar_logger_on_a_terminal_redraws_and_shows_values_sorted(monkeypatch):
    out = ANSI.sub("", run_fit(monkeypatch, tty=True, epochs=1))
    assert not out.startswith("Epoch")  # a single epoch has no header, as in Keras
    assert re.match(rf"\r1/3 ━{{20}} \d+s {TIME[5:]} - accuracy: 0\.2500 - loss: 0\.5000", out), out
    assert re.search(rf"\r3/3 ━{{20}} {TIME} - accuracy: 0\.2500 - loss: 0\.5000 - val_loss: 0\.7500 *\n$", out), out


def test_progbar_logger_verbose_2_prints_one_line_per_epoch(monkeypatch):
    out = run_fit(monkeypatch, tty=True, verbose=2)
    line = r"3/3 - \d+s - \d+(?:s|ms|us)/step - accuracy: 0\.2500 - loss: 0\.5000 - val_loss: 0\.7500\n"
    assert re.fullmatch(rf"Epoch 1/2\n{line}Epoch 2/2\n{line}", out), out


def test_progbar_logger_reads_batch_values_only_to_draw(monkeypatch):
    class Loss:
        conversions = 0

        def __float__(self):
            Loss.conversions += 1
            return 0.5

    run_fit(monkeypatch, tty=False, batch_loss=Loss())
    assert Loss.conversions == 0


def test_progbar_logger_evaluate_and_predict_with_unknown_length(monkeypatch):
    monkeypatch.delitem(sys.modules, "posix", raising=False)  # a stream that is not redrawn (see run_fit)
    stream = Stream(False)
    monkeypatch.setattr("sys.stdout", stream)
    callback_list = CallbackList(add_progbar=True, verbose=1, epochs=1, steps=None)
    callback_list.on_test_begin()
    for step in range(4):
        callback_list.on_test_batch_end(step, {"loss": 0.5})
    callback_list.on_test_end({"loss": 0.125})
    callback_list.on_predict_begin()
    for step in range(2):
        callback_list.on_predict_batch_end(step, {"outputs": torch.ones(3)})
    callback_list.on_predict_end()
    callback_list.callbacks[0].progbar = None
    callback_list.on_predict_batch_end(0)  # a hand-written loop that skipped on_predict_begin
    callback_list.on_predict_end()
    expected = rf"4/4 ━{{20}} {TIME} - loss: 0\.1250\n2/2 ━{{20}} {TIME}\n1/1 ━{{20}} {TIME}\n"
    assert re.fullmatch(expected, stream.getvalue()), stream.getvalue()


def test_public_module_exports_and_registers_the_callbacks():
    from keramic import callbacks as public

    names = ["Callback", "CallbackList", "CSVLogger", "EarlyStopping", "History", "LambdaCallback"]
    names += ["LearningRateScheduler", "ProgbarLogger", "ReduceLROnPlateau", "TerminateOnNaN"]
    registered = public_objects("keras.callbacks")
    for name in names:
        assert getattr(public, name) is getattr(cbs, name) is registered[name]


# ---------------------------------------------------------------- parity with real Keras
SEQUENCES = [
    [1.0, 0.8, 0.9, 0.85, 0.7, 0.95, 0.96, 0.97],
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    [0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.44, 0.43],
    [0.5, 0.9, 0.4, 0.41, 0.42, 0.43, 0.39, 0.5],
]
EARLY_STOPPING_ARGS = [
    {"patience": 2},
    {"patience": 1, "min_delta": 0.05},
    {"patience": 2, "baseline": 0.6, "restore_best_weights": True},
    {"patience": 0, "restore_best_weights": True, "start_from_epoch": 2},
    {"patience": 1, "mode": "max", "restore_best_weights": True},
]


class KerasFakeModel(FakeModel):
    """Real Keras callbacks read `model.metrics` only when it exists; leave it out."""

    def __getattribute__(self, name):
        if name == "metrics":
            raise AttributeError(name)
        return super().__getattribute__(name)


@pytest.mark.interop
@pytest.mark.parametrize("sequence", SEQUENCES)
@pytest.mark.parametrize("kwargs", EARLY_STOPPING_ARGS)
def test_early_stopping_matches_keras(keras, sequence, kwargs):
    ours, theirs = EarlyStopping(**kwargs), keras.callbacks.EarlyStopping(**kwargs)
    ours_model, their_model = FakeModel(), KerasFakeModel()
    assert fit_epochs(ours, ours_model, losses(*sequence)) == fit_epochs(theirs, their_model, losses(*sequence))
    assert (ours.stopped_epoch, ours.best_epoch, ours.wait) == (theirs.stopped_epoch, theirs.best_epoch, theirs.wait)
    assert ours.best == pytest.approx(float(theirs.best))
    np.testing.assert_array_equal(ours_model.weights[0], their_model.weights[0])


@pytest.mark.interop
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras's own tensor-to-numpy conversion
@pytest.mark.parametrize("sequence", SEQUENCES)
@pytest.mark.parametrize(
    "kwargs",
    [
        {"monitor": "val_loss", "factor": 0.5, "patience": 1},
        {"monitor": "val_loss", "factor": 0.2, "patience": 2, "cooldown": 2, "min_lr": 0.05},
        {"monitor": "val_loss", "factor": 0.5, "patience": 0, "min_delta": 0.1, "min_lr": 0.3},
        {"monitor": "val_loss", "factor": 0.5, "patience": 1, "mode": "max"},
    ],
)
def test_reduce_lr_on_plateau_matches_keras(keras, sequence, kwargs):
    def run(callback, model):
        callback.set_model(model)
        callback.on_train_begin({})
        trace = []
        for epoch, value in enumerate(sequence):
            logs = {"val_loss": value}
            callback.on_epoch_end(epoch, logs)
            trace.append((logs["learning_rate"], lr_of(model)))
        return trace

    assert run(ReduceLROnPlateau(**kwargs), FakeModel(1.0)) == run(keras.callbacks.ReduceLROnPlateau(**kwargs), KerasFakeModel(1.0))


@pytest.mark.interop
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras's own tensor-to-numpy conversion
def test_learning_rate_scheduler_matches_keras(keras):
    def schedule(epoch, lr):
        return lr if epoch < 2 else lr * 0.9

    def run(callback, model):
        callback.set_model(model)
        trace = []
        for epoch in range(5):
            logs = {}
            callback.on_epoch_begin(epoch, logs)
            callback.on_epoch_end(epoch, logs)
            trace.append(lr_of(model))
        return trace

    assert run(LearningRateScheduler(schedule), FakeModel(0.1)) == run(keras.callbacks.LearningRateScheduler(schedule), KerasFakeModel(0.1))


@pytest.mark.interop
@pytest.mark.parametrize("append", [False, True])
def test_csv_logger_file_matches_keras(keras, tmp_path, append):
    epochs = [{"loss": 0.5, "accuracy": 0.25}, {"loss": 0.375, "accuracy": 0.5, "val_loss": 0.75}, {"loss": 1e-8, "accuracy": 1.0}]
    for name, factory in (("ours.csv", CSVLogger), ("keras.csv", keras.callbacks.CSVLogger)):
        (tmp_path / name).write_text("" if append else "stale\n")
        for _ in range(2 if append else 1):
            fit_epochs(factory(str(tmp_path / name), separator="\t", append=append), FakeModel(), epochs)
    assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "keras.csv").read_bytes()


@pytest.mark.interop
def test_terminate_on_nan_matches_keras(keras):
    for loss, stops in ((1.0, False), (math.inf, True), (math.nan, True)):
        ours, theirs = FakeModel(), FakeModel()
        callback, reference = TerminateOnNaN(), keras.callbacks.TerminateOnNaN()
        callback.set_model(ours)
        reference.set_model(theirs)
        callback.on_train_batch_end(0, {"loss": loss})
        reference.on_train_batch_end(0, {"loss": loss})
        assert ours.stop_training == theirs.stop_training == stops
