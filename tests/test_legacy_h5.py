"""Legacy `.h5`: files written by tf.keras 2 and by Keras 3 load, predict and resume training
exactly; the files keramic writes load in Keras 3; weights-only files load by position or by
name; bad files are refused with errors that name the file and the entry.

Where keramic deliberately differs from Keras 3.15 (every case is asserted below):
- it restores every optimizer slot from `.h5` (Keras builds the optimizer on an empty variable
  list, keeps only `iteration`/`learning_rate`, and then refuses to train: "Unknown variable");
- it compiles files whose loss is an alias such as "mse" (Keras: "Could not deserialize
  'keras.metrics.mse'"), and writes losses by their full names so Keras can compile its files;
- it loads the `NotEqual` mask node Keras 3 writes for `Embedding(mask_zero=True)` (Keras cannot);
- it undoes tf.keras 2's node offset of nested models (Keras: "graph has loops or disconnected
  nodes") and keeps the hyperparameters of `Custom>Adam`-style optimizers (Keras: defaults);
- it refuses to write subclassed models to `.h5`, which Keras writes but cannot read back.
"""

import importlib.util
import json
import os
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import keramic
from keramic import layers
from keramic.errors import ConfigError, FileFormatError, KeramicError, UnsafeDeserializationError, WeightsMismatchError
from keramic.saving.formats import keras2_config, keras2_training, legacy_h5, legacy_optimizer_weights
from keramic.serialization.serialize import deserialize_keras_object

FIXTURES = Path(__file__).parent / "fixtures"
TFKERAS2_CASES = ["seed_mlp", "sequential_cnn", "functional_multi_io"]
KERAS3_CASES = ["seed_mlp", "sequential_mlp_adam", "cnn_small", "functional_two_in_two_out", "nested_shared", "rnn_text"]


def as_list(value):
    return value if isinstance(value, list) else [value]


def legacy_order(model):
    return [w for layer in model.layers for w in layer.trainable_weights + layer.non_trainable_weights]


# ---------------------------------------------------------------- tf.keras 2 files
def tfkeras2_arrays(folder, prefix, manifest, side):
    """`.npy`, or `.npz` keyed by input/output name (in `case.json` order)."""
    if (folder / f"{prefix}.npy").exists():
        return np.load(folder / f"{prefix}.npy", allow_pickle=False)
    stored = np.load(folder / f"{prefix}.npz", allow_pickle=False)
    return [stored[item["name"]] for item in manifest[side]]


@pytest.mark.parametrize("case", TFKERAS2_CASES)
def test_tfkeras2_model_loads_predicts_and_resumes_like_tfkeras(case):
    folder = FIXTURES / "tfkeras2" / case
    manifest = json.loads((folder / "case.json").read_text())
    tolerance = manifest["tolerance"]
    model = legacy_h5.load(folder / "model.h5")

    predictions = model.predict(tfkeras2_arrays(folder, "x", manifest, "inputs"), verbose=0)
    for got, want in zip(as_list(predictions), as_list(tfkeras2_arrays(folder, "y", manifest, "outputs"))):
        np.testing.assert_allclose(got, want, **tolerance["predict"])

    optimizer = model.optimizer
    saved = manifest["optimizer"]
    assert type(optimizer).__name__ == saved["class_name"]  # "Custom>Adam" is Adam ...
    assert float(optimizer.learning_rate.numpy()) == pytest.approx(saved["config"]["learning_rate"])  # ... with its own lr
    assert int(optimizer.iterations.numpy()) == manifest["training"]["train_steps_before_save"]

    x = tfkeras2_arrays(folder, "train_x", manifest, "inputs")
    logs = model.train_on_batch(x, tfkeras2_arrays(folder, "train_y", manifest, "outputs"), return_dict=True)
    reference = np.load(folder / "after_step.npz", allow_pickle=False)
    assert logs["loss"] == pytest.approx(float(reference["__loss__"]), **_approx(tolerance["after_step_loss"]))
    keys = manifest["after_step"]["weight_keys"]
    assert len(keys) == len(legacy_order(model))
    for key, variable in zip(keys, legacy_order(model)):
        # sequential_cnn's moving_variance: TF's fused kernel updates it with the unbiased batch
        # variance, Keras 3 (and keramic) with the biased one; the gap (~2e-5) is inside tolerance.
        np.testing.assert_allclose(variable.numpy(), reference[key], **tolerance["after_step_weights"], err_msg=key)

    # The file order is tf.keras's (no learning_rate entry); keramic's variables minus the
    # learning rate line up with it one to one, except tf.keras SGD's `m` slots: created even
    # without momentum, never read by the update, and not kept by Keras 3's (keramic's) SGD.
    unused = saved["class_name"] == "SGD" and saved["config"]["momentum"] == 0
    expected = [k for k in manifest["after_step"]["optimizer_keys"] if not (unused and "/m/" in k)]
    ours = [v for v in optimizer.variables if v.name != "learning_rate"]
    assert len(ours) == len(expected)
    for key, variable in zip(expected, ours):
        np.testing.assert_allclose(variable.numpy(), reference[key], **tolerance["after_step_weights"], err_msg=key)
    assert int(optimizer.iterations.numpy()) == manifest["training"]["train_steps_before_save"] + 1


def _approx(tolerance):
    return {"rel": tolerance["rtol"], "abs": tolerance["atol"]}


def test_tfkeras2_training_config_becomes_keras3_compile_arguments():
    model = legacy_h5.load(FIXTURES / "tfkeras2" / "functional_multi_io" / "model.h5")
    args = model._compile_args
    assert args["loss"] == {"score": "mse", "label": "sparse_categorical_crossentropy"}
    assert args["loss_weights"] == {"score": 0.5, "label": 1.0}
    # Keras 2 wrote compiled MeanMetricWrappers named "<output>_<metric>", one list per output.
    assert args["metrics"] == {"score": ["mae"], "label": ["accuracy"]}
    folder = FIXTURES / "tfkeras2" / "functional_multi_io"
    x = tfkeras2_arrays(folder, "x", json.loads((folder / "case.json").read_text()), "inputs")
    logs = model.evaluate(x, [np.zeros((6, 1), "float32"), np.zeros(6, "int64")], return_dict=True, verbose=0)
    assert {"score_mae", "label_accuracy"} <= set(logs)

    uncompiled = legacy_h5.load(FIXTURES / "tfkeras2" / "seed_mlp" / "model.h5", compile=False)
    assert not uncompiled.compiled


