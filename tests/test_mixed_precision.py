"""Mixed precision as Keras 3 does it: policies, float32 variables with low-precision compute, loss
scaling for float16, and `.keras` files that carry the policy, compared with real Keras."""

import io
import zipfile

import numpy as np
import pytest
import torch

import keramic
from keramic import dtype_policies

POLICIES = {"mixed_bfloat16": dict(rtol=2e-2, atol=2e-2), "mixed_float16": dict(rtol=2e-3, atol=2e-3)}
LAYERS = {
    "Dense": ((5,), lambda lib, policy: lib.layers.Dense(4, dtype=policy, name="mixed")),
    "Conv2D": ((6, 6, 3), lambda lib, policy: lib.layers.Conv2D(2, 3, dtype=policy, name="mixed")),
    "LayerNormalization": ((5,), lambda lib, policy: lib.layers.LayerNormalization(dtype=policy, name="mixed")),
    "BatchNormalization": ((5,), lambda lib, policy: lib.layers.BatchNormalization(dtype=policy, name="mixed")),
    "MultiHeadAttention": ((4, 5), lambda lib, policy: lib.layers.MultiHeadAttention(2, 3, dtype=policy, name="mixed")),
}


@pytest.fixture
def global_policy(keras):
    """Leave both libraries' global policy as found."""
    yield
    keras.mixed_precision.set_global_policy("float32")
    keramic.mixed_precision.set_global_policy(None)


def _model(lib, layer_name, policy):
    shape, make = LAYERS[layer_name]
    inputs = lib.Input(shape)
    layer = make(lib, policy)
    hidden = layer(inputs, inputs) if layer_name == "MultiHeadAttention" else layer(inputs)
    # Keras's advice: a float32 head, so the loss sees float32 outputs.
    outputs = lib.layers.Dense(2, dtype="float32", name="head")(lib.layers.Flatten()(hidden))
    return lib.Model(inputs, outputs)


@pytest.mark.interop
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("layer_name", LAYERS)
def test_layer_outputs_and_one_training_step_match_keras(keras, layer_name, policy):
    tolerance = POLICIES[policy]
    shape = LAYERS[layer_name][0]
    x = np.random.default_rng(0).normal(size=(4, *shape)).astype("float32")
    y = np.random.default_rng(1).normal(size=(4, 2)).astype("float32")
    reference, model = _model(keras, layer_name, policy), _model(keramic, layer_name, policy)
    model.set_weights(reference.get_weights())
    mixed = model.get_layer("mixed")
    assert mixed.compute_dtype == policy[len("mixed_"):] and all(w.dtype == torch.float32 for w in mixed.weights)
    hidden_model = keramic.Model(model.inputs, mixed.output)
    hidden = hidden_model.predict(x, verbose=0)
    assert hidden.dtype == keras.Model(reference.inputs, reference.get_layer("mixed").output).predict(x, verbose=0).dtype
    assert hidden.dtype.name == policy[len("mixed_"):]
    np.testing.assert_allclose(model.predict(x, verbose=0), reference.predict(x, verbose=0), **tolerance)
    for lib, net in ((keras, reference), (keramic, model)):
        net.compile(optimizer=lib.optimizers.SGD(0.1), loss="mse")
    their_loss = reference.train_on_batch(x, y)
    my_loss = model.train_on_batch(x, y)
    np.testing.assert_allclose(my_loss, their_loss, **tolerance)
    for mine, theirs in zip(model.get_weights(), reference.get_weights()):
        assert mine.dtype == theirs.dtype
        np.testing.assert_allclose(mine, theirs, **tolerance)


def test_policy_objects_and_global_policy(global_policy):
    policy = keramic.mixed_precision.Policy("mixed_bfloat16")
    assert (policy.name, policy.compute_dtype, policy.variable_dtype) == ("mixed_bfloat16", "bfloat16", "float32")
    assert keramic.mixed_precision.global_policy().name == "float32"
    keramic.mixed_precision.set_global_policy("mixed_bfloat16")
    assert keramic.mixed_precision.global_policy() == policy
    dense = keramic.layers.Dense(2)
    assert dense.dtype_policy == policy and dense.dtype == "float32" and dense.compute_dtype == "bfloat16"
    assert dense(np.ones((1, 3), "float32")).dtype == torch.bfloat16
    assert dense.get_config()["dtype"]["config"]["name"] == "mixed_bfloat16"
    keramic.mixed_precision.set_global_policy("float64")
    assert keramic.layers.Dense(2).dtype == "float64"
    with pytest.raises(ValueError):
        keramic.mixed_precision.set_global_policy("float17")
    assert dtype_policies.dtype_policy() is keramic.mixed_precision.dtype_policy()


def test_gradients_reach_float32_variables():
    dense = keramic.layers.Dense(3, dtype="mixed_float16")
    output = dense(torch.ones(2, 4))
    assert output.dtype == torch.float16
    output.float().sum().backward()
    assert dense.kernel.grad.dtype == torch.float32 and dense.kernel.dtype == torch.float32
    assert isinstance(dense.kernel, keramic.Variable)  # the float16 copy lives only during the call


