"""ConvLSTM1D/2D/3D: an LSTM whose input and recurrent transformations are convolutions.

Weights as in Keras: the cell (named `conv_lstm_cell`) holds `kernel` `(*kernel_size, in, 4*filters)`,
`recurrent_kernel` `(*kernel_size, filters, 4*filters)` and `bias` `(4*filters,)`, gate blocks
i, f, c, o. Without input dropout the input convolution runs once over every time step.
"""

import torch
import torch.nn.functional as F

from keramic import activations, backend, initializers
from keramic import random as keramic_random
from keramic.layers import symbolic_masks
from keramic.layers.base import Layer, weight_settings
from keramic.layers.conv import (
    add_bias,
    add_configured_weight,
    attribute_config,
    from_channels_first,
    full_shape,
    normalize_data_format,
    normalize_padding,
    normalize_tuple,
    pad_same,
    set_weight_setting,
    to_channels_first,
    torch_kernel,
    window_output_shape,
    window_output_sizes,
)
from keramic.layers.rnn import RNN
from keramic.serialization.registry import keras_export

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


class ConvLSTMCell(Layer):
    """One ConvLSTM step on `(batch, *spatial, channels)` inputs (channels first with that data format)."""

    def __init__(
        self,
        rank,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
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
        super().__init__(**kwargs)
        self.seed_generator = keramic_random.SeedGenerator(seed)  # Keras's: made first, one of `variables`
        if rank not in _CONV:
            raise ValueError(f"Rank {rank} convolutions are not currently implemented. Received: rank={rank}")
        self.rank = rank
        self.filters = filters
        self.kernel_size = normalize_tuple(kernel_size, rank, "kernel_size")
        self.strides = normalize_tuple(strides, rank, "strides", allow_zero=True)
        self.padding = normalize_padding(padding)
        self.data_format = normalize_data_format(data_format)
        self.dilation_rate = normalize_tuple(dilation_rate, rank, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                "Specifying `strides > 1` is not compatible with `dilation_rate > 1`. Please provide "
                f"`strides=1` or `dilation_rate=1`. Received: strides={self.strides} and "
                f"dilation_rate={self.dilation_rate}"
            )
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = use_bias
        set_weight_setting(self, "kernel", kernel_initializer, kernel_regularizer, kernel_constraint)
        set_weight_setting(self, "recurrent", recurrent_initializer, recurrent_regularizer, recurrent_constraint)
        set_weight_setting(self, "bias", bias_initializer, bias_regularizer, bias_constraint)
        self.unit_forget_bias = unit_forget_bias
        self.dropout = min(1.0, max(0.0, dropout))
        self.recurrent_dropout = min(1.0, max(0.0, recurrent_dropout))
        self.seed = seed
        self.state_size = -1  # states are feature maps: see `get_initial_state`
        self.__dict__["_spatial"] = None

    def build(self, input_shape):
        channel_axis = 1 if self.data_format == "channels_first" else -1
        spatial = tuple(input_shape[2:]) if self.data_format == "channels_first" else tuple(input_shape[1:-1])
        if None in spatial:
            raise ValueError(
                "ConvLSTM layers only support static input shapes for the spatial dimension. "
                f"Received invalid input shape: input_shape={tuple(input_shape)}"
            )
        if input_shape[channel_axis] is None:
            raise ValueError(
                "The channel dimension of the inputs (last axis) should be defined. Found None. "
                f"Full input shape received: input_shape={tuple(input_shape)}"
            )
        self.__dict__["_spatial"] = spatial
        self.input_dim = input_shape[channel_axis]
        width = 4 * self.filters
        self.kernel = add_configured_weight(self, "kernel", self.kernel_size + (self.input_dim, width), "kernel")
        self.recurrent_kernel = add_configured_weight(self, "recurrent", self.kernel_size + (self.filters, width), "recurrent_kernel")
        self.bias = add_bias(self, width, self._bias_initializer())

    def _bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        base, filters = self.bias_initializer, self.filters

        def initializer(shape, dtype=None):
            ones = initializers.get("ones")
            return torch.cat([base((filters,), dtype=dtype), ones((filters,), dtype=dtype), base((2 * filters,), dtype=dtype)])

        return initializer

    # ------------------------------------------------------------ shapes and states
    def _state_shape(self, batch_size):
        return full_shape(batch_size, window_output_sizes(self, self._spatial), self.filters, self.data_format)

    def get_initial_state(self, batch_size=None):
        shape = self._state_shape(batch_size)
        dtype = backend.torch_dtype(self.compute_dtype)
        return [torch.zeros(shape, dtype=dtype, device=backend.get_device()) for _ in range(2)]

    # ------------------------------------------------------------ convolutions
    def _conv(self, x, kernel, strides, padding, dilation):
        """Keras-layout kernel `(*k, in, out)` over a channels-last or -first `x`."""
        x = to_channels_first(x, self.data_format)
        pad = 0
        if padding == "same":
            x, pad = pad_same(x, self.kernel_size, strides, dilation)
        out = _CONV[self.rank](x, torch_kernel(kernel, self.rank), stride=strides, padding=pad, dilation=dilation)
        return from_channels_first(out, self.data_format)

    def input_conv(self, x, kernel, bias=None):
        out = self._conv(x, kernel, self.strides, self.padding, self.dilation_rate)
        if bias is not None:
            out = out + (bias if self.data_format == "channels_last" else bias.reshape((-1,) + (1,) * self.rank))
        return out

    def recurrent_conv(self, h, kernel):
        return self._conv(h, kernel, (1,) * self.rank, "same", (1,) * self.rank)

    def _gate_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    # ------------------------------------------------------------ dropout
    def _dropout_masks(self, training, rate, like):
        """Four scaled keep-masks shaped like `like` (one per gate), or None when off."""
        if not training or not 0.0 < rate < 1.0:
            return None
        ones = torch.ones_like(like)  # Keras's draws: four dropouts of ones from the seed generator
        return torch.stack([keramic_random.dropout(ones, rate, seed=self.seed_generator) for _ in range(4)])

    def _project_inputs(self, inputs, input_masks):
        """Input convolution for every gate: `(..., 4*filters)` (on the gate axis)."""
        if input_masks is None:
            return self.input_conv(inputs, self.kernel, self.bias)
        kernels = self.kernel.chunk(4, dim=-1)
        biases = self.bias.chunk(4) if self.bias is not None else (None,) * 4
        parts = [self.input_conv(inputs * m, k, b) for m, k, b in zip(input_masks, kernels, biases)]
        return torch.cat(parts, dim=self._gate_axis())

    def _recurrent(self, projected, h, c, recurrent_masks):
        if recurrent_masks is None:
            z = projected + self.recurrent_conv(h, self.recurrent_kernel)
        else:
            kernels = self.recurrent_kernel.chunk(4, dim=-1)
            z = projected + torch.cat(
                [self.recurrent_conv(h * m, k) for m, k in zip(recurrent_masks, kernels)], dim=self._gate_axis()
            )
        z_i, z_f, z_c, z_o = z.chunk(4, dim=self._gate_axis())
        i = self.recurrent_activation(z_i)
        f = self.recurrent_activation(z_f)
        c = f * c + i * self.activation(z_c)
        o = self.recurrent_activation(z_o)
        h = o * self.activation(c)
        return h, [h, c]

    def call(self, inputs, states, training=False):
        h, c = states[0], states[1]
        projected = self._project_inputs(inputs, self._dropout_masks(training, self.dropout, inputs))
        return self._recurrent(projected, h, c, self._dropout_masks(training, self.recurrent_dropout, h))

    def compute_output_shape(self, inputs_shape, states_shape=None):
        shape = window_output_shape(self, inputs_shape, self.filters)
        return shape, [shape, shape]

    def _config_values(self):
        window = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate")
        return {
            **attribute_config(self, window + ("activation", "recurrent_activation", "use_bias")),
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "unit_forget_bias": self.unit_forget_bias,
            **{k: v for k, v in weight_settings(self, ("kernel", "recurrent", "bias")).items() if "initializer" not in k},
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }

    def get_config(self):
        return {**super().get_config(), **self._config_values()}


def _cell_property(name):
    return property(lambda self: getattr(self.cell, name), doc=f"The cell's `{name}`.")


class _ConvLSTM(RNN):
    """The ConvLSTM layers: the cell is made from the layer's arguments, which the config lists flat."""

    rank: int | None = None

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        **kwargs,
    ):
        cell = ConvLSTMCell(
            rank=self.rank,
            filters=filters,
            kernel_size=kernel_size,
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            seed=seed,
            name="conv_lstm_cell",
            dtype=kwargs.get("dtype"),
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            activity_regularizer=activity_regularizer,
            **kwargs,
        )

    filters = _cell_property("filters")
    kernel_size = _cell_property("kernel_size")
    strides = _cell_property("strides")
    padding = _cell_property("padding")
    data_format = _cell_property("data_format")
    dilation_rate = _cell_property("dilation_rate")
    activation = _cell_property("activation")
    recurrent_activation = _cell_property("recurrent_activation")
    use_bias = _cell_property("use_bias")
    unit_forget_bias = _cell_property("unit_forget_bias")
    dropout = _cell_property("dropout")
    recurrent_dropout = _cell_property("recurrent_dropout")

    def build(self, sequences_shape):
        if len(sequences_shape) != self.rank + 3:
            raise ValueError(
                f"Input {self.name} expects rank {self.rank + 3} inputs (batch, time, ...). "
                f"Received input_shape={tuple(sequences_shape)}"
            )
        super().build(sequences_shape)

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch, steps = sequences_shape[0], sequences_shape[1]
        state = self.cell.compute_output_shape((batch,) + tuple(sequences_shape[2:]))[0]
        output = (batch, steps) + tuple(state[1:]) if self.return_sequences else state
        if self.return_state:
            return output, state, state
        return output

    @symbolic_masks.in_ops
    def compute_mask(self, inputs, mask):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        output_mask = mask if self.return_sequences else None
        return [output_mask, None, None] if self.return_state else output_mask

    def _run(self, sequences, states, mask, training):
        """Input convolutions for all steps at once, then the recurrence step by step; under a
        mixed policy the cell's weights are read in the compute dtype (the cell's own call, which
        would cast them, is not used)."""
        with self.cell._variables_in_compute_dtype():
            return self._run_cast(sequences, states, mask, training)

    def _run_cast(self, sequences, states, mask, training):
        cell = self.cell
        steps = sequences.transpose(0, 1)
        time, batch = steps.shape[0], steps.shape[1]
        input_masks = cell._dropout_masks(training, cell.dropout, steps[0])
        flat = steps.reshape((time * batch,) + tuple(steps.shape[2:]))
        if input_masks is not None:
            input_masks = input_masks.repeat((1, time) + (1,) * (input_masks.dim() - 2))
        projected = cell._project_inputs(flat, input_masks)
        projected = projected.reshape((time, batch) + tuple(projected.shape[1:]))
        recurrent_masks = cell._dropout_masks(training, cell.recurrent_dropout, states[0])

        def step(inputs, current):
            return cell._recurrent(inputs, current[0], current[1], recurrent_masks)

        return self._loop(step, projected, states, mask)

    def get_config(self):
        config = self._rnn_config()
        activity = config.pop("activity_regularizer", None)
        for key, value in self.cell._config_values().items():
            config[key] = value
            if key == "bias_regularizer":
                config["activity_regularizer"] = activity
        return config

    @classmethod
    def from_config(cls, config):
        """The config holds the cell's arguments flat (no `cell` entry), so the base Layer rule applies."""
        return super(RNN, cls).from_config(config)


@keras_export("keras.layers")
class ConvLSTM1D(_ConvLSTM):
    """1D convolutional LSTM over `(batch, time, steps, channels)` inputs."""

    rank = 1


@keras_export("keras.layers")
class ConvLSTM2D(_ConvLSTM):
    """2D convolutional LSTM over `(batch, time, rows, cols, channels)` inputs."""

    rank = 2


@keras_export("keras.layers")
class ConvLSTM3D(_ConvLSTM):
    """3D convolutional LSTM over `(batch, time, dim1, dim2, dim3, channels)` inputs."""

    rank = 3