def test_tfkeras2_weights_files_load_by_position_and_by_name():
    folder = FIXTURES / "tfkeras2" / "seed_mlp"
    x, y = np.load(folder / "x.npy"), np.load(folder / "y.npy")

    def mlp(names):
        inputs = keramic.Input((784,), name="digits")
        h = layers.Dense(64, activation="relu", name=names[0])(inputs)
        h = layers.Dense(64, activation="relu", name=names[1])(h)
        return keramic.Model(inputs, layers.Dense(10, activation="softmax", name=names[2])(h))

    renamed = mlp(["first", "second", "third"])  # by position, names do not matter
    legacy_h5.load_weights(renamed, folder / "weights.h5")
    np.testing.assert_allclose(renamed.predict(x, verbose=0), y, rtol=1e-4, atol=1e-5)

    same_names = mlp(["dense_1", "dense_2", "predictions"])
    legacy_h5.load_weights(same_names, folder / "weights.h5", by_name=True)
    np.testing.assert_allclose(same_names.predict(x, verbose=0), y, rtol=1e-4, atol=1e-5)

    from_whole_model = mlp(["a", "b", "c"])  # a whole-model file's `model_weights` group
    legacy_h5.load_weights(from_whole_model, folder / "model.h5")
    np.testing.assert_allclose(from_whole_model.predict(x, verbose=0), y, rtol=1e-4, atol=1e-5)

    cnn_folder = FIXTURES / "tfkeras2" / "sequential_cnn"
    cnn = keramic.Sequential(
        [
            keramic.Input((10, 10, 3)),
            layers.Conv2D(4, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.BatchNormalization(),
            layers.Flatten(),
            layers.Dense(5, activation="softmax"),
        ]
    )
    legacy_h5.load_weights(cnn, cnn_folder / "weights.h5")
    predictions = cnn.predict(np.load(cnn_folder / "x.npy"), verbose=0)
    np.testing.assert_allclose(predictions, np.load(cnn_folder / "y.npy"), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- Keras 3 files
def keras3_arrays(folder, prefix):
    files = sorted(folder.glob(f"{prefix}.npy")) or sorted(folder.glob(f"{prefix}_[0-9]*.npy"))
    values = [np.load(f, allow_pickle=False) for f in files]
    return values[0] if len(values) == 1 else values


@pytest.mark.parametrize("case", KERAS3_CASES)
def test_keras3_h5_loads_predicts_and_resumes_like_keras(case):
    folder = FIXTURES / "keras3" / case
    manifest = json.loads((folder / "case.json").read_text())
    tolerance = manifest["tolerance"]
    model = legacy_h5.load(folder / "model.h5")  # Keras itself fails on rnn_text and, compiled, on functional_two_in_two_out
    for got, want in zip(as_list(model.predict(keras3_arrays(folder, "x"), verbose=0)), as_list(keras3_arrays(folder, "y"))):
        np.testing.assert_allclose(got, want, **tolerance["predict"])
    if not (folder / "after_step.npz").exists():
        assert not model.compiled
        return
    saved_optimizer = np.load(folder / "after_step_optimizer.npz", allow_pickle=False)
    assert len(model.optimizer.variables) == len(saved_optimizer.files)  # every slot (Keras keeps 2)
    assert int(model.optimizer.iterations.numpy()) == manifest["training"]["optimizer_iterations_at_save"]

    reference = np.load(folder / "after_step.npz", allow_pickle=False)
    dropout_free = (folder / "after_step_nodropout.npz").exists()
    if dropout_free:
        reference = np.load(folder / "after_step_nodropout.npz", allow_pickle=False)
        for layer in model.layers:
            if isinstance(layer, layers.Dropout):
                layer.rate = 0.0
    torch.manual_seed(manifest["training"]["after_step"]["after_step_torch_seed"])
    logs = model.train_on_batch(keras3_arrays(folder, "train_x"), keras3_arrays(folder, "train_y"), return_dict=True)
    assert logs["loss"] == pytest.approx(float(reference["loss"]), rel=1e-6, abs=1e-6)
    keys = [k for k in reference.files if k != "loss"]
    assert len(keys) == len(model.weights)
    for key, variable in zip(keys, model.weights):
        np.testing.assert_allclose(variable.numpy(), reference[key], atol=tolerance["after_step"]["atol"], err_msg=key)
    if not dropout_free:  # the optimizer reference is the step with dropout active
        for index, variable in enumerate(model.optimizer.variables):
            expected = saved_optimizer[str(index)]
            np.testing.assert_allclose(variable.numpy(), expected, atol=tolerance["after_step"]["atol"], err_msg=str(index))


# ---------------------------------------------------------------- hand-built tf.keras 2 layouts
def dense_config(name, units, activation="linear"):
    return {
        "name": name,
        "trainable": True,
        "dtype": "float32",
        "units": units,
        "activation": activation,
        "use_bias": True,
        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}},
        "kernel_regularizer": None,
        "bias_regularizer": None,
        "activity_regularizer": None,
        "kernel_constraint": None,
        "bias_constraint": None,
    }


def input_config(name, shape):
    return {"batch_input_shape": [None, *shape], "dtype": "float32", "sparse": False, "ragged": False, "name": name}


def entry(class_name, config, *calls):
    """A Keras 2 functional layer entry; each call is a list of `[layer, node, tensor, kwargs]`."""
    return {"class_name": class_name, "config": config, "name": config["name"], "inbound_nodes": [list(call) for call in calls]}


# x -> pre; inner(x) and inner(pre(x)) (a nested "Model", nodes 1 and 2) -> cat -> seq (a nested
# Sequential with an input layer, node 1) -> out; the model returns `out` and `seq`'s output.
NESTED_KERAS2_CONFIG = {
    "class_name": "Functional",
    "config": {
        "name": "nested_tf",
        "layers": [
            entry("InputLayer", input_config("x", [4])),
            entry("Dense", dense_config("pre", 4), [["x", 0, 0, {}]]),
            entry(
                "Model",
                {
                    "name": "inner",
                    "layers": [
                        entry("InputLayer", input_config("inner_in", [4])),
                        entry("Dense", dense_config("a", 3, "tanh"), [["inner_in", 0, 0, {}]]),
                    ],
                    "input_layers": [["inner_in", 0, 0]],
                    "output_layers": [["a", 0, 0]],
                },
                [["x", 0, 0, {}]],
                [["pre", 0, 0, {}]],
            ),
            entry(
                "Concatenate",
                {"name": "cat", "trainable": True, "dtype": "float32", "axis": -1},
                [["inner", 1, 0, {}], ["inner", 2, 0, {}]],
            ),
            entry(
                "Sequential",
                {
                    "name": "seq",
                    "layers": [
                        {"class_name": "InputLayer", "config": input_config("seq_in", [6])},
                        {"class_name": "Dense", "config": dense_config("b", 2, "relu")},
                    ],
                },
                [["cat", 0, 0, {}]],
            ),
            entry("Dense", dense_config("out", 2), [["seq", 1, 0, {}]]),
        ],
        "input_layers": [["x", 0, 0]],
        "output_layers": [["out", 0, 0], ["seq", 1, 0]],
    },
}


def nested_keramic_model():
    """The same architecture built in code: the reference the loaded model must match."""
    x = keramic.Input((4,), name="x")
    inner_in = keramic.Input((4,), name="inner_in")
    inner = keramic.Model(inner_in, layers.Dense(3, activation="tanh", name="a")(inner_in), name="inner")
    pre = layers.Dense(4, name="pre")(x)
    cat = layers.Concatenate(name="cat")([inner(x), inner(pre)])
    seq = keramic.Sequential([keramic.Input((6,)), layers.Dense(2, activation="relu", name="b")], name="seq")
    hidden = seq(cat)
    return keramic.Model(x, [layers.Dense(2, name="out")(hidden), hidden], name="nested_tf")


def tf_weight_name(variable):
    """tf.keras's name of a variable: its own scope and name with `:0` (`a/kernel:0`)."""
    return "/".join(variable.path.split("/")[-2:]) + ":0"


def write_keras2_file(path, model_config, model, training_config=None, optimizer_entries=(), fixed_length=False):
    """A whole-model file in tf.keras 2's layout (weights taken from `model`); `fixed_length`
    stores every string attribute as h5py 2 did (fixed-length bytes), and then also splits
    `layer_names` in two chunks."""

    def names_attribute(node, key, names):
        if not names:
            node.attrs[key] = np.zeros((0,))
        elif fixed_length:
            node.attrs.create(key, np.array([n.encode() for n in names], dtype=f"S{max(len(n) for n in names)}"))
        else:
            node.attrs[key] = [n.encode() for n in names]

    def text_attribute(node, key, text):
        if fixed_length:
            node.attrs.create(key, np.bytes_(text.encode()), dtype=f"S{len(text.encode())}")
        else:
            node.attrs[key] = text.encode()

    with h5py.File(path, "w") as h5file:
        text_attribute(h5file, "keras_version", "2.4.0")
        text_attribute(h5file, "backend", "tensorflow")
        text_attribute(h5file, "model_config", json.dumps(model_config))
        if training_config is not None:
            text_attribute(h5file, "training_config", json.dumps(training_config))
        group = h5file.create_group("model_weights")
        layer_names = [layer.name for layer in model.layers]
        if fixed_length:
            names_attribute(group, "layer_names0", layer_names[:3])
            names_attribute(group, "layer_names1", layer_names[3:])
        else:
            names_attribute(group, "layer_names", layer_names)
        for layer in model.layers:
            layer_group = group.create_group(layer.name)
            weights = layer.trainable_weights + layer.non_trainable_weights
            names_attribute(layer_group, "weight_names", [tf_weight_name(w) for w in weights])
            for weight in weights:
                layer_group.create_dataset(tf_weight_name(weight), data=weight.numpy())
        if optimizer_entries:
            optimizer_group = h5file.create_group("optimizer_weights")
            names_attribute(optimizer_group, "weight_names", [name for name, _ in optimizer_entries])
            for name, value in optimizer_entries:
                optimizer_group.create_dataset(name, data=value)


