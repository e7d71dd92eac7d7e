"""fit / evaluate / predict on in-memory arrays: the batch order and the draws from torch's global
generator are Keras's, so after `set_random_seed` histories, predictions and weights equal real
Keras's (its torch backend), unseeded Dropout included. Each scenario runs the same script on
real Keras and on keramic and compares what they return."""

import numpy as np
import pytest
import torch

import keramic

RTOL, ATOL = 1e-5, 1e-6


def _data(samples=40):
    rng = np.random.default_rng(0)
    return rng.normal(size=(samples, 4)).astype("float32"), rng.normal(size=(samples, 1)).astype("float32")


def _model(k, dropout=False):
    layers = [k.Input((4,)), k.layers.Dense(8, activation="relu")]
    if dropout:
        layers.append(k.layers.Dropout(0.5))
    return k.Sequential([*layers, k.layers.Dense(1)])


def _compiled(k, dropout=False, metrics=None):
    k.utils.set_random_seed(1)
    model = _model(k, dropout)
    model.compile(optimizer="sgd", loss="mse", metrics=metrics)
    return model


def _fit(k, dropout=False, **fit_kwargs):
    x, y = _data()
    model = _compiled(k, dropout)
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, **fit_kwargs).history
    return history, [w.numpy() if hasattr(w, "numpy") else w for w in model.get_weights()], torch.rand(3).numpy()


def _between_fits(k, dropout=True):
    """fit, evaluate, predict, fit with validation data, predict, fit again (shuffled, Dropout)."""
    x, y = _data()
    model = _compiled(k, dropout, metrics=["mae"])
    results = [model.fit(x, y, batch_size=8, epochs=2, verbose=0).history]
    results.append(model.evaluate(x, y, batch_size=16, verbose=0))
    results.append(model.predict(x, batch_size=16, verbose=0))
    results.append(model.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_data=(x[:12], y[:12])).history)
    results.append(model.predict(x[:10], verbose=0))
    results.append(model.fit(x, y, batch_size=16, epochs=1, verbose=0).history)
    return results, model.get_weights(), torch.rand(3).numpy()


def _evaluate_first(k):
    """evaluate and predict before any fit (Keras builds from a first batch), then fit."""
    x, y = _data()
    model = _compiled(k, dropout=True)
    first = [model.predict(x, batch_size=8, verbose=0), model.evaluate(x, y, batch_size=8, verbose=0)]
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    return first, history, model.get_weights(), torch.rand(3).numpy()


def _steps_per_epoch(k):
    """`steps_per_epoch` carrying a pass over epochs (5 batches a pass, 3 per epoch), with validation steps."""
    x, y = _data()
    model = _compiled(k, dropout=True)
    history = model.fit(x, y, batch_size=8, epochs=4, steps_per_epoch=3, verbose=0, validation_data=(x, y), validation_steps=2).history
    return history, model.get_weights(), torch.rand(3).numpy()


def _train_on_batch_then_fit(k):
    x, y = _data()
    model = _compiled(k, dropout=True)
    first = [model.train_on_batch(x[:8], y[:8]), model.test_on_batch(x[:8], y[:8])]
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    return first, history, model.get_weights(), torch.rand(3).numpy()


def _recompiled_unbuilt(k):
    """A model without an Input (built by its first batch), recompiled between fits."""
    x, y = _data()
    k.utils.set_random_seed(3)
    model = k.Sequential([k.layers.Dense(8, activation="relu"), k.layers.Dropout(0.3), k.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    first = model.fit(x, y, batch_size=16, epochs=2, verbose=0).history
    model.compile(optimizer="sgd", loss="mae")
    second = model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle="batch").history
    return first, second, model.get_weights(), torch.rand(3).numpy()


def _assert_same(expected, actual, path="result"):
    if isinstance(expected, dict):
        assert sorted(expected) == sorted(actual), path
        for key in expected:
            _assert_same(expected[key], actual[key], f"{path}[{key!r}]")
    elif isinstance(expected, (list, tuple)) and not np.isscalar(expected):
        assert len(expected) == len(actual), path
        for index, (e, a) in enumerate(zip(expected, actual)):
            _assert_same(e, a, f"{path}[{index}]")
    else:
        np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=RTOL, atol=ATOL, err_msg=path)


