"""Training behaviours the Keras training guides lean on (recompiling, result order, metric names,
custom steps, data pipelines), each checked against real Keras on the same weights."""

import warnings

import numpy as np
import torch

import keramic

RNG = np.random.default_rng(7)
X = RNG.random((8, 4)).astype("float32")
Y_A = RNG.random((8, 1)).astype("float32")
Y_B = RNG.random((8, 2)).astype("float32")
W = RNG.random((8,)).astype("float32")


def _two_outputs(lib):
    """A model with outputs `a` (1 unit) and `b` (2 units), weights fixed by a seeded draw."""
    inputs = lib.Input((4,), name="i")
    a = lib.layers.Dense(1, name="a")(inputs)
    b = lib.layers.Dense(2, name="b")(inputs)
    model = lib.Model(inputs, [a, b])
    draw = np.random.default_rng(3)
    model.set_weights([draw.standard_normal(v.shape).astype("float32") for v in model.weights])
    return model


def _single_output(lib):
    model = lib.Sequential([lib.Input((4,)), lib.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros")])
    return model


def _both(keras, build, **compile_kwargs):
    """The same model compiled the same way in keramic and in Keras (metric objects made per library)."""
    pair = []
    for lib in (keramic, keras):
        model = build(lib)
        model.compile("sgd", **{k: v(lib) if callable(v) else v for k, v in compile_kwargs.items()})
        pair.append(model)
    return pair


def test_recompile_without_loss_or_metrics_keeps_the_previous_ones(keras):
    results = []
    for lib in (keramic, keras):
        model = _single_output(lib)
        model.compile("sgd", loss="mae", metrics=["mse"])
        model.compile("adam")  # a new optimizer only: Keras keeps the loss and the metrics
        results.append((model.evaluate(X, Y_A, verbose=0, return_dict=True), model.loss))
    (ours, our_loss), (theirs, their_loss) = results
    assert our_loss == their_loss == "mae"
    assert list(ours) == list(theirs) == ["loss", "mse"]
    np.testing.assert_allclose([ours[k] for k in ours], [theirs[k] for k in ours], rtol=1e-6)


def test_metrics_names_count_compiled_metrics_as_one_entry(keras):
    ours, theirs = _both(keras, _two_outputs, loss=["mse", "mae"], metrics=[["mae"], []])
    assert ours.metrics_names == theirs.metrics_names == ["loss", "compile_metrics"]
    for model in (ours, theirs):
        model.evaluate(X, [Y_A, Y_B], verbose=0)
    assert ours.metrics_names == theirs.metrics_names == ["loss", "compile_metrics", "a_loss", "b_loss"]


def test_evaluate_lists_results_in_keras_order(keras):
    metrics = {"metrics": [["mae", "mse"], ["mae"]], "weighted_metrics": [["mae"], ["mse", "mse"]]}
    ours, theirs = _both(keras, _two_outputs, loss=["mse", "mae"], **metrics)
    expected = theirs.evaluate(X, [Y_A, Y_B], sample_weight=W, verbose=0)
    np.testing.assert_allclose(ours.evaluate(X, [Y_A, Y_B], sample_weight=W, verbose=0), expected, rtol=1e-5)
    as_dict = theirs.evaluate(X, [Y_A, Y_B], sample_weight=W, verbose=0, return_dict=True)
    assert list(ours.evaluate(X, [Y_A, Y_B], sample_weight=W, verbose=0, return_dict=True)) == list(as_dict)
    np.testing.assert_allclose(ours.train_on_batch(X, [Y_A, Y_B]), theirs.train_on_batch(X, [Y_A, Y_B]), rtol=1e-5)


def test_clashing_metric_names_get_keras_suffixes(keras):
    ours, theirs = _both(keras, _single_output, loss="mse", metrics=["mae", "mae"], weighted_metrics=["mae", "mse"])
    logs = [m.evaluate(X, Y_A, sample_weight=W, verbose=0, return_dict=True) for m in (ours, theirs)]
    assert list(logs[0]) == list(logs[1]) == ["loss", "mae", "mae_1", "mse", "weighted_mae"]
    np.testing.assert_allclose(list(logs[0].values()), list(logs[1].values()), rtol=1e-5)


def test_a_metric_object_reused_by_a_recompile_is_prefixed_once(keras):
    names = []
    for lib in (keramic, keras):
        model = _two_outputs(lib)
        mae = lib.metrics.MeanAbsoluteError()
        model.compile("sgd", loss=["mse", "mse"], metrics=[[mae], []])
        model.evaluate(X, [Y_A, Y_B], verbose=0)
        model.compile("sgd", loss=["mse", "mse"], metrics=[[mae], []])
        names.append(list(model.evaluate(X, [Y_A, Y_B], verbose=0, return_dict=True)))
    assert names[0] == names[1] == ["a_loss", "a_mean_absolute_error", "b_loss", "loss"]


def test_an_output_without_loss_has_no_per_output_loss_entry(keras):
    keys = []
    for lib in (keramic, keras):
        model = _two_outputs(lib)
        model.compile("sgd", loss=[None, "mse"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras warns that output `a` gets no gradient
            keys.append(sorted(model.fit(X, [Y_A, Y_B], epochs=1, verbose=0).history))
    assert keys[0] == keys[1] == ["loss"]


class _TwoTrackers(keramic.Model):
    """A GAN-shaped model: no `call`, two trackers, a custom `train_step` on `(x, y)` batches."""

    def __init__(self):
        super().__init__()
        self.net = keramic.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros")
        self.first = keramic.metrics.Mean(name="first")
        self.second = keramic.metrics.Mean(name="second")
        self.net.build((None, 4))  # as Keras requires: fit cannot build a model without `call`
        self.built = True

    @property
    def metrics(self):
        return [self.first, self.second]

    def compile(self, optimizer):
        super().compile()
        self.net_optimizer = optimizer

    def train_step(self, data):
        x, y = data
        self.zero_grad()
        loss = torch.mean((self.net(x) - y) ** 2)
        loss.backward()
        with torch.no_grad():
            self.net_optimizer.apply([v.value.grad for v in self.net.trainable_weights], self.net.trainable_weights)
        self.first.update_state(loss)
        self.second.update_state(2 * loss)
        return {"second": self.second.result(), "first": self.first.result()}


def test_custom_train_step_on_a_model_without_call_fits_on_targets():
    model = _TwoTrackers()
    model.compile(keramic.optimizers.SGD(learning_rate=0.0))
    history = model.fit(X, Y_A, batch_size=8, epochs=1, verbose=0).history
    expected = float(np.mean((X.sum(axis=1, keepdims=True) - Y_A) ** 2))  # ones kernel, zero bias, no update
    assert list(history) == ["first", "second"]  # Keras's logs are sorted by name
    np.testing.assert_allclose([history["first"][0], history["second"][0]], [expected, 2 * expected], rtol=1e-5)


def test_read_only_batches_train_without_torch_warnings():
    """tf.data hands out read-only numpy batches; torch warns when it shares such memory."""
    x, y = X.copy(), Y_A.copy()
    x.setflags(write=False)
    y.setflags(write=False)
    model = _single_output(keramic)
    model.compile("sgd", loss="mse")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*not writable.*")
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert not x.flags.writeable  # the caller's array is left as it was


def test_fit_warns_that_shuffle_leaves_a_dataloader_alone(keras):
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(Y_A)), batch_size=4)
    for lib in (keramic, keras):
        model = _single_output(lib)
        model.compile("sgd", loss="mse")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(loader, epochs=1, verbose=0)
            model.fit(loader, epochs=1, verbose=0, shuffle=False)
            model.evaluate(loader, verbose=0)
        shuffle_warnings = [w for w in caught if str(w.message).startswith("`shuffle=True` was passed, but will be ignored")]
        assert len(shuffle_warnings) == 1, lib.__name__
        assert "DataLoader" in str(shuffle_warnings[0].message)


def test_a_metric_held_by_the_model_is_reset_and_logged(keras):
    outcomes = []
    for lib in (keramic, keras):

        class Tracked(lib.Model):
            def __init__(self):
                super().__init__()
                self.dense = lib.layers.Dense(1, kernel_initializer="ones")
                self.activation_mean = lib.metrics.Mean(name="activation_mean")

            def call(self, inputs):
                outputs = self.dense(inputs)
                self.activation_mean.update_state(outputs)
                return outputs

        model = Tracked()
        model.compile("sgd", "mse")
        history = model.fit(X, Y_A, batch_size=4, epochs=2, verbose=0, shuffle=False).history
        outcomes.append((history, model.metrics_names, model.evaluate(X, Y_A, verbose=0)))
    (ours, our_names, our_eval), (theirs, their_names, their_eval) = outcomes
    assert our_names == their_names == ["loss", "activation_mean"]
    assert list(ours) == list(theirs)
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5)
    np.testing.assert_allclose(our_eval, their_eval, rtol=1e-5)
