"""What a student is asked to match in a teacher: its final outputs (`LogitsDistillation`) or the
features of given layers (`FeatureDistillation`), each as Keras 3.15 computes them.

Losses are given as Keras losses are (a name, a loss object, or a structure of them matching the
outputs, with None to skip an output). A name resolves with `keramic.losses.get`, which gives the
bare per-sample function: so `LogitsDistillation(loss="kl_divergence")` (the default) compares the
temperature-scaled logits directly, while a `KLDivergence()` object compares their softmaxes and
scales by the temperature squared, exactly as in Keras.
"""

import torch

from keramic import losses as losses_module
from keramic import tree
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object


def resolve_loss(loss):
    """A loss name becomes Keras's loss function; objects and None pass through."""
    if isinstance(loss, str):
        function = losses_module.get(loss)
        if function is None:
            raise ValueError(f"Unknown loss function: '{loss}'.")
        return function
    return loss


def _sum_of_means(loss_structure, pair_loss, teacher_outputs, student_outputs):
    """Apply `pair_loss(loss, teacher, student)` output by output (None counts 0) and add up."""
    values = tree.flatten(tree.map_structure(pair_loss, loss_structure, teacher_outputs, student_outputs))
    reference = next((v for v in values if isinstance(v, torch.Tensor)), None)
    like = {} if reference is None else {"dtype": reference.dtype, "device": reference.device}
    return torch.stack([torch.as_tensor(v, **like) for v in values]).sum()


@keras_export("keras.distillation")
class DistillationLoss:
    """Base class: subclasses define `compute_loss(teacher_outputs, student_outputs)`."""

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        raise NotImplementedError("Subclasses must implement compute_loss")

    def validate_outputs(self, teacher_outputs, student_outputs) -> None:
        """Teacher and student outputs must have the same structure."""
        tree.assert_same_structure(teacher_outputs, student_outputs)

    def validate_model_compatibility(self, teacher, student) -> None:
        """Hook for checks on the two models; the base class accepts any."""


@keras_export("keras.distillation")
class FeatureDistillation(DistillationLoss):
    """Match features: the outputs of `teacher_layer_name` and `student_layer_name` (the final
    outputs when a name is None), compared with `loss` ("mse" by default) and averaged.

    >>> FeatureDistillation(loss="mse", teacher_layer_name="dense_1", student_layer_name="dense_1")
    """

    def __init__(self, loss="mse", teacher_layer_name=None, student_layer_name=None):
        self.teacher_layer_name = teacher_layer_name
        self.student_layer_name = student_layer_name
        self.loss = tree.map_structure(resolve_loss, loss)
        if all(item is None for item in tree.flatten(self.loss)):
            raise ValueError("The `loss` argument in `FeatureDistillation` must contain at least one non-`None` value.")

    def validate_model_compatibility(self, teacher, student) -> None:
        """Named layers need graph models (whose layer outputs exist) holding those layers."""
        if self.teacher_layer_name is not None or self.student_layer_name is not None:
            subclassed = [role for role, model in (("teacher", teacher), ("student", student)) if getattr(model, "inputs", None) is None]
            if subclassed:
                raise ValueError(
                    "FeatureDistillation by layer name needs Functional or Sequential models, whose layers have "
                    f"symbolic outputs; the {' and '.join(subclassed)} model(s) have none (subclassed). Distil the "
                    "final outputs instead (no layer names, or LogitsDistillation)."
                )
        for role, model, name in (("teacher", teacher, self.teacher_layer_name), ("student", student, self.student_layer_name)):
            if name is not None:
                try:
                    model.get_layer(name=name)
                except ValueError as error:
                    raise ValueError(f"In {role} model: {error}") from error

    def validate_outputs(self, teacher_outputs, student_outputs) -> None:
        super().validate_outputs(teacher_outputs, student_outputs)
        try:
            tree.assert_same_structure(self.loss, teacher_outputs)
        except (ValueError, TypeError) as error:
            raise ValueError(f"Loss structure mismatch: the loss and the outputs differ in structure. Error: {error}") from error

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        """The sum over outputs of the mean loss between teacher and student features."""

        def pair_loss(loss, teacher, student):
            return 0.0 if loss is None else torch.mean(loss(teacher, student))

        return _sum_of_means(self.loss, pair_loss, teacher_outputs, student_outputs)

    def get_config(self) -> dict:
        return {
            "loss": serialize_keras_object(self.loss),
            "teacher_layer_name": self.teacher_layer_name,
            "student_layer_name": self.student_layer_name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "loss": deserialize_keras_object(config["loss"], namespaces=("keras.losses",))})


@keras_export("keras.distillation")
class LogitsDistillation(DistillationLoss):
    """Match final outputs: teacher and student logits are divided by `temperature`, then compared
    with `loss` ("kl_divergence" by default); a `KLDivergence` object compares their softmaxes and
    is scaled by `temperature ** 2`.

    >>> LogitsDistillation(temperature=4.0, loss=keramic.losses.KLDivergence())
    """

    def __init__(self, temperature=3.0, loss="kl_divergence"):
        self.temperature = temperature
        self.loss = tree.map_structure(resolve_loss, loss)
        if all(item is None for item in tree.flatten(self.loss)):
            raise ValueError("At least one loss must be non-`None`.")
        if not isinstance(temperature, (int, float)):
            raise ValueError(f"temperature must be a number, got {type(temperature)}")
        if temperature <= 0.0:
            raise ValueError("temperature must be positive.")

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        """The sum over outputs of the mean loss between the temperature-scaled logits."""
        temperature = self.temperature

        def pair_loss(loss, teacher, student):
            if loss is None:
                return 0.0
            teacher, student = teacher / temperature, student / temperature
            if isinstance(loss, losses_module.KLDivergence):
                return torch.mean(loss(torch.softmax(teacher, dim=-1), torch.softmax(student, dim=-1))) * temperature**2
            return torch.mean(loss(teacher, student))

        return _sum_of_means(self.loss, pair_loss, teacher_outputs, student_outputs)

    def get_config(self) -> dict:
        return {"temperature": self.temperature, "loss": serialize_keras_object(self.loss)}

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "loss": deserialize_keras_object(config["loss"], namespaces=("keras.losses",))})
