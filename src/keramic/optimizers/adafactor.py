"""Adafactor: second moments of matrices kept as row and column means (memory O(n+m), not O(nm))."""

import numpy as np
import torch

from keramic import backend
from keramic.optimizers.base import Optimizer, f32
from keramic.serialization.registry import keras_export


def _rms(x):
    return torch.sqrt(torch.mean(torch.square(x)))


def _beside(slot, variable):
    """Keep a statistic on its variable's device (a model moved with `.to(device)` before building)."""
    if slot.device != variable.device:
        slot.data = slot.data.to(variable.device)
    return slot


@keras_export("keras.optimizers")
class Adafactor(Optimizer):
    """Relative step size `min(lr, 1/sqrt(t)) * max(epsilon_2, rms(var))`, second-moment decay
    `1 - t^beta_2_decay`, updates clipped to rms `clip_threshold`. Further arguments as
    `Optimizer`, in Keras's positional order.

    Variables of rank >= 2 keep row (`r`) and column (`c`) statistics named after the variable;
    smaller ones keep a full `velocity`, and (as in Keras) two unused int32 scalars in r/c's place.
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_2_decay=-0.8,
        epsilon_1=1e-30,
        epsilon_2=1e-3,
        clip_threshold=1.0,
        relative_step=True,
        *args,
        **kwargs,
    ):
        super().__init__(learning_rate, *args, **kwargs)
        self.beta_2_decay = beta_2_decay
        self.epsilon_1 = epsilon_1
        self.epsilon_2 = epsilon_2
        self.clip_threshold = clip_threshold
        self.relative_step = relative_step

    def _placeholder(self, variable):
        return _beside(self.add_variable((), dtype="int32", name=variable.name, _path=variable.name), variable)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._r, self._c, self._v = [], [], []
        for variable in var_list:
            shape = tuple(variable.shape)
            if len(shape) < 2:
                self._r.append(self._placeholder(variable))
                self._c.append(self._placeholder(variable))
            else:
                dtype = backend.standardize_dtype(variable.dtype)
                self._r.append(_beside(self.add_variable(shape[:-1], dtype=dtype, name=variable.name), variable))
                self._c.append(_beside(self.add_variable(shape[:-2] + shape[-1:], dtype=dtype, name=variable.name), variable))
            self._v.append(self.add_variable_from_reference(variable, "velocity"))

    def _foreach_update(self, grads, variables, lr, step, slots):
        t = f32(step)
        rho = float(min(f32(lr), f32(1) / np.sqrt(t)))
        beta = float(f32(1) - np.power(t, f32(self.beta_2_decay)))
        for grad, variable, r, c, v in zip(grads, variables, slots(self._r), slots(self._c), slots(self._v)):
            alpha = torch.clamp(_rms(variable), min=self.epsilon_2) * rho
            squared = torch.square(grad) + self.epsilon_1
            if variable.dim() >= 2:
                r.copy_(beta * r + (1 - beta) * torch.mean(squared, dim=-1))
                c.copy_(beta * c + (1 - beta) * torch.mean(squared, dim=-2))
                v.copy_((r / torch.mean(r, dim=-1, keepdim=True)).unsqueeze(-1) * c.unsqueeze(-2))
            else:
                v.copy_(beta * v + (1 - beta) * squared)
            update = grad / torch.sqrt(v)
            update = update / torch.clamp(_rms(update) / self.clip_threshold, min=1.0)
            variable.sub_(alpha * update)

    def get_config(self):
        return {
            **super().get_config(),
            "beta_2_decay": self.beta_2_decay,
            "epsilon_1": self.epsilon_1,
            "epsilon_2": self.epsilon_2,
            "clip_threshold": self.clip_threshold,
            "relative_step": self.relative_step,
        }
