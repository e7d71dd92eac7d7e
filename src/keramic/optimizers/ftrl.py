"""FTRL-Proximal ("Follow The Regularized Leader"), with L1, L2 and L2-shrinkage regularization."""

import torch

from keramic import initializers
from keramic.optimizers.base import Optimizer
from keramic.serialization.registry import keras_export


def _check_non_negative(name, value):
    if value < 0.0:
        raise ValueError(f"`{name}` needs to be positive or zero. Received: {name}={value}.")


@keras_export("keras.optimizers")
class Ftrl(Optimizer):
    """Per-coordinate adaptive steps from accumulated squared gradients (`accumulator`) and a
    `linear` term; weights are the closed-form minimiser of the regularized objective. Further
    arguments as `Optimizer`, in Keras's positional order."""

    def __init__(
        self,
        learning_rate=0.001,
        learning_rate_power=-0.5,
        initial_accumulator_value=0.1,
        l1_regularization_strength=0.0,
        l2_regularization_strength=0.0,
        l2_shrinkage_regularization_strength=0.0,
        beta=0.0,
        *args,
        **kwargs,
    ):
        super().__init__(learning_rate, *args, **kwargs)
        _check_non_negative("initial_accumulator_value", initial_accumulator_value)
        if learning_rate_power > 0.0:
            raise ValueError(f"`learning_rate_power` needs to be negative or zero. Received: learning_rate_power={learning_rate_power}.")
        _check_non_negative("l1_regularization_strength", l1_regularization_strength)
        _check_non_negative("l2_regularization_strength", l2_regularization_strength)
        _check_non_negative("l2_shrinkage_regularization_strength", l2_shrinkage_regularization_strength)
        self.learning_rate_power = learning_rate_power
        self.initial_accumulator_value = initial_accumulator_value
        self.l1_regularization_strength = l1_regularization_strength
        self.l2_regularization_strength = l2_regularization_strength
        self.l2_shrinkage_regularization_strength = l2_shrinkage_regularization_strength
        self.beta = beta

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._accumulators, self._linears = [], []
        start = initializers.Constant(self.initial_accumulator_value)
        for variable in var_list:  # interleaved per variable, as Keras creates them
            self._accumulators.append(self.add_variable_from_reference(variable, "accumulator", start))
            self._linears.append(self.add_variable_from_reference(variable, "linear"))

    def _foreach_update(self, grads, variables, lr, step, slots):
        device = variables[0].device
        # Tensors, as Keras has them: torch.pow with a Python 0.5 exponent would take the sqrt path.
        power = torch.tensor(-self.learning_rate_power, dtype=torch.float32, device=device)
        lr = torch.tensor(lr, dtype=torch.float32, device=device)
        l2 = self.l2_regularization_strength + self.beta / (2.0 * lr)
        l1 = self.l1_regularization_strength
        for grad, variable, accum, linear in zip(grads, variables, slots(self._accumulators), slots(self._linears)):
            shrunk = grad + 2 * self.l2_shrinkage_regularization_strength * variable
            new_accum = accum + torch.square(grad)
            linear.add_(shrunk - (torch.pow(new_accum, power) - torch.pow(accum, power)) / lr * variable)
            quadratic = torch.pow(new_accum, power) / lr + 2 * l2
            variable.copy_((torch.clamp(linear, -l1, l1) - linear) / quadratic)
            accum.copy_(new_accum)

    def get_config(self):
        return {
            **super().get_config(),
            "learning_rate_power": self.learning_rate_power,
            "initial_accumulator_value": self.initial_accumulator_value,
            "l1_regularization_strength": self.l1_regularization_strength,
            "l2_regularization_strength": self.l2_regularization_strength,
            "l2_shrinkage_regularization_strength": self.l2_shrinkage_regularization_strength,
            "beta": self.beta,
        }
