"""The RNN layer that runs a cell over time, and SimpleRNN / LSTM / GRU built on it.

In float32, without a mask or recurrent dropout, tanh/sigmoid cells run in torch's fused RNN kernels (the
Keras-layout weights are rearranged inside the autograd graph, so gradients reach the same variables), which
compute the same function; Keras's torch backend uses them too where it can. Half precision
follows Keras's own paths, for its roundings (see `RNN._run`).
"""

import inspect

import torch

from keramic import backend
from keramic.layers import symbolic_masks
from keramic.layers.base import Layer, _call_signature_flags, serialize_or_none
from keramic.layers.cells import GRUCell, LSTMCell, SimpleRNNCell, _RecurrentCell
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object
from keramic.symbolic import in_dry_run


def _is_nested(value):
    return isinstance(value, (list, tuple))


def _flatten(structure):
    if _is_nested(structure):
        return [leaf for item in structure for leaf in _flatten(item)]
    return [structure]


def _pack_like(structure, leaves):
    """Rebuild `structure` (nested lists) from an iterator of leaves."""
    if _is_nested(structure):
        return [_pack_like(item, leaves) for item in structure]
    return next(leaves)


def _map(fn, structure):
    return _pack_like(structure, iter([fn(leaf) for leaf in _flatten(structure)]))


def _is_half(tensor):
    return tensor.dtype in (torch.float16, torch.bfloat16)


def _state_shapes(state_size, batch):
    if _is_nested(state_size):
        return [_state_shapes(size, batch) for size in state_size]
    return (batch, state_size)


@keras_export("keras.layers")
class StackedRNNCells(Layer):
    """Several cells run as one: each step feeds the output of one cell to the next.

    States are a list with one entry per cell (each cell's own state structure).
    """

    def __init__(self, cells, **kwargs):
        super().__init__(**kwargs)
        for cell in cells:
            if not hasattr(cell, "call"):
                raise ValueError(f"All cells must have a `call` method. Received cell without a `call` method: {cell}")
            if not hasattr(cell, "state_size"):
                raise ValueError(
                    f"All cells must have a `state_size` attribute. Received cell without a `state_size`: {cell}"
                )
        self.cells = list(cells)

    @property
    def state_size(self):
        return [cell.state_size for cell in self.cells]

    @property
    def output_size(self):
        return _cell_output_size(self.cells[-1])

    def get_initial_state(self, batch_size=None):
        return [_cell_initial_state(cell, batch_size, self.compute_dtype) for cell in self.cells]

    def build(self, input_shape):
        batch = input_shape[0]
        for cell in self.cells:
            if isinstance(cell, Layer) and not cell.built:
                cell.build_from_config({"input_shape": tuple(input_shape)})
            input_shape = (batch, _cell_output_size(cell))

    def call(self, inputs, states, training=False):
        new_states = []
        for cell, cell_states in zip(self.cells, states):
            was_list = _is_nested(cell_states)
            cell_states = list(cell_states) if was_list else [cell_states]
            kwargs = {"training": training} if isinstance(cell, Layer) and _call_signature_flags(type(cell))[0] else {}
            inputs, cell_states = cell(inputs, cell_states, **kwargs)
            if not _is_nested(cell_states):
                cell_states = [cell_states]
            new_states.append(cell_states[0] if len(cell_states) == 1 and not was_list else list(cell_states))
        return inputs, (new_states[0] if len(new_states) == 1 else new_states)

    def get_config(self):
        config = super().get_config()
        config["cells"] = [serialize_keras_object(cell) for cell in self.cells]
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        cells = [deserialize_keras_object(cell, custom_objects=custom_objects) for cell in config.pop("cells")]
        return cls(cells, **config)


def _cell_output_size(cell):
    size = getattr(cell, "output_size", None)
    if size is not None:
        return size
    return cell.state_size[0] if _is_nested(cell.state_size) else cell.state_size


