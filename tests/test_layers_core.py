"""Core layers against real Keras 3: same weights in, same outputs out, same config keys."""

import json

import numpy as np
import pytest
import torch

import keramic
from keramic import layers

CASES = [
    ("Dense", {"units": 5}, (3, 4)),
    ("Dense", {"units": 3, "activation": "relu", "use_bias": False, "kernel_regularizer": "l2"}, (2, 4)),
    ("Dense", {"units": 2, "activation": "softmax"}, (2, 3, 4)),
    ("Activation", {"activation": "tanh"}, (2, 6)),
    ("Dropout", {"rate": 0.3}, (2, 6)),
    ("Flatten", {}, (2, 3, 4)),
    ("Reshape", {"target_shape": (2, -1)}, (2, 3, 4)),
    ("Permute", {"dims": (2, 1)}, (2, 3, 4)),
    ("RepeatVector", {"n": 3}, (2, 4)),
]


def _normalized(config):
    config = dict(config)
    config.pop("name", None)
    return config


@pytest.mark.interop
@pytest.mark.parametrize("class_name,kwargs,shape", CASES, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_core_layer_matches_keras(keras, class_name, kwargs, shape):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    theirs = getattr(keras.layers, class_name)(**kwargs)
    ours = getattr(layers, class_name)(**kwargs)
    expected = keras.ops.convert_to_numpy(theirs(x))
    ours(x)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
    assert [w.path.split("/")[-1] for w in ours.weights] == [w.path.split("/")[-1] for w in theirs.weights]
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours(x).detach().numpy(), expected, atol=1e-5)
    our_config, their_config = _normalized(ours.get_config()), _normalized(theirs.get_config())
    assert list(our_config) == list(their_config)
    assert keras.utils.serialize_keras_object(theirs)["config"].keys() == keramic.saving.serialize_keras_object(ours)["config"].keys()
    assert (ours.get_build_config() is None) == (theirs.get_build_config() is None)
    assert json.loads(json.dumps(our_config)) == json.loads(json.dumps(their_config, default=list))


@pytest.mark.interop
def test_dropout_training_scales_and_inference_is_identity(keras):
    layer = layers.Dropout(0.5)
    x = torch.ones(1000, 10)
    assert torch.equal(layer(x), x)
    out = layer(x, training=True)
    kept = out[out != 0]
    assert torch.allclose(kept, torch.full_like(kept, 2.0))
    assert 0.4 < float((out == 0).float().mean()) < 0.6


def test_symbolic_shapes_of_core_layers():
    x = keramic.Input((3, 4))
    assert layers.Flatten()(x).shape == (None, 12)
    assert layers.Reshape((-1, 2))(x).shape == (None, 6, 2)
    assert layers.Permute((2, 1))(x).shape == (None, 4, 3)
    assert layers.Dense(7)(x).shape == (None, 3, 7)
    assert layers.RepeatVector(5)(layers.Flatten()(x)).shape == (None, 5, 12)
