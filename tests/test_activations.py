"""keramic.activations: Keras numerics, names, and the config forms of spec §3.5."""

import numpy as np
import pytest
import torch

from keramic import activations
from keramic.errors import ConfigError, UnknownObjectError
from keramic.saving import register_keras_serializable

# Names Keras 3.15.1 resolves with `keras.activations.get`, aliases included.
BUILTIN_NAMES = [
    "relu", "leaky_relu", "relu6", "softmax", "log_softmax", "sigmoid", "log_sigmoid", "tanh",
    "linear", "elu", "selu", "celu", "softplus", "softsign", "silu", "swish", "gelu", "glu",
    "exponential", "hard_sigmoid", "hard_silu", "hard_swish", "hard_tanh", "mish", "tanh_shrink",
    "soft_shrink", "hard_shrink", "sparse_plus", "sparse_sigmoid", "squareplus",
]  # fmt: skip


@pytest.fixture
def x():
    values = np.random.default_rng(0).normal(0.0, 4.0, (16, 32)).astype("float32")
    # Kinks and thresholds of the piecewise activations, and large magnitudes.
    values[0, :12] = [0.0, -1.0, 1.0, 3.0, -3.0, 6.0, -6.0, 0.5, -0.5, 40.0, -40.0, 1e-8]
    return torch.from_numpy(values)


def _assert_matches(ours, theirs, what):
    theirs = torch.as_tensor(theirs).detach().cpu()  # Keras on torch returns torch tensors
    assert ours.dtype == theirs.dtype == torch.float32, what
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6, msg=lambda m: f"{what}: {m}")


@pytest.mark.interop
def test_matches_keras(keras, x):
    for name in BUILTIN_NAMES:
        _assert_matches(activations.get(name)(x), keras.activations.get(name)(x), name)


ARGUMENT_CASES = [
    ("relu", {"negative_slope": 0.3}),
    ("relu", {"max_value": 6.0}),
    ("relu", {"max_value": 2.5}),
    ("relu", {"threshold": 1.5}),
    ("relu", {"threshold": -1.0}),
    ("relu", {"negative_slope": 0.1, "max_value": 3.0, "threshold": 0.5}),
    ("relu", {"negative_slope": 0.1, "threshold": -0.5}),
    ("relu", {"negative_slope": 0.2, "max_value": 4}),
    ("leaky_relu", {"negative_slope": 0.01}),
    ("gelu", {"approximate": True}),
    ("elu", {"alpha": 0.5}),
    ("softmax", {"axis": 0}),
    ("softmax", {"axis": None}),
    ("log_softmax", {"axis": 0}),
    ("log_softmax", {"axis": None}),
    ("threshold", {"threshold": 0.5, "default_value": -1.0}),
    ("soft_shrink", {"threshold": 1.0}),
]


@pytest.mark.interop
def test_arguments_match_keras(keras, x):
    for name, kwargs in ARGUMENT_CASES:
        ours = getattr(activations, name)(x, **kwargs)
        _assert_matches(ours, getattr(keras.activations, name)(x, **kwargs), f"{name}{kwargs}")


def test_relu_arguments_by_hand():
    x = torch.tensor([-10.0, -5.0, 0.0, 5.0, 10.0])
    assert activations.relu(x).tolist() == [0, 0, 0, 5, 10]
    assert activations.relu(x, negative_slope=0.5).tolist() == [-5, -2.5, 0, 5, 10]
    assert activations.relu(x, max_value=5.0).tolist() == [0, 0, 0, 5, 5]
    assert activations.relu(x, threshold=5.0).tolist() == [0, 0, 0, 0, 10]


def test_sparsemax_projects_onto_simplex():
    # Keras 3.15.1's torch sparsemax mis-computes the threshold when several entries are kept
    # (it returns all zeros here), so this checks the definition instead.
    x = torch.tensor([[3.0, 3.0, 3.0], [1.0, 2.0, 0.5], [0.1, 0.3, 0.2]])
    expected = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [0.0, 1.0, 0.0], [0.2333333, 0.4333333, 0.3333333]])
    torch.testing.assert_close(activations.sparsemax(x), expected)
    out = activations.sparsemax(torch.randn(5, 7, 4), axis=1)
    torch.testing.assert_close(out.sum(1), torch.ones(5, 4))
    assert (out >= 0).all()


def test_get_resolves_names_aliases_and_none():
    assert activations.get(None) is activations.linear
    assert activations.get("swish") is activations.silu is activations.swish
    assert activations.get("hard_swish") is activations.hard_silu
    assert activations.get(torch.tanh) is torch.tanh
    config = {"module": "builtins", "class_name": "function", "config": "relu", "registered_name": "function"}
    assert activations.get(config) is activations.relu
    with pytest.raises(UnknownObjectError, match="no_such"):
        activations.get("no_such_activation")
    with pytest.raises(ValueError):
        activations.get(3)


def test_builtins_serialize_as_plain_names():
    for name in BUILTIN_NAMES:
        serialized = activations.serialize(activations.get(name))
        assert isinstance(serialized, str)
        assert activations.deserialize(serialized) is activations.get(name)
    assert activations.serialize(activations.swish) == "silu"
    assert activations.serialize(activations.hard_swish) == "hard_silu"


@pytest.mark.interop
def test_serialized_names_match_keras(keras):
    for name in BUILTIN_NAMES:
        assert activations.serialize(activations.get(name)) == keras.activations.serialize(
            keras.activations.get(name)
        ), name


def test_custom_functions_serialize_as_envelopes():
    @register_keras_serializable("test_activations")
    def scaled_tanh(x):
        return 2 * torch.tanh(x)

    config = activations.serialize(scaled_tanh)
    assert config == {
        "module": "builtins",
        "class_name": "function",
        "config": "test_activations>scaled_tanh",
        "registered_name": "function",
    }
    assert activations.deserialize(config) is scaled_tanh
    assert activations.get(config) is scaled_tanh

    def local_act(x):
        return x

    assert activations.serialize(local_act)["config"] == "local_act"
    with pytest.raises(UnknownObjectError):
        activations.deserialize(activations.serialize(local_act))
    assert activations.deserialize(activations.serialize(local_act), {"local_act": local_act}) is local_act


def test_lambdas_cannot_be_serialized():
    with pytest.raises(ConfigError, match="lambda"):
        activations.serialize(lambda t: t)


def test_callable_objects_with_config_serialize_as_envelopes():
    class Scale:
        def __init__(self, factor):
            self.factor = factor

        def __call__(self, x):
            return x * self.factor

        def get_config(self):
            return {"factor": self.factor}

    config = activations.serialize(Scale(3.0))
    assert config["class_name"] == "Scale"
    assert config["config"] == {"factor": 3.0}
    rebuilt = activations.deserialize(config, custom_objects={"Scale": Scale})
    assert rebuilt(torch.ones(2)).tolist() == [3.0, 3.0]
