"""`Distiller`: a model that trains `student` on the labels and on one or more distillation losses
against a frozen `teacher`, with Keras 3.15's loss arithmetic:

    total = w * student_loss + (1 - w) * sum_i(weight_i * distillation_loss_i)

where `w` is `student_loss_weight`. Calling the distiller calls the student; `fit` logs the three
parts as `student_loss`, `distillation_loss` and `total_loss`.
"""


import torch

from keramic import metrics, tree
from keramic.distillation.losses import resolve_loss
from keramic.models.model import Model
from keramic.models.sequential import Sequential
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object


def _graph_inputs(model):
    return getattr(model, "inputs", None)


def _graph_outputs(model):
    return getattr(model, "outputs", None)


@keras_export("keras.distillation")
class Distiller(Model):
    """Knowledge distillation from `teacher` (frozen) to `student`.

    >>> distiller = Distiller(teacher, student, LogitsDistillation(temperature=3.0), student_loss_weight=0.5)
    >>> distiller.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    >>> distiller.fit(x, y)
    """

    def __init__(
        self,
        teacher,
        student,
        distillation_losses,
        distillation_loss_weights=None,
        student_loss_weight=0.5,
        name="distiller",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        _check_models(teacher, student)
        self.teacher = teacher
        self.student = student
        if not isinstance(student_loss_weight, (int, float)):
            raise ValueError(f"student_loss_weight must be a number, got {type(student_loss_weight)}")
        if not 0.0 <= student_loss_weight <= 1.0:
            raise ValueError(f"student_loss_weight must be between 0.0 and 1.0, got {student_loss_weight}")
        self.student_loss_weight = student_loss_weight
        if distillation_losses is None:
            raise ValueError(
                "'distillation_losses' cannot be `None`: give one distillation loss (a LogitsDistillation, a "
                "FeatureDistillation, ...) or a list of them."
            )
        if not isinstance(distillation_losses, (list, tuple)):
            distillation_losses, distillation_loss_weights = [distillation_losses], [1.0]
        elif distillation_loss_weights is None:
            distillation_loss_weights = [1.0] * len(distillation_losses)
        elif len(distillation_loss_weights) != len(distillation_losses):
            raise ValueError(
                f"Number of distillation_loss_weights ({len(distillation_loss_weights)}) must match number of "
                f"distillation_losses ({len(distillation_losses)})"
            )
        self.distillation_losses = distillation_losses
        self.distillation_loss_weights = distillation_loss_weights
        for distillation_loss in distillation_losses:
            distillation_loss.validate_model_compatibility(teacher, student)
        self._teacher_feature_extractor = _feature_extractor(teacher, self._layer_names("teacher_layer_name"))
        self._student_feature_extractor = _feature_extractor(student, self._layer_names("student_layer_name"))
        self.teacher.trainable = False
        self.student_loss_tracker = metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = metrics.Mean(name="distillation_loss")
        self.total_loss_tracker = metrics.Mean(name="total_loss")

    def _layer_names(self, attribute):
        names = []
        for distillation_loss in self.distillation_losses:
            name = getattr(distillation_loss, attribute, None)
            if name and name not in names:
                names.append(name)
        return names

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """`loss` is the student's loss on the labels (required); the distillation losses were given
        to the constructor."""
        if loss is None:
            raise ValueError("'loss' cannot be `None`.")
        if metrics is not None and not isinstance(metrics, (list, tuple)):
            raise ValueError(f"metrics must be a list or tuple, got {type(metrics)}")
        self._student_loss = tree.map_structure(resolve_loss, loss)
        super().compile(optimizer=optimizer, loss=None, metrics=metrics, **kwargs)

    def call(self, inputs, training=None, **kwargs):
        """The student's outputs."""
        return self.student(inputs, training=training, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The weighted sum of the student's loss and the distillation losses (sample weights unused, as in Keras)."""
        if y_pred is None:
            y_pred = self(x, training=training)
        zero = torch.zeros((), device=tree.flatten(y_pred)[0].device)
        student_loss = zero
        if self.student_loss_weight > 0.0 and y is not None:
            parts = tree.flatten(tree.map_structure(lambda loss, target, output: loss(target, output), self._student_loss, y, y_pred))
            student_loss = torch.stack(parts).sum() if len(parts) > 1 else parts[0]
            if student_loss.ndim > 0:
                student_loss = torch.mean(student_loss)
        distillation_loss = zero
        if self.student_loss_weight < 1.0:
            distillation_loss = self._distillation_loss(x, y_pred, zero)
        total_loss = self.student_loss_weight * student_loss + (1.0 - self.student_loss_weight) * distillation_loss
        self.student_loss_tracker.update_state(student_loss)
        self.distillation_loss_tracker.update_state(distillation_loss)
        self.total_loss_tracker.update_state(total_loss)
        return total_loss

    def _distillation_loss(self, x, y_pred, zero):
        extract_teacher, extract_student = self._teacher_feature_extractor, self._student_feature_extractor
        if extract_teacher is None:
            teacher_features = {"final_output": self.teacher(x, training=False)}
        else:
            teacher_features = extract_teacher(x, training=False)
        student_features = {"final_output": y_pred} if extract_student is None else extract_student(x, training=True)
        total = zero
        for distillation_loss, weight in zip(self.distillation_losses, self.distillation_loss_weights):
            if getattr(distillation_loss, "teacher_layer_name", None) is not None:
                teacher = _feature(teacher_features, distillation_loss.teacher_layer_name, distillation_loss)
                student = _feature(student_features, distillation_loss.student_layer_name or "final_output", distillation_loss)
            else:
                teacher, student = teacher_features["final_output"], y_pred
            distillation_loss.validate_outputs(teacher, student)
            value = distillation_loss.compute_loss(teacher, student)
            if getattr(value, "ndim", 0) > 0:
                raise ValueError(
                    f"{type(distillation_loss).__name__}.compute_loss must return a scalar; it returned shape "
                    f"{tuple(value.shape)}."
                )
            total = total + weight * value
        return total

    def reset_metrics(self):
        super().reset_metrics()
        for tracker in (self.student_loss_tracker, self.distillation_loss_tracker, self.total_loss_tracker):
            tracker.reset_state()

    def get_config(self):
        return {
            **super().get_config(),
            "teacher": serialize_keras_object(self.teacher),
            "student": serialize_keras_object(self.student),
            "distillation_losses": [serialize_keras_object(loss) for loss in self.distillation_losses],
            "distillation_loss_weights": self.distillation_loss_weights,
            "student_loss_weight": self.student_loss_weight,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("teacher", "student"):
            config[key] = deserialize_keras_object(config[key], custom_objects=custom_objects)
        config["distillation_losses"] = [
            deserialize_keras_object(loss, namespaces=("keras.distillation",), custom_objects=custom_objects)
            for loss in config["distillation_losses"]
        ]
        return cls(**config)


def _check_models(teacher, student) -> None:
    """Both must be Models; graph models must agree in input/output shapes and dtypes."""
    for role, model in (("Teacher", teacher), ("Student", student)):
        if not isinstance(model, Model):
            raise ValueError(f"{role} must be a keras.Model, got {type(model)}")
    pairs = []
    if _graph_inputs(teacher) is not None and _graph_inputs(student) is not None:
        pairs.append(("input", teacher.inputs, student.inputs))
    if _graph_outputs(teacher) is not None and _graph_outputs(student) is not None:
        pairs.append(("output", teacher.outputs, student.outputs))
    for context, theirs, ours in pairs:
        tree.map_structure(lambda t, s, c=context: _check_shapes(t.shape, s.shape, c), theirs, ours)
    for context, theirs, ours in pairs:
        tree.map_structure(lambda t, s, c=context: _check_dtypes(t.dtype, s.dtype, c), theirs, ours)


def _check_shapes(teacher_shape, student_shape, context) -> None:
    if len(teacher_shape) != len(student_shape):
        raise ValueError(
            f"Teacher and student {context} shapes have different dimensions. Teacher: {teacher_shape}, Student: {student_shape}."
        )
    for a, b in zip(teacher_shape, student_shape):
        if a is not None and b is not None and a != b:
            raise ValueError(
                f"Teacher and student {context} shapes are incompatible. Teacher: {teacher_shape}, "
                f"Student: {student_shape}. All dimensions must match."
            )


def _check_dtypes(teacher_dtype, student_dtype, context) -> None:
    if teacher_dtype != student_dtype:
        raise ValueError(f"Teacher and student {context} dtypes must match. Teacher: {teacher_dtype}, Student: {student_dtype}.")


def _feature_extractor(model, layer_names):
    """A model giving `{"final_output": ..., name: that layer's output}` in one pass, or None."""
    if not layer_names:
        return None
    if _graph_inputs(model) is None:
        raise ValueError(f"Cannot create feature extractor for {model.name}. The model has no symbolic inputs attribute.")
    final = model.layers[-1].output if isinstance(model, Sequential) else model.output
    outputs = {"final_output": final, **{name: model.get_layer(name=name).output for name in layer_names}}
    return Model(inputs=model.inputs, outputs=outputs, name=f"{model.name}_multi_feature_extractor")


def _feature(features, layer_name, distillation_loss):
    if layer_name not in features:
        raise RuntimeError(
            f"{type(distillation_loss).__name__} (teacher layer '{distillation_loss.teacher_layer_name}', student "
            f"layer '{distillation_loss.student_layer_name}') asks for the features of layer '{layer_name}', which "
            f"were not extracted; extracted: {list(features)}."
        )
    return features[layer_name]
