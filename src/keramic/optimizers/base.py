"""The optimizer base: Keras 3's constructor, variables, config and `apply()` order of operations.

Subclasses create their slots in `build()` and implement `_foreach_update()`, which updates
all variables at once with `torch._foreach_*` ops. Step-dependent scalars (learning rate, bias
corrections) are Python numbers computed in float32 as Keras computes them, so a training step
never waits on the device to read them (see `_HostCopy`).
"""

import re
import warnings

import numpy as np
import torch

from keramic import backend
from keramic.optimizers import schedules
from keramic.serialization import registry, restore_hooks, saveable
from keramic.serialization.serialize import get_object, serialize_keras_object
from keramic.utils.naming import auto_name

f32 = np.float32


class _HostCopy:
    """A Python copy of a 0-d variable, refreshed only when the tensor was written elsewhere.

    Every in-place write (`assign`, loading weights, `copy_`) bumps the tensor's version
    counter; reading the counter costs nothing, while `.item()` on a GPU waits for the device.
    """

    __slots__ = ("variable", "value", "version")

    def __init__(self, variable):
        self.variable = variable
        self.value = None
        self.version = -1

    def get(self):
        if self.variable._version != self.version:
            self.value = self.variable.item()
            self.version = self.variable._version
        return self.value

    def set(self, value):
        """Write `value` (a Python number) to the variable and remember it as stored."""
        self.variable.fill_(value)
        self.value = int(value) if not self.variable.is_floating_point() else float(f32(value))
        self.version = self.variable._version

    def increment(self):
        value = self.get() + 1
        self.variable.add_(1)
        self.value = value
        self.version = self.variable._version


def _new_variable(initializer, shape, dtype, name, path):
    """A non-trainable variable from `initializer`: the usual zeros or ones straight into it (no
    copy: a slot as large as its weight is made once), any other initializer's output copied."""
    shape = tuple(shape)
    dtype = backend.torch_dtype(dtype)
    if isinstance(initializer, str) and initializer in ("zeros", "ones"):
        fill = torch.zeros if initializer == "zeros" else torch.ones
        value = fill(shape, dtype=dtype, device=backend.get_device())
        return backend.Variable.from_fresh_tensor(value, name=name, trainable=False, path=path)
    if not callable(initializer):
        initializer = get_object(initializer, "keras.initializers", "initializer")
    value = backend.convert_to_tensor(initializer(shape, dtype=backend.standardize_dtype(dtype)), dtype)
    return backend.Variable(value, name=name, trainable=False, path=path)


