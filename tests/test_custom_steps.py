"""Model customisation as Keras 3 on torch (issue #12 item 4): `CustomModel(inputs, outputs)`,
overridden `train_step` / `test_step` / `predict_step` / `compute_loss` / `compute_metrics`, and
base `get_config` keys. Each case runs the same code on real Keras and on keramic."""

import numpy as np
import pytest
import torch

import keramic

X = np.random.default_rng(0).random((64, 8)).astype("float32")
Y = np.random.default_rng(1).random((64, 1)).astype("float32")


def guide_model_class(lib):
    """The torch version of Keras's "customizing what happens in fit" guide, written once per library."""

    class CustomModel(lib.Model):
        def train_step(self, data):
            x, y = data
            self.zero_grad()
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
            loss.backward()
            trainable_weights = list(self.trainable_weights)
            gradients = [v.value.grad for v in trainable_weights]
            with torch.no_grad():
                self.optimizer.apply(gradients, trainable_weights)
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss)
                else:
                    metric.update_state(y, y_pred)
            return {m.name: m.result() for m in self.metrics}

        def test_step(self, data):
            x, y = data
            y_pred = self(x, training=False)
            loss = self.compute_loss(y=y, y_pred=y_pred)
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss)
                else:
                    metric.update_state(y, y_pred)
            return {m.name: m.result() for m in self.metrics}

        def predict_step(self, data):
            return self(data, training=False) * 2.0

    return CustomModel


def _functional(lib, cls):
    inputs = lib.Input((8,))
    return cls(inputs, lib.layers.Dense(1, name="out")(lib.layers.Dense(4, activation="relu", name="hidden")(inputs)))


@pytest.mark.interop
def test_custom_model_from_inputs_and_outputs_trains_as_keras(keras):
    reference = _functional(keras, guide_model_class(keras))
    model = _functional(keramic, guide_model_class(keramic))
    assert isinstance(model, keramic.models.functional.Functional) and type(model).__name__ == "CustomModel"
    model.set_weights(reference.get_weights())
    for lib, net in ((keras, reference), (keramic, model)):
        net.compile(optimizer=lib.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    theirs = reference.fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    mine = model.fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    assert sorted(mine) == sorted(theirs) == ["loss", "mae"]
    for key in theirs:
        np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-5)
    np.testing.assert_allclose(model.evaluate(X, Y, verbose=0), reference.evaluate(X, Y, verbose=0), rtol=1e-5)
    np.testing.assert_allclose(model.predict(X, verbose=0), reference.predict(X, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.interop
def test_own_metrics_and_compute_loss_override(keras):
    def make(lib):
        class Penalised(lib.Model):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.loss_tracker = lib.metrics.Mean(name="loss")
                self.mae_metric = lib.metrics.MeanAbsoluteError(name="mae")

            def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
                loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
                return loss + 0.1 * lib.ops.mean(lib.ops.abs(y_pred))

            def train_step(self, data):
                x, y = data
                self.zero_grad()
                y_pred = self(x, training=True)
                loss = self.compute_loss(y=y, y_pred=y_pred)
                loss.backward()
                with torch.no_grad():
                    self.optimizer.apply([v.value.grad for v in self.trainable_weights], self.trainable_weights)
                self.loss_tracker.update_state(loss)
                self.mae_metric.update_state(y, y_pred)
                return {"loss": self.loss_tracker.result(), "mae": self.mae_metric.result()}

            @property
            def metrics(self):
                return [self.loss_tracker, self.mae_metric]

        return _functional(lib, Penalised)

    reference, model = make(keras), make(keramic)
    model.set_weights(reference.get_weights())
    for lib, net in ((keras, reference), (keramic, model)):
        net.compile(optimizer=lib.optimizers.SGD(0.05), loss="mse")
    theirs = reference.fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    mine = model.fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    for key in ("loss", "mae"):
        np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-5)


@pytest.mark.interop
def test_compute_loss_override_used_by_the_default_train_step(keras):
    def make(lib):
        class Scaled(lib.Model):
            def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
                return 3.0 * super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)

        return _functional(lib, Scaled)

    reference, model = make(keras), make(keramic)
    model.set_weights(reference.get_weights())
    for lib, net in ((keras, reference), (keramic, model)):
        net.compile(optimizer=lib.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    theirs = reference.fit(X, Y, batch_size=16, epochs=1, shuffle=False, verbose=0).history
    mine = model.fit(X, Y, batch_size=16, epochs=1, shuffle=False, verbose=0).history
    for key in ("loss", "mae"):
        np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-5)
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_compute_metrics_returns_every_result():
    model = _functional(keramic, keramic.Model)
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    y_pred = model(torch.from_numpy(X))
    results = model.compute_metrics(X, torch.from_numpy(Y), y_pred)
    assert set(results) == {"loss", "mae"}
    np.testing.assert_allclose(float(results["mae"]), np.abs(y_pred.detach().numpy() - Y).mean(), rtol=1e-5)
    loss = model.compute_loss(y=torch.from_numpy(Y), y_pred=y_pred)
    assert loss.ndim == 0
    np.testing.assert_allclose(float(loss), ((y_pred.detach().numpy() - Y) ** 2).mean(), rtol=1e-5)


def test_positional_arguments_of_a_subclass_do_not_make_it_functional():
    class TwoArguments(keramic.Model):
        def __init__(self, units, classes, **kwargs):
            super().__init__(**kwargs)
            self.hidden = keramic.layers.Dense(units)
            self.out = keramic.layers.Dense(classes)

        def call(self, x):
            return self.out(self.hidden(x))

    model = TwoArguments(4, 2)
    assert not isinstance(model, keramic.models.functional.Functional)
    assert model(X).shape == (64, 2)


@pytest.mark.interop
def test_base_get_config_keys_as_keras(keras):
    def make(lib):
        class Scale(lib.layers.Layer):
            def __init__(self, factor=2.0, **kwargs):
                super().__init__(**kwargs)
                self.factor = factor

            def call(self, x):
                return x * self.factor

        class ScaleWithConfig(Scale):
            def get_config(self):
                return {**super().get_config(), "factor": self.factor}

        return Scale(3.0, name="s"), ScaleWithConfig(3.0, name="c")

    (theirs_auto, theirs_own), (mine_auto, mine_own) = make(keras), make(keramic)
    assert mine_auto.get_config() == theirs_auto.get_config()
    assert mine_own.get_config() == theirs_own.get_config()
    assert set(super(type(mine_own), mine_own).get_config()) == set(super(type(theirs_own), theirs_own).get_config())


@pytest.mark.interop
def test_unsupervised_compute_loss_without_targets(keras):
    def make(lib):
        class AutoEncoder(lib.Model):
            def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
                return lib.ops.mean((y_pred - x) ** 2)

        inputs = lib.Input((8,))
        return AutoEncoder(inputs, lib.layers.Dense(8, name="out")(lib.layers.Dense(3, name="code")(inputs)))

    reference, model = make(keras), make(keramic)
    model.set_weights(reference.get_weights())
    for lib, net in ((keras, reference), (keramic, model)):
        net.compile(optimizer=lib.optimizers.SGD(0.1))
    theirs = reference.fit(X, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    mine = model.fit(X, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    np.testing.assert_allclose(mine["loss"], theirs["loss"], rtol=1e-5)
