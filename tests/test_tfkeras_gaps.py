"""tf.keras 2 / Keras 3 legacy `.h5` gaps (issue #16), each against real tf.keras 2.21 and real
Keras 3: RandomCrop's inference, the two `hard_sigmoid`s, nested models, MultiHeadAttention, a
registered custom layer and masked bidirectional RNNs, tf.keras's files read here and keramic's
files read by both.

One tf.keras subprocess (TensorFlow cannot share a process with torch) writes every case, then
reads the folder of keramic's `.h5` files it is sent; Keras 3 (torch backend) runs in-process.
"""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

import keramic
from helpers import tf_keras_env
from keramic import layers

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        importlib.util.find_spec("tf_keras") is None or importlib.util.find_spec("tensorflow") is None,
        reason="tf.keras 2 is the reference here: pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0",
    ),
]

ATOL = 1e-5
CUSTOM_NAME = "TfGaps>Scale"

# argv[1]/<case>/{model.h5, config.json, weights.h5, data.npz (x0.., pred)} for every case; then
# "WRITTEN", and for each folder read from stdin one "REPORT {json}" line per <name>.h5 there
# (load_model, then predict <name>.npz's inputs, or the error), then "READ".
TF_SCRIPT = r'''
import glob, json, os, sys
import numpy as np
import tensorflow as tf
import tf_keras as k
L = k.layers
tf.config.run_functions_eagerly(True)
rng = np.random.default_rng(0)

@k.saving.register_keras_serializable(package="TfGaps")
class Scale(L.Layer):
    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor
    def build(self, input_shape):
        self.gain = self.add_weight(name="gain", shape=(input_shape[-1],), initializer="ones")
    def call(self, x):
        return x * self.gain * self.factor
    def get_config(self):
        return {**super().get_config(), "factor": self.factor}

def f32(*shape):
    return rng.normal(size=shape).astype("float32")

def random_crop():
    # A smaller crop of another aspect ratio, a larger one, and the input's own size.
    x = k.Input((5, 6, 2), name="image")
    crops = [L.Flatten()(L.RandomCrop(*size)(x)) for size in ((3, 2), (7, 9), (5, 6))]
    return k.Model(x, L.Concatenate()(crops)), f32(2, 5, 6, 2)

def hard_sigmoid():
    x = k.Input((3, 4), name="seq")
    h = L.Dense(4, activation="hard_sigmoid")(x)
    h = L.LSTM(3, recurrent_activation="hard_sigmoid", return_sequences=True)(h)
    return k.Model(x, L.Activation("hard_sigmoid")(L.Dense(2)(L.Flatten()(h)))), 3 * f32(2, 3, 4)

def mha_self():
    x = k.Input((5, 4), name="x")
    h = L.MultiHeadAttention(num_heads=2, key_dim=3)(x, x, use_causal_mask=True)
    return k.Model(x, L.Dense(2)(L.Flatten()(h))), f32(2, 5, 4)

def mha_cross():
    q, v, key = k.Input((5, 4), name="q"), k.Input((3, 6), name="v"), k.Input((3, 2), name="key")
    h = L.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=2, output_shape=(4,))(q, v, key)
    return k.Model([q, v, key], h), [f32(2, 5, 4), f32(2, 3, 6), f32(2, 3, 2)]

def custom_registered():
    x = k.Input((4,), name="x")
    return k.Model(x, L.Dense(2)(Scale(2.0, name="scale")(L.Dense(4)(x)))), f32(2, 4)

def birnn_masked():
    x = k.Input((5, 3), name="seq")
    h = L.Bidirectional(L.GRU(3, return_sequences=True))(L.Masking(0.0)(x))
    h = L.Bidirectional(L.LSTM(2), merge_mode="sum")(h)
    data = f32(3, 5, 3)
    data[0, 3:] = 0.0
    data[2, 1:] = 0.0
    return k.Model(x, L.Dense(2)(h)), data

def nested_output():
    # A nested Functional model read as the model output: one form serves tf.keras and Keras 3.
    i = k.Input((4,))
    inner = k.Model(i, L.Dense(3)(i), name="inner")
    x = k.Input((4,), name="x")
    return k.Model(x, inner(L.Dense(4, activation="relu")(x))), f32(2, 4)

for name in ["random_crop", "hard_sigmoid", "mha_self", "mha_cross", "custom_registered", "birnn_masked", "nested_output"]:
    model, x = globals()[name]()
    model.set_weights([0.5 * rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    folder = os.path.join(sys.argv[1], name)
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(model.to_json())
    model.save_weights(os.path.join(folder, "weights.h5"))
    model.save(os.path.join(folder, "model.h5"), save_format="h5")
    xs = x if isinstance(x, list) else [x]
    np.savez(os.path.join(folder, "data.npz"), pred=model.predict(x, verbose=0), **{f"x{i}": v for i, v in enumerate(xs)})
print("WRITTEN", flush=True)

for folder in iter(sys.stdin.readline, ""):
    for path in sorted(glob.glob(os.path.join(folder.strip(), "*.h5"))):
        data = np.load(path[:-3] + ".npz")
        xs = [data[key] for key in sorted(key for key in data.files if key.startswith("x"))]
        report = {"name": os.path.basename(path)[:-3]}
        try:
            model = k.models.load_model(path, compile=False)
            report["pred"] = np.asarray(model.predict(xs if len(xs) > 1 else xs[0], verbose=0)).tolist()
        except Exception as error:
            report["error"] = f"{type(error).__name__}: {error}"[:2000]
        print("REPORT " + json.dumps(report), flush=True)
    print("READ", flush=True)
'''
CASES = ["random_crop", "hard_sigmoid", "mha_self", "mha_cross", "custom_registered", "birnn_masked", "nested_output"]


