"""`.keras` and `.weights.h5`: Keras's files load here, ours load in Keras, training resumes exactly,
and bad files are refused with errors that name the file and the entry."""

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import keramic
from keramic import layers
from keramic.errors import FileFormatError, KeramicError, NotBuiltError, UnknownObjectError, WeightsMismatchError

import helpers

FIXTURES = Path(__file__).parent / "fixtures" / "keras3"
CASES = ["seed_mlp", "sequential_mlp_adam", "cnn_small", "functional_two_in_two_out", "nested_shared", "rnn_text", "subclassed"]


TinyResidualNet = keramic.saving.register_keras_serializable(package="keras3_fixtures")(helpers.TinyResidualNet)


NOISE_ONLY_GRADIENTS = {"subclassed": ("hidden/bias",)}


def arrays(folder, prefix):
    files = sorted(folder.glob(f"{prefix}.npy")) or sorted(folder.glob(f"{prefix}_[0-9]*.npy"))
    values = [np.load(f, allow_pickle=False) for f in files]
    return values[0] if len(values) == 1 else values


def as_list(value):
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("case", CASES)
def test_keras_written_model_loads_predicts_and_resumes_training(case):
    folder = FIXTURES / case
    manifest = json.loads((folder / "case.json").read_text())
    model = keramic.models.load_model(folder / "model.keras")
    tolerance = manifest["tolerance"]
    for got, want in zip(as_list(model.predict(arrays(folder, "x"), verbose=0)), as_list(arrays(folder, "y"))):
        np.testing.assert_allclose(got, want, **tolerance["predict"])
    if not (folder / "after_step.npz").exists():
        return
    assert int(model.optimizer.iterations.numpy()) == manifest["training"]["optimizer_iterations_at_save"]
    reference = np.load(folder / "after_step.npz", allow_pickle=False)
    if (folder / "after_step_nodropout.npz").exists():
        reference = np.load(folder / "after_step_nodropout.npz", allow_pickle=False)
        for layer in model.layers:
            if isinstance(layer, layers.Dropout):
                layer.rate = 0.0
    torch.manual_seed(manifest["training"]["after_step"]["after_step_torch_seed"])
    logs = model.train_on_batch(arrays(folder, "train_x"), arrays(folder, "train_y"), return_dict=True)
    keys = [k for k in reference.files if k != "loss"]
    for key, variable in zip(keys, model.weights):
        atol = tolerance["after_step"]["atol"]
        if key in NOISE_ONLY_GRADIENTS.get(case, ()):
            # A bias feeding BatchNormalization has an exactly-zero gradient in exact arithmetic:
            # both libraries update it from float round-off, which Adam rescales to ~1e-5 steps.
            atol = 1e-4
        np.testing.assert_allclose(variable.numpy(), reference[key], atol=atol, err_msg=key)
    assert logs["loss"] == pytest.approx(float(reference["loss"]), abs=1e-6, rel=1e-6)


@pytest.mark.parametrize("case", ["seed_mlp", "cnn_small", "nested_shared"])
def test_keras_weights_file_loads_into_model_from_json(case):
    folder = FIXTURES / case
    model = keramic.models.model_from_json((folder / "config.json").read_text())
    model.load_weights(folder / "model.weights.h5")
    manifest = json.loads((folder / "case.json").read_text())
    for got, want in zip(as_list(model.predict(arrays(folder, "x"), verbose=0)), as_list(arrays(folder, "y"))):
        np.testing.assert_allclose(got, want, **manifest["tolerance"]["predict"])
    assert int(model.optimizer.iterations.numpy()) == manifest["training"]["optimizer_iterations_at_save"]


