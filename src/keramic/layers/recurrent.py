"""Recurrent layers: SimpleRNN, LSTM, GRU, their cells, the generic RNN, Bidirectional and TimeDistributed.

Weights live in a `cell` sub-layer as in Keras (kernel, recurrent_kernel, bias; LSTM gate blocks
i, f, c, o; GRU gate blocks z, r, h), so `get_weights()` lists and weight files match Keras's.
The input projection is one matmul over every time step; only the recurrence loops in Python.
Without a mask or recurrent dropout, tanh/sigmoid cells run in torch's fused RNN kernels (GRU and
SimpleRNN everywhere, LSTM off the CPU), which compute the same function; Keras's torch backend
uses them too where it can.
"""

import inspect

import torch

from keramic import activations, backend, constraints, initializers, regularizers
from keramic.layers.base import Layer, _call_signature_flags, serialize_or_none, weight_settings
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object



def _masked_matmul(x, weight, masks):
    """`x @ weight`, where gate block g of the result sees `x * masks[g]` (Keras's dropout masks).

    `masks` is None, one mask (shape `(1, ..., features)`) or one per gate block.
    """
    if masks is None:
        return x @ weight
    if masks.shape[0] == 1:
        return (x * masks[0]) @ weight
    count = masks.shape[0]
    blocks = weight.reshape(weight.shape[0], count, -1).movedim(1, 0)
    blocks = blocks.reshape((count,) + (1,) * (x.dim() - 2) + tuple(blocks.shape[1:]))
    return torch.matmul(x.unsqueeze(0) * masks, blocks).movedim(0, -2).flatten(-2)


class _RecurrentCell(Layer):
    """What the built-in cells share: weights, dropout masks, configs and the fast sequence path.

    Subclasses set `gates` (blocks per kernel), `_per_gate_dropout` and implement `_step`.
    """

    gates = 1
    _per_gate_dropout = False
    _CONFIG_KEYS = ()

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        **kwargs,
    ):
        if int(units) <= 0:
            raise ValueError(
                f"Received an invalid value for argument `units`, expected a positive integer, got {units}."
            )
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.dropout = min(1.0, max(0.0, dropout))
        self.recurrent_dropout = min(1.0, max(0.0, recurrent_dropout))
        self.seed = seed
        self.__dict__["_generator"] = None
        self.output_size = self.units

    # ------------------------------------------------------------ weights
    def _bias_shape(self):
        return (self.gates * self.units,)

    def _bias_initializer(self):
        return self.bias_initializer

    def build(self, input_shape):
        width = self.gates * self.units
        self.kernel = self.add_weight(
            shape=(input_shape[-1], width),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
            name="kernel",
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, width),
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
            name="recurrent_kernel",
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                shape=self._bias_shape(),
                initializer=self._bias_initializer(),
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
                name="bias",
            )

    def _input_bias(self):
        return self.bias

    def get_initial_state(self, batch_size=None):
        sizes = self.state_size if isinstance(self.state_size, list) else [self.state_size]
        dtype = backend.torch_dtype(self.compute_dtype)
        return [torch.zeros((batch_size, size), dtype=dtype, device=backend.get_device()) for size in sizes]

    # ------------------------------------------------------------ dropout
    def _dropout_masks(self, training, rate, count, shape, like):
        """`count` scaled keep-masks of `shape`, drawn once per sequence as Keras does; None if off."""
        if not training or not 0.0 < rate < 1.0:
            return None
        generator = None
        if self.seed is not None:
            generator = self.__dict__["_generator"]
            if generator is None or generator.device != like.device:
                generator = torch.Generator(device=like.device)
                generator.manual_seed(int(self.seed))
                self.__dict__["_generator"] = generator
        keep = torch.rand((count, *shape), generator=generator, device=like.device) >= rate
        return keep.to(like.dtype) / (1.0 - rate)

    def _prepare(self, inputs, training):
        """Project `inputs` (`(..., batch, features)`) through the kernel; draw the recurrent masks."""
        batch, features = inputs.shape[-2], inputs.shape[-1]
        per_gate = self._per_gate_dropout and 0.0 < self.recurrent_dropout < 1.0
        input_count = self.gates if per_gate else 1
        input_masks = self._dropout_masks(training, self.dropout, input_count, (batch, features), inputs)
        if input_masks is not None and inputs.dim() == 3:
            input_masks = input_masks.unsqueeze(1)
        projected = _masked_matmul(inputs, self.kernel, input_masks)
        bias = self._input_bias()
        if bias is not None:
            projected = projected + bias
        recurrent_count = self.gates if self._per_gate_dropout else 1
        recurrent_masks = self._dropout_masks(
            training, self.recurrent_dropout, recurrent_count, (batch, self.units), inputs
        )
        return projected, recurrent_masks

    def call(self, inputs, states, training=False):
        """One time step: `(output, new_states)`, states given as a list (or a single tensor)."""
        single = not isinstance(states, (list, tuple))
        state_list = [states] if single else list(states)
        projected, recurrent_masks = self._prepare(inputs, training)
        output, new_states = self._step(projected, state_list, recurrent_masks)
        return output, (new_states[0] if single else new_states)

    def _fused(self, sequences, states, training):
        """Run a whole (batch, time, features) sequence in a torch RNN kernel, or None if not possible."""
        return None

    def _fused_inputs(self, sequences, training):
        """Sequences with the input dropout mask applied (the same mask at every time step)."""
        masks = self._dropout_masks(training, self.dropout, 1, (sequences.shape[0], sequences.shape[2]), sequences)
        return sequences if masks is None else sequences * masks[0].unsqueeze(1)

    def _fusable(self, training):
        return type(self) in _FUSABLE_CELLS and not (training and 0.0 < self.recurrent_dropout < 1.0)

    # ------------------------------------------------------------ config
    def _config_values(self):
        return {
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "recurrent_activation": activations.serialize(self.recurrent_activation),
            "use_bias": self.use_bias,
            **weight_settings(self, ("kernel", "recurrent", "bias")),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }

    def get_config(self):
        config = super().get_config()
        values = self._config_values()
        config.update({key: values[key] for key in self._CONFIG_KEYS})
        return config


