"""Learning-rate schedules: values and configs checked against real Keras 3 (torch backend)."""

import numpy as np
import pytest
import torch

from keramic.optimizers import schedules

CASES = [
    ("ExponentialDecay", (0.1, 3, 0.5), {}),
    ("ExponentialDecay", (0.1, 3, 0.5), {"staircase": True}),
    ("PiecewiseConstantDecay", ([3, 7], [1.0, 0.5, 0.1]), {}),
    ("PiecewiseConstantDecay", ([2.5, 6], [0.3, 0.2, 0.1]), {}),
    ("PolynomialDecay", (0.1, 8), {}),
    ("PolynomialDecay", (0.1, 5), {"end_learning_rate": 0.01, "power": 2.0, "cycle": True}),
    ("InverseTimeDecay", (0.1, 4, 0.5), {}),
    ("InverseTimeDecay", (0.1, 4, 0.5), {"staircase": True}),
    ("CosineDecay", (0.1, 10), {}),
    ("CosineDecay", (0.1, 10), {"alpha": 0.1}),
    ("CosineDecay", (0.0, 10), {"warmup_target": 0.2, "warmup_steps": 4, "alpha": 0.05}),
    ("CosineDecayRestarts", (0.1, 3), {}),
    ("CosineDecayRestarts", (0.1, 3), {"t_mul": 1.0, "m_mul": 0.5, "alpha": 0.1}),
    ("CosineDecayRestarts", (0.1, 2), {"t_mul": 3.0, "m_mul": 0.9}),
]
STEPS = range(0, 40)


def _ids(case):
    return f"{case[0]}-{'-'.join(f'{k}={v}' for k, v in case[2].items()) or 'defaults'}"


@pytest.mark.interop
@pytest.mark.parametrize("class_name, args, kwargs", CASES, ids=[_ids(c) for c in CASES])
def test_values_and_config_match_keras(keras, class_name, args, kwargs):
    expected = getattr(keras.optimizers.schedules, class_name)(*args, **kwargs)
    schedule = getattr(schedules, class_name)(*args, **kwargs)
    for step in STEPS:
        want = float(expected(np.int32(step)))
        got = schedule(step)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
        assert float(got) == pytest.approx(want, rel=1e-6, abs=1e-9), f"step {step}"
    assert float(schedule(torch.tensor(5, dtype=torch.int32))) == float(schedule(5))

    config = schedule.get_config()
    assert list(config) == list(expected.get_config())
    assert config == expected.get_config()
    envelope = schedules.serialize(schedule)
    assert envelope == keras.optimizers.schedules.serialize(expected)
    again = schedules.deserialize(envelope)
    assert type(again) is type(schedule) and again.get_config() == config
    assert float(type(schedule).from_config(config)(7)) == float(schedule(7))


def test_default_config_names():
    assert schedules.ExponentialDecay(0.1, 10, 0.9).get_config()["name"] == "ExponentialDecay"
    assert schedules.PiecewiseConstantDecay([1], [0.1, 0.01]).get_config()["name"] == "PiecewiseConstant"
    assert schedules.CosineDecayRestarts(0.1, 10).get_config() == {
        "initial_learning_rate": 0.1,
        "first_decay_steps": 10,
        "t_mul": 2.0,
        "m_mul": 1.0,
        "alpha": 0.0,
        "name": "SGDRDecay",
    }


def test_keras2_style_config_without_module():
    schedule = schedules.deserialize(
        {
            "class_name": "InverseTimeDecay",
            "config": {"initial_learning_rate": 0.5, "decay_steps": 1, "decay_rate": 1.0},
        }
    )
    assert float(schedule(1)) == pytest.approx(0.25)


def test_validation():
    with pytest.raises(ValueError, match="decay_steps"):
        schedules.ExponentialDecay(0.1, 0, 0.9)
    with pytest.raises(ValueError, match="first_decay_steps"):
        schedules.CosineDecayRestarts(0.1, 0)
    with pytest.raises(ValueError, match="boundaries"):
        schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    with pytest.raises(NotImplementedError):
        schedules.LearningRateSchedule()(0)
