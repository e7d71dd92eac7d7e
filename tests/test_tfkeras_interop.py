"""Files both ways with real tf.keras 2.21: its JSON, weights and `.h5` load in keramic and predict
and resume training as tf.keras does; the `.h5` files keramic writes from them load in Keras 3 and
in tf.keras 2 with equal predictions.

tf.keras runs in subprocesses (it cannot share a process with torch-backed tests): one writes
every model of a group and what tf.keras computed with it, one reads back the files keramic
wrote; each runs once for every case the session selected. Real Keras 3 (torch backend) runs
in-process. The cases in `SLOW_CASES` are marked slow.

Cases one file cannot serve to both readers (docs/saving.md): a model nesting another model keeps
Keras 3's node form (Keras 3 reads no tf.keras nested graph, tf.keras no Keras 3 one); op nodes
(`x[:, :3] * 2`) are written as tf.keras's TensorFlow-op layers, which Keras 3 cannot read (it
reads op nodes from no `.h5` file, not even its own); `tf.split` and `tf.pad` read as keramic ops
whose arguments differ from TensorFlow's, and are written back in Keras 3's form only.
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
from keramic.saving.formats import keras2_config

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        importlib.util.find_spec("tf_keras") is None or importlib.util.find_spec("tensorflow") is None,
        reason="tf.keras 2 is the reference here: pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0",
    ),
]

FAST_CASES = ["sequential_mlp", "rnn_masked", "custom_layer", "tf_functions", "tf_slicing", "conv_zoo", "sequence_zoo",
              "multi_head_attention"]
SLOW_CASES = ["functional_multi_input", "nested", "gru_stack", "conv_bn", "tf_ops", "tf_functions_one_way"]
# Our `.h5` of these keeps Keras 3's form (see the module docstring): tf.keras 2 cannot read it.
# (tf.keras needs a MultiHeadAttention's input shapes in its config, which Keras 3 refuses.)
KERAS3_FORM = ["nested", "tf_functions_one_way", "multi_head_attention"]
# Keras 3 reads no `.h5` graph with op nodes (not even the files it writes itself).
NO_KERAS3_READER = ["tf_ops", "tf_functions", "tf_slicing", "tf_functions_one_way"]
# Keras 3 reads no Attention layer from a `.h5`, not even its own (it turns score_mode "dot" into
# a function); tf.keras and keramic read ours.
NO_KERAS3_READER += ["sequence_zoo"]
# Dropout draws different masks in TensorFlow and torch: a training step cannot match.
RANDOM_TRAINING = ["conv_zoo", "sequence_zoo"]
ATOL = 1e-5
CUSTOM_NAME = "TfInterop>Scale"

# Shared by both TensorFlow scripts: the environment header and the custom layer.
TF_PRELUDE = r'''
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf
import tf_keras as k
L = k.layers
tf.config.run_functions_eagerly(True)  # tracing graphs (RNNs above all) costs more than it saves here

@k.saving.register_keras_serializable(package="TfInterop")
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

def legacy_order(model):
    return [w.numpy() for layer in model.layers for w in layer.trainable_weights + layer.non_trainable_weights]
'''

# Writes, per case, into argv[1]/<case>/: config.json (to_json), weights.h5 (save_weights),
# model.h5 (save, after 2 training steps), data.npz (inputs x0.., targets y, predictions pred)
# and after.npz (a fresh load_model of model.h5, one train_on_batch: loss, weights w0..).
TF_WRITER = TF_PRELUDE + r'''
tf.random.set_seed(0)
rng = np.random.default_rng(0)

def f32(*shape):
    return rng.normal(size=shape).astype("float32")

def sequential_mlp():
    m = k.Sequential([k.Input((6,)), L.Dense(8, activation="relu"), L.Dense(3, activation="softmax")])
    return m, k.optimizers.Adam(0.01), "sparse_categorical_crossentropy", f32(4, 6), rng.integers(0, 3, 4)

def functional_multi_input():
    a, b = k.Input((5,), name="a"), k.Input((3,), name="b")
    h = L.Concatenate()([L.Dense(4, activation="tanh")(a), L.Dense(2)(b)])
    return k.Model([a, b], L.Dense(2)(h)), k.optimizers.SGD(0.05, momentum=0.9), "mse", [f32(4, 5), f32(4, 3)], f32(4, 2)

def nested():
    inner_seq = k.Sequential([k.Input((4,)), L.Dense(5, activation="relu")], name="inner_seq")
    i = k.Input((5,))
    inner_fn = k.Model(i, L.Dense(3)(i), name="inner_fn")
    x = k.Input((4,), name="x")
    return k.Model(x, L.Dense(2)(inner_fn(inner_seq(x)))), k.optimizers.RMSprop(0.01), "mse", f32(4, 4), f32(4, 2)

def masked(batch, steps, features):
    data = f32(batch, steps, features)
    data[0, 3:] = 0.0  # padded time steps: Masking skips them
    data[2, 4:] = 0.0
    return data

def rnn_masked():
    x = k.Input((5, 3), name="seq")
    h = L.LSTM(4, return_sequences=True)(L.Masking(0.0)(x))
    model = k.Model(x, L.Dense(2)(L.Bidirectional(L.GRU(3))(h)))
    return model, k.optimizers.Adam(0.01), "mse", masked(4, 5, 3), f32(4, 2)

def gru_stack():
    m = k.Sequential([k.Input((5, 3)), L.Masking(), L.GRU(4, return_sequences=True), L.SimpleRNN(3), L.Dense(1)])
    return m, k.optimizers.Adam(0.01), "mse", masked(4, 5, 3), f32(4, 1)

def conv_bn():
    m = k.Sequential([
        # No conv bias before BatchNormalization: its gradient is ~0, and Adam would amplify float noise.
        k.Input((8, 8, 2)), L.Conv2D(3, 3, padding="same", use_bias=False), L.BatchNormalization(), L.ReLU(),
        L.MaxPooling2D(), L.GlobalAveragePooling2D(), L.Dense(2, activation="softmax"),
    ])
    return m, k.optimizers.Adam(0.01), "sparse_categorical_crossentropy", f32(4, 8, 8, 2), rng.integers(0, 2, 4)

def custom_layer():
    x = k.Input((4,), name="x")
    model = k.Model(x, L.Dense(2)(Scale(2.0)(L.Dense(4)(x))))
    return model, k.optimizers.Adam(0.01), "mse", f32(4, 4), f32(4, 2)

def tf_ops():
    x = k.Input((6,), name="x")
    h = L.Dense(4)(x)
    h = tf.nn.relu(h[:, :3] * 2.0 + 1.0)  # SlicingOpLambda, then TFOpLambda nodes
    h = tf.concat([h, tf.reduce_sum(h, axis=-1, keepdims=True)], axis=-1)
    return k.Model(x, L.Dense(2)(h)), k.optimizers.Adam(0.01), "mse", f32(4, 6), f32(4, 2)

def tf_functions():
    # TensorFlow functions tf.keras records as TFOpLambda layers, each with a keramic op.
    x = k.Input((4, 6), name="x")
    h = L.Dense(6)(x)
    pos = tf.abs(h) + 0.5
    parts = [
        tf.nn.relu6(h), tf.nn.elu(h), tf.nn.selu(h), tf.nn.gelu(h), tf.nn.gelu(h, approximate=True),
        tf.math.softplus(h), tf.nn.softsign(h), tf.nn.silu(h), tf.nn.leaky_relu(h, alpha=0.1), tf.sigmoid(h),
        tf.nn.softmax(h, axis=1), tf.nn.log_softmax(h), tf.exp(-pos), tf.math.log(pos), tf.sqrt(pos),
        tf.math.rsqrt(pos), tf.math.reciprocal(pos), tf.math.log1p(pos), tf.math.expm1(-pos), tf.math.erf(h),
        tf.sin(h), tf.cos(h), tf.floor(h), tf.math.ceil(h), tf.round(h), tf.sign(h), tf.square(h), tf.tanh(h),
        tf.maximum(h, 0.1), tf.minimum(h, 0.1), tf.pow(pos, 2.0), pos ** 2, 1.0 - h, 2.0 / pos, tf.stop_gradient(h) // 0.5, h % 0.5,
        tf.where(h > 0, h, 0.1 * h), tf.clip_by_value(h, -0.5, 0.5), tf.cumsum(h, axis=1), tf.zeros_like(h),
        tf.cast(tf.logical_and(h > -0.5, h < 0.5), "float32"), tf.cast(tf.equal(tf.round(h), 0.0), "float32"),
        tf.transpose(tf.transpose(h, perm=[0, 2, 1]), perm=[0, 2, 1]), tf.tile(h[:, :2], [1, 2, 1]),
        tf.squeeze(tf.expand_dims(h, 1), axis=1), tf.reshape(tf.reshape(h, (-1, 24)), (-1, 4, 6)),
        h - tf.reduce_mean(h, axis=[1, 2], keepdims=True),
        tf.gather(h, [0, 2, 1, 3], axis=1), tf.reverse(h, axis=[1, 2]), tf.one_hot(tf.argmax(h, axis=-1), 6), tf.one_hot(tf.math.argmin(h, axis=-1), 6),
        tf.matmul(h[:, :, :4], h[:, :4, :]) / 4.0,
    ]
    reduced = [
        tf.reduce_sum(h, axis=1), tf.reduce_max(h, 1), tf.reduce_min(h, 1), tf.reduce_prod(tf.tanh(h), 1),
        tf.math.reduce_std(h, 1), tf.math.reduce_variance(h, 1), tf.reduce_logsumexp(h, 1), tf.norm(h, axis=1),
    ]
    stacked = tf.reduce_mean(tf.stack(parts, axis=1), axis=1)
    features = tf.concat([tf.reshape(stacked, (-1, 24))] + reduced, axis=-1)
    return k.Model(x, L.Dense(2)(features)), k.optimizers.Adam(0.01), "mse", f32(4, 4, 6), f32(4, 2)

def tf_slicing():
    # Every slice form tf.keras writes in SlicingOpLambda nodes.
    x = k.Input((4, 6), name="x")
    h = L.Dense(6)(x)
    parts = [
        h[:, 1:3], h[..., 0], h[:, None], h[:, tf.newaxis, 2], h[:, ::-1], h[..., ::2, -1], h[:, -2:, -3:-1],
        h[:, :, 3], h[..., 1:], h[:, ::2, ::-2], h[:, 2], h[..., tf.newaxis],
    ]
    flat = [L.Flatten()(part) for part in parts]
    return k.Model(x, L.Dense(2)(tf.concat(flat, axis=-1))), k.optimizers.Adam(0.01), "mse", f32(4, 4, 6), f32(4, 2)

def tf_functions_one_way():
    # Functions keramic reads but writes back only in Keras 3's form (their arguments differ).
    x = k.Input((4, 6), name="x")
    h = L.Dense(6)(x)
    a, b = tf.split(h, [2, 4], axis=-1)
    c = tf.split(h, 2, axis=1)[1]
    padded = tf.pad(h, [[0, 0], [1, 1], [0, 0]], constant_values=0.5)
    reflected = tf.pad(h, [[0, 0], [0, 0], [2, 1]], mode="REFLECT")
    image = tf.image.resize(tf.expand_dims(h, -1), (8, 12))
    flat = [L.Flatten()(t) for t in (a, b, c, padded, reflected, image)]
    return k.Model(x, L.Dense(2)(tf.concat(flat, axis=-1))), k.optimizers.Adam(0.01), "mse", f32(4, 4, 6), f32(4, 2)

def conv_zoo():
    x = k.Input((8, 8, 2), name="image")
    h = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x)
    h = L.SeparableConv2D(3, 3, activation="relu")(h)
    h = L.Conv2DTranspose(2, 3, strides=2, padding="same")(h)
    h = L.SpatialDropout2D(0.3)(h)
    seq = L.Reshape((12 * 12, 2))(h)
    s = L.Conv1D(3, 3, strides=2, dilation_rate=1)(seq)
    s = L.GlobalAveragePooling1D()(s)
    g = L.GlobalAveragePooling2D()(h)
    return k.Model(x, L.Dense(2)(L.Concatenate()([s, g]))), k.optimizers.Adam(0.01), "mse", f32(4, 8, 8, 2), f32(4, 2)

def sequence_zoo():
    tokens = k.Input((5,), name="tokens", dtype="int32")
    e = L.Embedding(10, 4, mask_zero=False)(tokens)
    e = L.LayerNormalization()(e)
    e = L.Dropout(0.3)(e)
    t = L.TimeDistributed(L.Dense(4))(e)
    a = L.Attention(use_scale=True)([t, e])
    h = L.Add()([a, L.Permute((1, 2))(e)])
    p = L.Reshape((4, 5))(L.Permute((2, 1))(h))
    r = L.RepeatVector(2)(L.Flatten()(p))
    return k.Model(tokens, L.Dense(2)(L.Flatten()(r))), k.optimizers.Adam(0.01), "mse", rng.integers(0, 10, (4, 5)).astype("int32"), f32(4, 2)

def multi_head_attention():
    x = k.Input((5, 4), name="x")
    context = k.Input((3, 4), name="context")
    h = L.MultiHeadAttention(num_heads=2, key_dim=3)(x, context)
    # SGD, not Adam: the key bias's gradient is ~0 (softmax ignores it), and Adam would amplify float noise.
    return k.Model([x, context], L.Dense(2)(L.Flatten()(h))), k.optimizers.SGD(0.05), "mse", [f32(4, 5, 4), f32(4, 3, 4)], f32(4, 2)

for name in sys.argv[2:]:
    model, optimizer, loss, x, y = globals()[name]()
    model.compile(optimizer, loss, run_eagerly=True)
    for _ in range(2):
        model.train_on_batch(x, y)
    folder = os.path.join(sys.argv[1], name)
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(model.to_json())
    model.save_weights(os.path.join(folder, "weights.h5"))
    model.save(os.path.join(folder, "model.h5"), save_format="h5")
    xs = x if isinstance(x, list) else [x]
    np.savez(os.path.join(folder, "data.npz"), y=y, pred=model.predict(x, verbose=0), **{f"x{i}": v for i, v in enumerate(xs)})
    again = k.models.load_model(os.path.join(folder, "model.h5"))
    step_loss = again.train_on_batch(x, y)
    after = {f"w{i}": w for i, w in enumerate(legacy_order(again))}
    np.savez(os.path.join(folder, "after.npz"), loss=np.float64(step_loss), iterations=int(again.optimizer.iterations.numpy()), **after)
'''

# Loads every argv[1]/<name>.h5 compiled and predicts its <name>.npz inputs; one JSON line each.
# Then, in the same process (one TensorFlow start for the module): for each folder named on stdin,
# loads every <folder>/<name>.h5 compiled and predicts its <name>.npz inputs, one JSON line each.
TF_READER = r'''
import glob
print("WRITTEN", flush=True)
for folder in iter(sys.stdin.readline, ""):
    for path in sorted(glob.glob(os.path.join(folder.strip(), "*.h5"))):
        data = np.load(path[:-3] + ".npz")
        xs = [data[key] for key in sorted(key for key in data.files if key.startswith("x"))]
        report = {"name": os.path.basename(path)[:-3]}
        try:
            model = k.models.load_model(path)
            report["pred"] = np.asarray(model.predict(xs if len(xs) > 1 else xs[0], verbose=0)).tolist()
            report["optimizer"] = type(model.optimizer).__name__
        except Exception as error:
            report["error"] = f"{type(error).__name__}: {error}"[:2000]
        print("REPORT " + json.dumps(report), flush=True)
    print("READ", flush=True)
'''


class TensorFlow:
    """The module's tf.keras subprocess: it writes the cases, then reads the folders it is sent."""

    def __init__(self, root, cases):
        self.written = {case: root / case for case in cases}
        self.errors = open(root / "stderr.txt", "w+")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [sys.executable, "-c", TF_WRITER + TF_READER, str(root), *cases],
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
        self.process.stdin.write(f"{folder}\n")
        self.process.stdin.flush()
        return self.lines_until("READ")

    def close(self):
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.errors.close()


