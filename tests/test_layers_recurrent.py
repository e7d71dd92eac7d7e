"""Recurrent layers (RNNs, cells, stacked and custom cells, ConvLSTM, wrappers) against Keras: numbers, masks, weights,
configs and files; dropout, state and paths."""

import json

import numpy as np
import pytest
import torch

import keramic
from keramic.layers.core import Dense
from keramic.layers.embedding import Embedding
from keramic.layers.recurrent import (
    GRU,
    LSTM,
    RNN,
    Bidirectional,
    GRUCell,
    LSTMCell,
    SimpleRNN,
    SimpleRNNCell,
    TimeDistributed,
)
from keramic.saving import deserialize_keras_object, serialize_keras_object
from keramic.utils.naming import reset_names
from layer_parity import assert_call_parity, assert_layer_parity


@pytest.fixture(autouse=True)
def _fresh_layer_names():
    """Auto names restart per test, as Keras's do after the `keras` fixture's clear_session."""
    reset_names()


RTOL = 1e-4
ATOL = 1e-6
# Mixed padding: right-padded, mostly padded, left-padded.
IDS = np.array([[3, 4, 5, 0, 0, 0], [1, 2, 0, 0, 0, 0], [0, 0, 7, 8, 9, 1]], dtype="int32")


def _inputs(shape=(3, 6, 5), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _np(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)


def _as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _assert_close(theirs, ours):
    theirs, ours = _as_list(theirs), _as_list(ours)
    assert len(theirs) == len(ours)
    for a, b in zip(theirs, ours):
        np.testing.assert_allclose(_np(b), _np(a), rtol=RTOL, atol=ATOL)


def _run_pair(keras_layer, our_layer, *args, **kwargs):
    """Build both, copy Keras's weights into ours, return both outputs."""
    keras_layer(*args, **kwargs)
    our_layer(*args, **kwargs)
    our_layer.set_weights(keras_layer.get_weights())
    return keras_layer(*args, **kwargs), our_layer(*args, **kwargs)


def _envelope(serialize, layer):
    return json.loads(json.dumps(serialize(layer)))


def _keras_builtin(keras, name):
    if name == "GRU_v1":
        return lambda *a, **k: keras.layers.GRU(*a, reset_after=False, **k)
    return getattr(keras.layers, name)


_OURS = {
    "SimpleRNN": SimpleRNN,
    "LSTM": LSTM,
    "GRU": GRU,
    "GRU_v1": lambda *a, **k: GRU(*a, reset_after=False, **k),
}
_OPTIONS = [
    {},
    {"return_sequences": True},
    {"return_state": True},
    {"return_sequences": True, "go_backwards": True},
]


@pytest.mark.interop
@pytest.mark.parametrize("options", _OPTIONS, ids=lambda o: "-".join(o) or "default")
def test_outputs_match_keras(keras, options):
    x = _inputs()
    for kind, ours in _OURS.items():
        theirs, mine = _run_pair(_keras_builtin(keras, kind)(4, **options), ours(4, **options), x)
        _assert_close(theirs, mine)


@pytest.mark.interop
@pytest.mark.parametrize(
    "options",
    [{}, {"return_sequences": True}, {"return_sequences": True, "go_backwards": True},
     {"return_sequences": True, "return_state": True, "zero_output_for_mask": True}],
    ids=lambda o: "-".join(o) or "default",
)
def test_embedding_mask_zero_masking_matches_keras(keras, options):
    """Masked steps carry the state over and repeat (or zero) the output, as Keras does."""
    keras_embedding, our_embedding = _embedding_pair(keras)
    for kind, make in _OURS.items():
        keras_rnn, our_rnn = _keras_builtin(keras, kind)(4, **options), make(4, **options)
        keras_rnn(keras_embedding(IDS))
        our_rnn(our_embedding(IDS))
        our_rnn.set_weights(keras_rnn.get_weights())
        theirs, ours = keras_rnn(keras_embedding(IDS)), our_rnn(our_embedding(IDS))
        _assert_close(theirs, ours)
        first = _as_list(ours)[0]
        if options.get("return_sequences"):
            np.testing.assert_array_equal(_np(first._keras_mask), IDS != 0)
        else:
            assert getattr(first, "_keras_mask", None) is None


def _embedding_pair(keras):
    keras_embedding, our_embedding = keras.layers.Embedding(10, 5, mask_zero=True), Embedding(10, 5, mask_zero=True)
    keras_embedding.build()
    our_embedding.build()
    our_embedding.set_weights(keras_embedding.get_weights())
    return keras_embedding, our_embedding


@pytest.mark.interop
def test_initial_state_matches_keras(keras):
    x = _inputs()
    h0, c0 = _inputs((3, 4), seed=1), _inputs((3, 4), seed=2)
    theirs, ours = _run_pair(
        keras.layers.LSTM(4, return_state=True), LSTM(4, return_state=True), x, initial_state=[h0, c0]
    )
    _assert_close(theirs, ours)
    theirs, ours = _run_pair(keras.layers.GRU(4, return_sequences=True), GRU(4, return_sequences=True), x, initial_state=h0)
    _assert_close(theirs, ours)


@pytest.mark.interop
def test_bidirectional_merge_modes_match_keras(keras):
    x = _inputs()
    for merge_mode in ("concat", "sum", "mul", "ave", None):
        theirs, ours = _run_pair(
            keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), merge_mode=merge_mode),
            Bidirectional(LSTM(4, return_sequences=True), merge_mode=merge_mode),
            x,
        )
        _assert_close(theirs, ours)


