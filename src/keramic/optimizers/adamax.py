"""Adamax (Adam with the infinity norm) as Keras 3 defines it."""

import torch

from keramic.optimizers.base import Optimizer
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
        # Keras's order of float32 operations, so that the weights stay bit-identical to Keras's.
        momentums, norms = slots(self._momentums), slots(self._norms)
        torch._foreach_mul_(momentums, self.beta_1)
        torch._foreach_add_(momentums, grads, alpha=1 - self.beta_1)
        torch._foreach_mul_(norms, self.beta_2)
        torch._foreach_maximum_(norms, torch._foreach_abs(grads))
        beta_1_power = torch.pow(torch.tensor(self.beta_1, dtype=torch.float32), torch.tensor(step, dtype=torch.float32))
        denominators = torch._foreach_add(norms, self.epsilon)
        torch._foreach_mul_(denominators, (1 - beta_1_power).item())
        scaled = torch._foreach_mul(momentums, torch.tensor(lr, dtype=torch.float32).item())
        torch._foreach_add_(variables, torch._foreach_div(scaled, denominators), alpha=-1)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}
