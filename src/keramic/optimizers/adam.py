"""Adam with Keras's epsilon-hat form: bias correction folded into the step size."""

import numpy as np
import torch

from keramic.optimizers.base import Optimizer, f32
from keramic.serialization.registry import keras_export


@keras_export("keras.optimizers")
class Adam(Optimizer):
    """`var -= lr*sqrt(1-β₂ᵗ)/(1-β₁ᵗ) * m / (sqrt(v) + epsilon)` with uncorrected m, v (v̂ = running
    max of v with amsgrad). Further arguments as `Optimizer`, in Keras's positional order."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, *args, **kwargs):
        super().__init__(learning_rate, *args, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.amsgrad = amsgrad

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])
        self._velocity_hats = self.add_optimizer_variables(var_list, "velocity_hat") if self.amsgrad else []

    def _foreach_update(self, grads, variables, lr, step, slots):
        momentums, velocities = slots(self._momentums), slots(self._velocities)
        torch._foreach_lerp_(momentums, grads, 1 - self.beta_1)
        torch._foreach_mul_(velocities, self.beta_2)
        torch._foreach_addcmul_(velocities, grads, grads, value=1 - self.beta_2)
        if self.amsgrad:
            velocity_hats = slots(self._velocity_hats)
            torch._foreach_maximum_(velocity_hats, velocities)
            velocities = velocity_hats
        one, t = f32(1), f32(step)
        alpha = f32(lr) * np.sqrt(one - f32(self.beta_2) ** t) / (one - f32(self.beta_1) ** t)
        denominators = torch._foreach_sqrt(velocities)
        torch._foreach_add_(denominators, self.epsilon)
        torch._foreach_addcdiv_(variables, momentums, denominators, value=-float(alpha))

    def get_config(self):
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "amsgrad": self.amsgrad,
        }
