"""Nadam (Adam with Nesterov momentum) as Keras 3 defines it, with its momentum-schedule product."""

import torch

from keramic import backend
from keramic.optimizers.base import Optimizer, _HostCopy, f32
from keramic.serialization.registry import keras_export
from keramic.utils.naming import auto_name


@keras_export("keras.optimizers")
class Nadam(Optimizer):
    """Adam whose first moment uses the momentum schedule `u_t = β₁(1 - 0.5·0.96ᵗ)`; the running
    product of the `u_t` is an optimizer variable (last in `variables`, named like Keras's
    unnamed `variable`). Further arguments as `Optimizer`, in Keras's positional order."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, *args, **kwargs):
        super().__init__(learning_rate, *args, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def build(self, var_list):
        if self.built:
            return
        var_list = list(var_list)
        dtype = var_list[0].dtype if var_list else backend.floatx()
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])
        # As Keras: a plain Variable made outside the optimizer's scope, so its path is its bare name.
        name = auto_name("variable")
        self._u_product = self.add_variable((), initializer="ones", dtype=dtype, name=name, _path=name)
        self._u_product_copy = _HostCopy(self._u_product)

    def _foreach_update(self, grads, variables, lr, step, slots):
        one, half, decay, beta_1 = f32(1), f32(0.5), f32(0.96), f32(self.beta_1)
        u_t = beta_1 * (one - half * decay ** f32(step))
        u_t_1 = beta_1 * (one - half * decay ** f32(step + 1))
        u_product_t = f32(self._u_product_copy.get()) * u_t
        u_product_t_1 = u_product_t * u_t_1
        self._u_product_copy.set(u_product_t)
        momentums, velocities = slots(self._momentums), slots(self._velocities)
        torch._foreach_lerp_(momentums, grads, 1 - self.beta_1)
        torch._foreach_mul_(velocities, self.beta_2)
        torch._foreach_addcmul_(velocities, grads, grads, value=1 - self.beta_2)
        m_hat = torch._foreach_mul(momentums, float(u_t_1 / (one - u_product_t_1)))
        torch._foreach_add_(m_hat, grads, alpha=float((one - u_t) / (one - u_product_t)))
        denominators = torch._foreach_div(velocities, float(one - f32(self.beta_2) ** f32(step)))
        torch._foreach_sqrt_(denominators)
        torch._foreach_add_(denominators, self.epsilon)
        torch._foreach_addcdiv_(variables, m_hat, denominators, value=-lr)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}
