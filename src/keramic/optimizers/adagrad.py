"""Adagrad as Keras defines it: accumulator starts at `initial_accumulator_value`, epsilon inside sqrt."""

import torch

from keramic import backend
from keramic.optimizers.base import Optimizer
from keramic.serialization.registry import keras_export


@keras_export("keras.optimizers")
class Adagrad(Optimizer):
    """`A += g²; var -= lr*g / sqrt(A + epsilon)`. Further arguments as `Optimizer`, in Keras's
    positional order."""

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, *args, **kwargs):
        super().__init__(learning_rate, *args, **kwargs)
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        value = self.initial_accumulator_value

        def constant(shape, dtype):
            return torch.full(shape, value, dtype=backend.torch_dtype(dtype))

        self._accumulators = self.add_optimizer_variables(var_list, "accumulator", initializer=constant)

    def _foreach_update(self, grads, variables, lr, step, slots):
        accumulators = slots(self._accumulators)
        torch._foreach_addcmul_(accumulators, grads, grads)
        denominators = torch._foreach_add(accumulators, self.epsilon)
        torch._foreach_sqrt_(denominators)
        torch._foreach_addcdiv_(variables, grads, denominators, value=-lr)

    def get_config(self):
        return {
            **super().get_config(),
            "initial_accumulator_value": self.initial_accumulator_value,
            "epsilon": self.epsilon,
        }
