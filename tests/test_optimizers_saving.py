"""The newer optimizers (Adafactor, Ftrl, Lamb, Lion, Muon, ScheduleFreeAdamW, MultiOptimizer, and EMA
with gradient accumulation) save and load with their state in every format, and a resumed `fit`
is bit-identical to an uninterrupted one; `.keras` files cross over to and from real Keras 3."""

import re
import warnings

import numpy as np
import pytest

import keramic
from keramic import layers
from keramic.saving import deferred
from keramic.saving.formats.checkpoint import load_checkpoint, save_checkpoint

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"),
]


def _multi(m):
    # Patterns match Keras's paths (`sequential/first/kernel`) and keramic's (`first/kernel`).
    return m.MultiOptimizer(m.OptimizerMap(m.SGD(0.05, momentum=0.5), {".*first/.*": m.Adam(0.01), ".*second/bias": m.Lion(0.01)}))


# name -> a function from an optimizers module (keramic's or Keras's) to a fresh optimizer
OPTIMIZERS = {
    "adafactor": lambda m: m.Adafactor(0.05),
    "ftrl": lambda m: m.Ftrl(0.1, l1_regularization_strength=0.01, beta=0.1),
    "lamb": lambda m: m.Lamb(0.01, weight_decay=0.01),
    "lion": lambda m: m.Lion(0.01),
    "muon": lambda m: m.Muon(0.01),
    "schedule_free_adamw": lambda m: m.ScheduleFreeAdamW(0.01, warmup_steps=3),
    "multi_optimizer": _multi,
    "lion_ema_accumulation": lambda m: m.Lion(0.01, use_ema=True, ema_momentum=0.5, gradient_accumulation_steps=2),
}


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(24, 4)).astype("float32"), rng.normal(size=(24, 2)).astype("float32")


def _model(make_optimizer):
    keramic.utils.set_random_seed(0)
    model = keramic.Sequential([keramic.Input((4,)), layers.Dense(3, activation="relu", name="first"), layers.Dense(2, name="second")])
    model.compile(optimizer=make_optimizer(keramic.optimizers), loss="mse")
    return model


def _fit(model, epochs=1):
    x, y = _data()
    model.fit(x, y, epochs=epochs, batch_size=8, shuffle=False, verbose=0)


def _assert_identical(reference, resumed, context):
    for a, b in zip(reference.weights, resumed.weights):
        np.testing.assert_array_equal(b.numpy(), a.numpy(), err_msg=f"{context}: {a.path}")
    # As in Keras, slot names follow variable paths, which carry the Sequential's name only when it
    # built the layers itself (a loaded model's layers were built from their own configs first).
    def names(model):
        return [v.name.removeprefix(f"{model.name}_") for v in model.optimizer.variables]

    assert names(resumed) == names(reference), context
    for a, b in zip(reference.optimizer.variables, resumed.optimizer.variables):
        np.testing.assert_array_equal(b.numpy(), a.numpy(), err_msg=f"{context}: optimizer {a.path}")


@pytest.fixture(autouse=True)
def _no_leftover_pending():
    yield
    deferred.PENDING.clear()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_resumed_fit_is_bit_identical_in_every_format(tmp_path, name):
    make = OPTIMIZERS[name]
    reference = _model(make)
    _fit(reference, epochs=2)
    interrupted = _model(make)
    _fit(interrupted)
    save_checkpoint(interrupted, tmp_path / "ckpt")
    interrupted.save(tmp_path / "model.keras")
    resumed = {"keras": keramic.saving.load_model(tmp_path / "model.keras")}
    if name == "adafactor":
        # Adafactor names its factored statistics after the variable (`kernel` twice per matrix):
        # an .h5 group cannot hold that (Keras fails there too); keramic says so before writing.
        with pytest.raises(keramic.errors.KeramicError, match="share the path"):
            interrupted.save(tmp_path / "model.h5")
    else:
        interrupted.save(tmp_path / "model.h5")
        resumed["h5"] = keramic.saving.load_model(tmp_path / "model.h5")
    fresh = _model(make)
    status = load_checkpoint(fresh, tmp_path / "ckpt")
    resumed["checkpoint"] = fresh
    for form, model in resumed.items():
        assert type(model.optimizer) is type(reference.optimizer), form
        _fit(model)
        _assert_identical(reference, model, f"{name} via {form}")
    status.assert_consumed()