@pytest.mark.interop
def test_loss_scale_optimizer_matches_keras(keras):
    mine = keramic.mixed_precision.LossScaleOptimizer(keramic.optimizers.SGD(0.1), dynamic_growth_steps=2)
    theirs = keras.mixed_precision.LossScaleOptimizer(keras.optimizers.SGD(0.1), dynamic_growth_steps=2)
    my_variable, their_variable = keramic.Variable(np.ones(2, "float32")), keras.Variable(np.ones(2, "float32"))
    mine.build([my_variable])
    theirs.build([their_variable])
    scaled = [32768.0, 32768.0]
    for grad in (scaled, scaled, [np.inf, 1.0], scaled):
        mine.apply([torch.tensor(grad)], [my_variable])
        theirs.apply([torch.tensor(grad)], [their_variable])
        np.testing.assert_allclose(my_variable.numpy(), their_variable.numpy(), rtol=1e-6)
        assert [v.name for v in mine.variables] == [v.name for v in theirs.variables]
        for a, b in zip(mine.variables, theirs.variables):
            np.testing.assert_allclose(a.numpy(), b.numpy())
    assert int(mine.iterations) == int(theirs.iterations) == 3
    assert float(mine.scale_loss(torch.tensor(1.0))) == float(theirs.scale_loss(torch.tensor(1.0)))
    assert mine.get_config() == {**theirs.get_config(), "inner_optimizer": keramic.optimizers.serialize(mine.inner_optimizer)}
    restored = keramic.optimizers.deserialize(keramic.optimizers.serialize(mine))
    assert isinstance(restored, keramic.mixed_precision.LossScaleOptimizer) and restored.dynamic_growth_steps == 2


@pytest.mark.interop
def test_global_mixed_float16_wraps_the_optimizer_and_trains_as_keras(keras, global_policy):
    x = np.random.default_rng(2).normal(size=(8, 5)).astype("float32")
    y = np.random.default_rng(3).normal(size=(8, 2)).astype("float32")
    models = {}
    for lib in (keras, keramic):
        lib.mixed_precision.set_global_policy("mixed_float16")
        inputs = lib.Input((5,))
        hidden = lib.layers.Dense(4, activation="relu", name="hidden")(inputs)
        outputs = lib.layers.Dense(2, dtype="float32", name="head")(hidden)
        models[lib] = lib.Model(inputs, outputs)
        models[lib].compile(optimizer=lib.optimizers.Adam(0.01), loss="mse")
        assert type(models[lib].optimizer).__name__ == "LossScaleOptimizer"
    # What compile_config records is the optimizer the user gave, as in Keras.
    assert models[keramic].get_compile_config()["optimizer"]["class_name"] == "Adam"
    models[keramic].set_weights(models[keras].get_weights())
    for lib in (keras, keramic):
        models[lib].fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    for mine, theirs in zip(models[keramic].get_weights(), models[keras].get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=2e-3, atol=2e-3)
    mine_vars, their_vars = models[keramic].optimizer.variables, models[keras].optimizer.variables
    assert [v.name for v in mine_vars] == [v.name for v in their_vars]
    for a, b in zip(mine_vars, their_vars):
        np.testing.assert_allclose(a.numpy(), np.asarray(b.numpy()), rtol=2e-3, atol=2e-3)


@pytest.mark.interop
def test_keras_file_with_mixed_policies_loads_here_and_back(keras, tmp_path):
    x = np.random.default_rng(4).normal(size=(8, 5)).astype("float32")
    y = np.random.default_rng(5).normal(size=(8, 2)).astype("float32")
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(4, activation="relu", dtype="mixed_float16", name="hidden")(inputs)
    hidden = keras.layers.LayerNormalization(dtype="mixed_bfloat16", name="norm")(hidden)
    outputs = keras.layers.Dense(2, dtype="float32", name="head")(hidden)
    reference = keras.Model(inputs, outputs)
    reference.compile(optimizer="adam", loss="mse")
    reference.fit(x, y, batch_size=4, epochs=1, verbose=0)
    keras_file, keramic_file = tmp_path / "keras.keras", tmp_path / "keramic.keras"
    reference.save(keras_file)
    loaded = keramic.saving.load_model(keras_file)
    assert loaded.get_layer("hidden").dtype_policy.name == "mixed_float16"
    assert loaded.get_layer("norm").compute_dtype == "bfloat16" and loaded.get_layer("head").compute_dtype == "float32"
    assert all(w.dtype == torch.float32 for w in loaded.weights)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), reference.predict(x, verbose=0), rtol=2e-2, atol=2e-2)
    for a, b in zip(loaded.optimizer.variables, reference.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), np.asarray(b.numpy()))
    loaded.save(keramic_file)
    back = keras.saving.load_model(keramic_file)
    assert back.get_layer("hidden").dtype_policy.name == "mixed_float16" and back.get_layer("norm").dtype_policy.name == "mixed_bfloat16"
    np.testing.assert_allclose(back.predict(x, verbose=0), reference.predict(x, verbose=0), rtol=1e-6)


