"""Dynamic loss scaling for float16 training, with Keras 3's variables, config and update rule.

The loss is multiplied by `dynamic_scale` before gradients are taken, so small float16 gradients do
not underflow; `apply` divides them back. A step with an inf/NaN gradient is skipped and halves the
scale; `dynamic_growth_steps` finite steps in a row double it.
"""

import torch

from keramic.optimizers.base import Optimizer
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import serialize_keras_object


@keras_export("keras.optimizers")
@keras_export("keras.mixed_precision")
class LossScaleOptimizer(Optimizer):
    """Wrap `inner_optimizer` with dynamic loss scaling.

    >>> optimizer = keramic.mixed_precision.LossScaleOptimizer(keramic.optimizers.Adam())
    """

    def __init__(self, inner_optimizer, initial_scale=2.0**15, dynamic_growth_steps=2000, name=None, **kwargs):
        if not kwargs.pop("dynamic", True):
            raise ValueError("LossScaleOptimizer no longer supports `dynamic=False`; use `loss_scale_factor` on the optimizer instead.")
        super().__init__(learning_rate=0.0, name=name or "loss_scale_optimizer", **kwargs)
        if not isinstance(inner_optimizer, Optimizer):
            raise TypeError(f"LossScaleOptimizer wraps a keramic optimizer; received {inner_optimizer!r}.")
        self.inner_optimizer = inner_optimizer
        self.initial_scale = float(initial_scale)
        self.dynamic_growth_steps = int(dynamic_growth_steps)
        self.step_counter = self.add_variable((), initializer="zeros", dtype="int32", name="step_counter")
        self.dynamic_scale = self.add_variable((), initializer="ones", dtype="float32", name="dynamic_scale")
        with torch.no_grad():
            self.dynamic_scale.fill_(self.initial_scale)

    @property
    def variables(self):
        return self._variables[:] + self.inner_optimizer.variables

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self.inner_optimizer.learning_rate = value

    def build(self, var_list):
        self.inner_optimizer.build(var_list)
        self._trainable_variables = list(var_list)
        self.built = True

    def scale_loss(self, loss):
        """The loss times the current scale (gradients of it are unscaled in `apply`)."""
        return loss * self.dynamic_scale.to(loss.dtype) if isinstance(loss, torch.Tensor) else loss * float(self.dynamic_scale)

    def apply(self, grads, trainable_variables=None):
        """Unscale and apply finite gradients (growing the scale now and then), or skip the step and halve the scale."""
        grads = list(grads)
        if not self.built:
            self.build(trainable_variables if trainable_variables is not None else [])
        present = [g for g in grads if g is not None]
        finite = bool(torch.stack([torch.isfinite(g).all() for g in present]).all()) if present else True
        with torch.no_grad():
            if finite:
                scale = self.dynamic_scale
                variables = trainable_variables if trainable_variables is not None else self._trainable_variables
                # As Keras: a float8 scale or history (`overwrite_with_gradient`) gets its "gradient" as is.
                kept = [getattr(v, "overwrite_with_gradient", False) for v in variables] if len(variables) == len(grads) else [False] * len(grads)
                unscaled = [g if g is None or keep else g / scale.to(g.dtype) for g, keep in zip(grads, kept)]
                self.inner_optimizer.apply(unscaled, trainable_variables)
                self.step_counter.add_(1)
                if int(self.step_counter) >= self.dynamic_growth_steps:
                    self.step_counter.zero_()
                    self.dynamic_scale.mul_(2.0)
            else:
                self.step_counter.zero_()
                self.dynamic_scale.div_(2.0)

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def _saveable_children(self) -> list:
        """The inner optimizer saves again under `inner_optimizer`, as in Keras's files."""
        return [("inner_optimizer", self.inner_optimizer)]

    def get_config(self):
        return {
            "name": self.name,
            "inner_optimizer": serialize_keras_object(self.inner_optimizer),
            "initial_scale": self.initial_scale,
            "dynamic_growth_steps": self.dynamic_growth_steps,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = config.pop("inner_optimizer")
        if isinstance(inner, dict):
            from keramic import optimizers

            inner = optimizers.deserialize(inner, custom_objects)
        return cls(inner, **config)