@pytest.mark.interop
def test_bidirectional_with_mask_and_states_matches_keras(keras):
    keras_embedding, our_embedding = _embedding_pair(keras)
    for merge_mode in ("concat", None):
        for return_sequences in (True, False):
            options = {"return_sequences": return_sequences, "return_state": True}
            keras_layer = keras.layers.Bidirectional(keras.layers.GRU(3, **options), merge_mode=merge_mode)
            our_layer = Bidirectional(GRU(3, **options), merge_mode=merge_mode)
            keras_layer(keras_embedding(IDS))
            our_layer(our_embedding(IDS))
            our_layer.set_weights(keras_layer.get_weights())
            _assert_close(keras_layer(keras_embedding(IDS)), our_layer(our_embedding(IDS)))


@pytest.mark.interop
def test_time_distributed_matches_keras(keras):
    x = _inputs()
    theirs, ours = _run_pair(keras.layers.TimeDistributed(keras.layers.Dense(2)), TimeDistributed(Dense(2)), x)
    np.testing.assert_allclose(_np(ours), _np(theirs), atol=1e-5)


@pytest.mark.interop
def test_generic_rnn_with_builtin_cell_matches_keras(keras):
    x = _inputs()
    theirs, ours = _run_pair(
        keras.layers.RNN(keras.layers.GRUCell(3), return_sequences=True), RNN(GRUCell(3), return_sequences=True), x
    )
    _assert_close(theirs, ours)


def _named_pairs(keras):
    """(Keras layer, our layer) pairs with identical explicit names, so configs compare exactly."""
    return [
        (keras.layers.SimpleRNN(4, name="rnn_a"), SimpleRNN(4, name="rnn_a")),
        (keras.layers.LSTM(4, return_sequences=True, name="rnn_b"), LSTM(4, return_sequences=True, name="rnn_b")),
        (keras.layers.GRU(4, name="rnn_c"), GRU(4, name="rnn_c")),
        (keras.layers.GRU(4, reset_after=False, go_backwards=True, name="rnn_d"),
         GRU(4, reset_after=False, go_backwards=True, name="rnn_d")),
        (keras.layers.LSTM(3, dropout=0.1, recurrent_dropout=0.2, unit_forget_bias=False, seed=3,
                           kernel_regularizer="l2", recurrent_constraint="non_neg", activity_regularizer="l1",
                           name="rnn_e"),
         LSTM(3, dropout=0.1, recurrent_dropout=0.2, unit_forget_bias=False, seed=3,
              kernel_regularizer="l2", recurrent_constraint="non_neg", activity_regularizer="l1", name="rnn_e")),
        (keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True, name="inner"), name="bi"),
         Bidirectional(LSTM(4, return_sequences=True, name="inner"), name="bi")),
        (keras.layers.Bidirectional(keras.layers.GRU(2, name="inner2"), merge_mode="sum",
                                    backward_layer=keras.layers.GRU(2, go_backwards=True, name="back"), name="bi2"),
         Bidirectional(GRU(2, name="inner2"), merge_mode="sum", backward_layer=GRU(2, go_backwards=True, name="back"),
                       name="bi2")),
        (keras.layers.TimeDistributed(keras.layers.Dense(2, name="d"), name="td"),
         TimeDistributed(Dense(2, name="d"), name="td")),
        (keras.layers.RNN(keras.layers.LSTMCell(4, name="c"), name="generic"), RNN(LSTMCell(4, name="c"), name="generic")),
    ]


