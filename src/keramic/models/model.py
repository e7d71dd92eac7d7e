"""`Model`: a Layer that can be trained; `Model(inputs, outputs)` makes a Functional model."""

import torch

from keramic import backend
from keramic.errors import NotAModelError
from keramic.layers.base import Layer
from keramic.models import state_tree
from keramic.serialization.registry import keras_export
from keramic.symbolic import KerasTensor, flatten
from keramic.training.trainer import Trainer
from keramic.utils import naming


def _functional_arguments(args, kwargs):
    """Whether a Model constructor was called Functional-style: `(inputs, outputs)` of KerasTensors."""
    if not (len(args) == 2 or (len(args) == 1 and "outputs" in kwargs) or ("inputs" in kwargs and "outputs" in kwargs)):
        return False
    inputs = args[0] if args else kwargs["inputs"]
    leaves = flatten(inputs)
    return bool(leaves) and all(isinstance(leaf, KerasTensor) for leaf in leaves)


def _rebase_on(cls, functional):
    """Replace `Model` by `functional` among the bases of `cls` and of its Model-derived bases."""
    bases = []
    for base in cls.__bases__:
        if base is Model:
            base = functional
        elif isinstance(base, type) and issubclass(base, Model) and not issubclass(base, functional):
            _rebase_on(base, functional)
        bases.append(base)
    cls.__bases__ = tuple(bases)