ADAM_V2_TRAINING_CONFIG = {
    "loss": ["mse", "mse"],
    "metrics": None,
    "weighted_metrics": None,
    "loss_weights": None,
    "optimizer_config": {
        "class_name": "Adam",
        "config": {"name": "Adam", "learning_rate": 0.01, "decay": 0.0, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-07,
                   "amsgrad": False},
    },
}


@pytest.mark.parametrize("fixed_length", [False, True], ids=["vlen-strings", "h5py2-fixed-strings"])
def test_keras2_nested_models_and_optimizer_v2_state_resume_exactly(tmp_path, fixed_length):
    keramic.utils.set_random_seed(3)
    reference = nested_keramic_model()
    reference.compile(optimizer=keramic.optimizers.Adam(0.02), loss=["mse", "mse"])
    reference.optimizer.build(reference.trainable_variables)
    rng = np.random.default_rng(0)
    # OptimizerV2 layout, TF1 graph-mode names: iter, hyperparameters, then all m, then all v.
    entries = [
        ("training/Adam/iter:0", np.array(5, "int64")),
        ("training/Adam/beta_1:0", np.float32(0.9)),
        ("training/Adam/learning_rate:0", np.float32(0.02)),
    ]
    slot_values = {}
    for slot, keras3_slot in (("m", "momentum"), ("v", "velocity")):
        for variable in reference.trainable_variables:
            value = np.abs(rng.normal(size=tuple(variable.shape))).astype("float32") * 0.01
            entries.append((f"training/Adam/{tf_weight_name(variable)[:-2]}/{slot}:0", value))
            slot_values[f"{variable.path.replace('/', '_')}_{keras3_slot}"] = value
    for variable in reference.optimizer.variables:
        if variable.name in slot_values:
            variable.assign(slot_values[variable.name])
    reference.optimizer.iterations.assign(5)
    reference.optimizer.learning_rate.assign(0.02)
    path = tmp_path / "nested_tf.h5"
    write_keras2_file(path, NESTED_KERAS2_CONFIG, reference, ADAM_V2_TRAINING_CONFIG, entries, fixed_length=fixed_length)

    loaded = legacy_h5.load(path)
    x = rng.normal(size=(5, 4)).astype("float32")
    for got, want in zip(loaded.predict(x, verbose=0), reference.predict(x, verbose=0)):
        np.testing.assert_array_equal(got, want)
    kinds = [type(layer).__name__ for layer in loaded.layers]
    assert kinds == ["InputLayer", "Dense", "Functional", "Concatenate", "Sequential", "Dense"]
    assert int(loaded.optimizer.iterations.numpy()) == 5
    assert float(loaded.optimizer.learning_rate.numpy()) == pytest.approx(0.02)

    targets = [rng.normal(size=(5, 2)).astype("float32"), rng.normal(size=(5, 2)).astype("float32")]
    assert loaded.train_on_batch(x, targets) == pytest.approx(reference.train_on_batch(x, targets), rel=1e-6)
    for got, want in zip(loaded.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    for got, want in zip(loaded.optimizer.variables, reference.optimizer.variables):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-9, err_msg=want.name)


SLOT_LAYOUT_CASES = [
    # (optimizer, writer, file entries as (slot, variable index) after the iteration counter)
    (lambda: keramic.optimizers.Adam(amsgrad=True), legacy_optimizer_weights.TF_KERAS,
     [("momentum", 0), ("velocity", 0), ("momentum", 1), ("velocity", 1), ("velocity_hat", 0), ("velocity_hat", 1)]),
    (lambda: keramic.optimizers.Adam(amsgrad=True), legacy_optimizer_weights.TF_KERAS_V2,
     [("momentum", 0), ("momentum", 1), ("velocity", 0), ("velocity", 1), ("velocity_hat", 0), ("velocity_hat", 1)]),
    (lambda: keramic.optimizers.RMSprop(momentum=0.5, centered=True), legacy_optimizer_weights.TF_KERAS,
     [("velocity", 0), ("velocity", 1), ("momentum", 0), ("momentum", 1), ("average_gradient", 0), ("average_gradient", 1)]),
    (lambda: keramic.optimizers.RMSprop(momentum=0.5, centered=True), legacy_optimizer_weights.TF_KERAS_V2,
     [("velocity", 0), ("velocity", 1), ("momentum", 0), ("momentum", 1), ("average_gradient", 0), ("average_gradient", 1)]),
    (lambda: keramic.optimizers.SGD(momentum=0.9), legacy_optimizer_weights.TF_KERAS_V2, [("momentum", 0), ("momentum", 1)]),
    (lambda: keramic.optimizers.SGD(), legacy_optimizer_weights.TF_KERAS, [(None, 0), (None, 1)]),  # tf.keras's unused `m`
    (lambda: keramic.optimizers.Adagrad(), legacy_optimizer_weights.TF_KERAS_V2, [("accumulator", 0), ("accumulator", 1)]),
    (lambda: keramic.optimizers.Adam(use_ema=True), legacy_optimizer_weights.TF_KERAS,
     [("average", 0), ("average", 1), ("momentum", 0), ("velocity", 0), ("momentum", 1), ("velocity", 1)]),
]


@pytest.mark.parametrize("make, writer, layout", SLOT_LAYOUT_CASES)
def test_tfkeras_optimizer_layouts_map_by_position(make, writer, layout):
    dense = layers.Dense(3, name="d")
    dense.build((None, 2))
    variables = dense.trainable_weights  # kernel (2, 3), bias (3,): different shapes catch swaps
    optimizer = make()
    optimizer.build(variables)
    names = ["Opt/iter:0" if writer == legacy_optimizer_weights.TF_KERAS_V2 else "iteration:0"]
    names += [f"Opt/{slot}/{index}:0" for slot, index in layout]  # names are not trusted: positions are
    shapes = [()] + [tuple(variables[index].shape) for _, index in layout]
    pairs = legacy_optimizer_weights.plan(optimizer, variables, names, shapes, writer)
    mapped = {position: variable.name for position, variable in pairs}
    assert mapped.pop(0) == "iteration"
    expected = {
        position: f"d_{['kernel', 'bias'][index]}_{slot}" for position, (slot, index) in enumerate(layout, start=1) if slot
    }
    assert mapped == expected

    with pytest.raises(legacy_optimizer_weights.OptimizerLayoutError, match="writes"):
        legacy_optimizer_weights.plan(optimizer, variables, names[:-1], shapes[:-1], writer)
    for position in expected:
        wrong = shapes[:position] + [(7,)] + shapes[position + 1 :]
        with pytest.raises(legacy_optimizer_weights.OptimizerLayoutError, match=r"shape \(7,\)"):
            legacy_optimizer_weights.plan(optimizer, variables, names, wrong, writer)


def test_optimizer_writer_is_told_from_names_config_and_version():
    writer_of = legacy_optimizer_weights.writer_of
    assert writer_of(["Adam/iter:0"], "2.4.0", None) == legacy_optimizer_weights.TF_KERAS_V2
    assert writer_of(["iteration:0"], "2.15.0", None) == legacy_optimizer_weights.TF_KERAS
    assert writer_of(["adam/iteration"], "3.15.1", None) == legacy_optimizer_weights.KERAS3
    assert writer_of(["x"], "2.12.0", {"config": {"is_legacy_optimizer": True}}) == legacy_optimizer_weights.TF_KERAS_V2
    assert writer_of(["x"], "2.10.0", {"config": {}}) == legacy_optimizer_weights.TF_KERAS_V2
    assert writer_of(["x"], "2.11.0", {"config": {}}) == legacy_optimizer_weights.TF_KERAS


