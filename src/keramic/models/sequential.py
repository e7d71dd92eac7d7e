"""Sequential models: a plain stack of layers, each feeding the next."""

import numpy as np
import torch

from keramic.errors import ConfigError, KeramicError, NotAModelError
from keramic.layers.base import Layer, explicit_training
from keramic.layers.input_layer import Input, InputLayer
from keramic.models.model import Model
from keramic.saving.formats import keras2_config
from keramic.serialization import serialize
from keramic.serialization.registry import keras_export
from keramic.symbolic import KerasTensor
from keramic.utils import naming


# Applied bottom-up: "keras" is recorded as the config's `module`, as Keras writes it.
@keras_export("keras.models")
@keras_export("keras")
class Sequential(Model):
    """`Sequential([Input((784,)), Dense(64, "relu"), Dense(10)])`, or `add()` layers one by one.

    Without an input shape the model is built on its first call.
    """

    def __init__(self, layers=None, trainable=True, name=None, **kwargs):
        super().__init__(trainable=trainable, name=name, **kwargs)
        self.__dict__["_functional"] = None
        self._layers = []
        names: set[str] = set()
        for layer in layers or []:
            self._append(layer, names)
        self._rebuild()

    def add(self, layer, rebuild=True):
        """Append a layer (an `Input()` tensor becomes the model's InputLayer)."""
        self._append(layer, {existing.name for existing in self._layers})
        if rebuild:
            self._rebuild()

    def _append(self, layer, names):
        """Append `layer` after the checks; `names` holds the names of the layers already in (kept up to date)."""
        if isinstance(layer, KerasTensor):
            layer = layer._keras_history[0]
        if not isinstance(layer, Layer):
            raise ValueError(f"Only layers can be added to a Sequential model; got {layer!r} (of type {type(layer).__name__}).")
        if isinstance(layer, InputLayer):
            if self._layers:
                raise ValueError("An InputLayer can only be the first layer of a Sequential model.")
        elif not self._layers and getattr(layer, "_input_shape_arg", None) is not None:
            self._layers.append(InputLayer(batch_shape=layer._input_shape_arg))
            names.add(self._layers[-1].name)
        if layer.name in names:
            raise ValueError(f"All layers added to a Sequential model should have unique names. Name '{layer.name}' is already used.")
        self._layers.append(layer)
        names.add(layer.name)

    def pop(self, rebuild=True):
        """Remove and return the last layer."""
        if not self.layers:
            raise IndexError("pop from a Sequential model that has no layers.")
        layer = self._layers.pop()
        if rebuild:
            self._rebuild()
        return layer

    def _rebuild(self):
        self.__dict__["_functional"] = None
        self.built = False
        first = self._layers[0] if self._layers else None
        if isinstance(first, InputLayer) and len(self._layers) > 1:
            self.build(first.batch_shape)
        elif len(self._layers) > 1 and getattr(first, "input_shape", None) is not None:
            self.build(first.input_shape)  # as Keras: a first layer (a model) that knows its input shape

    def build(self, input_shape=None):
        """Build every layer for `input_shape` (batch axis included) and record the symbolic graph."""
        if input_shape is None:
            raise ValueError("Sequential.build needs an input shape.")
        if self._layers and isinstance(self._layers[0], InputLayer):
            if tuple(self._layers[0].batch_shape) != tuple(input_shape):
                raise ValueError(
                    f"Sequential model '{self.name}' has input shape {self._layers[0].batch_shape}, "
                    f"but it was built or called with shape {tuple(input_shape)}."
                )
            inputs = self._layers[0].output_tensor
        else:
            inputs = Input(batch_shape=input_shape)
            self._layers.insert(0, inputs._keras_history[0])
        outputs = inputs
        for layer in self.layers:  # in the model's name scope (Layer's build wrapper), as Keras names the variables
            outputs = layer(outputs)
        from keramic.models.functional import Functional

        # Unnamed, as in Keras: each build takes a "functional" name, so later models are numbered as Keras numbers them.
        self.__dict__["_functional"] = Functional(inputs, outputs)
        self._build_shapes = tuple(input_shape)
        self.built = True

    def _maybe_build(self, args, kwargs):
        if not self.built:
            from keramic.symbolic import shape_of

            shape = shape_of(args[0])
            self.build(tuple(shape))  # Keras keeps the batch size of the first call

    def _sublayers(self):
        return [layer for layer in self._layers if not isinstance(layer, InputLayer)]

    def _as_input_tensor(self, x):
        """String arrays stay numpy (torch has no strings); their layers take them as they are."""
        if isinstance(x, np.ndarray) and x.dtype.kind in "USO":
            return x
        return super()._as_input_tensor(x)

    @property
    def layers(self):
        return self._sublayers()

    # Saving protocol: the config lists every layer, so `layers` comes first and by position.
    _structure_from_config = True

    def _saveable_children(self):
        rest = [(name, value) for name, value in super()._saveable_children() if name not in ("layers", "_layers")]
        return [("layers", self.layers), *rest]

    _autocast_inputs = False  # inputs take the Input's dtype instead
    _converts_input_args = False

    def call(self, inputs, training=None, mask=None):
        if self._functional is not None and isinstance(inputs, (list, tuple)) and len(inputs) == 1:
            # As Keras, whose Sequential runs its Functional graph: a one-element list is the one
            # input, after the graph's warning that the structure differs.
            (inputs,) = self._functional._flatten_call_inputs(inputs)
        outputs = inputs
        if self._functional is not None and isinstance(inputs, torch.Tensor):
            dtype = self._functional._input_dtypes[0]
            outputs = inputs if inputs.dtype == dtype else inputs.to(dtype)
        explicit = explicit_training(training)
        for layer in self.layers:
            outputs = layer(outputs, **explicit)
        return outputs

    def compute_output_spec(self, inputs, *args, **kwargs):
        """String inputs take the built graph's output spec: a dry run on placeholder strings would
        send "" through lookup layers, which refuse it when they have no OOV index."""
        if isinstance(inputs, KerasTensor) and inputs.dtype == "string" and self._functional is not None:
            return self._functional.compute_output_spec(inputs)
        return super().compute_output_spec(inputs, *args, **kwargs)

    @property
    def inputs(self):
        return self._functional.inputs if self._functional else None

    @property
    def outputs(self):
        return self._functional.outputs if self._functional else None

    @property
    def input_shape(self):
        return self._functional.input_shape if self._functional else None

    @property
    def output_shape(self):
        return self._functional.output_shape if self._functional else None

    @property
    def output_names(self):
        return self._functional.output_names if self._functional else None

    @property
    def input(self):
        return self.inputs[0] if self.inputs else None

    @property
    def output(self):
        return self.outputs[0] if self.outputs else None

    def get_config(self):
        layers = [serialize.serialize_keras_object(layer) for layer in self._layers]
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": serialize.serialize_keras_object(self.dtype_policy),
            "layers": layers,
        }
        if self._layers and isinstance(self._layers[0], InputLayer):
            config["build_input_shape"] = list(self._layers[0].batch_shape)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Rebuild from `get_config()` output (or Keras 2's bare list of layer configs)."""
        config = keras2_config.from_tf_keras_get_config("Sequential", config)
        layer_configs = config.get("layers") if isinstance(config, dict) else config
        if not isinstance(layer_configs, list):
            raise NotAModelError(f"Sequential.from_config: expected a Sequential config with a 'layers' list, got {serialize.describe_config(config)}.")
        with serialize.bounded_config(config):
            name = config.get("name") if isinstance(config, dict) else None
            trainable = config.get("trainable", True) if isinstance(config, dict) else True
            model = cls(name=name, trainable=trainable)
            names: set[str] = set()
            for index, layer_config in enumerate(layer_configs):
                layer = serialize.deserialize_keras_object(layer_config, ("keras.layers",), custom_objects)
                if not isinstance(layer, Layer):
                    raise ConfigError(f"Sequential '{model.name}': an entry of 'layers' is a {type(layer).__name__}, not a layer.")
                model._append(layer, names)
                if index < len(layer_configs) - 1 and isinstance(model._layers[0], InputLayer) and len(model._layers) > 1:
                    naming.uniquify("functional")  # Keras builds after each layer it adds: each build takes a model name
            build_shape = config.get("build_input_shape") if isinstance(config, dict) else None
            try:
                if model._layers and isinstance(model._layers[0], InputLayer) and len(model._layers) > 1:
                    model._rebuild()
                elif build_shape:
                    model.build(tuple(build_shape))
            except KeramicError:
                raise
            except serialize.ARGUMENT_FAILURES as error:
                failed = next((layer for layer in model.layers if not layer.built), model)
                given = [c["config"] for c in layer_configs if isinstance(c, dict) and isinstance(c.get("config"), dict)]
                mine = next((config for config in given if config.get("name") == failed.name), {})
                raise serialize.argument_error(type(failed).__name__, failed.name, mine, error) from error
        return model