_COMMON_KEYS_HEAD = ("units", "activation")
_INITIALIZER_KEYS = ("kernel_initializer", "recurrent_initializer", "bias_initializer")
_REGULARIZER_KEYS = ("kernel_regularizer", "recurrent_regularizer", "bias_regularizer")
_CONSTRAINT_KEYS = ("kernel_constraint", "recurrent_constraint", "bias_constraint")
_DROPOUT_KEYS = ("dropout", "recurrent_dropout")


@keras_export("keras.layers")
class SimpleRNNCell(_RecurrentCell):
    """One step of a fully connected RNN: `h = activation(x @ kernel + h @ recurrent_kernel + bias)`."""

    _CONFIG_KEYS = (
        _COMMON_KEYS_HEAD
        + ("use_bias",)
        + _INITIALIZER_KEYS
        + _REGULARIZER_KEYS
        + _CONSTRAINT_KEYS
        + _DROPOUT_KEYS
        + ("seed",)
    )

    def __init__(self, units, activation="tanh", **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        self.state_size = self.units

    def _step(self, projected, states, recurrent_masks):
        output = self.activation(projected + _masked_matmul(states[0], self.recurrent_kernel, recurrent_masks))
        return output, [output]

    def _fused(self, sequences, states, training):
        if not self._fusable(training) or self.activation not in (activations.tanh, activations.relu):
            return None
        kernel_fn = torch.rnn_tanh if self.activation is activations.tanh else torch.rnn_relu
        params = [self.kernel.T, self.recurrent_kernel.T]
        if self.use_bias:
            params += [self.bias, torch.zeros_like(self.bias)]
        outputs, h = kernel_fn(
            self._fused_inputs(sequences, training),
            states[0].unsqueeze(0),
            params,
            self.use_bias,
            1,
            0.0,
            torch.is_grad_enabled(),
            False,
            True,
        )
        return outputs, [h[0]]


def _unit_forget_bias(cell):
    """LSTM bias initializer: the forget-gate block starts at one, the others use `bias_initializer`."""

    def initialize(shape, dtype=None):
        units = cell.units
        return torch.cat(
            [
                cell.bias_initializer((units,), dtype=dtype),
                initializers.get("ones")((units,), dtype=dtype),
                cell.bias_initializer((2 * units,), dtype=dtype),
            ]
        )

    return initialize


@keras_export("keras.layers")
class LSTMCell(_RecurrentCell):
    """One LSTM step; kernel gate blocks in Keras order i, f, c, o and a single bias."""

    gates = 4
    _per_gate_dropout = True
    _CONFIG_KEYS = (
        _COMMON_KEYS_HEAD
        + ("recurrent_activation", "use_bias", "unit_forget_bias")
        + _INITIALIZER_KEYS
        + _REGULARIZER_KEYS
        + _CONSTRAINT_KEYS
        + _DROPOUT_KEYS
        + ("seed",)
    )

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        unit_forget_bias=True,
        implementation=2,
        **kwargs,
    ):
        # `implementation` is Keras's kernel-layout switch; accepted for its configs, same results.
        super().__init__(units, activation=activation, recurrent_activation=recurrent_activation, **kwargs)
        self.unit_forget_bias = unit_forget_bias
        self.state_size = [self.units, self.units]

    def _bias_initializer(self):
        return _unit_forget_bias(self) if self.unit_forget_bias else self.bias_initializer

    def _step(self, projected, states, recurrent_masks):
        h, c = states
        z = projected + _masked_matmul(h, self.recurrent_kernel, recurrent_masks)
        i, f, g, o = z.chunk(4, dim=-1)
        gate = self.recurrent_activation
        c = gate(f) * c + gate(i) * self.activation(g)
        h = gate(o) * self.activation(c)
        return h, [h, c]

    def _fused(self, sequences, states, training):
        # Not on the CPU: torch's CPU LSTM goes through oneDNN, whose spinning worker threads slow
        # it down a hundredfold when the cores are shared; the step loop there is steady.
        if not (
            sequences.device.type != "cpu"
            and self._fusable(training)
            and self.activation is activations.tanh
            and self.recurrent_activation is activations.sigmoid
        ):
            return None
        params = [self.kernel.T, self.recurrent_kernel.T]
        if self.use_bias:
            params += [self.bias, torch.zeros_like(self.bias)]
        outputs, h, c = torch.lstm(
            self._fused_inputs(sequences, training),
            (states[0].unsqueeze(0), states[1].unsqueeze(0)),
            params,
            self.use_bias,
            1,
            0.0,
            torch.is_grad_enabled(),
            False,
            True,
        )
        return outputs, [h[0], c[0]]

    def _config_values(self):
        return {**super()._config_values(), "unit_forget_bias": self.unit_forget_bias}


