"""The built-in recurrent cells: SimpleRNNCell, LSTMCell, GRUCell and what they share.

Weights as in Keras (kernel, recurrent_kernel, bias; LSTM gate blocks i, f, c, o; GRU gate blocks
z, r, h). The input projection is one matmul over every time step; only the recurrence loops.
"""

import torch

from keramic import activations, backend, constraints, initializers, regularizers
from keramic import random as keramic_random
from keramic.layers.base import Layer, weight_settings
from keramic.serialization.registry import keras_export


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
    _CONFIG_KEYS: tuple[str, ...] = ()
    _seed_generator_first = False  # Keras's SimpleRNNCell makes it before its initializers (Python `random` order)

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
        if self._seed_generator_first:
            self.seed_generator = keramic_random.SeedGenerator(seed)
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
        if not self._seed_generator_first:  # Keras's: one of `variables`, drawn from `random` when unseeded
            self.seed_generator = keramic_random.SeedGenerator(seed)
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
        held = self.__dict__.get("_held_masks")
        key = (rate, count, tuple(shape))
        if held is not None and key in held:
            return held[key]
        # Keras's draws: `count` dropouts of ones from the cell's seed generator, one after another.
        ones = torch.ones(tuple(shape), dtype=like.dtype, device=like.device)
        masks = torch.stack([keramic_random.dropout(ones, rate, seed=self.seed_generator) for _ in range(count)])
        if held is not None:
            held[key] = masks
        return masks

    def spend_inference_draws(self, batch, features, like):
        """Keras's RNN layer draws a sequence's dropout masks even in inference, then drops them:
        the same draws keep the random numbers that follow (the next training batch) equal."""
        per_gate = self._per_gate_dropout and 0.0 < self.recurrent_dropout < 1.0
        self._dropout_masks(True, self.dropout, self.gates if per_gate else 1, (batch, features), like)
        recurrent_count = self.gates if self._per_gate_dropout else 1
        self._dropout_masks(True, self.recurrent_dropout, recurrent_count, (batch, self.units), like)

    def hold_dropout_masks(self, hold):
        """While held, each step called on its own reuses the masks drawn at the first step (Keras's per-sequence masks)."""
        self.__dict__["_held_masks"] = {} if hold else None

    def _prepare(self, inputs, training, add_bias=True):
        """Project `inputs` (`(..., batch, features)`) through the kernel (and add the input bias);
        draw the recurrent masks."""
        batch, features = inputs.shape[-2], inputs.shape[-1]
        per_gate = self._per_gate_dropout and 0.0 < self.recurrent_dropout < 1.0
        input_count = self.gates if per_gate else 1
        input_masks = self._dropout_masks(training, self.dropout, input_count, (batch, features), inputs)
        if input_masks is not None and inputs.dim() == 3:
            input_masks = input_masks.unsqueeze(1)
        projected = _masked_matmul(inputs, self.kernel, input_masks)
        bias = self._input_bias() if add_bias else None
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
        output, new_states = self._call_step(inputs, state_list, training)
        return output, (new_states[0] if single else new_states)

    def _call_step(self, inputs, states, training):
        """One step called on its own (the RNN layer's fast paths use `_prepare` and `_step`)."""
        projected, recurrent_masks = self._prepare(inputs, training)
        return self._step(projected, states, recurrent_masks)

    def _gate_inputs(self, inputs, h, training):
        """Keras's `implementation=1` (its choice under recurrent dropout): per gate block, the
        input and the state each times that block's dropout mask (the same tensor without one)."""
        input_masks = self._dropout_masks(training, self.dropout, self.gates, (inputs.shape[0], inputs.shape[1]), inputs)
        recurrent_masks = self._dropout_masks(training, self.recurrent_dropout, self.gates, (h.shape[0], self.units), inputs)
        xs = [inputs if input_masks is None else inputs * input_masks[g] for g in range(self.gates)]
        hs = [h if recurrent_masks is None else h * recurrent_masks[g] for g in range(self.gates)]
        return xs, hs

    def _fused(self, sequences, states, training):
        """Run a whole (batch, time, features) sequence in a torch RNN kernel, or None if not possible."""
        return None

    def _fused_inputs(self, sequences, training):
        """Sequences with the input dropout mask applied (the same mask at every time step). torch's
        RNN kernels do not check the feature size against the kernel (LSTM's reads past it), so it is
        checked here, with the error Keras's input projection gives."""
        if sequences.shape[-1] != self.kernel.shape[0]:
            raise RuntimeError(
                f"mat1 and mat2 shapes cannot be multiplied ({sequences.shape[0] * sequences.shape[1]}x{sequences.shape[-1]} "
                f"and {self.kernel.shape[0]}x{self.kernel.shape[1]})"
            )
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

    _seed_generator_first = True

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

    def _call_step(self, inputs, states, training):
        """One step in Keras's cell order, for its roundings: gate by gate under recurrent dropout
        (Keras's `implementation=1`), else one matmul each for input and state with the bias
        added after the recurrent product."""
        if self.recurrent_dropout:
            return self._gate_by_gate_step(inputs, states, training)
        projected, recurrent_masks = self._prepare(inputs, training, add_bias=False)
        return self._step(projected, states, recurrent_masks, late_bias=self.bias)

    def _gate_by_gate_step(self, inputs, states, training):
        h, c = states
        u, kernel, recurrent = self.units, self.kernel, self.recurrent_kernel
        xs, hs = self._gate_inputs(inputs, h, training)
        x_i, x_f, x_c, x_o = [x @ k for x, k in zip(xs, kernel.split(u, dim=1))]
        if self.bias is not None:
            b_i, b_f, b_c, b_o = self.bias.split(u)
            x_i, x_f, x_c, x_o = x_i + b_i, x_f + b_f, x_c + b_c, x_o + b_o
        gate = self.recurrent_activation
        i = gate(x_i + hs[0] @ recurrent[:, :u])
        f = gate(x_f + hs[1] @ recurrent[:, u : 2 * u])
        c = f * c + i * self.activation(x_c + hs[2] @ recurrent[:, 2 * u : 3 * u])
        o = gate(x_o + hs[3] @ recurrent[:, 3 * u :])
        h = o * self.activation(c)
        return h, [h, c]

    def _step(self, projected, states, recurrent_masks, late_bias=None):
        h, c = states
        z = projected + _masked_matmul(h, self.recurrent_kernel, recurrent_masks)
        if late_bias is not None:
            z = z + late_bias
        i, f, g, o = z.chunk(4, dim=-1)
        gate = self.recurrent_activation
        c = gate(f) * c + gate(i) * self.activation(g)
        h = gate(o) * self.activation(c)
        return h, [h, c]

    def _fused(self, sequences, states, training):
        if not (
            self._fusable(training)
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

    def _call_step(self, inputs, states, training):
        if self.recurrent_dropout:  # Keras's `implementation=1`, gate by gate, for its roundings
            return self._gate_by_gate_step(inputs, states, training)
        return super()._call_step(inputs, states, training)

    def _gate_by_gate_step(self, inputs, states, training):
        h_tm1 = states[0]
        u, kernel, recurrent = self.units, self.kernel, self.recurrent_kernel
        input_bias = self.bias if not self.reset_after or self.bias is None else self.bias[0]
        xs, hs = self._gate_inputs(inputs, h_tm1, training)
        x_z, x_r, x_h = xs[0] @ kernel[:, :u], xs[1] @ kernel[:, u : 2 * u], xs[2] @ kernel[:, 2 * u :]
        if input_bias is not None:
            x_z, x_r, x_h = x_z + input_bias[:u], x_r + input_bias[u : 2 * u], x_h + input_bias[2 * u :]
        h_z, h_r = hs[0] @ recurrent[:, :u], hs[1] @ recurrent[:, u : 2 * u]
        recurrent_bias = self.bias[1] if self.reset_after and self.bias is not None else None
        if recurrent_bias is not None:
            h_z, h_r = h_z + recurrent_bias[:u], h_r + recurrent_bias[u : 2 * u]
        gate = self.recurrent_activation
        z = gate(x_z + h_z)
        r = gate(x_r + h_r)
        if self.reset_after:
            h_h = hs[2] @ recurrent[:, 2 * u :]
            if recurrent_bias is not None:
                h_h = h_h + recurrent_bias[2 * u :]
            h_h = r * h_h
        else:
            h_h = (r * hs[2]) @ recurrent[:, 2 * u :]
        h = z * h_tm1 + (1 - z) * self.activation(x_h + h_h)
        return h, [h]

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