# ---------------------------------------------------------------- our own architectures
def mlp(module):
    inputs = module.Input((6,), name="features")
    h = module.layers.Dense(8, activation="relu", name="hidden")(inputs)
    h = module.layers.BatchNormalization(name="bn")(h)
    outputs = module.layers.Dense(3, activation="softmax", name="probs")(h)
    model = module.Model(inputs, outputs, name="mlp")
    model.compile(optimizer=module.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def sequential(module):
    model = module.Sequential(
        [module.Input((6,)), module.layers.Dense(8, activation="tanh"), module.layers.Dense(3, activation="softmax")], name="seq"
    )
    model.compile(optimizer=module.optimizers.RMSprop(momentum=0.5, centered=True), loss="sparse_categorical_crossentropy")
    return model


def two_heads(module):
    a = module.Input((6,), name="a")
    b = module.Input((2,), name="b")
    h = module.layers.Concatenate()([module.layers.Dense(4)(a), b])
    score = module.layers.Dense(1, name="score")(h)
    label = module.layers.Dense(3, activation="softmax", name="label")(h)
    model = module.Model([a, b], [score, label])
    model.compile(optimizer=module.optimizers.SGD(0.05, momentum=0.9), loss=["mse", "sparse_categorical_crossentropy"], loss_weights=[0.5, 1.0])
    return model


def text(module):
    tokens = module.Input((5,), dtype="int32", name="tokens")
    h = module.layers.Embedding(20, 4, mask_zero=True)(tokens)
    h = module.layers.GRU(3)(h)
    model = module.Model(tokens, module.layers.Dense(3, activation="softmax")(h))
    model.compile(optimizer=module.optimizers.Adagrad(0.1), loss="sparse_categorical_crossentropy")
    return model


ARCHITECTURES = {"mlp": mlp, "sequential": sequential, "two_heads": two_heads, "text": text}


def batch(name, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=8)
    if name == "two_heads":
        x = [rng.normal(size=(8, 6)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")]
        return x, [rng.normal(size=(8, 1)).astype("float32"), y]
    if name == "text":
        x = rng.integers(0, 20, size=(8, 5)).astype("int32")
        x[:, 3:] = 0
        return x, y
    return rng.normal(size=(8, 6)).astype("float32"), y


@pytest.mark.interop
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_our_keras_file_loads_in_keras_and_trains_identically(keras, tmp_path, name):
    build = ARCHITECTURES[name]
    ours = build(keramic)
    x, y = batch(name)
    for _ in range(2):
        ours.train_on_batch(x, y)
    path = tmp_path / "ours.keras"
    ours.save(path)
    theirs = keras.saving.load_model(path)
    for mine, other in zip(as_list(ours.predict(x, verbose=0)), as_list(theirs.predict(x, verbose=0))):
        np.testing.assert_allclose(mine, other, rtol=1e-5, atol=1e-6)
    assert int(theirs.optimizer.iterations.numpy()) == 2
    x2, y2 = batch(name, seed=1)
    our_loss = ours.train_on_batch(x2, y2)
    their_loss = theirs.train_on_batch(x2, y2)
    np.testing.assert_allclose(np.ravel(our_loss)[0], np.ravel(their_loss)[0], rtol=1e-5, atol=1e-6)
    for mine, other in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, other, rtol=1e-5, atol=1e-6)

    # And back: what Keras writes after its step loads here with the same state.
    back = tmp_path / "theirs.keras"
    theirs.save(back)
    again = keramic.models.load_model(back)
    for mine, other in zip(again.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, other, rtol=0, atol=0)
    assert [v.numpy().tolist() for v in again.optimizer.variables][:1] == [3]


@pytest.mark.interop
def test_our_weights_file_loads_in_keras(keras, tmp_path):
    ours = mlp(keramic)
    x, y = batch("mlp")
    ours.train_on_batch(x, y)
    ours.save_weights(tmp_path / "w.weights.h5")
    theirs = mlp(keras)
    theirs.build((None, 6))
    theirs.optimizer.build(theirs.trainable_variables)
    theirs.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert int(theirs.optimizer.iterations.numpy()) == 1


def test_training_resumes_bit_for_bit_after_save_and_load(tmp_path):
    x, y = batch("mlp")

    def fresh():
        keramic.utils.set_random_seed(7)
        return mlp(keramic)

    uninterrupted = fresh()
    for step in range(5):
        uninterrupted.train_on_batch(*batch("mlp", seed=step))
    resumed = fresh()
    for step in range(2):
        resumed.train_on_batch(*batch("mlp", seed=step))
    resumed.save(tmp_path / "m.keras")
    resumed = keramic.models.load_model(tmp_path / "m.keras")
    for step in range(2, 5):
        resumed.train_on_batch(*batch("mlp", seed=step))
    for a, b in zip(uninterrupted.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(uninterrupted.optimizer.variables, resumed.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_uncompiled_and_untrained_models_round_trip(tmp_path):
    plain = mlp(keramic)
    plain.compiled = False
    plain.optimizer = None
    plain.save(tmp_path / "plain.keras")
    loaded = keramic.models.load_model(tmp_path / "plain.keras")
    assert not loaded.compiled

    untrained = mlp(keramic)
    untrained.save(tmp_path / "untrained.keras")
    loaded = keramic.models.load_model(tmp_path / "untrained.keras")
    assert loaded.compiled and int(loaded.optimizer.iterations.numpy()) == 0
    loaded.train_on_batch(*batch("mlp"))


def test_subclassed_models_need_a_call_and_get_config(tmp_path):
    net = TinyResidualNet()
    with pytest.raises(NotBuiltError, match="Call it"):
        net.save(tmp_path / "n.keras")
    net(np.ones((2, 5), "float32"))
    net.save(tmp_path / "n.keras")
    loaded = keramic.models.load_model(tmp_path / "n.keras")
    np.testing.assert_allclose(loaded.predict(np.ones((2, 5)), verbose=0), net.predict(np.ones((2, 5)), verbose=0), rtol=1e-6)

    class NoConfig(keramic.Model):
        def __init__(self, units):
            super().__init__()
            self.dense = layers.Dense(units)

        def call(self, x):
            return self.dense(x)

    model = NoConfig(3)
    model(np.ones((1, 2), "float32"))
    with pytest.raises(KeramicError, match="get_config"):
        model.save(tmp_path / "no.keras")
    model.save_weights(tmp_path / "no.weights.h5")
    again = NoConfig(3)
    again(np.ones((1, 2), "float32"))
    again.load_weights(tmp_path / "no.weights.h5")
    np.testing.assert_array_equal(again.get_weights()[0], model.get_weights()[0])


# ---------------------------------------------------------------- bad input
def test_bad_files_raise_errors_naming_file_and_entry(tmp_path):
    model = mlp(keramic)
    good = tmp_path / "good.keras"
    model.save(good)

    random_bytes = tmp_path / "random.keras"
    random_bytes.write_bytes(os.urandom(1000))
    with pytest.raises(FileFormatError, match="random.keras"):
        keramic.models.load_model(random_bytes)

    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(FileFormatError, match="truncated.keras"):
        keramic.models.load_model(truncated)

    no_config = tmp_path / "noconfig.keras"
    with zipfile.ZipFile(no_config, "w") as archive:
        archive.writestr("metadata.json", "{}")
    with pytest.raises(FileFormatError, match="config.json"):
        keramic.models.load_model(no_config)

    unknown = tmp_path / "unknown.keras"
    config = json.loads(model.to_json())
    config["config"]["layers"][1]["class_name"] = "Mystery"
    _rewrite(good, unknown, {"config.json": json.dumps(config)})
    with pytest.raises(UnknownObjectError, match="Mystery") as caught:
        keramic.models.load_model(unknown)
    assert "unknown.keras" in str(caught.value)

    wrong_shape = tmp_path / "shape.keras"
    config = json.loads(model.to_json())
    assert config["config"]["layers"][3]["config"]["name"] == "probs"
    config["config"]["layers"][3]["config"]["units"] = 4  # the output layer: the graph stays consistent, its weights do not
    _rewrite(good, wrong_shape, {"config.json": json.dumps(config)})
    with pytest.raises(WeightsMismatchError, match=r"layers/dense_1/vars/0") as caught:
        keramic.models.load_model(wrong_shape)
    assert "shape.keras" in str(caught.value)

    inconsistent = tmp_path / "graph.keras"  # a layer whose output no longer fits the next one's input_spec
    config = json.loads(model.to_json())
    config["config"]["layers"][1]["config"]["units"] = 9
    _rewrite(good, inconsistent, {"config.json": json.dumps(config)})
    with pytest.raises(KeramicError, match="'bn'.*incompatible") as caught:
        keramic.models.load_model(inconsistent)
    assert "graph.keras" in str(caught.value) and "config.json" in str(caught.value)


def test_strict_weight_loading_reports_and_skip_mismatch_warns(tmp_path):
    small = keramic.Sequential([keramic.Input((6,)), layers.Dense(4), layers.Dense(2)])
    big = keramic.Sequential([keramic.Input((6,)), layers.Dense(4), layers.Dense(3)])
    small.save_weights(tmp_path / "s.weights.h5")
    before = big.get_weights()
    with pytest.raises(WeightsMismatchError, match="shape mismatch"):
        big.load_weights(tmp_path / "s.weights.h5")
    for a, b in zip(before, big.get_weights()):
        np.testing.assert_array_equal(a, b)  # nothing half-loaded
    with pytest.warns(UserWarning, match="skip_mismatch"):
        big.load_weights(tmp_path / "s.weights.h5", skip_mismatch=True)
    np.testing.assert_array_equal(big.get_weights()[0], small.get_weights()[0])


def test_save_leaves_no_temporary_files(tmp_path):
    model = mlp(keramic)
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "m.weights.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "m.weights.h5"]


def _rewrite(source, target, replacements):
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            new.writestr(info.filename, replacements.get(info.filename, old.read(info.filename)))


def test_weights_with_optimizer_state_load_into_a_compiled_untrained_model(tmp_path):
    trained = mlp(keramic)
    for step in range(3):
        trained.train_on_batch(*batch("mlp", seed=step))
    trained.save_weights(tmp_path / "w.weights.h5")
    fresh = mlp(keramic)
    assert not fresh.optimizer.built
    fresh.load_weights(tmp_path / "w.weights.h5")
    assert int(fresh.optimizer.iterations.numpy()) == 3
    for a, b in zip(trained.optimizer.variables, fresh.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_loading_skips_initializers_but_never_leaves_garbage(tmp_path):
    model = mlp(keramic)
    model.save(tmp_path / "m.keras")
    broken = tmp_path / "broken.keras"
    config = json.loads(model.to_json())
    config["config"]["layers"][3]["config"]["units"] = 4  # the output layer: the model builds, its weights do not fit
    _rewrite(tmp_path / "m.keras", broken, {"config.json": json.dumps(config)})
    with pytest.raises(WeightsMismatchError):
        keramic.models.load_model(broken)
    loaded = keramic.models.load_model(tmp_path / "m.keras")
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Models built outside a load still get initialised weights.
    assert np.abs(mlp(keramic).get_weights()[0]).sum() > 0