def _keras_model(keras, make_optimizer):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu", name="first"), keras.layers.Dense(2, name="second")])
    model.compile(optimizer=make_optimizer(keras.optimizers), loss="mse")
    return model


def _assert_close(keras_model, model, context):
    for a, b in zip(keras_model.weights, model.weights):
        np.testing.assert_allclose(b.numpy(), np.asarray(a.numpy()), rtol=0, atol=1e-5, err_msg=f"{context}: {a.path}")
    keras_variables, variables = keras_model.optimizer.variables, model.optimizer.variables
    # Keras's Sequential puts its own name in variable paths (`sequential/first/kernel`); keramic's does not.
    expected = [re.sub(r"^sequential(_\d+)?_", "", v.name) for v in keras_variables]
    assert [v.name for v in variables] == expected, context
    for a, b in zip(keras_variables, variables):
        np.testing.assert_allclose(b.numpy(), np.asarray(a.numpy()), rtol=0, atol=1e-5, err_msg=f"{context}: {a.path}")


@pytest.mark.interop
def test_keras_files_resume_here_and_ours_resume_in_keras(keras, tmp_path):
    """Keras trains an epoch and saves; keramic loads and trains on: it lands where Keras does. And back."""
    x, y = _data()
    for name, make in OPTIMIZERS.items():
        theirs = _keras_model(keras, make)
        theirs.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
        theirs.save(tmp_path / f"{name}_keras.keras")
        ours = keramic.saving.load_model(tmp_path / f"{name}_keras.keras")
        _assert_close(theirs, ours, f"{name}: loaded from Keras")
        theirs.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
        _fit(ours)
        _assert_close(theirs, ours, f"{name}: trained on after loading Keras's file")

        ours.save(tmp_path / f"{name}_ours.keras")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            back = keras.saving.load_model(tmp_path / f"{name}_ours.keras")
        assert type(back.optimizer).__name__ == type(ours.optimizer).__name__
        _assert_close(back, ours, f"{name}: Keras loading keramic's file")


class _StopAfter(keramic.callbacks.Callback):
    """Interrupts fit by raising after `batches` batches, as a crash would."""

    def __init__(self, batches):
        super().__init__()
        self.batches, self.seen = batches, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.batches:
            raise KeyboardInterrupt


def _model_with_metrics(make_optimizer):
    model = _model(make_optimizer)
    metrics = [
        keramic.metrics.F1Score(average="micro", threshold=0.5),
        keramic.metrics.R2Score(),
        keramic.metrics.PearsonCorrelation(),
        keramic.metrics.AUC(multi_label=True, name="auc"),
    ]
    model.compile(optimizer=make_optimizer(keramic.optimizers), loss="mse", metrics=metrics)
    return model


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_backup_and_restore_resumes_mid_epoch_bit_identically(tmp_path, name):
    """Interrupted inside epoch 1 and resumed: weights, optimizer state and every epoch log (the
    newer metrics' lazily built state included) equal an uninterrupted run's."""
    make = OPTIMIZERS[name]
    x, y = _data()
    reference = _model_with_metrics(make)
    expected = reference.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    with pytest.raises(KeyboardInterrupt):  # 3 batches an epoch: stops after batch 2 of epoch 1
        _model_with_metrics(make).fit(
            x, y, epochs=2, batch_size=8, shuffle=False, verbose=0, callbacks=[keramic.callbacks.BackupAndRestore(tmp_path, save_freq=1), _StopAfter(5)]
        )
    resumed = _model_with_metrics(make)
    history = resumed.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0, callbacks=[keramic.callbacks.BackupAndRestore(tmp_path, save_freq=1)])
    assert history.epoch == [1]
    for key, values in history.history.items():
        np.testing.assert_array_equal(values, expected[key][1:], err_msg=f"{name}: {key}")
    _assert_identical(reference, resumed, f"{name} via BackupAndRestore")