def _torch_gate_order(tensor):
    """Keras GRU blocks z, r, h -> torch's r, z, n along the last axis."""
    z, r, h = tensor.chunk(3, dim=-1)
    return torch.cat([r, z, h], dim=-1)


@keras_export("keras.layers")
class GRUCell(_RecurrentCell):
    """One GRU step; gate blocks z, r, h. `reset_after=True` (the default) applies the reset gate
    after the recurrent matmul and keeps separate input and recurrent biases (bias shape `(2, 3u)`)."""

    gates = 3
    _per_gate_dropout = True
    _CONFIG_KEYS = (
        _COMMON_KEYS_HEAD
        + ("recurrent_activation", "use_bias")
        + _INITIALIZER_KEYS
        + _REGULARIZER_KEYS
        + _CONSTRAINT_KEYS
        + _DROPOUT_KEYS
        + ("reset_after", "seed")
    )

    def __init__(
        self, units, activation="tanh", recurrent_activation="sigmoid", reset_after=True, implementation=2, **kwargs
    ):
        # `implementation` is Keras's kernel-layout switch; accepted for its configs, same results.
        super().__init__(units, activation=activation, recurrent_activation=recurrent_activation, **kwargs)
        self.reset_after = reset_after
        self.state_size = self.units

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _input_bias(self):
        if self.bias is None or not self.reset_after:
            return self.bias
        return self.bias[0]

    def _step(self, projected, states, recurrent_masks):
        h = states[0]
        units = self.units
        x_z, x_r, x_h = projected.chunk(3, dim=-1)
        gate = self.recurrent_activation
        if self.reset_after:
            inner = _masked_matmul(h, self.recurrent_kernel, recurrent_masks)
            if self.bias is not None:
                inner = inner + self.bias[1]
            h_z, h_r, h_h = inner.chunk(3, dim=-1)
            z = gate(x_z + h_z)
            r = gate(x_r + h_r)
            candidate = self.activation(x_h + r * h_h)
        else:
            gate_masks = None if recurrent_masks is None else recurrent_masks[:2]
            h_z, h_r = _masked_matmul(h, self.recurrent_kernel[:, : 2 * units], gate_masks).chunk(2, dim=-1)
            z = gate(x_z + h_z)
            r = gate(x_r + h_r)
            reset_h = r * h if recurrent_masks is None else r * (h * recurrent_masks[2])
            candidate = self.activation(x_h + reset_h @ self.recurrent_kernel[:, 2 * units :])
        h = z * h + (1 - z) * candidate
        return h, [h]

    def _fused(self, sequences, states, training):
        if not (
            self._fusable(training)
            and self.reset_after
            and self.activation is activations.tanh
            and self.recurrent_activation is activations.sigmoid
        ):
            return None
        params = [_torch_gate_order(self.kernel).T, _torch_gate_order(self.recurrent_kernel).T]
        if self.use_bias:
            params += [_torch_gate_order(self.bias[0]), _torch_gate_order(self.bias[1])]
        outputs, h = torch.gru(
            self._fused_inputs(sequences, training),
            states[0].unsqueeze(0),
            params,
            self.use_bias,
            1,
            0.0,
            torch.is_grad_enabled(),
            False,
            True,
        )
        return outputs, [h[0]]

    def _config_values(self):
        return {**super()._config_values(), "reset_after": self.reset_after}


