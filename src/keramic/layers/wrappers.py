"""Layer wrappers: the Wrapper base, Bidirectional and TimeDistributed."""

import torch

from keramic.layers import symbolic_masks
from keramic.layers.base import Layer, _call_signature_flags
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object


def _copy_layer(layer, name, **overrides):
    """A fresh, unbuilt layer with `layer`'s config, renamed (how Keras makes Bidirectional's halves)."""
    envelope = serialize_keras_object(layer)
    envelope.pop("build_config", None)
    envelope["config"] = {**envelope["config"], "name": name, **overrides}
    return deserialize_keras_object(envelope)


def _strip_prefix(name, prefix):
    return name[len(prefix) :] if name.startswith(prefix) else name


_MERGE_MODES = ("sum", "mul", "ave", "concat", None)


@keras_export("keras.layers")
class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy backwards, and merges the two outputs.

    The sub-layers are `forward_layer` (named `forward_<name>`) and `backward_layer`
    (`backward_<name>`, `go_backwards=True`), with forward weights first.
    """

    def __init__(self, layer, merge_mode="concat", backward_layer=None, **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError(
                f"Please initialize `Bidirectional` layer with a `keras.layers.Layer` instance. Received: {layer}"
            )
        if backward_layer is not None and not isinstance(backward_layer, Layer):
            raise ValueError(f"`backward_layer` need to be a `keras.layers.Layer` instance. Received: {backward_layer}")
        if merge_mode not in _MERGE_MODES:
            raise ValueError(
                f"Invalid merge mode. Received: {merge_mode}. "
                'Merge mode should be one of {"sum", "mul", "ave", "concat", None}'
            )
        super().__init__(**kwargs)
        self.forward_layer = _copy_layer(layer, "forward_" + _strip_prefix(layer.name, "forward_"))
        if backward_layer is None:
            backward_layer = _copy_layer(layer, "backward_" + _strip_prefix(layer.name, "backward_"), go_backwards=True)
        self.backward_layer = backward_layer
        if hasattr(layer, "use_cudnn"):
            self.forward_layer.use_cudnn = self.backward_layer.use_cudnn = layer.use_cudnn
        self._check_halves()
        for half in (self.forward_layer, self.backward_layer):
            if getattr(half, "zero_output_for_mask", None) is not None:
                half.zero_output_for_mask = half.return_sequences
        self.merge_mode = merge_mode
        self.stateful = layer.stateful
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self.supports_masking = True

    def _check_halves(self):
        forward, backward = self.forward_layer, self.backward_layer
        if forward.go_backwards == backward.go_backwards:
            raise ValueError(
                "Forward layer and backward layer should have different `go_backwards` value. Received: "
                f"forward_layer.go_backwards {forward.go_backwards}, "
                f"backward_layer.go_backwards={backward.go_backwards}"
            )
        for attribute in ("stateful", "return_sequences", "return_state"):
            if getattr(forward, attribute) != getattr(backward, attribute):
                raise ValueError(
                    "Forward layer and backward layer are expected to have the same value for attribute "
                    f'"{attribute}", '
                    f'got "{getattr(forward, attribute)}" for forward layer and '
                    f'"{getattr(backward, attribute)}" for backward layer'
                )

    def build(self, input_shape):
        for half in (self.forward_layer, self.backward_layer):
            if not half.built:
                half.build_from_config({"input_shape": input_shape})

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        output_shape = self.forward_layer.compute_output_shape(sequences_shape)
        state_shapes = ()
        if self.return_state:
            output_shape, state_shapes = output_shape[0], tuple(output_shape[1:])
        if self.merge_mode == "concat":
            output_shape = (*output_shape[:-1], output_shape[-1] * 2)
        if self.merge_mode is None:
            outputs = (tuple(output_shape), tuple(output_shape))
        else:
            outputs = (tuple(output_shape),)
        if self.return_state:
            return outputs + state_shapes + state_shapes
        return outputs if self.merge_mode is None else outputs[0]

    @symbolic_masks.in_ops
    def compute_mask(self, inputs, mask):
        if isinstance(mask, list):
            mask = mask[0]
        if self.return_sequences:
            output_mask = mask if self.merge_mode else [mask, mask]
        else:
            output_mask = None if self.merge_mode else [None, None]
        if self.return_state:
            state_count = 2 * len(getattr(self.forward_layer, "state_size", [None]))
            heads = output_mask if isinstance(output_mask, list) else [output_mask]
            return heads + [None] * state_count
        return output_mask

    def call(self, sequences, initial_state=None, mask=None, training=None):
        forward_state = backward_state = None
        if initial_state is not None:
            half = len(initial_state) // 2
            forward_state, backward_state = list(initial_state[:half]), list(initial_state[half:])
        kwargs = {}
        has_training, has_mask, _, _ = _call_signature_flags(type(self.forward_layer))
        if has_training:
            kwargs["training"] = training
        if has_mask:
            kwargs["mask"] = mask
        y = self.forward_layer(sequences, initial_state=forward_state, **kwargs)
        y_rev = self.backward_layer(sequences, initial_state=backward_state, **kwargs)
        states = ()
        if self.return_state:
            states = tuple(y[1:]) + tuple(y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        if self.return_sequences:
            y_rev = y_rev.flip(1)
        if self.merge_mode == "concat":
            output = (torch.cat([y, y_rev], dim=-1),)
        elif self.merge_mode == "sum":
            output = (y + y_rev,)
        elif self.merge_mode == "ave":
            output = ((y + y_rev) / 2,)
        elif self.merge_mode == "mul":
            output = (y * y_rev,)
        else:
            output = (y, y_rev)
        if self.return_state or self.merge_mode is None:
            return output + states
        return output[0]

    def reset_state(self):
        if not self.stateful:
            raise AttributeError("Layer must be stateful.")
        self.forward_layer.reset_state()
        self.backward_layer.reset_state()

    reset_states = reset_state

    @property
    def states(self):
        forward, backward = self.forward_layer.states, self.backward_layer.states
        if forward and backward:
            return tuple(forward) + tuple(backward)
        return None

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "merge_mode": self.merge_mode,
                "layer": serialize_keras_object(self.forward_layer),
                "backward_layer": serialize_keras_object(self.backward_layer),
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["layer"] = deserialize_keras_object(config["layer"], custom_objects=custom_objects)
        if config.get("backward_layer") is not None:
            config["backward_layer"] = deserialize_keras_object(config["backward_layer"], custom_objects=custom_objects)
        return super().from_config(config)


@keras_export("keras.layers")
class Wrapper(Layer):
    """Base of layers that wrap one other layer (kept as `self.layer`, stored in the config)."""

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError(
                f"Layer {layer} supplied to Wrapper isn't a supported layer type. "
                "Please ensure wrapped layer is a valid Keras layer."
            )
        super().__init__(**kwargs)
        self.layer = layer

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build_from_config({"input_shape": input_shape})

    def get_config(self):
        config = super().get_config()
        config["layer"] = serialize_keras_object(self.layer)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["layer"] = deserialize_keras_object(config["layer"], custom_objects=custom_objects)
        return super().from_config(config)


@keras_export("keras.layers")
class TimeDistributed(Wrapper):
    """Applies `layer` to every time slice of a `(batch, time, ...)` input.

    The slices are folded into the batch axis and the layer runs once, which equals Keras's
    step-by-step loop for every layer whose output row depends only on its input row.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer, **kwargs)
        self.supports_masking = True

    @staticmethod
    def _child_input_shape(input_shape):
        if not isinstance(input_shape, (tuple, list)) or len(input_shape) < 3:
            raise ValueError(
                f"`TimeDistributed` Layer should be passed an `input_shape` with at least 3 dimensions, "
                f"received: {input_shape}"
            )
        return (input_shape[0], *input_shape[2:])

    def build(self, input_shape):
        super().build(self._child_input_shape(input_shape))

    def compute_output_shape(self, input_shape):
        child = self.layer.compute_output_shape(self._child_input_shape(input_shape))
        return (child[0], input_shape[1], *child[1:])

    def call(self, inputs, training=None, mask=None):
        batch, steps = inputs.shape[0], inputs.shape[1]
        has_training, has_mask, _, _ = _call_signature_flags(type(self.layer))
        kwargs = {}
        if has_training:
            kwargs["training"] = training
        if has_mask and mask is not None:
            if mask.dim() < 2 or tuple(mask.shape[:2]) != (batch, steps):
                raise ValueError(
                    f"The `mask` passed to the `TimeDistributed` layer has a shape {tuple(mask.shape)} that is "
                    f"incompatible with the input shape {tuple(inputs.shape)}: its first two dimensions must "
                    f"be ({batch}, {steps})."
                )
            kwargs["mask"] = mask.reshape(batch * steps, *mask.shape[2:])
        outputs = self.layer.call(inputs.reshape(batch * steps, *inputs.shape[2:]), **kwargs)
        return outputs.reshape(batch, steps, *outputs.shape[1:])
