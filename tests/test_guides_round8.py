"""Behaviours an eighth round of Keras guides and keras_recipes leans on (trainers and distillers
with their own steps, GAN-style models without `call`, sublayers built by a parent's `build`, the
stateless metric and loss API of the JAX custom-step guide, Embedding and float8 training under
mixed precision), each reduced to a minimal case and checked against real Keras (torch backend)."""

import warnings

import numpy as np
import pytest
import torch

import keramic

pytestmark = pytest.mark.interop

X = np.random.default_rng(8).random((4, 3)).astype("float32")
Y = np.ones((4, 1), "float32")


def _step_only_model(lib, built, with_call=False):
    """A model that trains through its own steps: built (its layer and itself) or not, with a
    `call` that must never run or with none at all (a GAN-style model)."""

    class StepOnly(lib.Model):
        def __init__(self):
            super().__init__()
            self.net = lib.layers.Dense(1)
            self.tracker = lib.metrics.Mean(name="t")
            if built:
                self.net.build((None, 3))
                self.built = True

        def train_step(self, data):
            self.tracker.update_state(1.0)
            return {"t": self.tracker.result()}

        def test_step(self, data):
            self.tracker.update_state(2.0)
            return {"t": self.tracker.result()}

    if not with_call:
        return StepOnly()

    class CallRaises(StepOnly):
        def call(self, x):
            raise ValueError("this call must not run")

    return CallRaises()


def _run(model, method):
    if method in ("fit", "evaluate"):
        result = getattr(model, method)(X, Y, verbose=0)
        return getattr(result, "history", result)
    return getattr(model, method)(X, Y)