@pytest.mark.interop
def test_weights_and_configs_match_keras(keras):
    x = _inputs()
    for keras_layer, our_layer in _named_pairs(keras):
        keras_layer(x)
        our_layer(x)
        label = type(our_layer).__name__
        assert [(w.path, tuple(w.shape)) for w in our_layer.weights] == [
            (w.path, tuple(w.shape)) for w in keras_layer.weights
        ], label
        theirs = _envelope(keras.saving.serialize_keras_object, keras_layer)
        ours = _envelope(serialize_keras_object, our_layer)
        assert list(ours["config"]) == list(theirs["config"]), label
        assert ours["config"] == theirs["config"], label
        assert ours.get("build_config") == theirs.get("build_config"), label


@pytest.mark.interop
def test_keras_configs_load_and_reproduce_keras_numbers(keras):
    x = _inputs()
    for keras_layer, _ in _named_pairs(keras):
        theirs = keras_layer(x)
        envelope = _envelope(keras.saving.serialize_keras_object, keras_layer)
        ours = deserialize_keras_object(envelope)
        assert ours.built
        ours.set_weights(keras_layer.get_weights())
        _assert_close(theirs, ours(x))
        assert _envelope(serialize_keras_object, ours)["config"] == envelope["config"]


def test_fused_kernels_equal_the_step_loop():
    """torch's fused RNN kernels (use_cudnn='auto') give the Python loop's numbers."""
    x = torch.tensor(_inputs())
    for make in (
        lambda **k: LSTM(4, return_sequences=True, return_state=True, **k),
        lambda **k: GRU(4, return_sequences=True, return_state=True, **k),
        lambda **k: LSTM(4, use_bias=False, go_backwards=True, return_sequences=True, **k),
    ):
        fused, looped = make(), make(use_cudnn=False)
        fused(x)
        looped(x)
        looped.set_weights(fused.get_weights())
        _assert_close(fused(x), looped(x))
    fused, looped = SimpleRNN(4, return_sequences=True), RNN(SimpleRNNCell(4), return_sequences=True)
    fused(x)
    looped(x, mask=torch.ones(3, 6, dtype=torch.bool))
    looped.set_weights(fused.get_weights())
    _assert_close(fused(x), looped(x))


def _count_fused_calls(monkeypatch):
    """Count calls of torch's fused LSTM / GRU kernels, to tell which path a layer took."""
    calls = []
    for name in ("lstm", "gru"):
        kernel = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, _kernel=kernel, _name=name: calls.append(_name) or _kernel(*a))
    return calls


@pytest.mark.interop
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize(
    "options",
    [{"return_sequences": True, "return_state": True},
     {"return_sequences": True, "return_state": True, "go_backwards": True},
     {"return_state": True, "use_bias": False}],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_fused_path_matches_keras_outputs_and_gradients(keras, monkeypatch, kind, options):
    """The fused kernel runs on Keras-layout weights: same outputs, states and weight gradients as Keras."""
    calls = _count_fused_calls(monkeypatch)
    x = _inputs()
    theirs_layer, ours_layer = getattr(keras.layers, kind)(4, **options), _OURS[kind](4, **options)
    theirs, mine = _run_pair(theirs_layer, ours_layer, x)
    _assert_close(theirs, mine)
    assert calls and set(calls) == {kind.lower()}
    for layer in (theirs_layer, ours_layer):
        sum(out.sum() for out in _as_list(layer(x))).backward()
    keras_grads = [_np(w.value.grad) for w in theirs_layer.trainable_weights]
    our_grads = [_np(w.value.grad) for w in ours_layer.trainable_weights]
    assert len(keras_grads) == len(our_grads)
    for a, b in zip(keras_grads, our_grads):
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=1e-5)


@pytest.mark.interop
def test_fused_stateful_lstm_matches_keras(keras, monkeypatch):
    """States carried from one call to the next through the fused kernel, as Keras carries them."""
    calls = _count_fused_calls(monkeypatch)
    x = _inputs()
    theirs, mine = keras.layers.LSTM(4, stateful=True), LSTM(4, stateful=True)
    _run_pair(theirs, mine, x)
    theirs.reset_state()
    mine.reset_state()
    for _ in range(2):
        _assert_close(theirs(x), mine(x))
    assert calls