def _cell_initial_state(cell, batch_size, dtype):
    """A cell's zero states: its own `get_initial_state`, else zeros shaped by `state_size`."""
    initial = getattr(cell, "get_initial_state", None)
    if initial is not None:
        return initial(batch_size=batch_size)
    torch_dtype = backend.torch_dtype(dtype)
    return _map(lambda size: torch.zeros((batch_size, size), dtype=torch_dtype, device=backend.get_device()), cell.state_size)


@keras_export("keras.layers")
class RNN(Layer):
    """Runs a cell (or a list of cells, stacked) over the time axis of `(batch, time, ...)` inputs.

    A masked time step keeps the previous states and repeats the previous output (zeros with
    `zero_output_for_mask=True`). With `go_backwards=True` the returned sequence is in processing
    (reversed) order, as in Keras. States may be nested (stacked cells): they keep the cell's structure.
    """

    def __init__(
        self,
        cell,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        **kwargs,
    ):
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(cell)
        if not hasattr(cell, "state_size"):
            raise ValueError(f"The RNN cell should have a `state_size` attribute. Received: cell={cell}")
        if not isinstance(cell.state_size, (list, tuple, int)):
            # As Keras: a tf.TensorShape or an array is refused here, not at the first call.
            raise ValueError(
                "state_size must be an integer, or a list/tuple of integers (one for each state tensor). "
                f"Received: state_size={cell.state_size!r}"
            )
        super().__init__(**kwargs)
        self.cell = cell
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.go_backwards = go_backwards
        self.stateful = stateful
        self.unroll = unroll  # accepted for Keras compatibility: the Python loop is already unrolled
        self.zero_output_for_mask = zero_output_for_mask
        self.supports_masking = True
        self.__dict__["states"] = None
        self.__dict__["_expected_batch_size"] = None

    @property
    def state_size(self):
        size = self.cell.state_size
        return list(size) if isinstance(size, (list, tuple)) else [size]

    # ------------------------------------------------------------ build / shapes
    def build(self, sequences_shape):
        if isinstance(self.cell, Layer) and not self.cell.built:
            self.cell.build_from_config({"input_shape": (sequences_shape[0],) + tuple(sequences_shape[2:])})
        if self.stateful:
            if sequences_shape[0] is None:
                raise ValueError(
                    "When using `stateful=True` in a RNN, the batch size must be static. "
                    f"Found dynamic batch size: sequence.shape={tuple(sequences_shape)}"
                )
            self.__dict__["_expected_batch_size"] = sequences_shape[0]

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch = sequences_shape[0]
        output_size = _cell_output_size(self.cell)
        if self.return_sequences:
            output_shape = (batch, sequences_shape[1], output_size)
        else:
            output_shape = (batch, output_size)
        if self.return_state:
            return (output_shape, *[_state_shapes(size, batch) for size in self.state_size])
        return output_shape

    def compute_output_spec(self, sequences, initial_state=None, mask=None, training=None):
        from keramic.symbolic import KerasTensor, shape_of

        shapes = self.compute_output_shape(shape_of(sequences))
        if not self.return_state:
            return KerasTensor(shapes, self.compute_dtype)

        def spec(shape):
            if _is_nested(shape) and shape and _is_nested(shape[0]):
                return [spec(s) for s in shape]
            return KerasTensor(shape, self.compute_dtype)

        return [spec(shape) for shape in shapes]

    @symbolic_masks.in_ops
    def compute_mask(self, inputs, mask):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * len(self.state_size)
        return output_mask

    # ------------------------------------------------------------ states
    def get_initial_state(self, batch_size):
        states = _cell_initial_state(self.cell, batch_size, self.cell.compute_dtype)
        return list(states) if _is_nested(states) else [states]

    def reset_state(self):
        """Zero the carried states of a stateful layer."""
        if self.states is not None:
            self.__dict__["states"] = _map(torch.zeros_like, self.states)

    reset_states = reset_state

    def _stateful_initial_state(self, batch_size):
        expected = self._expected_batch_size
        if expected is not None and batch_size != expected:
            raise ValueError(
                "If an RNN is stateful, the batch size of the input sequences must be the same as the "
                f"batch size of the initial state.\n- Expected batch size: {expected}\n"
                f"- Received batch size: {batch_size}"
            )
        if self.states is None:
            self.__dict__["states"] = self.get_initial_state(batch_size)
        return self.states

    # ------------------------------------------------------------ call
    def call(self, sequences, initial_state=None, mask=None, training=False):
        dtype = backend.torch_dtype(self.cell.compute_dtype)
        if sequences.dtype != dtype:
            sequences = sequences.to(dtype)
        batch_size = sequences.shape[0]
        if initial_state is None:
            states = self._stateful_initial_state(batch_size) if self.stateful else self.get_initial_state(batch_size)
        else:
            states = list(initial_state) if _is_nested(initial_state) else [initial_state]
            states = _map(lambda s: backend.convert_to_tensor(s, self.cell.compute_dtype), states)
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if mask is not None:
            mask = backend.convert_to_tensor(mask).to(torch.bool)
            if mask.dim() == 3:
                mask = mask[..., 0]
            if bool(mask.all()) and not _is_half(sequences):
                # nothing masked: the fused kernels give the same result (in half precision a mask
                # keeps Keras off its sequence kernel, whose roundings differ)
                mask = None
        if self.go_backwards:
            sequences = sequences.flip(1)
            mask = None if mask is None else mask.flip(1)
        outputs, last_output, states = self._run(sequences, states, mask, training)
        if self.stateful:
            self.__dict__["states"] = _map(torch.Tensor.detach, states)
        output = outputs if self.return_sequences else last_output
        if self.return_state:
            return (output, *states)
        return output

    def _cell_step(self, training):
        """`step(inputs, states) -> (output, new_states)` for a user or stacked cell."""
        cell = self.cell
        kwargs = {"training": training} if isinstance(cell, Layer) and _call_signature_flags(type(cell))[0] else {}
        call = cell if callable(cell) else cell.call

        def step(inputs, current):
            output, new_states = call(inputs, current, **kwargs)
            return output, list(new_states) if _is_nested(new_states) else [new_states]

        return step

    def _run(self, sequences, states, mask, training):
        """`(outputs or None, last_output, final_states)`; outputs are (batch, time, ...).

        Half precision follows Keras's two paths, whose roundings differ: where Keras's LSTM / GRU
        hand the sequence to the backend kernel, the weights are cast once and the inputs projected
        over every step at once (`_run_sequence_kernel`); elsewhere a built-in cell steps through its
        own call, as Keras's loop, each step reading the weights in the compute dtype afresh."""
        cell = self.cell
        half = _is_half(sequences)
        if half and self._uses_sequence_kernel(mask):
            return self._run_sequence_kernel(sequences, states, training)
        builtin = isinstance(cell, _RecurrentCell) and not half
        if not training and not in_dry_run():
            features = sequences.shape[-1]
            for inner in getattr(cell, "cells", [cell]):
                if not isinstance(inner, _RecurrentCell):
                    break
                inner.spend_inference_draws(sequences.shape[0], features, sequences)
                features = inner.units
        if builtin and mask is None and getattr(self, "use_cudnn", "auto") is not False:
            fused = cell._fused(sequences, states, training)
            if fused is not None:
                outputs, states = fused
                return outputs, outputs[:, -1], states
        steps = sequences.transpose(0, 1)
        if builtin:
            steps, recurrent_masks = cell._prepare(steps, training)

            def step(inputs, current):
                return cell._step(inputs, current, recurrent_masks)

            return self._loop(step, steps, states, mask)
        held = [c for c in getattr(cell, "cells", [cell]) if isinstance(c, _RecurrentCell)]
        for inner in held:
            inner.hold_dropout_masks(True)
        try:
            step = self._cell_step(training)
            if not self.unroll and steps.shape[0]:
                # Keras's rolled loop runs the cell once more on the first step to learn its output
                # structure and discards the result; the cell's draws and side effects follow it.
                with torch.no_grad():
                    step(steps[0], states)
            return self._loop(step, steps, states, mask)
        finally:
            for inner in held:
                inner.hold_dropout_masks(False)

    def _uses_sequence_kernel(self, mask):
        """Whether Keras's LSTM / GRU layer would run this call in its backend sequence kernel."""
        return False

    def _run_sequence_kernel(self, sequences, states, training):
        """Keras's backend LSTM / GRU: weights cast to the compute dtype once for the whole
        sequence, cuDNN on a GPU, else one input projection and a loop over the recurrent product."""
        cell = self.cell
        with cell._variables_in_compute_dtype():
            if not training and not in_dry_run():
                cell.spend_inference_draws(sequences.shape[0], sequences.shape[-1], sequences)
            if sequences.is_cuda and cell.use_bias:
                fused = cell._fused(sequences, states, training)
                if fused is not None:
                    outputs, states = fused
                    return outputs, outputs[:, -1], states
            steps, recurrent_masks = cell._prepare(sequences.transpose(0, 1), training)
            return self._loop(lambda inputs, current: cell._step(inputs, current, recurrent_masks), steps, states, None)

    def _loop(self, step, steps, states, mask):
        """Run `step` over the leading (time) axis of `steps`, holding states and outputs at masked steps."""
        outputs = []
        output = previous = None
        for t in range(steps.shape[0]):
            output, new_states = step(steps[t], states)
            if mask is not None:
                keep = mask[:, t]

                def hold(new, old, keep=keep):
                    return torch.where(keep.reshape((-1,) + (1,) * (new.dim() - 1)), new, old)

                flat = [hold(new, old) for new, old in zip(_flatten(new_states), _flatten(states))]
                states = _pack_like(new_states, iter(flat))
                if previous is None or self.zero_output_for_mask:
                    previous = torch.zeros_like(output)
                output = previous = hold(output, previous)
            else:
                states = new_states
            if self.return_sequences:
                outputs.append(output)
        return (torch.stack(outputs, dim=1) if outputs else None), output, states

    # ------------------------------------------------------------ config
    def _rnn_config(self):
        config = super().get_config()
        config.update(
            {
                "return_sequences": self.return_sequences,
                "return_state": self.return_state,
                "go_backwards": self.go_backwards,
                "stateful": self.stateful,
                "unroll": self.unroll,
                "zero_output_for_mask": self.zero_output_for_mask,
            }
        )
        return config

    def get_config(self):
        config = self._rnn_config()
        config["cell"] = serialize_keras_object(self.cell)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if "cell" in config:  # SimpleRNN / LSTM / GRU configs carry the cell's arguments instead
            config["cell"] = deserialize_keras_object(config["cell"], custom_objects=custom_objects)
        return super().from_config(config)