METHODS = ["fit", "evaluate", "train_on_batch", "test_on_batch"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("built, compile_kwargs", [(False, {}), (True, {"metrics": []}), (True, {"loss": "mse"})])
def test_a_model_without_call_that_needs_building_is_refused_as_keras(keras, method, built, compile_kwargs):
    """Keras builds unbuilt layers, a loss and metrics by calling the model; with no `call` it
    refuses with a RuntimeError before any step runs (keramic used to train on regardless)."""
    for lib in (keramic, keras):
        model = _step_only_model(lib, built)
        model.compile(optimizer="sgd", **compile_kwargs)
        with pytest.raises(RuntimeError, match="Unable to automatically build the model"):
            _run(model, method)


@pytest.mark.parametrize("method", METHODS)
def test_a_built_model_compiled_without_outputs_never_calls_itself(keras, method):
    """Keras makes no building call when nothing needs building (keramic used to run `call` once
    before a custom step, to create metrics that were never asked for)."""
    results = []
    for lib in (keramic, keras):
        model = _step_only_model(lib, built=True, with_call=True)
        model.compile(optimizer="sgd")
        results.append(_run(model, method))
    assert results[0] == results[1]


def _parent(lib, name):
    """A layer whose `build` builds its sublayers directly (the mixture density network recipe)."""

    class Parent(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.first = lib.layers.Dense(2, name="first")
            self.second = lib.layers.Dense(2, name="second")

        def build(self, input_shape):
            self.first.build(input_shape)
            self.second.build(input_shape)

        def call(self, x):
            return self.first(x) + self.second(x)

    return Parent(name=name)


@pytest.mark.parametrize("how", ["build", "call", "sequential", "nested"])
def test_sublayers_built_by_a_parents_build_are_named_under_it_as_keras(keras, how):
    paths = []
    for lib in (keramic, keras):
        layer = _parent(lib, "parent")
        if how == "build":
            layer.build((None, 3))
        elif how == "call":
            layer(X)
        elif how == "sequential":
            layer = lib.Sequential([lib.Input((3,)), layer], name="outer")
        else:
            layer = lib.Sequential([lib.Input((3,)), lib.Sequential([_parent(lib, "parent")], name="inner")], name="outer")
        inner = layer.layers[-1] if how == "sequential" else layer
        paths.append(([w.path for w in layer.weights], getattr(inner, "first", inner).path))
    assert paths[0] == paths[1]


def _state(values):
    return [np.asarray(keramic.ops.convert_to_numpy(value)) for value in values]


@pytest.mark.parametrize("name", ["MeanAbsoluteError", "AUC", "Precision", "Mean"])
def test_metric_stateless_api_matches_keras(keras, name):
    """The JAX custom-step guide threads metric state through `stateless_update_state` /
    `stateless_result` / `stateless_reset_state`; the metric's own variables stay as they were."""
    draw = np.random.default_rng(3)
    y_true, y_pred, weight = (draw.random((6, 1)) > 0.5).astype("float32"), draw.random((6, 1)).astype("float32"), draw.random(6)
    args = (y_pred.ravel(),) if name == "Mean" else (y_true, y_pred)
    outcomes = []
    for lib in (keramic, keras):
        metric = getattr(lib.metrics, name)()
        state = metric.stateless_update_state([v.value for v in metric.variables], *args, sample_weight=weight)
        state = metric.stateless_update_state(state, *args)
        outcomes.append((_state(state), float(metric.stateless_result(state)), float(metric.result()), _state(metric.stateless_reset_state())))
    for ours, theirs in zip(*outcomes):
        if isinstance(ours, list):
            for a, b in zip(ours, theirs, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-6)
        else:
            assert ours == pytest.approx(theirs, rel=1e-6)


def test_metric_stateless_update_refuses_a_wrong_count_as_keras(keras):
    for lib in (keramic, keras):
        with pytest.raises(ValueError, match="metric_variables"):
            lib.metrics.Mean().stateless_update_state([0.0], 1.0)


def test_stateless_compute_loss_and_metrics_variables_match_keras(keras):
    draw = np.random.default_rng(4)
    x, y, weight = draw.random((6, 3)).astype("float32"), draw.random((6, 1)).astype("float32"), draw.random(6)
    outcomes = []
    for lib in (keramic, keras):
        inputs = lib.Input((3,))
        layer = lib.layers.Dense(1, kernel_regularizer="l2")
        model = lib.Model(inputs, lib.layers.BatchNormalization()(layer(inputs)))
        model.set_weights([np.full(tuple(v.shape), 0.5, "float32") for v in model.weights])
        model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
        model.evaluate(x, y, verbose=0)
        trainable, non_trainable = ([v.value * 2 for v in group] for group in (model.trainable_variables, model.non_trainable_variables))
        metric_state = [v.value for v in model.metrics_variables]
        y_pred, _ = model.stateless_call(trainable, non_trainable, x)
        loss, state = model.stateless_compute_loss(trainable, non_trainable, metric_state, x=x, y=y, y_pred=y_pred, sample_weight=weight)
        outcomes.append(([v.path for v in model.metrics_variables], float(loss), [_state(group) for group in state]))
    assert outcomes[0][0] == outcomes[1][0]
    assert outcomes[0][1] == pytest.approx(outcomes[1][1], rel=1e-6)
    for ours, theirs in zip(outcomes[0][2], outcomes[1][2], strict=True):
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)


def _embedding_gradient(lib, context):
    """The gradient an Embedding's table gets under mixed_bfloat16, called on its own or in a model."""
    draw = np.random.default_rng(5)
    ids = torch.tensor(draw.integers(0, 5, (32, 10)))
    upstream = torch.tensor(draw.standard_normal((32, 10, 8)).astype("float32")).to(torch.bfloat16)
    lib.config.set_dtype_policy("mixed_bfloat16")
    try:
        embedding = lib.layers.Embedding(5, 8)
        if context == "alone":
            embedding.build((None, 10))
            run = embedding
        else:
            inputs = lib.Input((10,), dtype="int64")
            run = lib.Model(inputs, embedding(inputs))
        embedding.embeddings.assign(draw.standard_normal((5, 8)).astype("float32"))
        (run(ids) * upstream).sum().backward()
        return embedding.embeddings.value.grad
    finally:
        lib.config.set_dtype_policy("float32")


@pytest.mark.parametrize("context", ["alone", "model"])
def test_embedding_gradient_under_mixed_precision_matches_keras(keras, context):
    """Embedding does not autocast: inside a mixed-precision model it looks its float32 table up and
    casts the result (its gradient sums repeated ids in float32); called on its own Keras still
    reads the table in bfloat16 (the float8 recipe's losses differed by these sums)."""
    torch.testing.assert_close(_embedding_gradient(keramic, context), _embedding_gradient(keras, context), rtol=0, atol=0)


def _variable_dtypes(lib, build):
    seen = []

    class Probe(lib.layers.Layer):
        def __init__(self, inner=None, **kwargs):
            super().__init__(**kwargs)
            self.inner = inner

        def build(self, input_shape):
            self.w = self.add_weight(shape=(2,), initializer="ones")

        def call(self, x):
            seen.append(lib.backend.standardize_dtype(lib.ops.convert_to_tensor(self.w).dtype))
            return x if self.inner is None else self.inner(x)

    build(Probe)(torch.ones((1, 2)))
    return seen


@pytest.mark.parametrize(
    "build",
    [
        lambda probe: probe(autocast=False, dtype="mixed_bfloat16"),
        lambda probe: probe(dtype="mixed_bfloat16", inner=probe(autocast=False, dtype="mixed_bfloat16")),
        lambda probe: probe(autocast=False, dtype="mixed_bfloat16", inner=probe(autocast=False, dtype="mixed_bfloat16")),
        lambda probe: probe(inner=probe(autocast=False, dtype="mixed_bfloat16")),
        lambda probe: probe(dtype="mixed_bfloat16", inner=probe()),
    ],
)
def test_a_layer_without_autocast_reads_its_variables_as_keras(keras, build):
    assert _variable_dtypes(keramic, build) == _variable_dtypes(keras, build)


@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("quantized_dtype", ["float8_e4m3fn", "float8_e5m2"])
def test_quantize_and_dequantize_rounds_the_scale_to_the_compute_dtype_as_keras(keras, compute_dtype, quantized_dtype):
    x = torch.tensor(np.random.default_rng(6).standard_normal((16, 8)).astype("float32") * 3)
    scale = torch.tensor(0.0103934109)
    for inputs in (x, x.to(torch.bfloat16)):
        ours = keramic.quantizers.quantize_and_dequantize(inputs, scale, quantized_dtype, compute_dtype)
        theirs = keras.quantizers.quantize_and_dequantize(inputs, scale, quantized_dtype, compute_dtype)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def _float8_training(lib, policy):
    draw = np.random.default_rng(7)
    x, y = draw.standard_normal((16, 6)).astype("float32"), draw.standard_normal((16, 3)).astype("float32")
    lib.config.set_dtype_policy(policy)
    try:
        model = lib.Sequential([lib.Input((6,)), lib.layers.Dense(4, name="a"), lib.layers.Dense(3, name="b")])
        model.set_weights([np.random.default_rng(i).standard_normal(tuple(v.shape)).astype("float32") * 0.3 for i, v in enumerate(model.weights)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras: "Layer InputLayer does not have a `quantize` method"
            model.quantize("float8")
        model.compile(lib.optimizers.SGD(0.1), "mse")
        losses = [float(model.train_on_batch(x * (step + 1), y)) for step in range(4)]
        return losses, {v.path.split("/", 1)[1]: np.asarray(lib.ops.convert_to_numpy(v)) for v in model.weights}
    finally:
        lib.config.set_dtype_policy("float32")


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_float8_training_under_mixed_precision_matches_keras(keras, policy):
    """The float8 recipe trains a quantized model under a mixed policy: the scales must be rounded to
    the compute dtype, and under float16 the loss-scale optimizer must hand the float8 scales and
    histories their new values unscaled (keramic divided them by the loss scale)."""
    ours, theirs = _float8_training(keramic, policy), _float8_training(keras, policy)
    assert ours[0] == theirs[0]
    assert sorted(ours[1]) == sorted(theirs[1])
    for path, value in theirs[1].items():
        np.testing.assert_array_equal(ours[1][path], value, err_msg=path)
