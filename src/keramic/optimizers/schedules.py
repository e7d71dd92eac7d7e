"""Learning-rate schedules with Keras 3's formulas and configs.

Values are computed in float32 (NumPy scalars), in the order Keras's ops run, so that a
schedule gives Keras's float32 result and boundary cases (floor, ceil, log ratios) land on the
same side. The optimizer passes the step as a Python int, so no device tensor is read.
"""

import math

import numpy as np
import torch

from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object

f32 = np.float32
_PI = f32(math.pi)


def _number(step):
    """A Python int/float from an int, float, NumPy scalar or 0-d tensor."""
    if isinstance(step, (torch.Tensor, np.ndarray, np.generic)):
        return step.item()
    return step


def _result(value):
    return torch.tensor(value, dtype=torch.float32)


def _check_steps(argument, value):
    if value <= 0:
        raise ValueError(f"Argument `{argument}` must be > 0. Received: {argument}={value}")


@keras_export("keras.optimizers.schedules")
class LearningRateSchedule:
    """Base class: `__call__(step)` returns the learning rate at that optimizer step."""

    def __call__(self, step):
        raise NotImplementedError(
            f"Learning rate schedule '{type(self).__name__}' must override `__call__(self, step)`."
        )

    def get_config(self):
        raise NotImplementedError(
            f"Learning rate schedule '{type(self).__name__}' must override `get_config()` in order to be serializable."
        )

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras_export("keras.optimizers.schedules")
class ExponentialDecay(LearningRateSchedule):
    """`initial_learning_rate * decay_rate ** (step / decay_steps)` (floored exponent if staircase)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name
        _check_steps("decay_steps", decay_steps)

    def __call__(self, step):
        p = f32(_number(step)) / f32(self.decay_steps)
        if self.staircase:
            p = np.floor(p)
        return _result(f32(self.initial_learning_rate) * f32(self.decay_rate) ** p)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


@keras_export("keras.optimizers.schedules")
class PiecewiseConstantDecay(LearningRateSchedule):
    """`values[i]` for steps in `(boundaries[i-1], boundaries[i]]`."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                "The length of boundaries should be 1 less than the length of values. Received: "
                f"boundaries={boundaries} of length {len(boundaries)}, and values={values} of length {len(values)}."
            )
        self.boundaries = boundaries
        self.values = values
        self.name = name

    def __call__(self, step):
        step = _number(step)
        index = sum(step > b for b in self.boundaries)
        return _result(f32(self.values[index]))

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


@keras_export("keras.optimizers.schedules")
class PolynomialDecay(LearningRateSchedule):
    """Decay from `initial_learning_rate` to `end_learning_rate` along `(1 - step/decay_steps) ** power`."""

    def __init__(
        self,
        initial_learning_rate,
        decay_steps,
        end_learning_rate=0.0001,
        power=1.0,
        cycle=False,
        name="PolynomialDecay",
    ):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.end_learning_rate = end_learning_rate
        self.power = power
        self.cycle = cycle
        self.name = name
        _check_steps("decay_steps", decay_steps)

    def __call__(self, step):
        initial = f32(self.initial_learning_rate)
        end = f32(self.end_learning_rate)
        step = f32(_number(step))
        decay_steps = f32(self.decay_steps)
        if self.cycle:
            # The first multiple of decay_steps above the step (1 at step 0).
            multiplier = f32(1) if step == 0 else np.ceil(step / decay_steps)
            decay_steps = decay_steps * multiplier
        else:
            step = min(step, decay_steps)
        p = step / decay_steps
        return _result((initial - end) * (f32(1) - p) ** f32(self.power) + end)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
            "cycle": self.cycle,
            "name": self.name,
        }


@keras_export("keras.optimizers.schedules")
class InverseTimeDecay(LearningRateSchedule):
    """`initial_learning_rate / (1 + decay_rate * step / decay_steps)` (floored if staircase)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="InverseTimeDecay"):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name
        _check_steps("decay_steps", decay_steps)

    def __call__(self, step):
        p = f32(_number(step)) / f32(self.decay_steps)
        if self.staircase:
            p = np.floor(p)
        return _result(f32(self.initial_learning_rate) / (f32(1) + f32(self.decay_rate) * p))

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


def _cosine(fraction, alpha):
    decayed = f32(0.5) * (f32(1) + np.cos(_PI * fraction))
    return f32(1 - alpha) * decayed + f32(alpha)


@keras_export("keras.optimizers.schedules")
class CosineDecay(LearningRateSchedule):
    """Optional linear warmup to `warmup_target`, then cosine decay to `alpha` times the peak."""

    def __init__(
        self,
        initial_learning_rate,
        decay_steps,
        alpha=0.0,
        name="CosineDecay",
        warmup_target=None,
        warmup_steps=0,
    ):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.alpha = alpha
        self.name = name
        self.warmup_steps = warmup_steps
        self.warmup_target = warmup_target
        _check_steps("decay_steps", decay_steps)

    def __call__(self, step):
        initial = f32(self.initial_learning_rate)
        decay_steps = f32(self.decay_steps)
        step = f32(_number(step))
        if self.warmup_target is None:
            step = min(step, decay_steps)
            return _result(initial * _cosine(step / decay_steps, self.alpha))
        target = f32(self.warmup_target)
        warmup_steps = f32(self.warmup_steps)
        step = min(step, decay_steps + warmup_steps)
        if step < warmup_steps:
            return _result((target - initial) * (step / warmup_steps) + initial)
        return _result(target * _cosine((step - warmup_steps) / decay_steps, self.alpha))

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "name": self.name,
            "warmup_target": self.warmup_target,
            "warmup_steps": self.warmup_steps,
        }


@keras_export("keras.optimizers.schedules")
class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR): periods grow by `t_mul`, peaks shrink by `m_mul`."""

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0, name="SGDRDecay"):
        self.initial_learning_rate = initial_learning_rate
        self.first_decay_steps = first_decay_steps
        self.t_mul = t_mul
        self.m_mul = m_mul
        self.alpha = alpha
        self.name = name
        _check_steps("first_decay_steps", first_decay_steps)

    def __call__(self, step):
        one = f32(1)
        t_mul = f32(self.t_mul)
        fraction = f32(_number(step)) / f32(self.first_decay_steps)
        if t_mul == one:
            restart = np.floor(fraction)
            fraction = fraction - restart
        else:
            restart = np.floor(np.log(one - fraction * (one - t_mul)) / np.log(t_mul))
            completed_periods = (one - t_mul**restart) / (one - t_mul)
            fraction = (fraction - completed_periods) / t_mul**restart
        scale = f32(self.m_mul) ** restart
        alpha = f32(self.alpha)
        decayed = f32(0.5) * scale * (one + np.cos(_PI * fraction))
        return _result(f32(self.initial_learning_rate) * ((one - alpha) * decayed + alpha))

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "first_decay_steps": self.first_decay_steps,
            "t_mul": self.t_mul,
            "m_mul": self.m_mul,
            "alpha": self.alpha,
            "name": self.name,
        }


def serialize(learning_rate_schedule):
    """The schedule's Keras envelope (`module: keras.optimizers.schedules`)."""
    return serialize_keras_object(learning_rate_schedule)


def deserialize(config, custom_objects=None):
    """Build a schedule from its envelope (or a Keras 2 `{class_name, config}` dict)."""
    return deserialize_keras_object(config, ("keras.optimizers.schedules",), custom_objects)
