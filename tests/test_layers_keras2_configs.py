"""Layer configs as tf.keras 2.21 writes them (keys Keras 3 dropped, such as `groups` on
DepthwiseConv2D) load here, through `model_from_json` + `load_weights` and through `load_model` of
tf.keras's `.h5`, and predict what tf.keras predicted.

tf.keras runs in one subprocess (it cannot share a process with torch): it builds each model,
sets random weights, and writes config.json, weights.h5, model.h5 and its predictions.
"""

import importlib.util

import numpy as np
import pytest

import keramic
from helpers import run_tf_keras

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        importlib.util.find_spec("tf_keras") is None or importlib.util.find_spec("tensorflow") is None,
        reason="tf.keras 2 is the reference here: pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0",
    ),
]

TF_WRITER = r'''
import os, sys
import numpy as np
import tensorflow as tf
import tf_keras as k
L = k.layers
tf.random.set_seed(0)
rng = np.random.default_rng(0)

def images():
    return rng.normal(size=(2, 6, 6, 2)).astype("float32")

def depthwise():
    x = k.Input((6, 6, 2))
    h = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu")(x)
    return k.Model(x, L.DepthwiseConv2D(2, strides=2, use_bias=False)(h)), images()

def separable():
    x = k.Input((6, 6, 2))
    return k.Model(x, L.SeparableConv2D(3, 2, depth_multiplier=2, strides=2, activation="tanh")(x)), images()

def transpose():
    x = k.Input((6, 6, 2))
    h = L.Conv2DTranspose(3, 3, strides=2, output_padding=1)(x)
    return k.Model(x, L.Conv2DTranspose(2, 2, padding="same", dilation_rate=1)(h)), images()

def batch_normalization():
    x = k.Input((6, 6, 2))
    h = L.BatchNormalization(momentum=0.9, epsilon=1e-3)(x)
    return k.Model(x, L.BatchNormalization(axis=[1], center=False, scale=True)(h)), images()

def recurrent():
    x = k.Input((5, 3))
    h = L.LSTM(4, return_sequences=True, unit_forget_bias=True)(L.Masking()(x))
    h = L.GRU(3, return_sequences=True, reset_after=True)(h)
    h = L.Bidirectional(L.GRU(2, reset_after=False))(h)
    data = rng.normal(size=(2, 5, 3)).astype("float32")
    data[0, 3:] = 0.0  # padded steps: Masking skips them
    return k.Model(x, h), data

def random_values(weight):
    if "moving_variance" in weight.name:
        return rng.uniform(0.5, 1.5, weight.shape).astype("float32")
    return rng.normal(scale=0.5, size=weight.shape).astype("float32")

for name in sys.argv[2:]:
    model, x = globals()[name]()
    model.set_weights([random_values(w) for w in model.weights])
    folder = os.path.join(sys.argv[1], name)
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(model.to_json())
    model.save_weights(os.path.join(folder, "weights.h5"))
    model.save(os.path.join(folder, "model.h5"), save_format="h5")
    np.savez(os.path.join(folder, "data.npz"), x=x, pred=model.predict(x, verbose=0))
'''

CASES = [
    "depthwise",
    "separable",
    "transpose",
    "batch_normalization",
    "recurrent",
]


@pytest.fixture(scope="module")
def tf_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfkeras2_layers")
    run_tf_keras(TF_WRITER, root, *[case.values[0] if hasattr(case, "values") else case for case in CASES])
    return root


def _data(folder):
    with np.load(folder / "data.npz", allow_pickle=False) as data:
        return data["x"], data["pred"]


@pytest.mark.parametrize("case", CASES)
def test_model_from_json_and_weights_predict_like_tfkeras(tf_files, case):
    folder = tf_files / case
    x, expected = _data(folder)
    model = keramic.models.model_from_json((folder / "config.json").read_text())
    model.load_weights(folder / "weights.h5")
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_load_model_of_tfkeras_h5_predicts_like_tfkeras(tf_files, case):
    folder = tf_files / case
    x, expected = _data(folder)
    model = keramic.models.load_model(folder / "model.h5")
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-5, rtol=1e-5)