def test_unmappable_optimizer_state_warns_and_keeps_a_fresh_optimizer(tmp_path):
    model = small_mlp()
    model.train_on_batch(*small_batch())
    path = tmp_path / "m.h5"
    legacy_h5.save(model, path)
    with h5py.File(path, "a") as h5file:
        group = h5file["optimizer_weights"]
        names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
        group.attrs["weight_names"] = [n.encode() for n in names[:-1]]
    with pytest.warns(UserWarning, match=r"m\.h5: entry '/optimizer_weights': the saved optimizer state was not restored"):
        loaded = legacy_h5.load(path)
    assert int(loaded.optimizer.iterations.numpy()) == 0
    loaded.train_on_batch(*small_batch())


# ---------------------------------------------------------------- Keras 2 config forms
def test_keras2_layer_configs_become_keras3_configs():
    def convert(class_name, config, version="2.6.0"):
        return keras2_config.convert_model_config({"class_name": class_name, "config": config}, version)["config"]

    bn = convert("BatchNormalization", {"name": "bn", "axis": [3], "fused": None, "virtual_batch_size": None, "adjustment": None})
    assert bn == {"name": "bn", "axis": 3}
    assert convert("LSTM", {"name": "l", "units": 2, "time_major": False, "shared_object_id": 7}) == {"name": "l", "units": 2}
    with pytest.raises(ConfigError, match="time_major=True"):
        convert("GRU", {"name": "g", "units": 2, "time_major": True})
    policy = {"name": "d", "units": 1, "dtype": {"class_name": "Policy", "config": {"name": "mixed_float16"}}}
    dense = deserialize_keras_object({"class_name": "Dense", "config": convert("Dense", policy)})
    assert dense.dtype_policy.name == "mixed_float16"
    leaky = deserialize_keras_object({"class_name": "LeakyReLU", "config": convert("LeakyReLU", {"name": "r", "alpha": 0.2})})
    assert leaky.negative_slope == pytest.approx(0.2)
    assert "input_length" not in convert("Embedding", {"name": "e", "input_dim": 5, "output_dim": 2, "input_length": 7})
    init = convert("VarianceScaling", {"scale": 1.0, "mode": "fan_in", "distribution": "normal"})
    assert init["distribution"] == "truncated_normal"

    policy_envelope = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}
    keras3_entry = {"class_name": "Dense", "config": {"name": "d", "units": 1, "dtype": policy_envelope}}
    assert keras2_config.convert_model_config(keras3_entry, "3.15.1") == keras3_entry


def test_oldest_keras2_forms_load(tmp_path):
    """Keras 2.0-2.3: a "Model" class name, 3-element node entries, a Sequential config that is a
    bare list whose first layer carries `batch_input_shape`, and no `top_level_model_weights`."""
    x = keramic.Input((3,), name="x")
    stack = keramic.Sequential([layers.Dense(2, name="s")], name="stack")
    stack.build((None, 3))
    reference = keramic.Model(x, layers.Dense(1, name="head")(stack(x)), name="old")
    stack_config = [{"class_name": "Dense", "config": {**dense_config("s", 2), "batch_input_shape": [None, 3]}}]
    config = {
        "class_name": "Model",
        "config": {
            "name": "old",
            "layers": [
                entry("InputLayer", input_config("x", [3])),
                entry("Sequential", {"name": "stack", "layers": stack_config}, [["x", 0, 0]]) | {"config": stack_config},
                entry("Dense", dense_config("head", 1), [["stack", 1, 0]]),
            ],
            "input_layers": [["x", 0, 0]],
            "output_layers": [["head", 0, 0]],
        },
    }
    path = tmp_path / "old.h5"
    write_keras2_file(path, config, reference)
    loaded = legacy_h5.load(path)
    probe = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_array_equal(loaded.predict(probe, verbose=0), reference.predict(probe, verbose=0))


def test_keras2_lambda_bytecode_is_refused_in_safe_mode(tmp_path):
    import base64
    import marshal

    code = base64.encodebytes(marshal.dumps((lambda t: t * 2.0).__code__)).decode("ascii")
    lambda_config = {
        "name": "double",
        "trainable": True,
        "dtype": "float32",
        "function": [code, None, None],  # Keras 2's marshal bytecode, defaults, closure
        "function_type": "lambda",
        "module": "__main__",
        "output_shape": None,
        "output_shape_type": "raw",
        "output_shape_module": None,
        "arguments": {},
    }
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "lam",
            "layers": [
                {"class_name": "InputLayer", "config": input_config("lam_in", [3])},
                {"class_name": "Lambda", "config": lambda_config},
            ],
        },
    }
    model = keramic.Sequential([keramic.Input((3,)), layers.Lambda(lambda t: t * 2.0, name="double")], name="lam")
    path = tmp_path / "lambda.h5"
    write_keras2_file(path, config, model)
    with pytest.raises(UnsafeDeserializationError, match="safe_mode=False") as caught:
        legacy_h5.load(path)
    assert "lambda.h5" in str(caught.value) and "model_config" in str(caught.value)
    loaded = legacy_h5.load(path, safe_mode=False)
    np.testing.assert_allclose(loaded.predict(np.ones((1, 3), "float32"), verbose=0), 2.0)


def test_keras2_optimizer_configs_keep_their_hyperparameters():
    tf_config = {"name": "Adam", "learning_rate": 0.0123, "beta_1": 0.8, "is_legacy_optimizer": False, "jit_compile": True}
    converted = keras2_training.convert_optimizer_config({"class_name": "Custom>Adam", "config": tf_config})
    adam = keramic.optimizers.deserialize(converted)
    assert type(adam).__name__ == "Adam" and adam.beta_1 == 0.8
    assert float(adam.learning_rate.numpy()) == pytest.approx(0.0123)

    v2_config = {"name": "SGD", "lr": 0.1, "decay": 0.5, "momentum": 0, "nesterov": False}
    sgd = keramic.optimizers.deserialize(keras2_training.convert_optimizer_config({"class_name": "SGD", "config": v2_config}))
    # OptimizerV2's decay: lr / (1 + decay * iterations), an InverseTimeDecay schedule.
    assert float(sgd._schedule_value(2)) == pytest.approx(0.1 / (1 + 0.5 * 2))


# ---------------------------------------------------------------- keramic writes, keramic reads
def small_mlp(optimizer=None, module=keramic):
    inputs = module.Input((6,), name="features")
    h = module.layers.Dense(8, activation="relu", name="hidden")(inputs)
    h = module.layers.BatchNormalization(name="bn")(h)
    model = module.Model(inputs, module.layers.Dense(3, activation="softmax", name="probs")(h), name="mlp")
    optimizer = optimizer or module.optimizers.Adam(0.01)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def small_batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(8, 6)).astype("float32"), rng.integers(0, 3, size=8)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop_centered", "sgd_schedule"])
