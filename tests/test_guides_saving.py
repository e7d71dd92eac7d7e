"""Behaviours the saving, transfer-learning and preprocessing guides rely on, checked against Keras."""

import warnings

import numpy as np
import pytest

import keramic
from keramic import layers


class _Halve(keramic.layers.Layer):
    """A custom layer whose `get_config` names only its own argument (no `name`)."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {"factor": self.factor}


def test_clone_model_with_unregistered_custom_layer_whose_config_has_no_name(keras):
    class KerasHalve(keras.layers.Layer):  # the same layer, for Keras: it clones it unregistered too
        def __init__(self, factor):
            super().__init__()
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            return {"factor": self.factor}

    x = np.array([[2.0, 4.0, -6.0]], "float32")
    for lib, cls in ((keramic, _Halve), (keras, KerasHalve)):
        inputs = lib.Input((3,))
        model = lib.Model(inputs, cls(0.5)(inputs))
        twin = lib.models.clone_model(model)
        assert twin is not model and type(twin.layers[1]) is cls and twin.layers[1] is not model.layers[1]
        np.testing.assert_allclose(lib.ops.convert_to_numpy(twin(x)), [[1.0, 2.0, -3.0]])
    nested = keramic.Sequential([keramic.Input((3,)), keramic.Sequential([_Halve(0.25)])])
    np.testing.assert_allclose(keramic.ops.convert_to_numpy(keramic.models.clone_model(nested)(x)), [[0.5, 1.0, -1.5]])


def _summary_rows(model):
    lines = []
    model.summary(print_fn=lambda text, *args, **kwargs: lines.append(text))
    text = "\n".join(lines)
    return [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│") and "(" in line.split("│")[1]]


def test_sequential_summary_lists_no_input_layer(keras):
    def build(lib):
        inputs = lib.Input((4,), name="digits")
        hidden = lib.layers.Dense(3, name="d1")(inputs)
        functional = lib.Model(inputs, hidden)
        sequential = lib.Sequential([lib.Input((4,), name="pixels"), lib.layers.Dense(2, name="d2")])
        extracted = lib.Sequential(functional.layers + [lib.layers.Dense(5, name="d3")])
        return [functional, sequential, extracted]

    for ours, theirs in zip(build(keramic), build(keras)):
        assert _summary_rows(ours) == _summary_rows(theirs)


def test_public_deserialize_keeps_plain_strings_like_keras(keras):
    def twice(x):
        return 2 * x

    config = ["accuracy", "relu", {"loss": "mse", "n": 3}, "twice"]
    theirs = keras.saving.deserialize_keras_object(config, custom_objects={"twice": twice})
    ours = keramic.saving.deserialize_keras_object(config, custom_objects={"twice": twice})
    assert ours == theirs == ["accuracy", "relu", {"loss": "mse", "n": 3}, twice]
    assert keramic.utils.deserialize_keras_object("adam") == keras.utils.deserialize_keras_object("adam") == "adam"
    dense = keramic.saving.deserialize_keras_object(keramic.saving.serialize_keras_object(layers.Dense(2)))
    assert isinstance(dense, layers.Dense) and dense.units == 2
    with pytest.raises(TypeError, match="unexpected keyword"):
        keramic.saving.deserialize_keras_object("relu", bogus=1)
    deep = "relu"
    for _ in range(10**4):
        deep = [deep]
    with pytest.raises(keramic.errors.ConfigError, match="nests more than"):
        keramic.saving.deserialize_keras_object(deep)


@keramic.saving.register_keras_serializable(package="guides_saving")
class _CompiledBySpec(keramic.Model):
    """A model whose compile hooks save and restore what `compile` was given, as strings."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(2)

    def call(self, x):
        return self.dense(x)

    def compile(self, optimizer, loss_fn, metrics):
        super().compile(optimizer=optimizer, loss=loss_fn, metrics=metrics)
        self.spec = {"optimizer": optimizer, "loss_fn": loss_fn, "metrics": metrics}

    def get_compile_config(self):
        return dict(self.spec)

    def compile_from_config(self, config):
        self.compile(**keramic.utils.deserialize_keras_object(config))


