"""`Model`: a Layer that can be trained; `Model(inputs, outputs)` makes a Functional model."""

from keramic.layers.base import Layer
from keramic.saving.registry import keras_export
from keramic.training.trainer import Trainer
from keramic.utils import naming


@keras_export("keras")
@keras_export("keras.models")
class Model(Trainer, Layer):
    """Group layers into an object with training and inference features.

    >>> inputs = keramic.Input(shape=(784,))
    >>> outputs = keramic.layers.Dense(10, activation="softmax")(inputs)
    >>> model = keramic.Model(inputs, outputs)

    or subclass it and define `call()`; layers assigned as attributes are tracked.
    """

    def __new__(cls, *args, **kwargs):
        if cls is Model and (args or "inputs" in kwargs):
            from keramic.models.functional import Functional

            return Functional.__new__(Functional, *args, **kwargs)
        return super().__new__(cls, *args, **kwargs)

    def __init__(self, *args, **kwargs):
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

    def get_layer(self, name=None, index=None):
        """A sub-layer by name or by index in `layers`."""
        if index is not None:
            if index >= len(self.layers):
                raise ValueError(f"Was asked to retrieve layer at index {index} but model only has {len(self.layers)} layers.")
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: {[layer.name for layer in self.layers]}.")

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False, show_trainable=False, layer_range=None):
        """Print a table of layers, output shapes and parameter counts, as Keras does."""
        from keramic.models.summary import print_summary

        print_summary(self, line_length=line_length, print_fn=print_fn, expand_nested=expand_nested, show_trainable=show_trainable)
