"""Muon: momentum orthogonalised by a Newton-Schulz iteration for matrices, AdamW for the rest."""

import re

import numpy as np
import torch

from keramic.optimizers.base import Optimizer, f32
from keramic.serialization.registry import keras_export


def _swap_last_axes(x):
    return x.transpose(-2, -1)


@keras_export("keras.optimizers")
class Muon(Optimizer):
    """2-D variables (not embeddings when `exclude_embeddings`, not matching `exclude_layers`) step
    by `lr * NS5(nesterov momentum) * sqrt(max(n, m)) * rms_rate`; the others by AdamW at
    `lr * adam_lr_ratio` with `adam_weight_decay`. Arguments in Keras's order."""

    def __init__(
        self,
        learning_rate=0.001,
        adam_beta_1=0.9,
        adam_beta_2=0.999,
        adam_weight_decay=0.004,
        epsilon=1e-7,
        weight_decay=0.004,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name=None,
        exclude_layers=None,
        exclude_embeddings=True,
        muon_a=3.4445,
        muon_b=-4.7750,
        muon_c=2.0315,
        adam_lr_ratio=1,
        momentum=0.95,
        ns_steps=5,
        nesterov=True,
        rms_rate=0.2,
        **kwargs,
    ):
        super().__init__(
            learning_rate,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            name=name,
            **kwargs,
        )
        self.adam_beta_1 = adam_beta_1
        self.adam_beta_2 = adam_beta_2
        self.epsilon = epsilon
        self.muon_a = muon_a
        self.muon_b = muon_b
        self.muon_c = muon_c
        self.adam_lr_ratio = adam_lr_ratio
        self.momentum = momentum
        self.ns_steps = ns_steps
        self.nesterov = nesterov
        self.exclude_embeddings = exclude_embeddings
        self.exclude_layers = exclude_layers or []
        self.adam_weight_decay = adam_weight_decay
        self.rms_rate = rms_rate

    def _should_use_adamw(self, variable):
        """AdamW for anything but a matrix, and for excluded matrices (by path)."""
        if len(variable.shape) != 2:
            return True
        path = getattr(variable, "path", None) or variable.name
        if self.exclude_embeddings and "embedding" in path.lower():
            return True
        return any(re.search(keyword, path) for keyword in self.exclude_layers)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self.momentums, self.adam_velocities, self._adamw = [], [], []
        for variable in var_list:
            use_adamw = self._should_use_adamw(variable)
            self._adamw.append(use_adamw)
            self.momentums.append(self.add_variable_from_reference(variable, "momentum"))
            self.adam_velocities.append(self.add_variable_from_reference(variable, "velocity") if use_adamw else None)

    def _apply_weight_decay(self, variables, lr):
        for variable in variables:
            use_adamw = self._adamw[self._index[id(variable)]]
            decay = self.adam_weight_decay if use_adamw else self.weight_decay
            if decay is not None:
                variable.copy_(variable - variable * f32(decay) * f32(lr))

    def _foreach_update(self, grads, variables, lr, step, slots):
        one, t = f32(1), f32(step)
        adam_lr = f32(f32(lr) * f32(self.adam_lr_ratio))
        alpha = float(adam_lr * np.sqrt(one - np.power(f32(self.adam_beta_2), t)) / (one - np.power(f32(self.adam_beta_1), t)))
        for grad, variable, m, v in zip(grads, variables, slots(self.momentums), slots(self.adam_velocities)):
            if v is not None:
                m.add_((grad - m) * (1 - self.adam_beta_1))
                v.add_((torch.square(grad) - v) * (1 - self.adam_beta_2))
                variable.sub_((m * alpha) / (torch.sqrt(v) + self.epsilon))
            else:
                m.add_(grad + m * (self.momentum - 1))
                direction = grad + self.momentum * m if self.nesterov else m
                update = self.zeropower_via_newtonschulz5(direction, self.ns_steps)
                variable.sub_(self.lr_adjust(f32(lr) * update))

    def lr_adjust(self, x: torch.Tensor) -> torch.Tensor:
        """Scale a matrix update by `sqrt(max(n, m)) * rms_rate` so Adam's learning rate fits it."""
        if self.rms_rate is None:
            return x
        return x * float(np.sqrt(f32(max(x.shape[0], x.shape[1])))) * self.rms_rate

    def zeropower_via_newtonschulz5(self, x: torch.Tensor, steps: int) -> torch.Tensor:
        """Approximately orthogonalise `x` (towards UVᵀ of its SVD) with a quintic Newton-Schulz iteration."""
        if x.dim() < 2:
            raise ValueError(f"Expected gradient or momentum to have at least 2 dimensions. Received: shape={tuple(x.shape)}")
        a, b, c = self.muon_a, self.muon_b, self.muon_c
        tall = x.shape[-2] > x.shape[-1]
        if tall:
            x = _swap_last_axes(x)
        x = x / (torch.linalg.matrix_norm(x, keepdim=True) + 1e-7)
        for _ in range(steps):
            gram = x @ _swap_last_axes(x)
            x = a * x + (b * gram + c * gram @ gram) @ x
        return _swap_last_axes(x) if tall else x

    def get_config(self):
        return {
            **super().get_config(),
            "adam_beta_1": self.adam_beta_1,
            "adam_beta_2": self.adam_beta_2,
            "epsilon": self.epsilon,
            "exclude_layers": self.exclude_layers,
            "muon_a": self.muon_a,
            "muon_b": self.muon_b,
            "muon_c": self.muon_c,
            "adam_lr_ratio": self.adam_lr_ratio,
            "momentum": self.momentum,
            "ns_steps": self.ns_steps,
            "nesterov": self.nesterov,
            "exclude_embeddings": self.exclude_embeddings,
            "adam_weight_decay": self.adam_weight_decay,
            "rms_rate": self.rms_rate,
        }