@pytest.mark.interop
def test_configurations_the_kernel_cannot_run_fall_back_to_the_loop(keras, monkeypatch):
    """A mask with padding, a non-default activation or use_cudnn=False keep the step loop, with Keras's numbers."""
    calls = _count_fused_calls(monkeypatch)
    x = _inputs()
    mask = np.ones((3, 6), dtype=bool)
    mask[0, 4:] = False
    theirs, mine = _run_pair(keras.layers.LSTM(4, return_sequences=True), LSTM(4, return_sequences=True), x, mask=mask)
    _assert_close(theirs, mine)
    for kwargs in ({"recurrent_activation": "hard_sigmoid"}, {"use_cudnn": False}):
        theirs, mine = _run_pair(keras.layers.LSTM(4, **kwargs), LSTM(4, **kwargs), x)
        _assert_close(theirs, mine)
    assert calls == []


def test_gradients_flow_through_both_paths():
    x = torch.tensor(_inputs())
    for layer in (LSTM(3), LSTM(3, use_cudnn=False), GRU(3, reset_after=False), SimpleRNN(3)):
        layer(x).sum().backward()
        assert all(w.grad is not None and torch.isfinite(w.grad).all() for w in layer.weights)


def test_dropout_only_while_training():
    x = torch.tensor(_inputs())
    for layer in (
        LSTM(4, dropout=0.5, recurrent_dropout=0.5, seed=1),
        GRU(4, dropout=0.5, seed=1),
        GRU(4, recurrent_dropout=0.5, reset_after=False),
        SimpleRNN(4, dropout=0.5, recurrent_dropout=0.5),
    ):
        inference = layer(x)
        np.testing.assert_array_equal(_np(layer(x, training=False)), _np(inference))
        trained = layer(x, training=True)
        assert trained.shape == inference.shape
        assert not np.allclose(_np(trained), _np(inference))


def test_stateful_layers_carry_states_between_calls():
    x = torch.tensor(_inputs((2, 3, 5)))
    stateful, plain = LSTM(4, stateful=True), LSTM(4, return_state=True)
    first = stateful(x)
    plain(x)
    plain.set_weights(stateful.get_weights())
    _, h, c = plain(x)
    second = stateful(x)
    np.testing.assert_allclose(_np(second), _np(plain(x, initial_state=[h, c])[0]), rtol=RTOL)
    assert not np.allclose(_np(first), _np(second))
    stateful.reset_state()
    np.testing.assert_allclose(_np(stateful(x)), _np(first), rtol=RTOL)
    with pytest.raises(ValueError, match="batch size"):
        stateful(torch.tensor(_inputs((3, 3, 5))))


def test_stateful_needs_a_static_batch_size():
    with pytest.raises(ValueError, match="static"):
        LSTM(2, stateful=True).build((None, 3, 4))


def test_cells_run_one_step_on_their_own():
    x, h, c = torch.tensor(_inputs((2, 5))), torch.zeros(2, 3), torch.zeros(2, 3)
    out, (h1, c1) = LSTMCell(3)(x, [h, c])
    assert out.shape == (2, 3) and h1 is out and c1.shape == (2, 3)
    out, state = GRUCell(3)(x, h)
    assert out.shape == (2, 3) and state is out
    out, [state] = SimpleRNNCell(3)(x, [h])
    assert out.shape == (2, 3)


