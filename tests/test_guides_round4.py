"""Behaviours a fourth round of Keras guides leans on (int8/int4 quantization and QuantizationConfig,
the TF-to-Keras-3 migration guide's multi-output metrics, seeded training with Adam), each reduced
to a minimal case and checked against real Keras (torch backend) on the same weights."""

import numpy as np
import pytest
import torch

import keramic

RNG = np.random.default_rng(11)
X = RNG.random((6, 4)).astype("float32")
Y = RNG.random((6, 2)).astype("float32")


def _two_outputs(lib):
    inputs = lib.Input((4,))
    model = lib.Model(inputs, [lib.layers.Dense(2, name="o1")(inputs), lib.layers.Dense(2, name="o2")(inputs)])
    draw = np.random.default_rng(5)
    model.set_weights([draw.standard_normal(tuple(v.shape)).astype("float32") for v in model.weights])
    return model


def _adam_weights(lib, steps, name="Adam", **kwargs):
    draw = np.random.default_rng(0)
    variables = [lib.Variable(draw.normal(size=shape).astype("float32")) for shape in ((10, 32), (32,))]
    optimizer = getattr(lib.optimizers, name)(**kwargs)
    for _ in range(steps):
        grads = [torch.tensor(draw.normal(size=tuple(v.shape)).astype("float32") * 0.1) for v in variables]
        optimizer.apply_gradients(zip(grads, variables))
    return [np.array(lib.ops.convert_to_numpy(v)) for v in variables]


@pytest.mark.parametrize("kwargs", [{}, {"learning_rate": 0.01, "amsgrad": True}, {"name": "Adamax"}])
def test_adam_steps_are_bit_identical_to_keras(keras, kwargs):
    """Seeded fits print the same losses only if every Adam (and Adamax) step rounds as Keras's does."""
    ours, theirs = _adam_weights(keramic, 5, **kwargs), _adam_weights(keras, 5, **kwargs)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "metrics",
    [["mae", "mse"], ["mae", ["mse", "mae"]], ["mae", None], ("mae", "mse"), {"o2": "mae"}, {"o1": ["mae", "mse"]}],
)
def test_metrics_list_as_long_as_the_outputs_gives_one_entry_per_output(keras, metrics):
    results = []
    for lib in (keramic, keras):
        model = _two_outputs(lib)
        model.compile(optimizer="sgd", loss="mse", metrics=metrics)
        results.append(model.evaluate(X, [Y, Y], verbose=0, return_dict=True))
    assert sorted(results[0]) == sorted(results[1])
    for key in results[1]:
        assert results[0][key] == pytest.approx(results[1][key], rel=1e-6), key


def test_a_lone_metric_string_is_rejected_at_compile_as_keras(keras):
    messages = []
    for lib in (keramic, keras):
        model = _two_outputs(lib)
        with pytest.raises(ValueError) as info:
            model.compile(optimizer="sgd", loss="mse", metrics="mae")
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def _dropout_model(lib):
    class Noisy(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seed_generator = lib.random.SeedGenerator(1337)

        def call(self, inputs):
            return lib.random.dropout(inputs, 0.5, seed=self.seed_generator)

    class Net(lib.Model):
        def __init__(self):
            super().__init__()
            self.noisy = Noisy()
            self.dense = lib.layers.Dense(2, kernel_initializer="ones")

        def call(self, x):
            return self.dense(self.noisy(x))

    return Net()


def test_fit_builds_an_unbuilt_subclassed_model_without_spending_its_seeds(keras):
    """Keras builds from the first batch symbolically, so a layer's SeedGenerator starts training
    at its first state; a real building call would shift every dropout mask of the run."""
    results = []
    for lib in (keramic, keras):
        model = _dropout_model(lib)
        model.compile(optimizer="sgd", loss="mse")
        history = model.fit(X, Y, batch_size=3, epochs=1, shuffle=False, verbose=0)
        state = np.array(lib.ops.convert_to_numpy(model.noisy.seed_generator.state))
        results.append((history.history["loss"][0], state.tolist()))
    assert results[0][1] == results[1][1]
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)


def test_train_and_test_on_batch_run_the_models_own_steps_as_keras(keras):
    """Keras's `*_on_batch` hand `(x, y, sample_weight)` to an overridden step and return its logs."""
    results = []
    for lib in (keramic, keras):

        class Stepper(lib.Model):
            def train_step(self, data):
                return {"zeta": float(len(data)), "alpha": {"none": float(data[2] is None)}}

            def test_step(self, data):
                return {"seen": float(len(data)), "rows": float(data[0].shape[0])}

        inputs = lib.Input((4,))
        model = Stepper(inputs, lib.layers.Dense(1)(inputs))
        model.compile(optimizer="sgd")
        results.append(
            (
                model.train_on_batch(X, Y[:, :1], return_dict=True),
                model.train_on_batch(X, Y[:, :1]),
                model.test_on_batch(X, Y[:, :1], return_dict=True),
            )
        )
    assert results[0] == results[1]


def test_dense_output_is_bit_identical_to_keras(keras):
    """Seeded guides print the same digits only if Dense rounds as Keras's product-then-bias does."""
    draw = np.random.default_rng(4)
    x = draw.integers(0, 256, size=(32, 96)).astype("float32")
    weights = [draw.normal(size=(96, 16)).astype("float32") * 0.05, draw.normal(size=(16,)).astype("float32")]
    outputs = []
    for lib in (keramic, keras):
        layer = lib.layers.Dense(16, activation="relu")
        layer.build((None, 96))
        layer.set_weights(weights)
        outputs.append(np.array(lib.ops.convert_to_numpy(layer(torch.tensor(x)))))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_serialized_tuples_stay_tuples_in_memory_as_keras(keras):
    """Guides print configs: Keras keeps a config's tuples (kernel sizes, quantizer ranges) as tuples."""
    assert keramic.saving.serialize_keras_object((1, (2, 3), [4])) == keras.saving.serialize_keras_object((1, (2, 3), [4]))
    ours = keramic.saving.serialize_keras_object(keramic.layers.Conv2D(2, 3))["config"]
    theirs = keras.saving.serialize_keras_object(keras.layers.Conv2D(2, 3))["config"]
    for key in ("kernel_size", "strides", "dilation_rate"):
        assert ours[key] == theirs[key] and type(ours[key]) is type(theirs[key]), key
    configs = []
    for lib in (keramic, keras):
        model = lib.Sequential([lib.Input((4,)), lib.layers.Dense(3)])
        quantizer = lib.quantizers.AbsMaxQuantizer(value_range=(-8, 7), output_dtype="int8", axis=0)
        model.quantize(config=lib.quantizers.Int4QuantizationConfig(weight_quantizer=quantizer, activation_quantizer=None, block_size=None))
        configs.append(model.layers[0].get_config()["quantization_config"])
    assert configs[0] == configs[1]