_FUSABLE_CELLS = (SimpleRNNCell, LSTMCell, GRUCell)


@keras_export("keras.layers")
class RNN(Layer):
    """Runs a cell over the time axis of `(batch, time, features)` inputs.

    A masked time step keeps the previous states and repeats the previous output (zeros with
    `zero_output_for_mask=True`). With `go_backwards=True` the returned sequence is in processing
    (reversed) order, as in Keras.
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
            raise NotImplementedError("keramic's RNN takes a single cell; stacked cells are not supported yet.")
        if not hasattr(cell, "state_size"):
            raise ValueError(f"The RNN cell should have a `state_size` attribute. Received: cell={cell}")
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
    def build(self, input_shape):
        if not self.cell.built:
            self.cell.build_from_config({"input_shape": (input_shape[0],) + tuple(input_shape[2:])})
        if self.stateful:
            if input_shape[0] is None:
                raise ValueError(
                    "When using `stateful=True` in a RNN, the batch size must be static. "
                    f"Found dynamic batch size: sequence.shape={tuple(input_shape)}"
                )
            self.__dict__["_expected_batch_size"] = input_shape[0]

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch = sequences_shape[0]
        output_size = getattr(self.cell, "output_size", None) or self.state_size[0]
        if self.return_sequences:
            output_shape = (batch, sequences_shape[1], output_size)
        else:
            output_shape = (batch, output_size)
        if self.return_state:
            return (output_shape, *[(batch, size) for size in self.state_size])
        return output_shape

    def compute_mask(self, inputs, mask):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * len(self.state_size)
        return output_mask

    # ------------------------------------------------------------ states
    def get_initial_state(self, batch_size):
        initial = getattr(self.cell, "get_initial_state", None)
        if initial is not None:
            states = initial(batch_size=batch_size)
            return list(states) if isinstance(states, (list, tuple)) else [states]
        dtype = backend.torch_dtype(self.cell.compute_dtype)
        return [torch.zeros((batch_size, size), dtype=dtype, device=backend.get_device()) for size in self.state_size]

    def reset_state(self):
        """Zero the carried states of a stateful layer."""
        if self.states is not None:
            self.__dict__["states"] = [torch.zeros_like(s) for s in self.states]

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
            states = initial_state if isinstance(initial_state, (list, tuple)) else [initial_state]
            states = [backend.convert_to_tensor(s, self.cell.compute_dtype) for s in states]
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if mask is not None:
            mask = backend.convert_to_tensor(mask).to(torch.bool)
            if mask.dim() == 3:
                mask = mask[..., 0]
            if bool(mask.all()):
                mask = None  # nothing masked: the fused kernels give the same result
        if self.go_backwards:
            sequences = sequences.flip(1)
            mask = None if mask is None else mask.flip(1)
        outputs, last_output, states = self._run(sequences, states, mask, training)
        if self.stateful:
            self.__dict__["states"] = [s.detach() for s in states]
        output = outputs if self.return_sequences else last_output
        if self.return_state:
            return (output, *states)
        return output

    def _run(self, sequences, states, mask, training):
        """`(outputs or None, last_output, final_states)`; outputs are (batch, time, units)."""
        cell = self.cell
        builtin = isinstance(cell, _RecurrentCell)
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

        else:
            kwargs = {"training": training} if _call_signature_flags(type(cell))[0] else {}

            def step(inputs, current):
                output, new_states = cell(inputs, current, **kwargs)
                return output, list(new_states) if isinstance(new_states, (list, tuple)) else [new_states]

        step_masks = None if mask is None else mask.transpose(0, 1).unsqueeze(-1)
        outputs = []
        output = previous = None
        for t in range(steps.shape[0]):
            output, new_states = step(steps[t], states)
            if step_masks is not None:
                keep = step_masks[t]
                states = [torch.where(keep, new, old) for new, old in zip(new_states, states)]
                if previous is None or self.zero_output_for_mask:
                    previous = torch.zeros_like(output)
                output = previous = torch.where(keep, output, previous)
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

    _CELL_CLASS = None
    _CELL_NAME = None
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
