"""Small training and loading behaviours users hit, each checked against real Keras."""

import importlib
import warnings

import numpy as np
import pytest

import keramic
from keramic.serialization import serialize

X = np.random.default_rng(0).random((6, 3)).astype("float32")
Y = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2]]


def _classifier(lib, **compile_kwargs):
    model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(3, activation="softmax", name="d")])
    model.compile("sgd", **compile_kwargs)
    return model


def _per_class_model(lib):
    return _classifier(lib, loss="categorical_crossentropy", metrics=[lib.metrics.F1Score(average=None)])


def _shape_of_logs(logs):
    """Each log's kind: a float, or the shape of a per-class array."""
    return {key: ("float" if isinstance(value, float) else (type(value).__name__, np.shape(value))) for key, value in logs.items()}


def test_per_class_metric_stays_an_array_in_history_and_evaluate(keras):
    shapes = {}
    for name, lib in (("keras", keras), ("keramic", keramic)):
        model = _per_class_model(lib)
        history = model.fit(X, Y, epochs=2, verbose=0, validation_data=(X, Y)).history
        assert {len(values) for values in history.values()} == {2}
        shapes[name] = (
            _shape_of_logs({key: values[-1] for key, values in history.items()}),
            _shape_of_logs(model.evaluate(X, Y, verbose=0, return_dict=True)),
            _shape_of_logs(model.train_on_batch(X, Y, return_dict=True)),
        )
        assert np.asarray(model.evaluate(X, Y, verbose=0)[1]).shape == (3,)
    assert shapes["keramic"] == shapes["keras"]
    assert shapes["keras"][1] == {"loss": "float", "f1_score": ("ndarray", (3,))}


def test_the_progress_bar_shows_a_per_class_metric_as_its_mean(capsys):
    """Keras's progress bar prints the mean of an array-valued metric; it must not crash on one."""
    model = _per_class_model(keramic)
    history = model.fit(X, Y, epochs=1, batch_size=6, verbose=1).history
    printed = capsys.readouterr().out
    mean = float(np.mean(history["f1_score"][-1]))
    assert f"f1_score: {mean:.4f}" in printed or f"f1_score: {mean:.4e}" in printed


@pytest.mark.parametrize("kind", ["string", "object", "list", "dict", "none"])
def test_model_loss_is_what_compile_was_given(keras, kind):
    found = {}
    for name, lib in (("keras", keras), ("keramic", keramic)):
        loss = {
            "string": "mse",
            "object": lib.losses.MeanSquaredError(name="my_mse"),
            "list": ["mse"],
            "dict": {"d": "mae"},
            "none": None,
        }[kind]
        model = _classifier(lib, loss=loss)
        found[name] = model.loss
        assert model.loss is loss or model.loss == loss
    if kind == "object":
        found = {name: (type(value).__name__, value.name) for name, value in found.items()}
    assert found["keramic"] == found["keras"]


def test_model_loss_is_none_before_compile(keras):
    for lib in (keras, keramic):
        assert lib.Sequential([lib.Input((3,))]).loss is None


class _Steps:
    """Records the batches each epoch of fit, evaluate and predict ran."""

    def __init__(self, lib):
        seen = self.seen = {"train": [], "test": [], "predict": 0}

        class Recorder(lib.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                seen["train"].append(0)

            def on_train_batch_end(self, batch, logs=None):
                seen["train"][-1] += 1

            def on_test_begin(self, logs=None):
                seen["test"].append(0)

            def on_test_batch_end(self, batch, logs=None):
                seen["test"][-1] += 1

            def on_predict_batch_end(self, batch, logs=None):
                seen["predict"] += 1

        self.callback = Recorder()


@pytest.fixture
def capped_limits(keras):
    yield
    for lib in (keras, keramic):
        lib.config.set_max_epochs(None)
        lib.config.set_max_steps_per_epoch(None)


@pytest.mark.parametrize("steps_per_epoch", [None, 5])
def test_max_epochs_and_max_steps_cap_fit_evaluate_and_predict(keras, capped_limits, steps_per_epoch):
    found = {}
    for name, lib in (("keras", keras), ("keramic", keramic)):
        lib.config.set_max_epochs(2)
        lib.config.set_max_steps_per_epoch(3)
        model = _classifier(lib, loss="mse")
        steps = _Steps(lib)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = model.fit(
                X, Y, epochs=4, batch_size=1, steps_per_epoch=steps_per_epoch, verbose=0,
                validation_data=(X, Y), callbacks=[steps.callback],
            )
            model.evaluate(X, Y, batch_size=1, verbose=0, callbacks=[steps.callback])
            predictions = model.predict(X, batch_size=1, verbose=0, callbacks=[steps.callback])
        messages = sorted({str(w.message) for w in caught if str(w.message).startswith("Limiting")})
        found[name] = (steps.seen, history.epoch, history.params["steps"], len(predictions), messages)
    assert found["keramic"] == found["keras"]
    assert found["keras"][1] == [0, 1]


def test_no_cap_when_the_limits_are_larger(keras, capped_limits):
    lengths = {}
    for name, lib in (("keras", keras), ("keramic", keramic)):
        lib.config.set_max_epochs(10)
        lib.config.set_max_steps_per_epoch(10)
        model = _classifier(lib, loss="mse")
        lengths[name] = len(model.fit(X, Y, epochs=3, batch_size=2, verbose=0).history["loss"])
    assert lengths["keramic"] == lengths["keras"] == 3


@pytest.fixture
def unsafe_reset(keras):
    yield
    serialize._state.safe_mode = None
    keras.utils.clear_session()


def _lambda_model(lib):
    return lib.Sequential([lib.Input((3,)), lib.layers.Lambda(lambda t: t * 2)])


def _loads(lib, path, **kwargs):
    try:
        lib.models.load_model(path, **kwargs)
    except Exception as error:  # noqa: BLE001 - Keras raises ValueError, keramic its own error
        assert "lambda" in str(error).lower() or "safe" in str(error).lower()
        return False
    return True


def test_enable_unsafe_deserialization_lets_load_model_load_lambdas(keras, unsafe_reset, tmp_path):
    outcomes = {}
    for name, lib in (("keras", keras), ("keramic", keramic)):
        path = str(tmp_path / f"{name}.keras")
        _lambda_model(lib).save(path)
        before = _loads(lib, path)
        lib.config.enable_unsafe_deserialization()
        outcomes[name] = (before, _loads(lib, path), _loads(lib, path, safe_mode=False))
    assert outcomes["keramic"] == outcomes["keras"] == (False, True, True)
    loaded = keramic.models.load_model(str(tmp_path / "keramic.keras"))
    np.testing.assert_allclose(loaded.predict(X, verbose=0), X * 2, rtol=1e-6)


def test_limits_read_from_the_environment_as_keras_does(monkeypatch):
    """Keras documents KERAS_MAX_EPOCHS / KERAS_MAX_STEPS_PER_EPOCH as setting these limits at import."""
    monkeypatch.setenv("KERAS_MAX_EPOCHS", "2")
    monkeypatch.setenv("KERAS_MAX_STEPS_PER_EPOCH", "5")
    try:
        importlib.reload(keramic.config)
        assert (keramic.config.max_epochs(), keramic.config.max_steps_per_epoch()) == (2, 5)
    finally:
        monkeypatch.delenv("KERAS_MAX_EPOCHS")
        monkeypatch.delenv("KERAS_MAX_STEPS_PER_EPOCH")
        importlib.reload(keramic.config)
    assert keramic.config.max_epochs() is None
