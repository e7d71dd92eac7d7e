"""RMSprop as Keras defines it: epsilon inside the square root, lr inside the momentum slot."""

import torch

from keramic.optimizers.base import Optimizer
from keramic.serialization.registry import keras_export


@keras_export("keras.optimizers")
class RMSprop(Optimizer):
    """`v = rho*v + (1-rho)*g²; var -= lr*g / sqrt(v [- a²] + epsilon)`, optionally through a
    momentum slot. Further arguments as `Optimizer`, in Keras's positional order."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, *args, **kwargs):
        super().__init__(learning_rate, *args, **kwargs)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        # Blocks, in this order: velocities, momentums, average gradients.
        self._velocities = self.add_optimizer_variables(var_list, "velocity")
        self._momentums = self.add_optimizer_variables(var_list, "momentum") if self.momentum > 0 else []
        self._average_gradients = self.add_optimizer_variables(var_list, "average_gradient") if self.centered else []

    def _foreach_update(self, grads, variables, lr, step, slots):
        rho = self.rho
        velocities = slots(self._velocities)
        torch._foreach_mul_(velocities, rho)
        torch._foreach_addcmul_(velocities, grads, grads, value=1 - rho)
        denominators = torch._foreach_add(velocities, self.epsilon)
        if self.centered:
            averages = slots(self._average_gradients)
            torch._foreach_lerp_(averages, grads, 1 - rho)
            torch._foreach_addcmul_(denominators, averages, averages, value=-1)
        torch._foreach_sqrt_(denominators)
        if self.momentum > 0:
            momentums = slots(self._momentums)
            torch._foreach_mul_(momentums, self.momentum)
            torch._foreach_addcdiv_(momentums, grads, denominators, value=lr)
            torch._foreach_sub_(variables, momentums)
        else:
            torch._foreach_addcdiv_(variables, grads, denominators, value=-lr)

    def get_config(self):
        return {
            **super().get_config(),
            "rho": self.rho,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "centered": self.centered,
        }
