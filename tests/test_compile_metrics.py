"""Keras's `compile_metrics` container and the logs built from it, plus two small Keras behaviours
(NumPy on the left of a Variable, a Python list as a model's input), each checked against real
Keras (torch backend) run in the test on the same weights."""

import operator
import re

import numpy as np
import pytest
import torch

import keramic

pytestmark = pytest.mark.interop

RNG = np.random.default_rng(11)
X = RNG.random((16, 3)).astype("float32")
Y_A = RNG.random((16, 2)).astype("float32")
Y_B = (RNG.random((16, 1)) > 0.5).astype("float32")
W = np.linspace(0.0, 1.0, 16).astype("float32")


def _seeded(model):
    draw = np.random.default_rng(5)
    model.set_weights([draw.standard_normal(v.shape).astype("float32") * 0.3 for v in model.weights])
    return model


def _single(lib):
    return _seeded(lib.Sequential([lib.Input((3,)), lib.layers.Dense(2)]))


def _two_outputs(lib, as_dict):
    inputs = lib.Input((3,), name="inp")
    a = lib.layers.Dense(2, name="a")(inputs)
    b = lib.layers.Dense(1, activation="sigmoid", name="b")(inputs)
    return _seeded(lib.Model(inputs, {"a": a, "b": b} if as_dict else [a, b]))


def _reprs(metrics):
    return [repr(metric) for metric in metrics]


def _close(ours, theirs):
    assert list(ours) == list(theirs)
    np.testing.assert_allclose([float(v) for v in ours.values()], [float(v) for v in theirs.values()], rtol=1e-5, atol=1e-7)


def test_metrics_hold_one_container_before_and_after_fit(keras):
    for metrics in (["mae", "mse"], None, []):
        seen = []
        for lib in (keramic, keras):
            model = _single(lib)
            uncompiled = (_reprs(model.metrics), model.metrics_names)
            model.compile("sgd", "mse", metrics=metrics)
            before = (_reprs(model.metrics), model.metrics_names)
            model.fit(X, Y_A, batch_size=8, shuffle=False, verbose=0)
            seen.append((uncompiled, before, _reprs(model.metrics), model.metrics_names, model.get_metrics_result()))
        ours, theirs = seen
        assert ours[:4] == theirs[:4]
        _close(ours[4], theirs[4])
    assert theirs[1][0] == ["<Mean name=loss>", "<CompileMetrics name=compile_metrics>"]
    for lib in (keramic, keras):  # Keras 3 has no tf.keras-era `compiled_metrics` / `compiled_loss`
        model = _single(lib)
        model.compile("sgd", "mse", metrics=["mae"])
        assert not hasattr(model, "compiled_metrics") and not hasattr(model, "compiled_loss")


def test_container_submetrics_variables_results_and_reset(keras):
    seen = []
    for lib in (keramic, keras):
        model = _single(lib)
        model.compile("sgd", "mse", metrics=["mae"], weighted_metrics=["mse"])
        container = model.metrics[1]
        unbuilt = (container.variables, container.metrics)
        with pytest.raises(ValueError, match="not yet been built"):
            container.result()
        model.evaluate(X, Y_A, sample_weight=W, verbose=0)
        after_evaluate = {k: float(v) for k, v in container.result().items()}
        # As a custom step does it: the whole batch at once, only `weighted_metrics` see the weights.
        container.reset_state()
        container.update_state(Y_A, model(X), sample_weight=W)
        direct = container.result()
        model.reset_metrics()
        reset = model.get_metrics_result()
        computed = model.compute_metrics(X, Y_A, model(X), sample_weight=W)
        with pytest.raises(NotImplementedError):
            container.get_config()
        seen.append(
            (
                unbuilt,
                type(container).__name__,
                container.name,
                [m.name for m in container.metrics],
                [v.path for v in container.variables],
                after_evaluate,
                direct,
                reset,
                computed,
            )
        )
    ours, theirs = seen
    assert ours[0] == ([], [])
    assert ours[1:5] == theirs[1:5]
    for index in range(5, 9):
        _close(ours[index], theirs[index])