def test_compile_from_config_gets_back_the_strings_it_saved(tmp_path):
    model = _CompiledBySpec()
    model.compile(optimizer="sgd", loss_fn="mse", metrics=["accuracy", "mae"])
    model.fit(np.ones((4, 3), "float32"), np.zeros((4, 2), "float32"), verbose=0)
    model.save(tmp_path / "m.keras")
    restored = keramic.models.load_model(tmp_path / "m.keras")
    assert restored.spec == {"optimizer": "sgd", "loss_fn": "mse", "metrics": ["accuracy", "mae"]}


def test_fit_and_evaluate_on_tf_dataset_of_unknown_length():
    tf = pytest.importorskip("tensorflow", reason="tf.data pipelines are what the guides feed to fit")
    rows = np.arange(12, dtype="float32").reshape(6, 2)
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(zip(rows, rows.sum(axis=1, keepdims=True))),
        output_signature=(tf.TensorSpec((2,), tf.float32), tf.TensorSpec((1,), tf.float32)),
    ).batch(4)
    model = keramic.Sequential([keramic.Input((2,)), layers.Dense(1, kernel_initializer="ones", use_bias=False)])
    model.compile(optimizer="sgd", loss="mse")
    seen = []
    model.fit(dataset, epochs=1, verbose=0, callbacks=[keramic.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(b))])
    assert seen == [0, 1]  # 6 rows in batches of 4: two steps, the length learnt by running out
    model.trainable = False
    assert model.evaluate(dataset, verbose=0) == pytest.approx(0.0, abs=1e-6)


def test_layers_run_inside_tf_data_map(keras):
    tf = pytest.importorskip("tensorflow", reason="tf.data.Dataset.map is where the guide runs preprocessing")
    values = np.array([[0.0], [4.0], [6.0]], "float32")
    normalized = tf.data.Dataset.from_tensor_slices(values).batch(3).map(layers.Normalization(mean=2.0, variance=4.0))
    batch = next(iter(normalized))
    assert batch.dtype == tf.float32 and batch.shape.as_list() == [3, 1]
    np.testing.assert_allclose(batch.numpy(), [[-1.0], [1.0], [2.0]])

    words = tf.constant([["a", "c"], ["z", "b"]])
    ours = layers.StringLookup(vocabulary=["a", "b", "c"])
    theirs = keras.layers.StringLookup(vocabulary=["a", "b", "c"])
    got = next(iter(tf.data.Dataset.from_tensors(words).map(ours)))
    expected = next(iter(tf.data.Dataset.from_tensors(words).map(theirs)))
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got.numpy(), expected.numpy())

    text = layers.TextVectorization(output_mode="int", output_sequence_length=3)
    text.adapt(["x y z", "z z y"])
    pairs = tf.data.Dataset.from_tensor_slices((["z y", "w"], [1, 0])).batch(2).map(lambda s, y: (text(s), y))
    tokens, labels = next(iter(pairs))
    np.testing.assert_array_equal(tokens.numpy(), [[2, 3, 0], [1, 0, 0]])  # z most frequent, w unknown
    np.testing.assert_array_equal(labels.numpy(), [1, 0])


