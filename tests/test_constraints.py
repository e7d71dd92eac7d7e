"""keramic.constraints: Keras projections, configs and names."""

import pytest
import torch

from keramic import constraints
from keramic.errors import UnknownObjectError

CASES = [
    ("MaxNorm", {}),
    ("MaxNorm", {"max_value": 1.5, "axis": 1}),
    ("MaxNorm", {"max_value": 0.5, "axis": [0, 1, 2]}),
    ("NonNeg", {}),
    ("UnitNorm", {}),
    ("UnitNorm", {"axis": [0, 1, 2]}),
    ("MinMaxNorm", {}),
    ("MinMaxNorm", {"min_value": 0.5, "max_value": 2.0, "rate": 0.3, "axis": 1}),
]


@pytest.fixture
def kernel():
    return torch.randn(3, 3, 4, 5, generator=torch.Generator().manual_seed(0))


def test_default_configs_as_in_spec():
    assert constraints.MaxNorm().get_config() == {"max_value": 2, "axis": 0}
    assert constraints.NonNeg().get_config() == {}
    assert constraints.UnitNorm().get_config() == {"axis": 0}
    assert constraints.MinMaxNorm().get_config() == {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0}


@pytest.mark.interop
def test_configs_and_projections_match_keras(keras, kernel):
    for name, kwargs in CASES:
        ours = getattr(constraints, name)(**kwargs)
        theirs = getattr(keras.constraints, name)(**kwargs)
        assert ours.get_config() == theirs.get_config(), (name, kwargs)
        assert constraints.serialize(ours) == keras.saving.serialize_keras_object(theirs), (name, kwargs)
        expected = torch.as_tensor(theirs(kernel)).detach().cpu()
        torch.testing.assert_close(ours(kernel), expected, rtol=1e-6, atol=1e-7, msg=f"{name}{kwargs}")


def test_projections_by_hand():
    w = torch.tensor([[3.0, 0.3], [4.0, -0.4]])  # column norms 5 and 0.5
    torch.testing.assert_close(constraints.MaxNorm(2.0)(w), torch.tensor([[1.2, 0.3], [1.6, -0.4]]))
    torch.testing.assert_close(constraints.UnitNorm()(w), torch.tensor([[0.6, 0.6], [0.8, -0.8]]))
    torch.testing.assert_close(constraints.MinMaxNorm(1.0, 2.0)(w), torch.tensor([[1.2, 0.6], [1.6, -0.8]]))
    assert constraints.NonNeg()(w).tolist() == [[3.0, 0.30000001192092896], [4.0, 0.0]]
    assert constraints.Constraint()(w) is w


def test_works_on_a_variable_in_place():
    from keramic.backend import Variable

    variable = Variable(torch.tensor([[-1.0, 2.0]]))
    with torch.no_grad():
        variable.copy_(constraints.NonNeg()(variable))
    assert variable.numpy().tolist() == [[0.0, 2.0]]


def test_names_get_and_round_trip():
    for name, cls in (("max_norm", "MaxNorm"), ("non_neg", "NonNeg"), ("unit_norm", "UnitNorm"),
                      ("min_max_norm", "MinMaxNorm"), ("MaxNorm", "MaxNorm")):  # fmt: skip
        assert type(constraints.get(name)).__name__ == cls
    assert constraints.get(None) is None
    assert isinstance(constraints.get(constraints.NonNeg), constraints.NonNeg)
    with pytest.raises(UnknownObjectError):
        constraints.get("max_nrom")
    for name, kwargs in CASES:
        original = getattr(constraints, name)(**kwargs)
        envelope = constraints.serialize(original)
        assert envelope["module"] == "keras.constraints" and envelope["class_name"] == name
        assert constraints.deserialize(envelope).get_config() == original.get_config()