@registry.keras_export("keras.optimizers")
class Optimizer:
    """Base class of keramic's optimizers, with Keras 3's arguments and variable layout."""

    def __init__(
        self,
        learning_rate,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name=None,
        **kwargs,
    ):
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.", stacklevel=2)
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        if gradient_accumulation_steps and not gradient_accumulation_steps >= 2:
            raise ValueError(
                "`gradient_accumulation_steps` must be an integer >= 2. "
                f"Received: gradient_accumulation_steps={gradient_accumulation_steps}"
            )
        if use_ema:
            if ema_momentum > 1 or ema_momentum < 0:
                raise ValueError(f"`ema_momentum` must be in the range [0, 1]. Received: ema_momentum={ema_momentum}")
            if ema_overwrite_frequency and (
                not isinstance(ema_overwrite_frequency, int) or ema_overwrite_frequency < 1
            ):
                raise ValueError(
                    "`ema_overwrite_frequency` must be an integer >= 1 or None. "
                    f"Received: ema_overwrite_frequency={ema_overwrite_frequency}"
                )
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. Received: "
                f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}"
            )
        self.name = name if name is not None else auto_name(type(self).__name__)
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.global_clipnorm = global_clipnorm
        self.clipvalue = clipvalue
        self.use_ema = use_ema
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.built = False
        self._variables = []
        self._trainable_variables = []
        self._index = {}
        self._exclude_ids = set()
        self._exclude_pattern = None

        self._iterations = self.add_variable((), dtype="int32", name="iteration")
        self._step = _HostCopy(self._iterations)
        self._lr_copy = None
        if isinstance(learning_rate, schedules.LearningRateSchedule) or callable(learning_rate):
            self._learning_rate = learning_rate
        elif isinstance(learning_rate, float):
            self._learning_rate = self.add_variable((), dtype=backend.floatx(), name="learning_rate")
            self._lr_copy = _HostCopy(self._learning_rate)
            self._lr_copy.set(learning_rate)
        else:
            raise ValueError(
                "Argument `learning_rate` should be float, or an instance of LearningRateSchedule, "
                "or a callable (that takes in the current iteration value and returns the "
                f"corresponding learning rate value). Received instead: learning_rate={learning_rate}"
            )

    # ------------------------------------------------------------------ variables
    def add_variable(self, shape, initializer="zeros", dtype=None, name=None, *, _path=None):
        """Create an optimizer variable (non-trainable), tracked in `variables` in creation order.

        `_path` overrides the `<optimizer name>/<name>` path, for the few variables Keras creates
        outside the optimizer's name scope (Adafactor's placeholders).
        """
        name = name or auto_name("variable")
        path = _path or f"{self.name}/{name}"
        # A checkpoint loaded before this slot existed supplies its value (a fresh tensor: no copy).
        restored = restore_hooks.take_optimizer_value(self, name, shape, dtype) if restore_hooks.PENDING else None
        if restored is None:
            variable = _new_variable(initializer, shape, dtype, name, path)
        else:
            variable = backend.Variable.from_fresh_tensor(restored, name=name, trainable=False, path=path)
        self._variables.append(variable)
        return variable

    def add_variable_from_reference(self, reference_variable, name=None, initializer="zeros"):
        """A slot shaped like `reference_variable`, named `<its path with / as _>_<name>`."""
        name = name or "var"
        path = getattr(reference_variable, "path", None)
        if path is not None:
            name = f"{path.replace('/', '_')}_{name}"
        else:
            name = f"{str(reference_variable.name).replace('/', '_').replace(':', '_')}_{name}"
        variable = self.add_variable(reference_variable.shape, initializer, reference_variable.dtype, name)
        if variable.device != reference_variable.device:  # slots follow a model moved with `.to(device)`
            variable.data = variable.data.to(reference_variable.device)
        return variable

    def add_optimizer_variables(self, trainable_variables, name, initializer="zeros"):
        """One slot per variable for each name; several names are interleaved per variable as Keras does."""
        names = [name] if isinstance(name, str) else list(name)
        slots = tuple([] for _ in names)
        for variable in trainable_variables:
            for slot_list, slot_name in zip(slots, names):
                slot_list.append(self.add_variable_from_reference(variable, slot_name, initializer))
        return slots[0] if isinstance(name, str) else slots

    @property
    def variables(self):
        return self._variables[:]

    @property
    def iterations(self):
        """The step counter; counts optimizer updates (not calls) under gradient accumulation."""
        if self.gradient_accumulation_steps:
            return self._iterations // self.gradient_accumulation_steps
        return self._iterations

    def build(self, var_list):
        """Create the EMA and accumulation slots; subclasses add their own slots after these."""
        var_list = list(var_list)
        if restore_hooks.PENDING:  # a checkpoint waits for this optimizer's slots
            restore_hooks.optimizer_building(self, var_list)
        if self.use_ema:
            self._ema_averages = self.add_optimizer_variables(var_list, "average")
        if self.gradient_accumulation_steps:
            self._gradient_accumulators = self.add_optimizer_variables(var_list, "gradient_accumulator")
        self._trainable_variables = var_list
        self._index = {id(v): i for i, v in enumerate(var_list)}
        self._decayed = [self._use_weight_decay(v) for v in var_list]
        self.built = True

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Exempt variables (objects, or regex fragments searched in their names) from weight decay."""
        if self.built:
            raise ValueError("`exclude_from_weight_decay()` can only be configured before the optimizer is built.")
        self._exclude_ids = {id(v) for v in var_list or ()}
        self._exclude_pattern = re.compile("|".join(set(var_names))) if var_names else None

    def _use_weight_decay(self, variable):
        if id(variable) in self._exclude_ids:
            return False
        return self._exclude_pattern is None or self._exclude_pattern.search(variable.name) is None

    # ------------------------------------------------------------------ learning rate
    @property
    def learning_rate(self):
        """The current learning rate: the `learning_rate` variable, or the schedule's value now."""
        if self._lr_copy is not None:
            return self._learning_rate
        return self._schedule_value(self._step.get())

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, schedules.LearningRateSchedule) or callable(value):
            if self._lr_copy is not None:
                self._variables.remove(self._learning_rate)
                self._lr_copy = None
            self._learning_rate = value
        elif self._lr_copy is None:
            raise TypeError(
                "This optimizer was created with a `LearningRateSchedule` object as its "
                "`learning_rate` constructor argument, hence its learning rate is not settable. If "
                "you need the learning rate to be settable, you should instantiate the optimizer "
                "with a float `learning_rate` argument."
            )
        else:
            self._learning_rate.assign(value)

    def _schedule_value(self, step):
        if isinstance(self._learning_rate, schedules.LearningRateSchedule):
            return self._learning_rate(step)
        return self._learning_rate()

    def _current_learning_rate(self, step):
        """The learning rate as a Python float (the variable's float32 value, or the schedule's)."""
        if self._lr_copy is not None:
            return self._lr_copy.get()
        return float(self._schedule_value(step))

    # ------------------------------------------------------------------ applying gradients
    def scale_loss(self, loss):
        """Multiply the loss by `loss_scale_factor` (gradients are divided back in `apply`)."""
        if self.loss_scale_factor is not None:
            return loss * self.loss_scale_factor
        return loss

    def apply_gradients(self, grads_and_vars):
        grads, variables = zip(*grads_and_vars)
        self.apply(grads, variables)
        return self._iterations

    def apply(self, grads, trainable_variables=None):
        """One optimizer step; builds the optimizer on `trainable_variables` on the first call."""
        grads = list(grads)
        if not grads:
            return
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    "When passing `grads` without `variables`, the optimizer must already be built "
                    "on a list of variables. Call `optimizer.build(trainable_variables)` first."
                )
            if len(grads) != len(self._trainable_variables):
                raise ValueError(
                    f"Received a list of {len(grads)} gradients, but the optimizer is tracking "
                    f"{len(self._trainable_variables)} trainable variables."
                )
            variables = self._trainable_variables
        else:
            variables = list(trainable_variables)
            if not self.built:
                self.build(variables)
        if any(getattr(v, "overwrite_with_gradient", False) for v in variables):
            grads, variables = self._overwrite_with_gradients(grads, variables)
            if not grads:
                return
        indices = self._indices_of(variables)
        if any(g is None for g in grads):
            kept = [i for i, g in enumerate(grads) if g is not None]
            if not kept:
                raise ValueError("No gradients provided for any variable.")
            missing = [getattr(v, "path", v.name) for g, v in zip(grads, variables) if g is None]
            warnings.warn(
                f"Gradients do not exist for variables {missing} when minimizing the loss. If using "
                "`model.compile()`, did you forget to provide a `loss` argument?",
                stacklevel=2,
            )
            positions = indices if indices is not None else range(len(variables))
            indices = [positions[i] for i in kept]
            grads = [grads[i] for i in kept]
            variables = [variables[i] for i in kept]
        with torch.no_grad():
            self._apply(grads, variables, indices)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        """One step on given values, as Keras: returns `(new trainable values, new optimizer
        values)` in the orders of the built variable list and `variables`.

        Unlike Keras's torch backend, the given tensors and the optimizer's and model's own
        variables are all left as they were (the step runs on the variables and is then undone).
        """
        if not self.built:
            raise ValueError(
                f"To call `stateless_apply`, {type(self).__name__} must be built (i.e. its variables must "
                "have been created). You can build it via `optimizer.build(trainable_variables)`."
            )
        own_optimizer, own_trainable = self.variables, self._trainable_variables
        if len(optimizer_variables) != len(own_optimizer):
            raise ValueError(
                "Argument `optimizer_variables` must be a list of tensors corresponding 1:1 to "
                f"{type(self).__name__}().variables. Received list with length {len(optimizer_variables)}, "
                f"but expected {len(own_optimizer)} variables."
            )
        if len(trainable_variables) != len(own_trainable):
            raise ValueError(
                "Argument `trainable_variables` must be a list of tensors corresponding 1:1 to the trainable "
                "variables list that the optimizer was built with. Received len(trainable_variables) == "
                f"{len(trainable_variables)} whereas the optimizer was built with {len(own_trainable)} variables."
            )
        targets = [*own_trainable, *own_optimizer]
        with torch.no_grad():
            saved = [variable.detach().clone() for variable in targets]
            try:
                for variable, value in zip(targets, [*trainable_variables, *optimizer_variables]):
                    variable.copy_(backend.convert_to_tensor(value, variable.dtype))
                self.apply(grads)
                new_values = [variable.detach().clone() for variable in targets]
            finally:
                for variable, value in zip(targets, saved):
                    variable.copy_(value)
        return new_values[: len(own_trainable)], new_values[len(own_trainable) :]

    @staticmethod
    def _overwrite_with_gradients(grads, variables):
        """Assign `overwrite_with_gradient` variables their gradient (float8 scales: it is their next value)
        and return the other pairs, which the optimizer updates as usual."""
        kept_grads, kept_variables = [], []
        with torch.no_grad():
            for grad, variable in zip(grads, variables):
                if not getattr(variable, "overwrite_with_gradient", False):
                    kept_grads.append(grad)
                    kept_variables.append(variable)
                elif grad is not None:
                    variable.assign(grad)
        return kept_grads, kept_variables

    def _indices_of(self, variables):
        """None when `variables` is the built list itself (the common case), else their slot indices."""
        built = self._trainable_variables
        if len(variables) == len(built) and all(a is b for a, b in zip(variables, built)):
            return None
        try:
            return [self._index[id(v)] for v in variables]
        except KeyError:
            unknown = [getattr(v, "path", v) for v in variables if id(v) not in self._index]
            raise ValueError(
                f"Unknown variable(s): {unknown}. This optimizer can only be called for the "
                "variables it was originally built with. When working with a new set of "
                "variables, you should recreate a new optimizer instance."
            ) from None

    def _apply(self, grads, variables, indices):
        def slots(slot_list):
            return slot_list if indices is None else [slot_list[i] for i in indices]

        grads = [
            g if isinstance(g, torch.Tensor) and g.dtype == v.dtype else backend.convert_to_tensor(g, v.dtype)
            for g, v in zip(grads, variables)
        ]
        if self.loss_scale_factor is not None:
            grads = torch._foreach_div(grads, self.loss_scale_factor)
        raw_step = self._step.get()
        steps = self.gradient_accumulation_steps
        if steps:
            accumulators = slots(self._gradient_accumulators)
            if (raw_step + 1) % steps == 0:
                grads = torch._foreach_add(grads, accumulators)
                torch._foreach_div_(grads, steps)
                self._update(grads, variables, slots, raw_step)
                torch._foreach_zero_(self._gradient_accumulators)
            else:
                torch._foreach_add_(accumulators, grads)
        else:
            self._update(grads, variables, slots, raw_step)
        if self.use_ema:
            self._update_moving_averages(raw_step // steps if steps else raw_step)
        for variable in variables:
            constraint = getattr(variable, "constraint", None)
            if constraint is not None:
                variable.copy_(constraint(variable))
        self._step.increment()

    def _update(self, grads, variables, slots, raw_step):
        """Clip, decay, then the optimizer's own rule: steps a-c of Keras's update."""
        lr = self._current_learning_rate(raw_step)
        grads = self._clip_gradients(grads)
        self._apply_weight_decay([v for v, keep in zip(variables, slots(self._decayed)) if keep], lr)
        step = raw_step // self.gradient_accumulation_steps if self.gradient_accumulation_steps else raw_step
        self._foreach_update(grads, variables, lr, step + 1, slots)

    def _apply_weight_decay(self, variables, lr):
        """Decoupled weight decay, `var *= 1 - weight_decay*lr`, on the variables not excluded."""
        if self.weight_decay is not None and variables:
            torch._foreach_mul_(variables, float(f32(1) - f32(self.weight_decay) * f32(lr)))

    def _clip_gradients(self, grads):
        if self.clipnorm and self.clipnorm > 0:
            norms = torch.stack(torch._foreach_norm(grads))
            factors = torch.clamp(norms, min=self.clipnorm).reciprocal_().mul_(self.clipnorm)
            return torch._foreach_mul(grads, list(factors.unbind()))
        if self.global_clipnorm and self.global_clipnorm > 0:
            total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            # Scale is c * min(1/N, 1/c); adding N - N makes it NaN for a non-finite norm.
            scale = torch.clamp(total.reciprocal(), max=1.0 / self.global_clipnorm)
            scale = scale.mul_(self.global_clipnorm).add_(total - total)
            return torch._foreach_mul(grads, scale)
        if self.clipvalue and self.clipvalue > 0:
            clipped = torch._foreach_clamp_min(grads, -self.clipvalue)
            torch._foreach_clamp_max_(clipped, self.clipvalue)
            return clipped
        return grads

    def _foreach_update(self, grads, variables, lr, step, slots):
        """Update all `variables` in place. `step` is Keras's `iterations + 1`; `slots(list)`
        picks the entries of a per-variable slot list that belong to `variables`.

        The default runs `update_step` per variable, for custom optimizers written Keras's way.
        """
        for grad, variable in zip(grads, variables):
            self.update_step(grad, variable, lr)

    def update_step(self, gradient, variable, learning_rate):
        raise NotImplementedError(f"{type(self).__name__} must implement `update_step` or `_foreach_update`.")

    def _get_variable_index(self, variable):
        return self._index[id(variable)]

    def assign(self, variable, value):
        variable.copy_(value)

    def assign_add(self, variable, value):
        variable.add_(value)

    def assign_sub(self, variable, value):
        variable.sub_(value)

    # ------------------------------------------------------------------ EMA
    def _update_moving_averages(self, iterations):
        averages, variables = self._ema_averages, self._trainable_variables
        if iterations == 0:
            torch._foreach_copy_(averages, variables)
        else:
            torch._foreach_mul_(averages, self.ema_momentum)
            torch._foreach_add_(averages, variables, alpha=1 - self.ema_momentum)
        frequency = self.ema_overwrite_frequency
        if frequency and (iterations + 1) % frequency == 0:
            torch._foreach_copy_(variables, averages)

    def finalize_variable_values(self, var_list):
        """At the end of training: with EMA, overwrite the variables with their moving averages."""
        if not self.use_ema:
            return
        var_list = list(var_list)
        if len(var_list) != len(self._ema_averages):
            raise ValueError(
                f"The length of model variables ({len(var_list)}) to override does not match the "
                f"length of model variables stored in the optimizer ({len(self._ema_averages)}). "
                "Please check if the optimizer was called on your model."
            )
        with torch.no_grad():
            torch._foreach_copy_(var_list, self._ema_averages)

    # ------------------------------------------------------------------ state
    def set_weights(self, weights):
        """Assign values to `variables` in order (the optimizer must be built)."""
        if not self.built:
            raise ValueError(
                "You are calling `set_weights()` on an optimizer that has not yet been built. Please "
                "call `optimizer.build(trainable_variables)` to create the optimizer weights before "
                "calling `set_weights()`."
            )
        for variable, weight in zip(self._variables, weights):
            variable.assign(weight)

    # Saving protocol (keramic.serialization.saveable): own variables, no children, Keras's hooks.
    _saving_kind = "optimizer"

    def _saveable_children(self) -> list:
        return []

    def _saveable_variables(self) -> list:
        return self.variables

    def _variables_before_build(self) -> int:
        """How many variables exist before `build`: the step counter, and the learning rate unless scheduled."""
        return 1 if isinstance(self._learning_rate, schedules.LearningRateSchedule) else 2

    @saveable.default_hook
    def save_own_variables(self, store):
        for i, variable in enumerate(self.variables):
            store[str(i)] = variable.numpy()

    @saveable.default_hook
    def load_own_variables(self, store):
        """Restore by index; a different variable count keeps the fresh state, with Keras's warning."""
        variables = self.variables  # a MultiOptimizer's include its inner optimizers'
        if len(store.keys()) != len(variables):
            message = (
                f"Skipping variable loading for optimizer '{self.name}', because it has "
                f"{len(variables)} variables whereas the saved optimizer has "
                f"{len(store.keys())} variables. "
            )
            if not variables:
                message += "This is likely because the optimizer has not been called/built yet."
            warnings.warn(message, stacklevel=2)
            return
        for i, variable in enumerate(variables):
            variable.assign(store[str(i)])

    # ------------------------------------------------------------------ config
    def get_config(self):
        if self._lr_copy is not None:
            learning_rate = self._lr_copy.get()
        elif isinstance(self._learning_rate, schedules.LearningRateSchedule):
            learning_rate = schedules.serialize(self._learning_rate)
        else:
            learning_rate = serialize_keras_object(self._learning_rate)
        return {
            "name": self.name,
            "learning_rate": learning_rate,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
            "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
            "loss_scale_factor": self.loss_scale_factor,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"], custom_objects)
        return cls(**config)