@keramic.saving.register_keras_serializable(package="TfGaps")
class Scale(layers.Layer):
    """keramic's twin of the TensorFlow script's registered `TfGaps>Scale`."""

    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.gain = self.add_weight(name="gain", shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.gain * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class TensorFlow:
    """The module's tf.keras subprocess (see TF_SCRIPT)."""

    def __init__(self, root):
        self.root = root
        self.errors = open(root / "stderr.txt", "w+")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [sys.executable, "-c", TF_SCRIPT, str(root)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, text=True, env=tf_keras_env(),
        )

    def lines_until(self, marker):
        lines = []
        for line in self.process.stdout:
            if line.strip() == marker:
                return lines
            lines.append(line)
        self.process.wait(timeout=60)
        self.errors.seek(0)
        raise AssertionError(f"the tf.keras subprocess failed:\n{self.errors.read()[-4000:]}")

    def read(self, folder):
        """What tf.keras made of every `<name>.h5` in `folder`: name -> {pred} or {error}."""
        self.process.stdin.write(f"{folder}\n")
        self.process.stdin.flush()
        lines = self.lines_until("READ")
        reports = [json.loads(line[len("REPORT "):]) for line in lines if line.startswith("REPORT ")]
        return {report["name"]: report for report in reports}

    def close(self):
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.errors.close()


@pytest.fixture(scope="module")
def tensorflow(tmp_path_factory):
    process = TensorFlow(tmp_path_factory.mktemp("tfgaps"))
    try:
        process.lines_until("WRITTEN")
        yield process
    finally:
        process.close()


def load_npz(path):
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def inputs_of(data):
    xs = [data[key] for key in sorted(key for key in data if key.startswith("x"))]
    return xs if len(xs) > 1 else xs[0]


def keras_only_models():
    """keramic models (no tf.keras file behind them) whose `.h5` the readers are asked about."""
    rng = np.random.default_rng(1)
    x = keramic.Input((4,), name="x")
    i = keramic.Input((5,))
    inner = keramic.Model(i, layers.Dense(3)(i), name="inner")
    sequential = keramic.Sequential([keramic.Input((4,)), layers.Dense(5, activation="tanh")], name="inner_seq")
    nested_middle = keramic.Model(x, layers.Dense(2)(inner(sequential(x))))
    x = keramic.Input((4,), name="x")
    hard_sigmoid = keramic.Model(x, layers.Activation("hard_sigmoid")(layers.Dense(3, activation="hard_sigmoid")(x)))
    x = keramic.Input((6,), name="x")
    ops = keramic.Model(x, layers.Dense(2)(keramic.ops.relu(layers.Dense(4)(x)[:, :3]) * 2.0))
    x = keramic.Input((5, 6, 2), name="image")
    crop = keramic.Model(x, layers.RandomCrop(3, 2)(x))
    models = {"k_nested_middle": (nested_middle, (2, 4)), "k_hard_sigmoid": (hard_sigmoid, (2, 4)),
              "k_ops": (ops, (2, 6)), "k_random_crop": (crop, (2, 5, 6, 2))}
    for model, _ in models.values():
        model.set_weights([0.5 * rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return {name: (model, 3 * rng.normal(size=shape).astype("float32")) for name, (model, shape) in models.items()}


@pytest.fixture(scope="module")
def ours(tensorflow, tmp_path_factory):
    """keramic's `.h5` of every tf.keras case (loaded from tf.keras's `.h5`) and of the keramic-only
    models, with inputs and keramic's predictions, as `<name>.h5` / `<name>.npz`."""
    folder = tmp_path_factory.mktemp("ours")
    for case in CASES:
        data = load_npz(tensorflow.root / case / "data.npz")
        model = keramic.models.load_model(tensorflow.root / case / "model.h5")
        model.save(folder / f"{case}.h5")
        x = inputs_of(data)
        xs = x if isinstance(x, list) else [x]
        np.savez(folder / f"{case}.npz", pred=model.predict(x, verbose=0), **{f"x{i}": v for i, v in enumerate(xs)})
    for name, (model, x) in keras_only_models().items():
        model.save(folder / f"{name}.h5")
        np.savez(folder / f"{name}.npz", pred=model.predict(x, verbose=0), x0=x)
    return folder


@pytest.fixture(scope="module")
def tf_reads_ours(tensorflow, ours):
    return tensorflow.read(ours)


def keras3_scale(keras):
    class KerasScale(keras.layers.Layer):
        def __init__(self, factor=1.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def build(self, input_shape):
            self.gain = self.add_weight(name="gain", shape=(input_shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.gain * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    return KerasScale


# ---------------------------------------------------------------- tf.keras writes, keramic reads
@pytest.mark.parametrize("case", CASES)
def test_tfkeras_h5_and_json_predict_like_tfkeras(tensorflow, case):
    folder = tensorflow.root / case
    data = load_npz(folder / "data.npz")
    model = keramic.models.load_model(folder / "model.h5")
    np.testing.assert_allclose(model.predict(inputs_of(data), verbose=0), data["pred"], atol=ATOL)
    model = keramic.models.model_from_json((folder / "config.json").read_text())
    model.load_weights(folder / "weights.h5")
    np.testing.assert_allclose(model.predict(inputs_of(data), verbose=0), data["pred"], atol=ATOL)


def test_registered_custom_layer_keeps_its_name(tensorflow):
    model = keramic.models.model_from_json((tensorflow.root / "custom_registered" / "config.json").read_text())
    entries = {entry["class_name"]: entry for entry in json.loads(model.to_json())["config"]["layers"]}
    assert entries["Scale"]["registered_name"] == CUSTOM_NAME


# ---------------------------------------------------------------- keramic writes, both Keras read
# Cases whose `.h5` tf.keras reads as it wrote them (Keras 2 form).
TF_READS = ["random_crop", "hard_sigmoid", "custom_registered", "birnn_masked", "nested_output", "k_ops"]


@pytest.mark.parametrize("name", TF_READS)
def test_our_h5_loads_in_tfkeras2(tf_reads_ours, ours, name):
    report = tf_reads_ours[name]
    assert "error" not in report, report["error"]
    data = load_npz(ours / f"{name}.npz")
    np.testing.assert_allclose(np.asarray(report["pred"], "float32"), data["pred"], atol=ATOL)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        # Keras 3's hard_sigmoid: tf.keras has no such function and must not read its own instead.
        ("k_hard_sigmoid", "Unknown activation function"),
        # tf.keras needs input shapes in the config and keyword tensors that Keras 3 refuses or
        # cannot read; nested models' calls are numbered from 1 by tf.keras, from 0 by Keras 3.
        # So these files keep Keras 3's form, whose InputLayer tf.keras refuses first.
        ("mha_self", "batch_shape"),
        ("mha_cross", "batch_shape"),
        ("k_nested_middle", "Error"),
        # Keras 3's RandomCrop passes images through at inference, tf.keras's resizes: its
        # `data_format`, which tf.keras refuses, stays.
        ("k_random_crop", "data_format"),
    ],
)
def test_tfkeras2_refuses_our_h5_where_no_form_serves_it(tf_reads_ours, name, why):
    assert "error" in tf_reads_ours[name], "tf.keras read the file: move the case to TF_READS"
    assert why in tf_reads_ours[name]["error"]


# Cases whose `.h5` Keras 3 reads as keramic computes them.
KERAS3_READS = ["custom_registered", "birnn_masked", "nested_output", "mha_self", "mha_cross", "k_nested_middle",
                "k_hard_sigmoid", "k_random_crop"]


@pytest.mark.parametrize("name", KERAS3_READS)
def test_our_h5_loads_in_keras3(ours, keras, name):
    data = load_npz(ours / f"{name}.npz")
    theirs = keras.saving.load_model(ours / f"{name}.h5", custom_objects={CUSTOM_NAME: keras3_scale(keras)})
    np.testing.assert_allclose(np.asarray(theirs.predict(inputs_of(data), verbose=0)), data["pred"], atol=ATOL)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("random_crop", "rng_type"),  # tf.keras's RandomCrop: Keras 3's would pass images through
        ("hard_sigmoid", "dynamic"),  # tf.keras's hard_sigmoid, marked: Keras 3's computes another function
        ("k_ops", "Unknown layer"),  # Keras 3 reads op nodes from no `.h5`, not even its own
    ],
)
def test_keras3_refuses_our_h5_where_it_would_compute_otherwise(ours, keras, name, why):
    with pytest.raises((TypeError, ValueError), match=why):
        keras.saving.load_model(ours / f"{name}.h5")


@pytest.mark.parametrize("name", CASES + ["k_nested_middle", "k_hard_sigmoid", "k_ops", "k_random_crop"])
def test_our_h5_reads_back_in_keramic(ours, name):
    data = load_npz(ours / f"{name}.npz")
    again = keramic.models.load_model(ours / f"{name}.h5")
    np.testing.assert_allclose(again.predict(inputs_of(data), verbose=0), data["pred"], atol=ATOL)


# ---------------------------------------------------------------- the Keras 3 side: .keras files
@pytest.mark.parametrize("case", ["random_crop", "hard_sigmoid"])
def test_tfkeras_semantics_in_dot_keras_are_refused_by_keras3_and_kept_by_keramic(tensorflow, keras, tmp_path, case):
    """Keras 3 has no faithful form for tf.keras's RandomCrop inference or hard_sigmoid: a `.keras`
    file keeps keramic's form (read back here), which Keras 3 refuses rather than misread."""
    data = load_npz(tensorflow.root / case / "data.npz")
    model = keramic.models.load_model(tensorflow.root / case / "model.h5")
    model.save(tmp_path / "m.keras")
    again = keramic.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(inputs_of(data), verbose=0), data["pred"], atol=ATOL)
    with pytest.raises((TypeError, ValueError), match="rng_type" if case == "random_crop" else "keras2>hard_sigmoid"):
        keras.saving.load_model(tmp_path / "m.keras")


def test_keras3_random_crop_passes_images_through_at_inference(keras, tmp_path):
    x = keras.Input((5, 6, 2))
    theirs = keras.Model(x, keras.layers.RandomCrop(3, 2)(x))
    theirs.save(tmp_path / "crop.keras")
    theirs.save(tmp_path / "crop.h5")
    images = np.random.default_rng(2).normal(size=(2, 5, 6, 2)).astype("float32")
    expected = np.asarray(theirs.predict(images, verbose=0))
    for name in ("crop.keras", "crop.h5"):
        ours = keramic.models.load_model(tmp_path / name)
        np.testing.assert_allclose(ours.predict(images, verbose=0), expected, atol=ATOL)
    # keramic's `.h5` of a Keras 3 RandomCrop keeps Keras 3's meaning when Keras 3 reads it back.
    ours.save(tmp_path / "ours.h5")
    np.testing.assert_allclose(np.asarray(keras.saving.load_model(tmp_path / "ours.h5").predict(images, verbose=0)),
                               expected, atol=ATOL)


@pytest.mark.parametrize(("image", "target"), [((4, 2), (2, 3)), ((3, 5), (4, 4)), ((3, 5), (3, 7))])
def test_keras3_random_crop_training_fallback_for_small_images(keras, image, target):
    """An image the window does not fit: no random draw, so Keras 3's training output is exact."""
    images = np.arange(2 * image[0] * image[1] * 2, dtype="float32").reshape(2, *image, 2)
    expected = np.asarray(keras.layers.RandomCrop(*target)(images, training=True))
    np.testing.assert_allclose(np.asarray(layers.RandomCrop(*target)(images, training=True)), expected, atol=ATOL)