def _weights_file(path):
    """{h5 path: array} of a `.keras` file's weights, read with h5py as Keras wrote them."""
    h5py = pytest.importorskip("h5py")
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as h5:
        found = {}
        h5.visititems(lambda name, item: found.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return found


@pytest.mark.interop
def test_global_mixed_float16_loss_scale_state_loads_exactly_both_ways(keras, global_policy, tmp_path):
    x = np.random.default_rng(6).normal(size=(8, 3)).astype("float32")
    y = np.random.default_rng(7).normal(size=(8, 2)).astype("float32")
    for lib in (keras, keramic):
        lib.mixed_precision.set_global_policy("mixed_float16")
    reference = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    reference.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    reference.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    keras_file, keramic_file = tmp_path / "keras.keras", tmp_path / "keramic.keras"
    reference.save(keras_file)
    stored = _weights_file(keras_file)
    # LossScaleOptimizer state: its own 4 variables plus the inner ones, and the inner optimizer again.
    assert len([k for k in stored if k.startswith("optimizer/vars/")]) == 10
    assert len([k for k in stored if k.startswith("optimizer/inner_optimizer/vars/")]) == 6

    loaded = keramic.saving.load_model(keras_file)
    assert type(loaded.optimizer).__name__ == "LossScaleOptimizer"
    mine, theirs = loaded.optimizer.variables, reference.optimizer.variables
    assert [v.path for v in mine] == [v.path.replace("sequential_", "") for v in theirs]
    for index, (a, b) in enumerate(zip(mine, theirs)):
        np.testing.assert_array_equal(a.numpy(), np.asarray(b.numpy()))
        np.testing.assert_array_equal(a.numpy(), stored[f"optimizer/vars/{index}"])
    assert float(loaded.optimizer.dynamic_scale) == float(reference.optimizer.dynamic_scale.numpy())

    loaded.save(keramic_file)
    written = _weights_file(keramic_file)
    assert sorted(written) == sorted(stored)
    for key, value in stored.items():
        assert written[key].shape == value.shape and written[key].dtype == value.dtype, key
        np.testing.assert_array_equal(written[key], value)
    back = keras.saving.load_model(keramic_file)
    assert type(back.optimizer).__name__ == "LossScaleOptimizer"
    for a, b in zip(back.optimizer.variables, reference.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a.numpy()), np.asarray(b.numpy()))


def _listed_weights_layer(lib):
    class ListedWeights(lib.layers.Layer):
        """Keeps its kernels in a list and a dict, as user layers often do."""

        def build(self, input_shape):
            self.kernels = [self.add_weight(shape=(input_shape[-1], 3), name=f"k{i}") for i in range(2)]
            self.extra = {"bias": self.add_weight(shape=(3,), name="b", initializer="ones")}

        def call(self, x):
            return lib.ops.matmul(x, self.kernels[0]) + lib.ops.matmul(x, self.kernels[1]) + self.extra["bias"]

    return ListedWeights(dtype="mixed_float16", name="listed")


@pytest.mark.interop
def test_variables_in_lists_and_dicts_compute_in_the_policy_dtype_as_in_keras(keras):
    x = np.random.default_rng(8).normal(size=(4, 5)).astype("float32")
    reference, layer = _listed_weights_layer(keras), _listed_weights_layer(keramic)
    reference.build((None, 5))
    layer.build((None, 5))
    layer.set_weights(reference.get_weights())
    theirs, mine = reference(x), layer(torch.from_numpy(x))
    assert mine.dtype == torch.float16 and str(theirs.dtype).endswith("float16")
    np.testing.assert_allclose(mine.detach().numpy().astype("float32"), np.asarray(theirs.detach().cpu().numpy(), "float32"), rtol=2e-3, atol=2e-3)
    assert all(isinstance(k, torch.nn.Parameter) and k.dtype == torch.float32 for k in layer.kernels)
    mine.float().sum().backward()
    assert layer.kernels[0].grad is not None and layer.kernels[0].grad.dtype == torch.float32
    assert layer.extra["bias"].grad is not None


@pytest.mark.interop
def test_loss_scaled_file_loaded_under_float32_keeps_weights_and_skips_optimizer_state_as_keras(keras, global_policy, tmp_path):
    """Keras loads the model and warns that the (LossScaleOptimizer-sized) optimizer state does not fit a
    plain optimizer; keramic does the same instead of refusing the file."""
    x = np.random.default_rng(9).normal(size=(8, 3)).astype("float32")
    keras.mixed_precision.set_global_policy("mixed_float16")
    reference = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    reference.compile(optimizer="adam", loss="mse")
    reference.fit(x, np.zeros((8, 2), "float32"), batch_size=4, verbose=0)
    reference.save(tmp_path / "scaled.keras")
    keras.mixed_precision.set_global_policy("float32")
    with pytest.warns(UserWarning, match="Skipping variable loading for optimizer"):
        loaded = keramic.saving.load_model(tmp_path / "scaled.keras")
    assert type(loaded.optimizer).__name__ == "Adam"
    for mine, theirs in zip(loaded.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), reference.predict(x, verbose=0), rtol=2e-3, atol=2e-3)
