"""Stochastic gradient descent, with Keras's momentum form (the slot holds the lr-scaled step)."""

import torch

from keramic.optimizers.base import Optimizer
from keramic.serialization.registry import keras_export


@keras_export("keras.optimizers")
class SGD(Optimizer):
    """`m = momentum*m - lr*g; var += m` (Nesterov: `var += momentum*m - lr*g`); plain `var -= lr*g`
    when momentum is 0. Further arguments as `Optimizer`, in Keras's positional order."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, *args, **kwargs):
        super().__init__(learning_rate, *args, **kwargs)
        if not isinstance(momentum, float) or momentum < 0 or momentum > 1:
            raise ValueError("`momentum` must be a float between [0, 1].")
        self.momentum = momentum
        self.nesterov = nesterov

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums = self.add_optimizer_variables(var_list, "momentum") if self.momentum != 0 else []

    def _foreach_update(self, grads, variables, lr, step, slots):
        if self.momentum == 0:
            torch._foreach_add_(variables, grads, alpha=-lr)
            return
        momentums = slots(self._momentums)
        torch._foreach_mul_(momentums, self.momentum)
        torch._foreach_add_(momentums, grads, alpha=-lr)
        if self.nesterov:
            torch._foreach_add_(variables, grads, alpha=-lr)
            torch._foreach_add_(variables, momentums, alpha=self.momentum)
        else:
            torch._foreach_add_(variables, momentums)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}