_LAYER_ONLY_KWARGS = ("name", "trainable", "dtype", "autocast", "input_shape", "batch_input_shape", "batch_size")


def _checked_use_cudnn(value):
    """`use_cudnn=False` keeps the step loop; "auto"/True allow torch's fused kernels."""
    if value not in ("auto", True, False):
        raise ValueError(
            f"Invalid value received for argument `use_cudnn`. Expected one of {{'auto', True, False}}. "
            f"Received: use_cudnn={value}"
        )
    return value


def _cell_property(name):
    return property(lambda self: getattr(self.cell, name), doc=f"The cell's `{name}`.")


class _BuiltinRNN(RNN):
    """SimpleRNN / LSTM / GRU: the cell is made from the layer's own arguments and not in the config."""

    _CELL_CLASS: type | None = None
    _CELL_NAME: str | None = None
    _CONFIG_KEYS = ()

    def __init__(
        self,
        units,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        activity_regularizer=None,
        **kwargs,
    ):
        layer_kwargs = {key: kwargs.pop(key) for key in _LAYER_ONLY_KWARGS if key in kwargs}
        cell_arguments = set(inspect.signature(self._CELL_CLASS.__init__).parameters)
        cell_arguments |= set(inspect.signature(_RecurrentCell.__init__).parameters)
        unknown = {key: value for key, value in kwargs.items() if key not in cell_arguments}
        if unknown:
            raise ValueError(f"Unrecognized keyword arguments passed to {type(self).__name__}: {unknown}")
        cell = self._CELL_CLASS(
            units,
            dtype=layer_kwargs.get("dtype"),
            trainable=layer_kwargs.get("trainable", True),
            name=self._CELL_NAME,
            **kwargs,
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            zero_output_for_mask=zero_output_for_mask,
            activity_regularizer=activity_regularizer,
            **layer_kwargs,
        )

    units = _cell_property("units")
    activation = _cell_property("activation")
    use_bias = _cell_property("use_bias")
    kernel_initializer = _cell_property("kernel_initializer")
    recurrent_initializer = _cell_property("recurrent_initializer")
    bias_initializer = _cell_property("bias_initializer")
    kernel_regularizer = _cell_property("kernel_regularizer")
    recurrent_regularizer = _cell_property("recurrent_regularizer")
    bias_regularizer = _cell_property("bias_regularizer")
    kernel_constraint = _cell_property("kernel_constraint")
    recurrent_constraint = _cell_property("recurrent_constraint")
    bias_constraint = _cell_property("bias_constraint")
    dropout = _cell_property("dropout")
    recurrent_dropout = _cell_property("recurrent_dropout")

    def get_config(self):
        config = self._rnn_config()
        values = {**self.cell._config_values(), "activity_regularizer": serialize_or_none(self.activity_regularizer)}
        config.update({key: values[key] for key in self._CONFIG_KEYS})
        return config


