"""Lamb: Adam's bias-corrected direction, rescaled per variable by ‖weights‖ / ‖update‖ (trust ratio)."""

import numpy as np
import torch

from keramic.optimizers.base import Optimizer, f32
from keramic.serialization.registry import keras_export


@keras_export("keras.optimizers")
class Lamb(Optimizer):
    """`u = m̂ / (sqrt(v̂) + epsilon)`; `var -= ratio * lr * u` with `ratio = ‖var‖/‖u‖` (1 when either
    norm is 0). Further arguments as `Optimizer`, in Keras's positional order."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, *args, **kwargs):
        super().__init__(learning_rate, *args, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])

    def _foreach_update(self, grads, variables, lr, step, slots):
        one, t = f32(1), f32(step)
        m_scale = float(one - np.power(f32(self.beta_1), t))
        v_scale = float(one - np.power(f32(self.beta_2), t))
        for grad, variable, m, v in zip(grads, variables, slots(self._momentums), slots(self._velocities)):
            m.add_((grad - m) * (1 - self.beta_1))
            v.add_((torch.square(grad) - v) * (1 - self.beta_2))
            update = (m / m_scale) / (torch.sqrt(v / v_scale) + self.epsilon)
            w_norm = torch.sqrt(torch.sum(torch.square(variable)))
            u_norm = torch.sqrt(torch.sum(torch.square(update)))
            ratio = torch.where(w_norm > 0, torch.where(u_norm > 0, w_norm / u_norm, 1.0), 1.0)
            variable.sub_(ratio * lr * update)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}
