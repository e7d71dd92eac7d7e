"""Adam with Keras's epsilon-hat form: bias correction folded into the step size."""

import torch

from keramic.optimizers.base import Optimizer
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
        # Keras's order of float32 operations (scale-then-add, not lerp or addcmul), so that
        # the weights stay bit-identical to Keras's, step after step.
        momentums, velocities = slots(self._momentums), slots(self._velocities)
        torch._foreach_mul_(momentums, self.beta_1)
        torch._foreach_add_(momentums, grads, alpha=1 - self.beta_1)
        torch._foreach_mul_(velocities, self.beta_2)
        torch._foreach_add_(velocities, torch._foreach_mul(grads, grads), alpha=1 - self.beta_2)
        if self.amsgrad:
            velocity_hats = slots(self._velocity_hats)
            torch._foreach_maximum_(velocity_hats, velocities)
            velocities = velocity_hats
        t = torch.tensor(step, dtype=torch.float32)
        beta_1_power = torch.pow(torch.tensor(self.beta_1, dtype=torch.float32), t)
        beta_2_power = torch.pow(torch.tensor(self.beta_2, dtype=torch.float32), t)
        alpha = torch.tensor(lr, dtype=torch.float32) * torch.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        denominators = torch._foreach_sqrt(velocities)
        torch._foreach_add_(denominators, self.epsilon)
        torch._foreach_add_(variables, torch._foreach_div(torch._foreach_mul(momentums, alpha.item()), denominators), alpha=-1)

    def get_config(self):
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "amsgrad": self.amsgrad,
        }
