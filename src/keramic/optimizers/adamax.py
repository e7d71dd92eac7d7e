"""Adamax (Adam with the infinity norm) as Keras 3 defines it."""

import torch

from keramic.optimizers.base import Optimizer, f32
from keramic.serialization.registry import keras_export


@keras_export("keras.optimizers")
class Adamax(Optimizer):
    """`m = β₁m + (1-β₁)g; u = max(β₂u, |g|); var -= lr*m / ((u + epsilon)(1-β₁ᵗ))`. Further
    arguments as `Optimizer`, in Keras's positional order."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, *args, **kwargs):
        super().__init__(learning_rate, *args, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._norms = self.add_optimizer_variables(var_list, ["momentum", "norm"])

    def _foreach_update(self, grads, variables, lr, step, slots):
        momentums, norms = slots(self._momentums), slots(self._norms)
        torch._foreach_lerp_(momentums, grads, 1 - self.beta_1)
        torch._foreach_mul_(norms, self.beta_2)
        torch._foreach_maximum_(norms, torch._foreach_abs(grads))
        denominators = torch._foreach_add(norms, self.epsilon)
        torch._foreach_mul_(denominators, float(f32(1) - f32(self.beta_1) ** f32(step)))
        torch._foreach_addcdiv_(variables, momentums, denominators, value=-lr)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}