def _layer_keys(cell_class, extra_after_dropout=()):
    """A layer's config keys: its cell's, with `activity_regularizer` after the bias regularizer."""
    keys = [key for key in cell_class._CONFIG_KEYS if key not in ("seed", "reset_after", "unit_forget_bias")]
    keys.insert(keys.index("bias_regularizer") + 1, "activity_regularizer")
    return tuple(keys) + tuple(extra_after_dropout)


@keras_export("keras.layers")
class SimpleRNN(_BuiltinRNN):
    """Fully connected RNN whose output is fed back as the next input state."""

    _CELL_CLASS = SimpleRNNCell
    _CELL_NAME = "simple_rnn_cell"
    _CONFIG_KEYS = _layer_keys(SimpleRNNCell)

    def __init__(self, units, activation="tanh", **kwargs):
        super().__init__(units, activation=activation, **kwargs)


def _lstm_keys():
    keys = list(_layer_keys(LSTMCell, ("seed",)))
    keys.insert(keys.index("bias_initializer") + 1, "unit_forget_bias")
    return tuple(keys)


@keras_export("keras.layers")
class LSTM(_BuiltinRNN):
    """Long short-term memory (Hochreiter 1997); states `[h, c]`."""

    _CELL_CLASS = LSTMCell
    _CELL_NAME = "lstm_cell"
    _CONFIG_KEYS = _lstm_keys()

    recurrent_activation = _cell_property("recurrent_activation")
    unit_forget_bias = _cell_property("unit_forget_bias")

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_cudnn="auto", **kwargs):
        super().__init__(units, activation=activation, recurrent_activation=recurrent_activation, **kwargs)
        self.use_cudnn = _checked_use_cudnn(use_cudnn)

    def _uses_sequence_kernel(self, mask):
        return mask is None and self.use_cudnn in ("auto", True) and not self.cell.recurrent_dropout


@keras_export("keras.layers")
class GRU(_BuiltinRNN):
    """Gated recurrent unit (Cho et al. 2014); `reset_after=True` matches cuDNN's formulation."""

    _CELL_CLASS = GRUCell
    _CELL_NAME = "gru_cell"
    _CONFIG_KEYS = _layer_keys(GRUCell, ("reset_after", "seed"))

    recurrent_activation = _cell_property("recurrent_activation")
    reset_after = _cell_property("reset_after")

    def __init__(
        self, units, activation="tanh", recurrent_activation="sigmoid", reset_after=True, use_cudnn="auto", **kwargs
    ):
        super().__init__(
            units,
            activation=activation,
            recurrent_activation=recurrent_activation,
            reset_after=reset_after,
            **kwargs,
        )
        self.use_cudnn = _checked_use_cudnn(use_cudnn)

    def _uses_sequence_kernel(self, mask):
        return (
            mask is None
            and self.use_cudnn in ("auto", True)
            and not self.cell.recurrent_dropout
            and self.cell.reset_after
        )