@pytest.mark.parametrize("as_dict", [True, False])
def test_multi_output_metrics_names_history_and_evaluate(keras, as_dict):
    if as_dict:
        kwargs = dict(loss={"a": "mse", "b": "binary_crossentropy"}, metrics={"a": ["mae", "mse"], "b": ["accuracy"]}, weighted_metrics={"a": ["mae"]})
    else:
        kwargs = dict(loss=["mse", "binary_crossentropy"], metrics=[["mae"], ["accuracy", "mse"]], weighted_metrics=[["mse"], None])
    targets = {"a": Y_A, "b": Y_B} if as_dict else [Y_A, Y_B]
    seen = []
    for lib in (keramic, keras):
        model = _two_outputs(lib, as_dict)
        model.compile("sgd", **kwargs)
        before = model.metrics_names
        history = model.fit(X, targets, sample_weight=W, batch_size=8, shuffle=False, verbose=0).history
        container = model.metrics[1]
        seen.append(
            (
                before,
                _reprs(model.metrics),
                model.metrics_names,
                [m.name for m in container.metrics],
                [v.path for v in container.variables],
                list(container.result()),
                list(history),
                model.evaluate(X, targets, sample_weight=W, verbose=0),
                model.evaluate(X, targets, sample_weight=W, verbose=0, return_dict=True),
                history,
            )
        )
    ours, theirs = seen
    assert ours[:7] == theirs[:7]
    np.testing.assert_allclose(ours[7], theirs[7], rtol=1e-5)
    _close(ours[8], theirs[8])
    for key in theirs[9]:
        np.testing.assert_allclose(ours[9][key], theirs[9][key], rtol=1e-5)


def _guide_class(lib):
    """The torch version of Keras's guide step: loop over `self.metrics`, weights to every metric."""

    class Custom(lib.Model):
        def train_step(self, data):
            x, y, sample_weight = data if len(data) == 3 else (*data, None)
            self.zero_grad()
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            loss.backward()
            weights = list(self.trainable_weights)
            with torch.no_grad():
                self.optimizer.apply([v.value.grad for v in weights], weights)
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss)
                else:
                    metric.update_state(y, y_pred, sample_weight=sample_weight)
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

    return Custom


def test_guide_custom_step_weights_only_weighted_metrics_and_orders_logs(keras, tmp_path, capsys):
    seen = []
    for lib in (keramic, keras):
        inputs = lib.Input((3,))
        model = _seeded(_guide_class(lib)(inputs, lib.layers.Dense(2)(inputs)))
        model.compile(optimizer="adam", loss="mse", metrics=["mae"])
        csv = tmp_path / f"{lib.__name__}.csv"
        capsys.readouterr()
        history = model.fit(X, Y_A, sample_weight=W, epochs=2, batch_size=8, shuffle=False, verbose=2, callbacks=[lib.callbacks.CSVLogger(str(csv))]).history
        bar = re.findall(r" - (\w+): ", capsys.readouterr().out)
        evaluated = model.evaluate(X, Y_A, verbose=0), model.evaluate(X, Y_A, verbose=0, return_dict=True)
        seen.append((list(history), csv.read_text().splitlines()[0], bar, history, evaluated))
    ours, theirs = seen
    assert ours[:3] == theirs[:3]
    assert theirs[0] == ["mae", "loss"]
    for key in theirs[3]:  # mae unweighted, as in Keras
        np.testing.assert_allclose(ours[3][key], theirs[3][key], rtol=1e-5)
    np.testing.assert_allclose(ours[4][0], theirs[4][0], rtol=1e-5)
    _close(ours[4][1], theirs[4][1])


