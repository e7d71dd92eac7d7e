"""Schedule-free AdamW: no learning-rate schedule needed; weights interpolate an iterate and its average."""

import numpy as np
import torch

from keramic.optimizers.base import Optimizer, f32
from keramic.serialization.registry import keras_export


@keras_export("keras.optimizers")
class ScheduleFreeAdamW(Optimizer):
    """Adam-normalised steps land on `momentum` (the iterate z); the weights hold
    `(1-β₁)·z + β₁·x` where x is the running average of z. With `warmup_steps`, the step size
    ramps linearly. Further arguments as `Optimizer`, in Keras's positional order.

    As Keras runs it on torch, the "old" iterate in the average is read after its in-place update.
    """

    def __init__(self, learning_rate=0.0025, beta_1=0.9, beta_2=0.999, epsilon=1e-8, warmup_steps=0, *args, **kwargs):
        super().__init__(learning_rate, *args, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.warmup_steps = warmup_steps

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = [], []
        for variable in var_list:  # z starts at the weights (a restored value wins over that start)
            start = lambda shape, dtype, v=variable: v.detach().clone()  # noqa: E731
            self._momentums.append(self.add_variable_from_reference(variable, "momentum", start))
            self._velocities.append(self.add_variable_from_reference(variable, "velocity"))

    def _foreach_update(self, grads, variables, lr, step, slots):
        t = f32(step)
        lr = f32(lr)
        if self.warmup_steps > 0:
            lr = f32(lr * min(t / f32(self.warmup_steps), f32(1)))
        beta_1 = f32(self.beta_1)
        correction = float(f32(1) - np.power(f32(self.beta_2), t))
        weight = float(f32(1) / t)
        for grad, variable, z, v in zip(grads, variables, slots(self._momentums), slots(self._velocities)):
            v.add_((torch.square(grad) - v) * float(f32(1) - f32(self.beta_2)))
            z.sub_(float(lr) * grad / (torch.sqrt(v / correction) + float(f32(self.epsilon))))
            x_old = (variable - float(f32(1) - beta_1) * z) / float(beta_1)
            x_new = (1 - weight) * x_old + weight * z
            variable.copy_(float(f32(1) - beta_1) * z + float(beta_1) * x_new)

    def get_config(self):
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "warmup_steps": self.warmup_steps,
        }
