"""Adadelta as Keras 3 defines it (the learning rate scales the Adadelta step)."""

import torch

from keramic.optimizers.base import Optimizer
from keramic.serialization.registry import keras_export


@keras_export("keras.optimizers")
class Adadelta(Optimizer):
    """`G = rho*G + (1-rho)*g²; d = sqrt(D + eps)/sqrt(G + eps) * g; D = rho*D + (1-rho)*d²;
    var -= lr*d`. Further arguments as `Optimizer`, in Keras's positional order."""

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, *args, **kwargs):
        super().__init__(learning_rate, *args, **kwargs)
        self.rho = rho
        self.epsilon = epsilon

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._accumulated_grads, self._accumulated_delta_vars = self.add_optimizer_variables(
            var_list, ["accumulated_grad", "accumulated_delta_var"]
        )

    def _foreach_update(self, grads, variables, lr, step, slots):
        rho = self.rho
        accumulated_grads = slots(self._accumulated_grads)
        accumulated_deltas = slots(self._accumulated_delta_vars)
        torch._foreach_mul_(accumulated_grads, rho)
        torch._foreach_addcmul_(accumulated_grads, grads, grads, value=1 - rho)
        deltas = torch._foreach_add(accumulated_deltas, self.epsilon)
        torch._foreach_sqrt_(deltas)
        torch._foreach_mul_(deltas, grads)
        denominators = torch._foreach_add(accumulated_grads, self.epsilon)
        torch._foreach_sqrt_(denominators)
        torch._foreach_div_(deltas, denominators)
        torch._foreach_mul_(accumulated_deltas, rho)
        torch._foreach_addcmul_(accumulated_deltas, deltas, deltas, value=1 - rho)
        torch._foreach_add_(variables, deltas, alpha=-lr)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}