def _both(keras, scenario, *args, **kwargs):
    expected = scenario(keras, *args, **kwargs)
    actual = scenario(keramic, *args, **kwargs)
    return expected, actual


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"dropout": True},
        {"shuffle": "batch"},
        {"shuffle": "batch", "dropout": True},
        {"shuffle": False, "dropout": True},
        {"validation_split": 0.25},
        {"validation_split": 0.25, "dropout": True},
        {"validation_data": "train", "dropout": True},
    ],
    ids=["shuffle", "dropout", "batch", "batch-dropout", "no-shuffle-dropout", "validation-split", "validation-split-dropout", "validation-data-dropout"],
)
def test_fit_history_weights_and_generator_match_keras(keras, kwargs):
    kwargs = dict(kwargs)
    if kwargs.get("validation_data") == "train":
        kwargs["validation_data"] = _data(12)
    expected, actual = _both(keras, _fit, **kwargs)
    _assert_same(expected, actual)


def test_the_briefs_history(keras):
    """The case that showed the difference: a shuffled fit, 3 epochs, batch 8."""
    expected, actual = _both(keras, _fit)
    assert np.allclose(expected[0]["loss"], actual[0]["loss"], rtol=RTOL, atol=ATOL)
    assert not np.allclose(actual[0]["loss"][0], [1.351683], atol=1e-6)  # the old (other) batch order's first epoch


@pytest.mark.parametrize("scenario", [_between_fits, _evaluate_first, _steps_per_epoch, _train_on_batch_then_fit, _recompiled_unbuilt])
def test_call_sequences_match_keras(keras, scenario):
    expected, actual = _both(keras, scenario)
    _assert_same(expected, actual)


def test_order_stays_on_the_generator_after_fit(keras):
    """What each call leaves in torch's global generator: the next unseeded draw after it."""

    def draws(k):
        x, y = _data(16)
        model = _compiled(k)
        seen = []
        for call in (
            lambda: model.fit(x, y, batch_size=16, epochs=1, verbose=0),
            lambda: model.fit(x, y, batch_size=8, epochs=2, verbose=0),
            lambda: model.fit(x, y, batch_size=8, epochs=1, verbose=0, validation_split=0.5),
            lambda: model.evaluate(x, y, verbose=0),
            lambda: model.predict(x, verbose=0),
            lambda: model.predict_on_batch(x),
        ):
            call()
            seen.append(torch.randint(0, 2**31, (1,)).item())
        return seen

    assert draws(keras) == draws(keramic)


class _Crash(keramic.callbacks.Callback):
    """Interrupts fit by raising after `batches` batches (as a crash would)."""

    def __init__(self, batches):
        super().__init__()
        self.batches, self.seen = batches, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.batches:
            raise KeyboardInterrupt


@pytest.mark.parametrize("save_freq, crash_after", [(3, 5), (5, 7)], ids=["mid-epoch", "at-an-epochs-last-batch"])
@pytest.mark.parametrize("shuffle", [True, "batch"])
def test_resumed_fit_ends_as_keras_uninterrupted(keras, tmp_path, shuffle, save_freq, crash_after):
    """A fit that crashed and resumed from a backup (mid-epoch, or saved at an epoch's last batch,
    before the epoch's validation) ends with Keras's uninterrupted weights and last epoch logs."""
    x, y = _data()
    kwargs = {"batch_size": 8, "epochs": 3, "verbose": 0, "shuffle": shuffle, "validation_data": _data(12)}
    expected_model = _compiled(keras, dropout=True)
    expected = expected_model.fit(x, y, **kwargs).history
    with pytest.raises(KeyboardInterrupt):
        _compiled(keramic, dropout=True).fit(x, y, callbacks=[keramic.callbacks.BackupAndRestore(tmp_path, save_freq=save_freq), _Crash(crash_after)], **kwargs)
    model = _compiled(keramic, dropout=True)
    history = model.fit(x, y, callbacks=[keramic.callbacks.BackupAndRestore(tmp_path, save_freq=save_freq)], **kwargs).history
    _assert_same([expected[key][-1] for key in sorted(expected)], [history[key][-1] for key in sorted(expected)])
    _assert_same(expected_model.get_weights(), model.get_weights())


def test_max_steps_per_epoch_matches_keras(keras):
    """`keras.config.max_steps_per_epoch` caps every epoch and each validation (from the data's start)."""

    def run(k):
        x, y = _data()
        model = _compiled(k, dropout=True)
        k.config.set_max_steps_per_epoch(2)
        try:
            history = model.fit(x, y, batch_size=8, epochs=4, verbose=0, validation_data=_data(24)).history
        finally:
            k.config.set_max_steps_per_epoch(None)
        return history, model.get_weights(), torch.rand(3).numpy()

    expected, actual = _both(keras, run)
    _assert_same(expected, actual)
