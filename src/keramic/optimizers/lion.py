"""Lion: a sign of interpolated momentum steps each weight by exactly the learning rate."""

import torch

from keramic.optimizers.base import Optimizer
from keramic.serialization.registry import keras_export


@keras_export("keras.optimizers")
class Lion(Optimizer):
    """`var -= lr * sign(β₁m + (1-β₁)g)`, then `m = β₂m + (1-β₂)g`. Further arguments as
    `Optimizer`, in Keras's positional order."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, *args, **kwargs):
        super().__init__(learning_rate, *args, **kwargs)
        if beta_1 <= 0 or beta_1 > 1:
            raise ValueError(f"Argument `beta_1` must be in the [0, 1] range. Otherwise, the optimizer degenerates to SignSGD. Received: beta_1={beta_1}.")
        self.beta_1 = beta_1
        self.beta_2 = beta_2

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums = self.add_optimizer_variables(var_list, "momentum")

    def _foreach_update(self, grads, variables, lr, step, slots):
        momentums = slots(self._momentums)
        directions = torch._foreach_mul(momentums, self.beta_1)
        torch._foreach_add_(directions, grads, alpha=1 - self.beta_1)
        directions = torch._foreach_sign(directions)
        torch._foreach_add_(variables, torch._foreach_mul(directions, lr), alpha=-1)
        torch._foreach_mul_(momentums, self.beta_2)
        torch._foreach_add_(momentums, grads, alpha=1 - self.beta_2)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}
