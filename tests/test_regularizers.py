"""keramic.regularizers: Keras penalties, configs (float32-rounded where Keras rounds) and names."""

import pytest
import torch

from keramic import regularizers
from keramic.errors import ConfigError, UnknownObjectError

CASES = [
    ("L1", {}),
    ("L1", {"l1": 0.3}),
    ("L2", {}),
    ("L2", {"l2": 0.3}),
    ("L1L2", {}),
    ("L1L2", {"l1": 0.3, "l2": 0.2}),
    ("L1L2", {"l2": 0.1}),
    ("OrthogonalRegularizer", {}),
    ("OrthogonalRegularizer", {"factor": 0.5, "mode": "columns"}),
]


@pytest.fixture
def weight():
    return torch.randn(12, 7, generator=torch.Generator().manual_seed(0))


def test_default_configs_as_in_spec():
    assert regularizers.L1().get_config() == {"l1": 0.009999999776482582}
    assert regularizers.L2().get_config() == {"l2": 0.01}
    assert regularizers.L1L2().get_config() == {"l1": 0.0, "l2": 0.0}
    assert regularizers.OrthogonalRegularizer().get_config() == {"factor": 0.009999999776482582, "mode": "rows"}


@pytest.mark.interop
def test_configs_and_penalties_match_keras(keras, weight):
    for name, kwargs in CASES:
        ours = getattr(regularizers, name)(**kwargs)
        theirs = getattr(keras.regularizers, name)(**kwargs)
        assert ours.get_config() == theirs.get_config(), (name, kwargs)
        assert regularizers.serialize(ours) == keras.saving.serialize_keras_object(theirs), (name, kwargs)
        penalty = ours(weight)
        assert penalty.shape == () and penalty.dtype == torch.float32
        expected = torch.as_tensor(theirs(weight)).detach().cpu()
        torch.testing.assert_close(penalty.cpu(), expected, rtol=1e-6, atol=1e-7, msg=f"{name}{kwargs}")


def test_penalties_by_hand():
    x = torch.tensor([[1.0, -2.0], [3.0, -4.0]])
    assert regularizers.L1(0.5)(x).item() == pytest.approx(5.0)
    assert regularizers.L2(0.5)(x).item() == pytest.approx(15.0)
    assert regularizers.L1L2(l1=1.0, l2=1.0)(x).item() == pytest.approx(40.0)
    assert regularizers.L1L2()(x).item() == 0.0
    orthogonal_rows = torch.eye(3)
    assert regularizers.OrthogonalRegularizer(1.0)(orthogonal_rows).item() == 0.0
    parallel = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    # Both off-diagonal cosines are 1: factor * 0.5 * (1 + 1) / one pair.
    assert regularizers.OrthogonalRegularizer(1.0)(parallel).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="rank 2"):
        regularizers.OrthogonalRegularizer()(torch.ones(3))


def test_penalty_has_gradient(weight):
    weight.requires_grad_(True)
    regularizers.L2(0.5)(weight).backward()
    torch.testing.assert_close(weight.grad, weight.detach())


def test_names_and_get():
    assert isinstance(regularizers.get("l1"), regularizers.L1)
    assert isinstance(regularizers.get("l2"), regularizers.L2)
    assert isinstance(regularizers.get("l1_l2"), regularizers.L1L2)
    assert isinstance(regularizers.get("l1l2"), regularizers.L1L2)
    assert isinstance(regularizers.get("orthogonal_regularizer"), regularizers.OrthogonalRegularizer)
    assert isinstance(regularizers.get(regularizers.L2), regularizers.L2)
    assert regularizers.get(None) is None
    config = {"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.25}, "registered_name": None}
    assert regularizers.get(config).l2 == 0.25
    with pytest.raises(UnknownObjectError):
        regularizers.get("l3")


def test_round_trip():
    for name, kwargs in CASES:
        original = getattr(regularizers, name)(**kwargs)
        envelope = regularizers.serialize(original)
        assert envelope["module"] == "keras.regularizers" and envelope["class_name"] == name
        assert regularizers.deserialize(envelope).get_config() == original.get_config()


def test_invalid_factors():
    for bad in (-0.1, float("nan"), float("inf"), "0.1"):
        with pytest.raises(ConfigError):
            regularizers.L2(bad)
    with pytest.raises(ConfigError):
        regularizers.OrthogonalRegularizer(mode="diagonal")