def test_nested_compiled_model_keeps_its_optimizer_state_from_a_keras_file(keras, tmp_path):
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    inner.compile(optimizer="rmsprop", loss="mse")
    inner.fit(np.ones((4, 3)), np.full((4, 1), 2.0), verbose=0)
    inputs = keras.Input((2,))
    outer = keras.Model(inputs, inner(keras.layers.Dense(3)(inputs)))
    outer.save(tmp_path / "nested.keras")
    expected = [keras.ops.convert_to_numpy(v) for v in inner.optimizer.variables]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "skipping optimizer" warning: its state is in the file
        loaded = keramic.models.load_model(tmp_path / "nested.keras")
    got = [keramic.ops.convert_to_numpy(v) for v in loaded.layers[-1].optimizer.variables]
    assert len(got) == len(expected) == 4
    for ours, theirs in zip(got, expected):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def _cloned_structures(lib):
    """Layer classes and weight counts of clones made with each of Keras's `clone_model` arguments."""
    inputs = lib.Input((4,), name="x")
    shared = lib.layers.Dense(4, name="shared")
    hidden = shared(shared(lib.layers.Dense(4, name="first")(inputs)))
    model = lib.Model(inputs, lib.Sequential([lib.Input((4,)), lib.layers.Dense(3)], name="head")(hidden))

    def call_function(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        return lib.layers.Dropout(0.5)(out) if isinstance(layer, lib.layers.Dense) else out

    reusing = lib.models.clone_model(model, clone_function=lambda layer: layer if layer.name == "shared" else type(layer).from_config(layer.get_config()))
    dropped = lib.models.clone_model(model, call_function=call_function)
    deep = lib.models.clone_model(model, recursive=True, input_tensors=lib.Input((4,), name="y"))
    return [
        ([type(layer).__name__ for layer in clone.layers], len(clone.weights), clone.layers[0].name, tuple(clone.outputs[0].shape))
        for clone in (reusing, dropped, deep)
    ] + [deep.layers[-1] is not model.layers[-1], reusing.get_layer("shared") is shared, reusing.layers[1] is not model.layers[1]]


def test_clone_model_arguments_match_keras(keras):
    assert _cloned_structures(keramic) == _cloned_structures(keras)
    sequential = keramic.Sequential([keramic.Input((2,)), layers.Dense(1)])
    with pytest.raises(ValueError, match="call_function"):
        keramic.models.clone_model(sequential, call_function=lambda layer, *a, **k: layer(*a, **k))


def _compiled_clone_state(module, kind):
    if kind == "sequential":
        model = module.Sequential([module.Input((3,)), module.layers.Dense(2)])
    else:
        inputs = module.Input((3,))
        model = module.Model(inputs, module.layers.Dense(2)(inputs))
    model.compile(optimizer=module.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    twin = module.models.clone_model(model)
    plain = module.models.clone_model(module.Sequential([module.Input((3,)), module.layers.Dense(2)]))
    return (
        twin.compiled,
        twin.optimizer is model.optimizer,
        type(twin.optimizer).__name__,
        round(float(np.asarray(twin.optimizer.learning_rate)), 6),
        twin.loss,
        plain.compiled,
    )


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_a_compiled_models_clone_is_compiled_as_keras_does(keras, kind):
    assert _compiled_clone_state(keramic, kind) == _compiled_clone_state(keras, kind) == (True, False, "Adam", 0.01, "mse", False)


def _load_with_custom_compile(module, tmp_path):
    class OwnCompile(module.Model):
        def compile(self, *args, **kwargs):
            super().compile(*args, **kwargs)

    inputs = module.Input((3,))
    model = OwnCompile(inputs, module.layers.Dense(2)(inputs))
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.zeros((4, 3)), np.zeros((4, 2)), verbose=0)
    path = tmp_path / f"{module.__name__}.keras"
    model.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = module.saving.load_model(path, custom_objects={"OwnCompile": OwnCompile})
    return getattr(loaded, "optimizer", None), [str(w.message) for w in caught if "compile()" in str(w.message)]


def test_a_model_with_its_own_compile_is_not_compiled_on_load_as_keras(keras, tmp_path):
    """Keras 3.15 warns and leaves the model uncompiled (its `compiled` flag reads True, with no optimizer)."""
    ours, theirs = _load_with_custom_compile(keramic, tmp_path), _load_with_custom_compile(keras, tmp_path)
    assert ours[0] is None and theirs[0] is None
    assert ours[1] == theirs[1] and len(ours[1]) == 1