class Scale(layers.Layer):
    """keramic's twin of the TensorFlow script's `Scale`, deliberately not decorated: it is found
    through `custom_objects` under the name the file uses, and must be written back under it."""

    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.gain = self.add_weight(name="gain", shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.gain * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


CUSTOM_OBJECTS = {CUSTOM_NAME: Scale}


def selected_cases(session):
    """The cases this session's selected tests of this module use: one TensorFlow start writes
    them all, and a run that deselects the slow ones does not pay for them."""
    cases = set()
    for item in session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(getattr(item, "module", None), "__name__", None) == __name__ and "case" in params:
            cases.add(params["case"])
    return sorted(cases)


@pytest.fixture(scope="module")
def tensorflow(request, tmp_path_factory):
    """The tf.keras subprocess, once it wrote every selected case (see TF_WRITER)."""
    root = tmp_path_factory.mktemp("tfkeras")
    process = TensorFlow(root, selected_cases(request.session))
    try:
        process.lines_until("WRITTEN")
        yield process
    finally:
        process.close()


@pytest.fixture(scope="module")
def tf_files(tensorflow):
    """Per case, the folder of files and results tf.keras wrote."""
    return tensorflow.written


def inputs_of(data):
    """The model input(s) stored as x0, x1, ...: one array, or a list for several inputs."""
    xs = [data[key] for key in sorted(key for key in data if key.startswith("x"))]
    return xs if len(xs) > 1 else xs[0]


def load_npz(path):
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def case_data(folder):
    return load_npz(folder / "data.npz")


def legacy_order(model):
    return [w for layer in model.layers for w in layer.trainable_weights + layer.non_trainable_weights]


@pytest.fixture(scope="module")
def ours(tf_files, tmp_path_factory):
    """Per case, keramic's own `.h5` (tf.keras's file loaded, trained one step, saved) and the
    inputs and predictions that go with it, as `<case>.h5` / `<case>.npz` in one folder."""
    folder = tmp_path_factory.mktemp("ours")
    for case, written in tf_files.items():
        data = case_data(written)
        model = keramic.models.load_model(written / "model.h5", custom_objects=CUSTOM_OBJECTS)
        x = inputs_of(data)
        model.train_on_batch(x, data["y"])
        model.save(folder / f"{case}.h5")
        arrays = {f"x{i}": value for i, value in enumerate(x if isinstance(x, list) else [x])}
        np.savez(folder / f"{case}.npz", pred=model.predict(x, verbose=0), **arrays)
    return folder


@pytest.fixture(scope="module")
def tf_reads_ours(tensorflow, ours):
    """Per case, what tf.keras 2 made of keramic's `.h5`."""
    lines = tensorflow.read(ours)
    reports = [json.loads(line[len("REPORT "):]) for line in lines if line.startswith("REPORT ")]
    return {report["name"]: report for report in reports}


def cases(names):
    return [name if name in FAST_CASES else pytest.param(name, marks=pytest.mark.slow) for name in names]


ALL_CASES = FAST_CASES + SLOW_CASES


# ---------------------------------------------------------------- tf.keras writes, keramic reads
@pytest.mark.parametrize("case", cases(ALL_CASES))
def test_model_from_json_and_load_weights_predict_like_tfkeras(tf_files, case):
    folder = tf_files[case]
    data = case_data(folder)
    model = keramic.models.model_from_json((folder / "config.json").read_text(), custom_objects=CUSTOM_OBJECTS)
    model.load_weights(folder / "weights.h5")
    np.testing.assert_allclose(model.predict(inputs_of(data), verbose=0), data["pred"], atol=ATOL)
    # The whole-model file's weights load into the same architecture too.
    fresh = keramic.models.model_from_json((folder / "config.json").read_text(), custom_objects=CUSTOM_OBJECTS)
    fresh.load_weights(folder / "model.h5")
    np.testing.assert_allclose(fresh.predict(inputs_of(data), verbose=0), data["pred"], atol=ATOL)


@pytest.mark.parametrize("case", cases(ALL_CASES))
def test_load_model_predicts_and_resumes_like_tfkeras(tf_files, case):
    folder = tf_files[case]
    data = case_data(folder)
    after = load_npz(folder / "after.npz")
    model = keramic.models.load_model(folder / "model.h5", custom_objects=CUSTOM_OBJECTS)
    x = inputs_of(data)
    np.testing.assert_allclose(model.predict(x, verbose=0), data["pred"], atol=ATOL)
    assert int(model.optimizer.iterations.numpy()) == int(after["iterations"]) - 1

    loss = model.train_on_batch(x, data["y"])
    if case in RANDOM_TRAINING:
        assert np.isfinite(float(np.ravel(loss)[0]))
        return
    assert float(np.ravel(loss)[0]) == pytest.approx(float(after["loss"]), rel=1e-5, abs=ATOL)
    weights = legacy_order(model)
    assert len(weights) == len([key for key in after if key.startswith("w")])
    for index, variable in enumerate(weights):
        # TF's fused batch norm (4-D inputs) moves moving_variance toward the unbiased batch
        # variance, Keras 3 and keramic toward the biased one: here n=256, a gap of ~3e-5.
        atol = 1e-4 if variable.path.endswith("moving_variance") else ATOL
        np.testing.assert_allclose(variable.numpy(), after[f"w{index}"], atol=atol, err_msg=variable.path)


@pytest.mark.parametrize("case", cases(ALL_CASES))
def test_from_config_of_tfkeras_get_config_after_the_same_translation(tf_files, case):
    folder = tf_files[case]
    data = case_data(folder)
    written = json.loads((folder / "config.json").read_text())
    config = keras2_config.convert_class_config(written["class_name"], written["config"])
    cls = keramic.Sequential if written["class_name"] == "Sequential" else keramic.Model
    model = cls.from_config(config, custom_objects=CUSTOM_OBJECTS)
    model.load_weights(folder / "weights.h5")
    np.testing.assert_allclose(model.predict(inputs_of(data), verbose=0), data["pred"], atol=ATOL)


@pytest.mark.parametrize("case", ["custom_layer"])
def test_custom_layer_keeps_the_name_it_was_loaded_under(tf_files, case):
    folder = tf_files[case]
    model = keramic.models.model_from_json((folder / "config.json").read_text(), custom_objects=CUSTOM_OBJECTS)
    entries = {entry["class_name"]: entry for entry in json.loads(model.to_json())["config"]["layers"]}
    assert entries["Scale"]["registered_name"] == CUSTOM_NAME


# ---------------------------------------------------------------- keramic writes, both Keras read
@pytest.mark.parametrize("case", cases([name for name in ALL_CASES if name not in NO_KERAS3_READER]))
def test_our_h5_loads_in_keras3(ours, keras, case):
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

    data = load_npz(ours / f"{case}.npz")
    theirs = keras.saving.load_model(ours / f"{case}.h5", custom_objects={CUSTOM_NAME: KerasScale})
    np.testing.assert_allclose(np.asarray(theirs.predict(inputs_of(data), verbose=0)), data["pred"], atol=ATOL)


@pytest.mark.parametrize("case", cases([name for name in ALL_CASES if name not in KERAS3_FORM]))
def test_our_h5_loads_in_tfkeras2(tf_reads_ours, ours, case):
    report = tf_reads_ours[case]
    assert "error" not in report, report["error"]
    data = load_npz(ours / f"{case}.npz")
    np.testing.assert_allclose(np.asarray(report["pred"], "float32"), data["pred"], atol=ATOL)
    assert report["optimizer"] != "NoneType"


@pytest.mark.parametrize("case", cases(ALL_CASES))
def test_our_h5_reads_back_in_keramic(ours, case):
    data = load_npz(ours / f"{case}.npz")
    again = keramic.models.load_model(ours / f"{case}.h5", custom_objects=CUSTOM_OBJECTS)
    np.testing.assert_allclose(again.predict(inputs_of(data), verbose=0), data["pred"], atol=ATOL)