@keras_export("keras")
@keras_export("keras.models")
class Model(Trainer, Layer):
    """Group layers into an object with training and inference features.

    >>> inputs = keramic.Input(shape=(784,))
    >>> outputs = keramic.layers.Dense(10, activation="softmax")(inputs)
    >>> model = keramic.Model(inputs, outputs)

    or subclass it and define `call()`; layers assigned as attributes are tracked.
    """

    _rejects_python_numbers = True

    def __new__(cls, *args, **kwargs):
        if cls is Model and (args or "inputs" in kwargs):
            from keramic.models.functional import Functional

            return Functional.__new__(Functional, *args, **kwargs)
        # As Keras, the constructor arguments stay out of the automatic config (keramic.layers.auto_config).
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        if _functional_arguments(args, kwargs):
            # `CustomModel(inputs, outputs)`: as in Keras, the subclass becomes a Functional model.
            from keramic.models.functional import Functional

            _rebase_on(type(self), Functional)
            Functional.__init__(self, *args, **kwargs)
            return
        if args or "inputs" in kwargs:
            raise TypeError("Model(inputs, outputs) builds a Functional model; subclasses take no inputs.")
        trainable = kwargs.pop("trainable", True)
        name = kwargs.pop("name", None)
        dtype = kwargs.pop("dtype", None)
        default_name = "functional" if type(self).__name__ == "Functional" else type(self).__name__
        Layer.__init__(self, name=name or naming.auto_name(default_name), trainable=trainable, dtype=dtype, **kwargs)
        Trainer.__init__(self)

    @property
    def layers(self):
        return self._sublayers()

    def build(self, input_shape=None):
        """Subclassed models: create every layer's weights by running `call` once on zeros. Keras
        never runs `call` here (it only marks the model built), so where that run fails (a `call`
        that takes other inputs, or none) the model is marked built as in Keras, with Keras's
        warning, and its layers build at their first call."""
        if type(self).build is not Model.build:
            # `super().build(shape)` from a subclass's own `build`: as Keras, it only marks the model
            # built (a dry run here would call the subclass's `build` again, without end).
            self.built = True
            return
        if input_shape is None:
            raise ValueError(f"Model '{self.name}' needs an input shape to build (e.g. model.build((None, 784))).")

        def zeros(shape):
            if isinstance(shape, dict):
                return {key: zeros(value) for key, value in shape.items()}
            if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple, dict)):
                return [zeros(item) for item in shape]
            return torch.zeros([1 if d is None else int(d) for d in shape], device=backend.get_device())

        try:
            with torch.no_grad():
                self(zeros(input_shape), training=False)
        except Exception:
            self._mark_built_unrun(input_shape)
        self._build_shapes = input_shape

    def _maybe_build(self, args, kwargs):
        if type(self).build is Model.build:
            # The default build is a dry run; the real call about to happen builds every layer instead.
            positional, shapes = self._build_arguments(args, kwargs)
            self._build_shapes = positional[0] if shapes is None else shapes
            self.built = True
            return
        super()._maybe_build(args, kwargs)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A Functional config (`layers`, `input_layers`, `output_layers`) rebuilds a Functional model."""
        if cls is Model and all(key in config for key in ("layers", "input_layers", "output_layers")):
            from keramic.models.functional import Functional

            return Functional.from_config(config, custom_objects)
        if cls is Model and isinstance(config, dict) and {"class_name", "config"} <= set(config):
            # A whole serialized object, not a model's inner config: refuse rather than guess.
            raise NotAModelError(
                f"Model.from_config was given a serialized '{config['class_name']}' object, not a model config; "
                "use keras.saving.deserialize_keras_object for whole envelopes."
            )
        return super().from_config(config)

    def get_layer(self, name=None, index=None):
        """A sub-layer by name or by index in `layers` (one of the two, as Keras asks)."""
        if index is not None and name is not None:
            raise ValueError(f"Provide only a layer name or a layer index. Received: index={index}, name={name}.")
        if index is None and name is None:
            raise ValueError("Provide either a layer name or layer index at `get_layer`.")
        if index is not None:
            if index >= len(self.layers):
                raise ValueError(f"Was asked to retrieve layer at index {index} but model only has {len(self.layers)} layers.")
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: {[layer.name for layer in self.layers]}.")

    def quantize(self, mode=None, config=None, filters=None, **kwargs):
        """Quantize the weights of every quantizable layer in place (`"int8"`; see layers/quantized.py)."""
        from keramic.layers import quantized

        quantized.quantize_model(self, mode, config=config, filters=filters, **kwargs)

    def get_quantization_layer_structure(self, mode=None):
        """GPTQ/AWQ's `{"pre_block_layers": [...], "sequential_blocks": [...]}`; None unless a subclass says."""
        return None

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False, show_trainable=False, layer_range=None):
        """Print a table of layers, output shapes and parameter counts, as Keras does."""
        from keramic.models.summary import print_summary

        print_summary(
            self, line_length=line_length, positions=positions, print_fn=print_fn,
            expand_nested=expand_nested, show_trainable=show_trainable, layer_range=layer_range,
        )

    # ------------------------------------------------------------------ saving
    def save(self, filepath, overwrite=True, zipped=None, **kwargs):
        """Whole model to one file: `model.save("m.keras")` (Keras 3's format)."""
        from keramic.saving import api

        api.save_model(self, filepath, overwrite=overwrite, zipped=zipped, **kwargs)

    def save_weights(self, filepath, overwrite=True, max_shard_size=None, format=None):
        """Weights (and optimizer state when compiled) to `*.weights.h5`, `*.safetensors`, sharded
        `*.weights.json` / `*.safetensors` (`max_shard_size` in GiB), legacy `.h5`, or with
        `format="checkpoint"` a checkpoint directory (restorable into an unbuilt model)."""
        from keramic.saving import api

        api.save_weights(self, filepath, overwrite=overwrite, max_shard_size=max_shard_size, format=format)

    def load_weights(self, filepath, skip_mismatch=False, by_name=False, verify=True):
        """Weights from `*.weights.h5`, `*.weights.json`, `*.safetensors`, `.keras` or legacy `.h5`
        (recognised by their bytes); raises on any mismatch unless `skip_mismatch` (`by_name` only
        for legacy `.h5`). A checkpoint directory returns a restore status."""
        from keramic.saving import api

        return api.load_weights(self, filepath, skip_mismatch=skip_mismatch, by_name=by_name, verify=verify)

    def export(self, filepath, format="tf_saved_model", input_shapes=None):
        """A serving artifact directory (ONNX graph + signatures + the model itself); `format="onnx"`
        writes the single serving graph file instead. See docs/export.md."""
        from keramic.export import export_model
        from keramic.export.onnx import serving_graph
        from keramic.saving.stores.atomic import write_atomically

        if format == "onnx":
            from keramic.saving import remote

            def write(path):
                with write_atomically(path) as temporary, open(temporary, "wb") as handle:
                    handle.write(serving_graph(self, input_shapes).onnx_bytes)

            if remote.is_url(filepath):  # written locally, then uploaded (saving/remote.py)
                remote.save_through_local(filepath, write)
            else:
                write(filepath)
        elif format == "tf_saved_model":
            export_model(self, filepath, input_shapes=input_shapes)
        else:
            raise ValueError(f"Unknown export format {format!r}; use 'tf_saved_model' (a directory) or 'onnx'.")

    def get_state_tree(self, value_format="backend_tensor"):
        """Every variable (trainable, non-trainable, optimizer, metrics) as nested dicts by path."""
        return state_tree.get_state_tree(self, value_format)

    def set_state_tree(self, state_tree_):
        """Assign the values of a `get_state_tree()`-shaped tree to the model's variables."""
        state_tree.set_state_tree(self, state_tree_)

    def to_json(self, **kwargs):
        """The architecture (and compile config) as a JSON string, as Keras writes it."""
        import json

        from keramic.serialization.serialize import serialize_keras_object

        return json.dumps(serialize_keras_object(self), **kwargs)