def test_own_trackers_with_and_without_a_metrics_property(keras):
    def make(lib, own_property):
        class Tracked(lib.Model):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.loss_tracker = lib.metrics.Mean(name="loss")
                self.mae_metric = lib.metrics.MeanAbsoluteError(name="mae")

            def train_step(self, data):
                x, y = data
                self.zero_grad()
                y_pred = self(x, training=True)
                loss = lib.ops.mean(lib.ops.square(y - y_pred))
                loss.backward()
                weights = list(self.trainable_weights)
                with torch.no_grad():
                    self.optimizer.apply([v.value.grad for v in weights], weights)
                self.loss_tracker.update_state(loss)
                self.mae_metric.update_state(y, y_pred)
                return {"loss": self.loss_tracker.result(), "mae": self.mae_metric.result()}

        if own_property:
            Tracked.metrics = property(lambda self: [self.loss_tracker, self.mae_metric])
        inputs = lib.Input((3,))
        return _seeded(Tracked(inputs, lib.layers.Dense(2)(inputs)))

    for own_property in (True, False):
        seen = []
        for lib in (keramic, keras):
            model = make(lib, own_property)
            model.compile(optimizer="sgd")
            before = model.metrics_names
            history = model.fit(X, Y_A, epochs=2, batch_size=8, shuffle=False, verbose=0).history
            after = model.metrics_names
            model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
            seen.append((before, after, _reprs(model.metrics), list(history), history))
        ours, theirs = seen
        assert ours[:4] == theirs[:4]
        for key in theirs[4]:
            np.testing.assert_allclose(ours[4][key], theirs[4][key], rtol=1e-5)


def test_compiled_metrics_survive_keras_files_both_ways(keras, tmp_path):
    for source, target in ((keramic, keras), (keras, keramic)):
        model = _single(source)
        model.compile("sgd", "mse", metrics=["mae"], weighted_metrics=["mse"])
        model.fit(X, Y_A, batch_size=8, shuffle=False, verbose=0)
        path = tmp_path / f"from_{source.__name__}.keras"
        model.save(path)
        loaded = target.models.load_model(path)
        config = loaded.get_compile_config()
        assert (config["metrics"], config["weighted_metrics"]) == (["mae"], ["mse"])
        assert _reprs(loaded.metrics) == ["<Mean name=loss>", "<CompileMetrics name=compile_metrics>"]
        _close(loaded.evaluate(X, Y_A, sample_weight=W, verbose=0, return_dict=True), model.evaluate(X, Y_A, sample_weight=W, verbose=0, return_dict=True))


OPERATORS = [operator.mul, operator.add, operator.sub, operator.truediv, operator.matmul, operator.lt, operator.ge, operator.eq, operator.pow]


@pytest.mark.parametrize("left", ["float32", "float64", "int64", "scalar"])
def test_numpy_on_the_left_of_a_variable_computes_as_keras(keras, left):
    array = np.array([[2.0, 0.5], [1.0, 3.0]])
    array = np.float32(2.0) if left == "scalar" else array.astype(left)
    value = np.array([[1.0, 2.0], [3.0, 4.0]], dtype="float32")
    for op in OPERATORS:
        if left == "scalar" and op is operator.matmul:
            continue
        ours, theirs = op(array, keramic.Variable(value)), op(array, keras.Variable(value))
        assert type(ours) is type(theirs) is np.ndarray
        assert ours.dtype == theirs.dtype
        np.testing.assert_array_equal(ours, theirs)


def test_a_python_list_as_input_raises_value_error_as_keras(keras):
    for lib in (keramic, keras):
        inputs = lib.Input((3,))
        for model in (lib.Sequential([lib.Input((3,)), lib.layers.Dense(2)]), lib.Model(inputs, lib.layers.Dense(2)(inputs))):
            for value in ([1, 10, 7], [[1, 10, 7]], (1.0, 2.0, 3.0)):
                with pytest.raises(ValueError):
                    model(value)
    with pytest.raises(ValueError, match="Only input tensors may be passed as positional arguments"):
        keramic.Sequential([keramic.Input((3,)), keramic.layers.Dense(2)])([1, 10, 7])