class CountingCell(keramic.layers.Layer):
    """A custom cell: running sum of its inputs times a weight."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="ones", name="w")

    def call(self, inputs, states):
        total = states[0] + inputs @ self.w
        return total, [total]


def test_generic_rnn_runs_custom_cells_with_masks():
    x = torch.ones(2, 4, 3)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    out = RNN(CountingCell(2), return_sequences=True)(x, mask=mask)
    np.testing.assert_allclose(_np(out)[0, :, 0], [3, 6, 6, 6])
    np.testing.assert_allclose(_np(out)[1, :, 0], [3, 6, 9, 12])
    stacked = RNN([CountingCell(2), CountingCell(2)], return_sequences=True)(x, mask=mask)
    # The second cell sums the first one's running sums (2 features of 3, 6, 9, ...).
    np.testing.assert_allclose(_np(stacked)[1, :, 0], [6, 18, 36, 60])
    np.testing.assert_allclose(_np(stacked)[0, :, 0], [6, 18, 18, 18])


def test_symbolic_shapes_and_functional_model():
    inputs = keramic.Input((6,), dtype="int32")
    embedded = Embedding(10, 5, mask_zero=True)(inputs)
    sequence, h, c = LSTM(4, return_sequences=True, return_state=True)(embedded)
    both = Bidirectional(GRU(3, return_sequences=True))(sequence)
    halves = Bidirectional(GRU(3), merge_mode=None)(sequence)
    projected = TimeDistributed(Dense(2))(both)
    assert sequence.shape == (None, 6, 4) and h.shape == (None, 4) and c.shape == (None, 4)
    assert both.shape == (None, 6, 6) and projected.shape == (None, 6, 2)
    assert [t.shape for t in halves] == [(None, 3), (None, 3)]
    model = keramic.Model(inputs, [projected, h])
    out, state = model(IDS)
    assert out.shape == (3, 6, 2) and state.shape == (3, 4)


def test_configs_round_trip_and_validate():
    for layer in (LSTM(3, unroll=True), GRU(2, reset_after=False), Bidirectional(SimpleRNN(2), merge_mode="ave")):
        config = layer.get_config()
        assert type(layer).from_config(config).get_config() == config
    with pytest.raises(ValueError, match="merge mode"):
        Bidirectional(LSTM(2), merge_mode="max")
    with pytest.raises(ValueError, match="go_backwards"):
        Bidirectional(LSTM(2), backward_layer=LSTM(2))
    with pytest.raises(ValueError, match="Unrecognized"):
        LSTM(2, time_major=False)
    with pytest.raises(ValueError, match="use_cudnn"):
        GRU(2, use_cudnn="sometimes")


# ---------------------------------------------------------------- ConvLSTM, stacked and custom cells

_CONV_LSTM_SHAPES = {1: (2, 3, 5, 2), 2: (2, 3, 4, 4, 2), 3: (2, 2, 3, 3, 3, 2)}


@pytest.mark.slow
def test_conv_lstm2d_parity_with_files_and_training(keras, tmp_path):
    assert_layer_parity(
        keras,
        tmp_path,
        lambda: keras.layers.ConvLSTM2D(3, 2, padding="same", return_sequences=True, name="layer"),
        lambda: keramic.layers.ConvLSTM2D(3, 2, padding="same", return_sequences=True, name="layer"),
        _inputs(_CONV_LSTM_SHAPES[2]),
        rtol=RTOL,
    )


@pytest.mark.parametrize("rank", [1, 3])
def test_conv_lstm_1d_and_3d_match_keras(keras, rank):
    name = f"ConvLSTM{rank}D"
    options = {"padding": "same", "return_sequences": True}
    theirs, ours = getattr(keras.layers, name)(3, 2, **options), getattr(keramic.layers, name)(3, 2, **options)
    assert_call_parity(theirs, ours, _inputs(_CONV_LSTM_SHAPES[rank]), name, rtol=RTOL)


@pytest.mark.parametrize(
    "options",
    [
        {"kernel_size": 3, "return_state": True, "go_backwards": True, "unit_forget_bias": False},
        {"kernel_size": 2, "strides": 2, "data_format": "channels_first", "activation": "relu"},
        {"kernel_size": 3, "dilation_rate": 2, "padding": "same", "use_bias": False},
    ],
)
def test_conv_lstm2d_options_match_keras(keras, options):
    x = _inputs((2, 3, 5, 5, 2), seed=1)
    if options.get("data_format") == "channels_first":
        x = np.ascontiguousarray(np.moveaxis(x, -1, 2))
    assert_call_parity(keras.layers.ConvLSTM2D(2, **options), keramic.layers.ConvLSTM2D(2, **options), x, options, rtol=RTOL)


def test_conv_lstm_masked_steps_hold_states_like_keras(keras):
    x = _inputs((2, 4, 3, 3, 1), seed=2)
    mask = np.array([[True, True, False, False], [True, True, True, True]])
    theirs, ours = keras.layers.ConvLSTM2D(2, 3, padding="same"), keramic.layers.ConvLSTM2D(2, 3, padding="same")
    _assert_close(*_run_pair(theirs, ours, x, mask=mask))


def _stacked(layers):
    return [layers.LSTMCell(3), layers.SimpleRNNCell(2), layers.GRUCell(4)]


def test_stacked_cells_parity_with_files_and_training(keras, tmp_path):
    assert_layer_parity(
        keras,
        tmp_path,
        lambda: keras.layers.RNN(keras.layers.StackedRNNCells(_stacked(keras.layers)), name="layer"),
        lambda: keramic.layers.RNN(keramic.layers.StackedRNNCells(_stacked(keramic.layers)), name="layer"),
        _inputs((2, 5, 3)),
        rtol=RTOL,
    )


def test_stacked_cells_states_masks_and_direction_match_keras(keras):
    x = _inputs((3, 6, 5), seed=3)
    mask = IDS != 0
    for options in ({"return_state": True, "return_sequences": True}, {"go_backwards": True, "return_state": True}):
        theirs = keras.layers.RNN(_stacked(keras.layers), **options)
        ours = keramic.layers.RNN(_stacked(keramic.layers), **options)
        keras_out, our_out = _run_pair(theirs, ours, x, mask=mask)
        flat = lambda v: [leaf for item in v for leaf in flat(item)] if isinstance(v, (list, tuple)) else [v]  # noqa: E731
        _assert_close(flat(keras_out), flat(our_out))
    assert isinstance(ours.cell, keramic.layers.StackedRNNCells)
    assert ours.state_size == [[3, 3], 2, [4]] or ours.state_size == list(theirs.state_size)


def _custom_cell_class(base):
    """The same user cell written against either framework's Layer (weights in the config order)."""

    class MinimalCell(base):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = [units, units]

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
            self.recurrent = self.add_weight(shape=(self.units, self.units), name="recurrent")

        def call(self, inputs, states):
            h = torch.tanh(inputs @ self.kernel + states[0] @ self.recurrent)
            return h, [h, states[1] + h]

    return MinimalCell