def test_training_resumes_bit_for_bit_from_our_h5(tmp_path, optimizer):
    def fresh():
        keramic.utils.set_random_seed(11)
        if optimizer == "adam":
            return small_mlp(keramic.optimizers.Adam(0.01, amsgrad=True))
        if optimizer == "rmsprop_centered":
            return small_mlp(keramic.optimizers.RMSprop(momentum=0.5, centered=True))
        schedule = keramic.optimizers.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)
        return small_mlp(keramic.optimizers.SGD(schedule, momentum=0.9, nesterov=True))

    uninterrupted = fresh()
    for step in range(4):
        uninterrupted.train_on_batch(*small_batch(step))
    resumed = fresh()
    for step in range(2):
        resumed.train_on_batch(*small_batch(step))
    legacy_h5.save(resumed, tmp_path / "m.h5")
    resumed = legacy_h5.load(tmp_path / "m.h5")
    for step in range(2, 4):
        resumed.train_on_batch(*small_batch(step))
    for a, b in zip(uninterrupted.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(uninterrupted.optimizer.variables, resumed.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert sorted(os.listdir(tmp_path)) == ["m.h5"]  # written atomically, nothing left behind


def test_what_we_write_is_keras3s_legacy_layout(tmp_path):
    model = small_mlp()
    model.compile(optimizer="adam", loss=["mse"])  # an alias: written by its full name
    x, labels = small_batch()
    model.train_on_batch(x, np.eye(3, dtype="float32")[labels])
    legacy_h5.save(model, tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as h5file:
        assert legacy_h5.is_legacy_model_file(h5file) and legacy_h5.is_legacy_weights_file(h5file)
        assert h5file.attrs["keras_version"].startswith("3.")
        config = json.loads(h5file.attrs["model_config"])
        assert set(config) == {"class_name", "config"}
        assert all("module" not in entry and "build_config" not in entry for entry in config["config"]["layers"])
        training = json.loads(h5file.attrs["training_config"])
        assert training["loss"] == ["mean_squared_error"]
        assert training["optimizer_config"]["class_name"] == "Adam"
        assert list(h5file["model_weights"].attrs["layer_names"]) == ["features", "hidden", "bn", "probs"]
        bn_names = list(h5file["model_weights/bn"].attrs["weight_names"])
        assert bn_names == ["bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance"]
        assert h5file["model_weights/features"].attrs["weight_names"].shape == (0,)
        names = [n.split("/", 1)[1] for n in h5file["optimizer_weights"].attrs["weight_names"]]
        assert names[:3] == ["iteration", "learning_rate", "hidden_kernel_momentum"]

    model.save_weights(tmp_path / "keras3.weights.h5")
    with h5py.File(tmp_path / "keras3.weights.h5", "r") as h5file:
        assert not legacy_h5.is_legacy_weights_file(h5file) and not legacy_h5.is_legacy_model_file(h5file)

    legacy_h5.save(model, tmp_path / "plain.h5", include_optimizer=False)
    with h5py.File(tmp_path / "plain.h5", "r") as h5file:
        assert "training_config" not in h5file.attrs and "optimizer_weights" not in h5file
    assert not legacy_h5.load(tmp_path / "plain.h5").compiled


def test_long_name_lists_are_split_across_attributes(tmp_path):
    inputs = keramic.Input((2,))
    h = inputs
    for index in range(700):  # 700 names of 100 bytes: more than one attribute holds
        h = layers.Activation("linear", name=f"layer_{index:04d}".ljust(100, "x"))(h)
    model = keramic.Model(inputs, layers.Dense(1, name="head")(h))
    legacy_h5.save(model, tmp_path / "long.h5")
    with h5py.File(tmp_path / "long.h5", "r") as h5file:
        attrs = h5file["model_weights"].attrs
        assert "layer_names" not in attrs and "layer_names0" in attrs and "layer_names1" in attrs
    loaded = legacy_h5.load(tmp_path / "long.h5")
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])


def test_subclassed_models_are_refused_with_a_way_out(tmp_path):
    class Net(keramic.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.ones((1, 3), "float32"))
    with pytest.raises(KeramicError, match=r"\.keras"):
        legacy_h5.save(net, tmp_path / "net.h5")
    legacy_h5.save_weights(net, tmp_path / "net_weights.h5")  # weights-only works by position
    again = Net()
    again(np.ones((1, 3), "float32"))
    legacy_h5.load_weights(again, tmp_path / "net_weights.h5")
    np.testing.assert_array_equal(again.get_weights()[0], net.get_weights()[0])


# ---------------------------------------------------------------- weights-only files
def test_weights_only_files_by_position_by_name_and_skipping(tmp_path):
    def stack(*dense):
        return keramic.Sequential([keramic.Input((4,)), *dense])

    source = stack(layers.Dense(3, name="a"), layers.Dense(2, name="b"), layers.Dense(1, name="c"))
    path = tmp_path / "w.h5"
    legacy_h5.save_weights(source, path)
    with h5py.File(path, "r") as h5file:
        assert legacy_h5.is_legacy_weights_file(h5file) and not legacy_h5.is_legacy_model_file(h5file)
        assert list(h5file.attrs["layer_names"]) == ["a", "b", "c"]

    target = stack(layers.Dense(3, name="x"), layers.Dense(2, name="y"), layers.Dense(1, name="z"))
    legacy_h5.load_weights(target, path)
    for got, want in zip(target.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(got, want)

    # By name: "a" matches, "b" has another shape, "new" is not in the file.
    partial = stack(layers.Dense(3, name="a"), layers.Dense(5, name="b"), layers.Dense(1, name="new"))
    before = partial.get_weights()
    with pytest.raises(WeightsMismatchError, match=r"(?s)w\.h5.*entry '/b/sequential(_\d+)?/b/kernel'") as caught:
        legacy_h5.load_weights(partial, path, by_name=True)
    assert "Nothing was loaded" in str(caught.value)
    for got, want in zip(partial.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        legacy_h5.load_weights(partial, path, by_name=True, skip_mismatch=True)
    messages = [str(w.message) for w in caught_warnings]
    assert any("'b'" in m and "b/kernel" in m and "(3, 5)" in m for m in messages), messages
    np.testing.assert_array_equal(partial.get_weights()[0], source.get_weights()[0])  # a: loaded
    np.testing.assert_array_equal(partial.get_weights()[4], before[4])  # new: untouched

    fewer = stack(layers.Dense(3, name="a", use_bias=False), layers.Dense(2, name="b"))
    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        legacy_h5.load_weights(fewer, path, by_name=True, skip_mismatch=True)
    assert any("skipping the weights of layer #0 ('a')" in str(w.message) for w in caught_warnings)

    # By position, skip_mismatch skips single weights of another shape (Keras 3; tf.keras refused).
    wider = stack(layers.Dense(3), layers.Dense(5), layers.Dense(1))
    with pytest.warns(UserWarning, match=r"w\.h5: entry '/b/sequential(_\d+)?/b/kernel': skipping layer #1"):
        legacy_h5.load_weights(wider, path, skip_mismatch=True)
    np.testing.assert_array_equal(wider.get_weights()[0], source.get_weights()[0])  # a: loaded
    np.testing.assert_array_equal(wider.get_weights()[5], source.get_weights()[5])  # c/bias: loaded

    two_layers = stack(layers.Dense(3), layers.Dense(2))
    with pytest.raises(WeightsMismatchError, match=r"w\.h5: entry 'layer_names': layer count mismatch: the model has 2"):
        legacy_h5.load_weights(two_layers, path)


# ---------------------------------------------------------------- bad input
def test_bad_files_are_refused_naming_file_and_entry(tmp_path):
    model = small_mlp()
    good = tmp_path / "good.h5"
    legacy_h5.save(model, good)

    not_hdf5 = tmp_path / "random.h5"
    not_hdf5.write_bytes(os.urandom(2000))
    with pytest.raises(FileFormatError, match="random.h5"):
        legacy_h5.load(not_hdf5)

    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(KeramicError, match="truncated.h5"):
        legacy_h5.load(truncated)

    weights_only = tmp_path / "weights_only.h5"
    legacy_h5.save_weights(model, weights_only)
    with pytest.raises(FileFormatError, match=r"weights_only\.h5: entry 'model_config'"):
        legacy_h5.load(weights_only)

    bad_json = _copy(good, tmp_path / "json.h5", lambda f: f.attrs.__setitem__("model_config", b"{not json"))
    with pytest.raises(FileFormatError, match=r"json\.h5: entry 'model_config': not valid JSON"):
        legacy_h5.load(bad_json)

    def mystery(h5file):
        h5file.attrs["model_config"] = h5file.attrs["model_config"].replace('"Dense"', '"Mystery"', 1)

    unknown = _copy(good, tmp_path / "unknown.h5", mystery)
    with pytest.raises(KeramicError, match=r"unknown\.h5: entry 'model_config'.*Mystery"):
        legacy_h5.load(unknown)

    def wrong_shape(h5file):
        del h5file["model_weights/hidden/hidden/kernel"]
        h5file["model_weights/hidden"].create_dataset("hidden/kernel", data=np.zeros((6, 9), "float32"))

    with pytest.raises(WeightsMismatchError, match=r"(?s)shape\.h5: .*entry '/model_weights/hidden/hidden/kernel'.*\(6, 9\)"):
        legacy_h5.load(_copy(good, tmp_path / "shape.h5", wrong_shape))

    def extra_layer(h5file):
        group = h5file["model_weights"]
        group.attrs["layer_names"] = [*group.attrs["layer_names"], "ghost"]
        ghost = group.create_group("ghost")
        ghost.attrs["weight_names"] = [b"ghost/w"]
        ghost.create_dataset("ghost/w", data=np.zeros(2, "float32"))

    with pytest.raises(WeightsMismatchError, match=r"count\.h5: entry '/model_weights/layer_names': layer count mismatch"):
        legacy_h5.load_weights(small_mlp(), _copy(good, tmp_path / "count.h5", extra_layer))

    def listed_but_missing(h5file):
        del h5file["model_weights/probs/probs/bias"]

    message = r"missing\.h5: entry '/model_weights/probs/probs/bias': is listed in weight_names but missing"
    with pytest.raises(FileFormatError, match=message):
        legacy_h5.load(_copy(good, tmp_path / "missing.h5", listed_but_missing))


def test_links_virtual_datasets_and_unknown_filters_are_refused(tmp_path):
    model = small_mlp()
    good = tmp_path / "good.h5"
    legacy_h5.save(model, good)
    with h5py.File(tmp_path / "elsewhere.h5", "w") as other:
        other.create_dataset("data", data=np.zeros((6, 8), "float32"))

    def external(h5file):
        del h5file["model_weights/hidden/hidden/kernel"]
        h5file["model_weights/hidden/hidden/kernel"] = h5py.ExternalLink(str(tmp_path / "elsewhere.h5"), "/data")

    with pytest.raises(KeramicError, match=r"external\.h5: entry '/model_weights/hidden/hidden/kernel': ExternalLink"):
        legacy_h5.load(_copy(good, tmp_path / "external.h5", external))

    def soft(h5file):
        del h5file["model_weights/hidden"]
        h5file["model_weights/hidden"] = h5py.SoftLink("/model_weights/probs")

    with pytest.raises(KeramicError, match=r"soft\.h5: entry '/model_weights/hidden': SoftLink"):
        legacy_h5.load(_copy(good, tmp_path / "soft.h5", soft))

    def virtual(h5file):
        del h5file["model_weights/hidden/hidden/kernel"]
        layout = h5py.VirtualLayout(shape=(6, 8), dtype="float32")
        layout[:] = h5py.VirtualSource(str(tmp_path / "elsewhere.h5"), "data", shape=(6, 8))
        h5file["model_weights/hidden/hidden"].create_virtual_dataset("kernel", layout)

    with pytest.raises(KeramicError, match=r"virtual\.h5: entry '/model_weights/hidden/hidden/kernel'.*virtual"):
        legacy_h5.load(_copy(good, tmp_path / "virtual.h5", virtual))

    def plugin_filter(h5file):
        del h5file["model_weights/hidden/hidden/kernel"]
        h5file["model_weights/hidden/hidden"].create_dataset(
            "kernel", shape=(6, 8), dtype="float32", chunks=(6, 8), compression=32004, allow_unknown_filter=True
        )

    message = r"filter\.h5: entry '/model_weights/hidden/hidden/kernel': uses the HDF5 filter 32004"
    with pytest.raises(FileFormatError, match=message):
        legacy_h5.load(_copy(good, tmp_path / "filter.h5", plugin_filter))


def test_files_are_opened_read_only(tmp_path):
    model = small_mlp()
    model.train_on_batch(*small_batch())
    path = tmp_path / "ro.h5"
    legacy_h5.save(model, path)
    before = path.read_bytes()
    path.chmod(0o444)
    try:
        loaded = legacy_h5.load(path)
        legacy_h5.load_weights(loaded, path)
    finally:
        path.chmod(0o644)
    assert path.read_bytes() == before


def _copy(source, target, edit):
    target.write_bytes(source.read_bytes())
    with h5py.File(target, "a") as h5file:
        edit(h5file)
    return target


# ---------------------------------------------------------------- real Keras 3
def interop_mlp(module):
    return small_mlp(module.optimizers.Adam(0.01, amsgrad=True), module)


def interop_sequential(module):
    dense = module.layers.Dense
    model = module.Sequential([module.Input((6,)), dense(8, activation="tanh"), dense(3, activation="softmax")], name="seq")
    model.compile(optimizer=module.optimizers.RMSprop(momentum=0.5, centered=True), loss="sparse_categorical_crossentropy")
    return model


def interop_two_heads(module):
    a = module.Input((6,), name="a")
    b = module.Input((2,), name="b")
    h = module.layers.Concatenate()([module.layers.Dense(4)(a), b])
    outputs = [module.layers.Dense(1, name="score")(h), module.layers.Dense(3, activation="softmax", name="label")(h)]
    model = module.Model([a, b], outputs)
    optimizer = module.optimizers.SGD(0.05, momentum=0.9)
    model.compile(optimizer=optimizer, loss=["mse", "sparse_categorical_crossentropy"], loss_weights=[0.5, 1.0])
    return model


def interop_text(module):
    tokens = module.Input((5,), dtype="int32", name="tokens")
    h = module.layers.Embedding(20, 4, mask_zero=True)(tokens)
    model = module.Model(tokens, module.layers.Dense(3, activation="softmax")(module.layers.LSTM(3)(h)))
    model.compile(optimizer=module.optimizers.Adagrad(0.1), loss="sparse_categorical_crossentropy")
    return model


def interop_nested(module):
    x = module.Input((6,), name="x")
    inner_in = module.Input((6,), name="inner_in")
    encoder = module.Model(inner_in, module.layers.Dense(4, activation="tanh", name="enc")(inner_in), name="encoder")
    # No bias before BatchNormalization: its gradient is round-off noise, which Adam amplifies.
    projection = [module.layers.Dense(5, use_bias=False, name="proj"), module.layers.BatchNormalization(name="norm")]
    stack = module.Sequential([module.Input((4,)), *projection], name="stack")
    model = module.Model(x, module.layers.Dense(3, activation="softmax", name="out")(stack(encoder(x))), name="nested")
    model.compile(optimizer=module.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    return model


INTEROP = {
    "mlp": interop_mlp,
    "sequential": interop_sequential,
    "two_heads": interop_two_heads,
    "text": interop_text,
    "nested": interop_nested,
}


def interop_batch(name, seed=0):
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


def assert_close(mine, other, rtol=1e-5, atol=1e-6):
    for a, b in zip(as_list(mine), as_list(other)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.interop
@pytest.mark.parametrize("name", sorted(INTEROP))
def test_keras3_h5_of_our_architectures_resumes_here_like_in_keras(keras, tmp_path, name):
    x, y = interop_batch(name)
    theirs = INTEROP[name](keras)
    for _ in range(2):
        theirs.train_on_batch(x, y)
    theirs.save(tmp_path / "theirs.h5")
    ours = legacy_h5.load(tmp_path / "theirs.h5")
    assert_close(ours.predict(x, verbose=0), theirs.predict(x, verbose=0))
    assert len(ours.optimizer.variables) == len(theirs.optimizer.variables)
    x2, y2 = interop_batch(name, seed=1)
    assert_close(np.ravel(ours.train_on_batch(x2, y2))[0], np.ravel(theirs.train_on_batch(x2, y2))[0])
    assert_close(ours.get_weights(), theirs.get_weights())
    assert_close([v.numpy() for v in ours.optimizer.variables], [v.numpy() for v in theirs.optimizer.variables], atol=1e-7)


@pytest.mark.interop
@pytest.mark.parametrize("name", sorted(INTEROP))
def test_our_h5_loads_in_keras3(keras, tmp_path, name):
    x, y = interop_batch(name)
    ours = INTEROP[name](keramic)
    for _ in range(2):
        ours.train_on_batch(x, y)
    legacy_h5.save(ours, tmp_path / "ours.h5")
    theirs = keras.saving.load_model(tmp_path / "ours.h5")  # compiles: "mse" was written in full
    assert theirs.compiled
    assert_close(ours.predict(x, verbose=0), theirs.predict(x, verbose=0))
    assert int(theirs.optimizer.iterations.numpy()) == 2
    # Keras restores only the counters from .h5; the file holds every slot, and we read them back.
    with h5py.File(tmp_path / "ours.h5", "r") as h5file:
        assert len(h5file["optimizer_weights"].attrs["weight_names"]) == len(ours.optimizer.variables)

    legacy_h5.save_weights(ours, tmp_path / "ours_weights.h5")
    fresh = INTEROP[name](keras)
    fresh.load_weights(tmp_path / "ours_weights.h5")  # Keras's legacy weights reader (tf.keras's layout)
    assert_close(ours.predict(x, verbose=0), fresh.predict(x, verbose=0))


# ---------------------------------------------------------------- real tf.keras 2
def _tf_python():
    """The interpreter that runs tf.keras 2: KERAMIC_TF_PYTHON, else this one when it has
    tensorflow and tf_keras (CI installs both; they run in a subprocess, away from torch)."""
    named = os.environ.get("KERAMIC_TF_PYTHON")
    if named:
        return named
    has_tf_keras = all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "tf_keras"))
    return sys.executable if has_tf_keras else None


TF_PYTHON = _tf_python()

# Run by the TensorFlow interpreter: loads every `<name>.h5` compiled and compares predictions
# with `<name>.npz` (inputs x0.., predictions p0..); prints one line per model.
TF_KERAS_LOADER = r"""
import glob, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tf_keras
failed = 0
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.h5"))):
    name = os.path.basename(path)[:-3]
    data = np.load(path[:-3] + ".npz")
    xs = [data[k] for k in sorted(k for k in data.files if k.startswith("x"))]
    expected = [data[k] for k in sorted(k for k in data.files if k.startswith("p"))]
    try:
        model = tf_keras.models.load_model(path, compile=True)
        got = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
        got = got if isinstance(got, list) else [got]
        error = max(float(np.max(np.abs(np.asarray(a) - b))) for a, b in zip(got, expected))
        ok = error <= 1e-5 and model.optimizer is not None
        print(f"{name}: {'OK' if ok else 'FAIL'} error={error:.2e} optimizer={type(model.optimizer).__name__}")
    except Exception as exc:
        ok = False
        print(f"{name}: FAIL {type(exc).__name__}: {exc}")
    failed += not ok
sys.exit(1 if failed else 0)
"""


def tf_mlp():
    inputs = keramic.Input((6,), name="x")
    h = layers.Dense(8, activation="relu")(inputs)
    h = layers.Dropout(0.2)(layers.BatchNormalization()(h))
    model = keramic.Model(inputs, layers.Dense(3, activation="softmax")(h))
    model.compile(optimizer=keramic.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, np.ones((1, 6), "float32"), "features"


def tf_sequential():
    model = keramic.Sequential([keramic.Input((6,)), layers.Dense(8, activation="tanh"), layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keramic.optimizers.RMSprop(momentum=0.5, centered=True), loss="sparse_categorical_crossentropy")
    return model, None, "features"


def tf_cnn():
    inputs = keramic.Input((8, 8, 1))
    h = layers.Flatten()(layers.MaxPooling2D()(layers.Conv2D(4, 3, activation="relu")(inputs)))
    model = keramic.Model(inputs, layers.Dense(2, activation="softmax")(h))
    model.compile(optimizer=keramic.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy")
    return model, None, "image"


TF_MODELS = {
    "mlp": tf_mlp,
    "sequential": tf_sequential,
    "cnn": tf_cnn,
    "text": lambda: (interop_text(keramic), None, "text"),
    "two_heads": lambda: (interop_two_heads(keramic), None, "two_heads"),
}


def tf_batch(kind, rng):
    y = rng.integers(0, 2, size=8)
    if kind == "image":
        return rng.normal(size=(8, 8, 8, 1)).astype("float32"), y
    if kind == "features":
        return rng.normal(size=(8, 6)).astype("float32"), y
    return interop_batch(kind)


def test_our_h5_config_is_the_keras2_form(tmp_path):
    model, _, _ = tf_mlp()
    legacy_h5.save(model, tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as h5file:
        config = json.loads(h5file.attrs["model_config"])
        training = json.loads(h5file.attrs["training_config"])
    entries = {}
    for entry in config["config"]["layers"]:
        entries.setdefault(entry["class_name"], entry)  # the first Dense: the hidden one
    assert entries["InputLayer"]["config"]["batch_input_shape"] == [None, 6]
    assert "batch_shape" not in entries["InputLayer"]["config"] and "optional" not in entries["InputLayer"]["config"]
    dense = entries["Dense"]["config"]
    assert dense["dtype"] == "float32" and "quantization_config" not in dense
    assert "input_axes" not in dense["kernel_initializer"]["config"] and "module" not in dense["kernel_initializer"]
    assert entries["BatchNormalization"]["inbound_nodes"] == [[[entries["Dense"]["config"]["name"], 0, 0, {}]]]
    assert config["config"]["input_layers"] == [["x", 0, 0]]
    assert "weight_decay" not in training["optimizer_config"]["config"]


def test_our_h5_loads_in_tf_keras2(tmp_path):
    """tf.keras 2 loads our `.h5` files, compiled, predicting what we predict (needs tensorflow and
    tf_keras here or in the interpreter KERAMIC_TF_PYTHON names)."""
    import subprocess

    if not TF_PYTHON or not os.path.exists(TF_PYTHON):
        pytest.skip("tf.keras 2 is the reference: pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0 (or set KERAMIC_TF_PYTHON)")
    rng = np.random.default_rng(0)
    for name, make in TF_MODELS.items():
        keramic.utils.set_random_seed(0)
        model, _, kind = make()
        x, y = tf_batch(kind, rng)
        model.train_on_batch(x, y)
        legacy_h5.save(model, tmp_path / f"{name}.h5")
        xs = as_list(x)
        predictions = as_list(model.predict(x, verbose=0))
        arrays = {f"x{i}": value for i, value in enumerate(xs)} | {f"p{i}": np.asarray(v) for i, v in enumerate(predictions)}
        np.savez(tmp_path / f"{name}.npz", **arrays)
        again = legacy_h5.load(tmp_path / f"{name}.h5")  # and we still read what we wrote
        assert_close(again.predict(x, verbose=0), predictions)
    env = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    env.update(TF_USE_LEGACY_KERAS="1", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [TF_PYTHON, "-c", TF_KERAS_LOADER, str(tmp_path)], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    report = "\n".join(line for line in result.stdout.splitlines() if ": " in line)
    assert result.returncode == 0, f"tf.keras 2 could not load our files:\n{report}\n{result.stderr[-3000:]}"
    assert sum(": OK" in line for line in report.splitlines()) == len(TF_MODELS), report


def test_graphs_the_keras2_form_cannot_express_keep_keras3_form(tmp_path):
    """Several positional call inputs or dict model inputs: saved in Keras 3's form, still exact."""
    q = keramic.Input((4, 5), name="q")
    v = keramic.Input((6, 5), name="v")
    attention = keramic.Model([q, v], keramic.layers.MultiHeadAttention(2, 3)(q, v))
    a = keramic.Input((3,), name="a")
    b = keramic.Input((2,), name="b")
    by_name = keramic.Model({"a": a, "b": b}, keramic.layers.Dense(1)(keramic.layers.Concatenate()([a, b])))
    rng = np.random.default_rng(0)
    cases = [
        (attention, [rng.normal(size=(2, 4, 5)).astype("float32"), rng.normal(size=(2, 6, 5)).astype("float32")]),
        (by_name, {"a": rng.normal(size=(2, 3)).astype("float32"), "b": rng.normal(size=(2, 2)).astype("float32")}),
    ]
    for index, (model, x) in enumerate(cases):
        path = tmp_path / f"m{index}.h5"
        model.save(path)
        np.testing.assert_array_equal(keramic.models.load_model(path).predict(x, verbose=0), model.predict(x, verbose=0))


def _model_config(path):
    with h5py.File(path, "r") as h5file:
        return json.loads(h5file.attrs["model_config"])


def test_op_nodes_are_written_as_tfkeras_op_layers_and_read_back(tmp_path):
    """`x[:, :3] * 2 + 1`, relu, sum, concatenate: tf.keras's TFOpLambda/SlicingOpLambda layers in
    the file (tests/test_tfkeras_interop.py loads such files in tf.keras), exact when read back."""
    x = keramic.Input((6,), name="x")
    dense = layers.Dense(4)
    h = keramic.ops.relu(dense(x)[:, :3] * 2.0 + 1.0)
    h = keramic.ops.concatenate([h, keramic.ops.sum(h, axis=-1, keepdims=True)], axis=-1)
    head = layers.Dense(2)
    model = keramic.Model(x, head(h))
    legacy_h5.save(model, tmp_path / "ops.h5")
    entries = _model_config(tmp_path / "ops.h5")["config"]["layers"]
    functions = [e["config"]["function"] for e in entries if e["class_name"] in ("TFOpLambda", "SlicingOpLambda")]
    assert functions == ["__operators__.getitem", "math.multiply", "__operators__.add", "nn.relu", "math.reduce_sum", "concat"]

    data = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
    kernel, bias = (w.numpy() for w in dense.weights)
    hidden = np.maximum((data @ kernel + bias)[:, :3] * 2.0 + 1.0, 0.0)
    hidden = np.concatenate([hidden, hidden.sum(axis=-1, keepdims=True)], axis=-1)
    expected = hidden @ head.weights[0].numpy() + head.weights[1].numpy()
    again = legacy_h5.load(tmp_path / "ops.h5")
    np.testing.assert_allclose(again.predict(data, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_op_nodes_without_a_tensorflow_layer_keep_keras3_form(tmp_path):
    x = keramic.Input((3,), name="x")
    model = keramic.Model(x, layers.Dense(2)(keramic.ops.sinh(x)))  # no tf.keras TFOpLambda table entry
    legacy_h5.save(model, tmp_path / "sinh.h5")
    entries = _model_config(tmp_path / "sinh.h5")["config"]["layers"]
    sinh = next(e for e in entries if e["class_name"] == "Sinh")
    assert sinh["module"] == "keras.src.ops.numpy"  # found by module: no layer is named `Sinh`
    data = np.random.default_rng(1).normal(size=(2, 3)).astype("float32")
    np.testing.assert_array_equal(legacy_h5.load(tmp_path / "sinh.h5").predict(data, verbose=0), model.predict(data, verbose=0))


def test_an_object_loaded_under_a_registered_name_is_saved_under_it(tmp_path):
    class Doubler(layers.Layer):  # not decorated: known only through custom_objects
        def call(self, inputs):
            return inputs * 2.0

    model = keramic.Sequential([keramic.Input((3,)), Doubler(name="double"), layers.Dense(2)])
    config = json.loads(model.to_json())
    entry = next(e for e in config["config"]["layers"] if e["class_name"] == "Doubler")
    entry["registered_name"] = "Pkg>Doubler"
    loaded = keramic.models.model_from_json(json.dumps(config), custom_objects={"Pkg>Doubler": Doubler})
    again = next(e for e in json.loads(loaded.to_json())["config"]["layers"] if e["class_name"] == "Doubler")
    assert again["registered_name"] == "Pkg>Doubler"
    legacy_h5.save(loaded, tmp_path / "custom.h5")
    classes = [e["class_name"] for e in _model_config(tmp_path / "custom.h5")["config"]["layers"]]
    assert "Pkg>Doubler" in classes  # Keras's legacy form names custom objects by their registered name
    assert type(legacy_h5.load(tmp_path / "custom.h5", custom_objects={"Pkg>Doubler": Doubler}).layers[0]) is Doubler


def test_wrapped_layers_keep_their_module_for_keras3(tmp_path):
    """Keras 3 finds a Bidirectional's GRU only through its `module` (else "Could not locate class 'GRU'")."""
    model = keramic.Sequential([keramic.Input((4, 3)), layers.Bidirectional(layers.GRU(2)), layers.Dense(1)])
    legacy_h5.save(model, tmp_path / "bidi.h5")
    entry = next(e for e in _model_config(tmp_path / "bidi.h5")["config"]["layers"] if e["class_name"] == "Bidirectional")
    assert entry["config"]["layer"]["module"] == "keras.layers" and entry["config"]["layer"]["class_name"] == "GRU"


@pytest.mark.parametrize(
    "key",
    [
        (slice(None), slice(None, None, -1)),
        (Ellipsis, slice(None, None, -2), -1),
        (slice(None), slice(3, 0, -1), slice(-1, -5, -2)),
        (slice(None), None, slice(10, None, -1)),
        (Ellipsis, slice(-2, None, -1)),
        (slice(None), slice(None, -1, -1), 2),
    ],
)
def test_negative_step_slices_of_tf_keras_read_as_flip_then_slice(key):
    """tf.keras's `x[:, ::-1]` becomes flip + a positive-step slice; numpy is the reference."""
    from keramic.saving.formats import keras2_tf_ops

    def tf_keras_form(item):  # how tf.keras 2.21 writes each part of a slice spec
        if isinstance(item, slice):
            return {"start": item.start, "stop": item.stop, "step": item.step}
        return {"class_name": "__ellipsis__"} if item is Ellipsis else item

    def python(item):
        if isinstance(item, dict) and item.get("class_name") == "__slice__":
            return slice(*(item["config"][part] for part in ("start", "stop", "step")))
        return Ellipsis if isinstance(item, dict) else item

    x_ref = {"class_name": "__keras_tensor__", "config": {"keras_history": ["x", 0, 0]}}
    entry = {"class_name": "SlicingOpLambda", "name": "s", "config": {"name": "s", "function": "__operators__.getitem"},
             "inbound_nodes": [{"args": [x_ref], "kwargs": {"slice_spec": [tf_keras_form(item) for item in key]}}]}
    flip, sliced = keras2_tf_ops.to_op_nodes(entry)
    assert flip["class_name"] == "Flip" and sliced["class_name"] == "GetItem"
    data = np.arange(2 * 4 * 6).reshape(2, 4, 6)
    flipped = np.flip(data, axis=tuple(flip["config"]["axis"]))
    new_key = tuple(python(item) for item in sliced["inbound_nodes"][0]["args"][1])
    np.testing.assert_array_equal(flipped[new_key], data[key])


def test_a_tensorflow_function_without_a_keramic_op_is_refused_by_name():
    from keramic.saving.formats import keras2_tf_ops

    entry = {"class_name": "TFOpLambda", "name": "e", "config": {"name": "e", "function": "einsum"}, "inbound_nodes": []}
    with pytest.raises(ConfigError, match=r"tf\.einsum"):
        keras2_tf_ops.to_op_nodes(entry)


def test_saving_a_whole_model_to_h5_gives_keras_legacy_notice(tmp_path, caplog):
    """Keras logs that `.h5` is legacy on every whole-model save to it; `.keras` saves stay quiet."""
    model = keramic.Sequential([keramic.Input((3,)), keramic.layers.Dense(2)])
    with caplog.at_level("WARNING", logger="keramic"):
        model.save(tmp_path / "m.keras")
        assert not caplog.records
        model.save(tmp_path / "m.h5")
    assert len(caplog.records) == 1 and "considered legacy" in caplog.records[0].getMessage()