def test_custom_cells_with_nested_states_and_masks_match_keras(keras):
    keras_cell, our_cell = _custom_cell_class(keras.layers.Layer), _custom_cell_class(keramic.layers.Layer)
    x = _inputs((3, 6, 4), seed=4)
    mask = IDS != 0
    for options in ({"return_sequences": True, "return_state": True}, {"go_backwards": True}):
        theirs, ours = keras.layers.RNN(keras_cell(3), **options), keramic.layers.RNN(our_cell(3), **options)
        _assert_close(*_run_pair(theirs, ours, x, mask=mask))
    stacked_theirs = keras.layers.RNN([keras_cell(2), keras.layers.LSTMCell(3)], return_state=True)
    stacked_ours = keramic.layers.RNN([our_cell(2), keramic.layers.LSTMCell(3)], return_state=True)
    keras_out, our_out = _run_pair(stacked_theirs, stacked_ours, x, mask=mask)
    assert len(our_out) == len(keras_out) == 3
    _assert_close([keras_out[0], *keras_out[1], *keras_out[2]], [our_out[0], *our_out[1], *our_out[2]])


def test_masking_layer_masks_recurrent_layers_like_keras(keras):
    x = _inputs((3, 6, 4), seed=5)
    x[0, 3:] = 0.0
    x[1, :2] = 0.0

    def model(framework):
        inputs = framework.Input((6, 4))
        masked = framework.layers.Masking()(inputs)
        hidden = framework.layers.LSTM(3, return_sequences=True)(masked)
        return framework.Model(inputs, framework.layers.Bidirectional(framework.layers.GRU(2))(hidden))

    theirs, ours = model(keras), model(keramic)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=RTOL, atol=ATOL)


def test_symbolic_tensors_carry_masks_through_recurrent_layers():
    inputs = keramic.Input((6,), dtype="int32")
    embedded = Embedding(10, 4, mask_zero=True)(inputs)
    sequences = LSTM(3, return_sequences=True)(embedded)
    last = LSTM(3)(sequences)
    assert embedded._keras_mask.shape == (None, 6) and embedded._keras_mask.dtype == "bool"
    assert sequences._keras_mask.shape == (None, 6)
    assert getattr(last, "_keras_mask", None) is None


def test_stacked_cells_draw_dropout_masks_once_per_sequence():
    """As in Keras, a cell's dropout mask is the same at every step of a sequence (and new for the next one)."""
    cell = SimpleRNNCell(6, activation=None, use_bias=False, dropout=0.5, seed=3)
    layer = RNN([cell], return_sequences=True)
    x = torch.ones(4, 5, 6)
    layer(x)
    cell.kernel.assign(np.eye(6, dtype="float32"))
    cell.recurrent_kernel.assign(np.zeros((6, 6), "float32"))
    first, second = layer(x, training=True), layer(x, training=True)
    assert torch.equal(first, first[:, :1].expand_as(first))
    assert set(torch.unique(first).tolist()) == {0.0, 2.0}
    assert not torch.equal(first, second)
