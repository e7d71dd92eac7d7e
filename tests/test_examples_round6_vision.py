"""Behaviours a sixth batch of keras-io vision examples leans on (TokenLearner's functional ViT; the
Temporal Latent Bottleneck's custom RNN cell of attention blocks, trained in mixed precision), each
reduced to a minimal model and checked against real Keras (torch backend)."""

import numpy as np
import pytest
import torch

import keramic

pytestmark = pytest.mark.interop

RNG = np.random.default_rng(6)


def _numpy(value):
    return np.asarray(value.detach().cpu().float() if isinstance(value, torch.Tensor) else value)


@pytest.fixture
def mixed(keras):
    """Both libraries under `mixed_float16`, put back afterwards."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    keramic.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")
    keramic.mixed_precision.set_global_policy("float32")


def _cell_class(lib, rate=0.5):
    """A cell of layers made in `__init__` and built in its first step (as the TLB example's)."""

    class Cell(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.state_size = 3
            self.calls = 0
            self.drop = lib.layers.Dropout(rate)
            self.dense = lib.layers.Dense(3)

        def call(self, x, states, training=None):
            self.calls += 1
            h = self.dense(self.drop(x, training=training)) + states[0]
            return h, [h]

    return Cell


def test_a_state_size_that_is_no_int_list_or_tuple_is_refused_when_the_rnn_is_made(keras):
    """The TLB example's `tf.TensorShape` state size: Keras 3 refuses it in `RNN(...)`."""

    def made(lib):
        class Cell(lib.layers.Layer):
            state_size = np.array([4, 8])

            def call(self, x, states):
                return x, states

        with pytest.raises(ValueError, match="state_size must be an integer") as info:
            lib.layers.RNN(Cell())
        return info

    made(keras)
    made(keramic)


def _cell_run(lib, unroll, go_backwards, masked):
    lib.utils.set_random_seed(1)
    cell = _cell_class(lib)()
    rnn = lib.layers.RNN(cell, return_sequences=True, unroll=unroll, go_backwards=go_backwards)
    x = np.arange(40, dtype="float32").reshape(2, 4, 5) / 10
    mask = np.array([[1, 1, 0, 1], [1, 0, 1, 1]], bool) if masked else None
    rnn(x, mask=mask)
    cell.calls = 0
    out = rnn(x, training=True, mask=mask)
    return cell.calls, _numpy(out)


@pytest.mark.parametrize("unroll,go_backwards,masked", [(False, False, False), (False, True, True), (True, False, True)])
def test_a_custom_cell_runs_and_draws_as_keras_loop_does(keras, unroll, go_backwards, masked):
    """Keras's rolled loop calls the cell once more on the first step (a cell that records its
    attention scores sees it; its dropout draws follow it); the unrolled one does not."""
    calls, expected = _cell_run(keras, unroll, go_backwards, masked)
    ours_calls, ours = _cell_run(keramic, unroll, go_backwards, masked)
    assert ours_calls == calls
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def _fit_through_a_lazy_cell(lib, rate):
    lib.utils.set_random_seed(2)
    inputs = lib.Input((4, 5))
    outputs = lib.layers.Dense(1)(lib.layers.RNN(_cell_class(lib, rate)())(inputs))
    model = lib.Model(inputs, outputs)
    model.compile(lib.optimizers.SGD(0.01), "mse")
    history = model.fit(np.ones((8, 4, 5), "float32"), np.ones((8, 1), "float32"), epochs=2, batch_size=4, shuffle=False, verbose=0)
    return history.history["loss"], [_numpy(w) for w in model.get_weights()], [w.path for w in model.weights]


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_fit_builds_and_trains_what_a_cell_first_builds_in_its_step(keras, rate):
    """Fit's building call runs when any layer is unbuilt (not only the model), so the cell's
    Dense exists when the optimizer is built and trains from the first batch, as in Keras."""
    loss, weights, paths = _fit_through_a_lazy_cell(keras, rate)
    ours_loss, ours_weights, ours_paths = _fit_through_a_lazy_cell(keramic, rate)
    np.testing.assert_allclose(ours_loss, loss, rtol=1e-5)
    assert len(ours_weights) == len(weights) == 4
    for ours, theirs in zip(ours_weights, weights):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert [p.split("/")[-1] for p in ours_paths] == [p.split("/")[-1] for p in paths]


def test_a_sublayer_first_built_in_a_later_call_takes_the_callers_path(keras):
    """An RNN builds its cell, and the cell's Dense is built in a later call: Keras opens the
    cell's name scope on every call, so the weight is `rnn/cell/dense/kernel`."""

    def paths(lib):
        rnn = lib.layers.RNN(_cell_class(lib, 0.0)(name="cell"), name="rnn")
        rnn(np.ones((1, 4, 5), "float32"))
        return [w.path.split("/")[:2] + w.path.split("/")[-1:] for w in rnn.weights]

    assert paths(keramic) == paths(keras) == [["rnn", "cell", "kernel"], ["rnn", "cell", "bias"]]


def _normalized(lib, policy, dtype):
    lib.mixed_precision.set_global_policy(policy)
    try:
        x = (np.random.default_rng(0).normal(size=(2, 8)) * 3 + 1).astype(dtype)
        y = lib.layers.LayerNormalization()(x)
        return str(y.dtype), _numpy(y).astype("float64")
    finally:
        lib.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_layer_normalization_takes_arrays_and_precision_as_keras(keras, policy, dtype):
    """LayerNormalization does not autocast: a float32 array under mixed_float16 is normalized
    before the rounding to float16; it computes in float32 and rounds through the input's dtype."""
    dtype_theirs, theirs = _normalized(keras, policy, dtype)
    dtype_ours, ours = _normalized(keramic, policy, dtype)
    assert dtype_ours == dtype_theirs
    np.testing.assert_array_equal(ours, theirs)


def _attention(lib, key_dim):
    lib.utils.set_random_seed(0)
    x = RNG.normal(size=(2, 4, 8)).astype("float16")
    layer = lib.layers.MultiHeadAttention(1, key_dim, dropout=0.2)
    output, scores = layer(x, x, return_attention_scores=True)
    return _numpy(output), _numpy(scores)


@pytest.mark.parametrize("key_dim", [8, 6])
def test_attention_scales_a_float16_query_by_the_float16_scale(keras, mixed, key_dim):
    """Keras casts `1/sqrt(key_dim)` to the query's dtype before multiplying."""
    global RNG
    state = RNG.bit_generator.state
    expected = _attention(keras, key_dim)
    RNG.bit_generator.state = state
    ours = _attention(keramic, key_dim)
    for a, b in zip(ours, expected):
        np.testing.assert_array_equal(a, b)


def _recurrent(lib, policy, cls, training):
    lib.mixed_precision.set_global_policy(policy)
    try:
        lib.utils.set_random_seed(0)
        x = np.random.default_rng(0).normal(size=(3, 7, 8)).astype("float32")
        layer = getattr(lib.layers, cls)(6, return_sequences=True, dropout=0.3 if training else 0.0)
        y = layer(x, training=training)
        return str(y.dtype), _numpy(y)
    finally:
        lib.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("cls", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("training", [False, True])
def test_builtin_recurrent_layers_run_in_mixed_precision_as_keras(keras, policy, cls, training):
    """The RNN steps its built-in cell without the cell's own call: the cell's float32 weights
    must still be read in the compute dtype (they were not: a dtype error), and GRU's half
    precision follows Keras's step order rather than torch's fused kernel."""
    dtype_theirs, theirs = _recurrent(keras, policy, cls, training)
    dtype_ours, ours = _recurrent(keramic, policy, cls, training)
    assert dtype_ours == dtype_theirs
    np.testing.assert_array_equal(ours, theirs)


def _attention_gradient(lib):
    lib.utils.set_random_seed(0)
    x = torch.tensor(np.random.default_rng(0).normal(size=(4, 4, 8)).astype("float32"), requires_grad=True)
    layer = lib.layers.MultiHeadAttention(1, 8, dropout=0.2)
    output = layer(x, x, training=True)
    output.float().sum().backward()
    return _numpy(output), _numpy(x.grad)


def test_a_float16_softmax_on_the_cpu_backpropagates_as_keras(keras, mixed):
    """Keras's torch backend runs a CPU float16 softmax in float32: the same values, but its
    gradient rounds differently from torch's float16 kernel (the TLB example's attention)."""
    expected = _attention_gradient(keras)
    ours = _attention_gradient(keramic)
    for a, b in zip(ours, expected):
        np.testing.assert_array_equal(a, b)
    x = torch.tensor([[1.0, 2.0, 3.5]], dtype=torch.float16, requires_grad=True)
    keramic.activations.softmax(x).pow(2).sum().backward()
    ours_grad = x.grad.clone()
    x.grad = None
    keras.activations.softmax(x).pow(2).sum().backward()
    np.testing.assert_array_equal(_numpy(ours_grad), _numpy(x.grad))


def _recurrent_gradients(lib):
    lib.mixed_precision.set_global_policy("mixed_float16")
    try:
        lib.utils.set_random_seed(0)
        x = torch.tensor(np.random.default_rng(0).normal(size=(3, 5, 8)).astype("float32"), requires_grad=True)
        layer = lib.layers.SimpleRNN(6, return_sequences=True)
        y = layer(x)
        weights = [getattr(w, "value", w) for w in layer.trainable_weights]
        return [_numpy(g) for g in torch.autograd.grad((y.float() * 1000).sum(), [x, *weights])]
    finally:
        lib.mixed_precision.set_global_policy("float32")


def test_half_precision_recurrent_gradients_sum_in_float32_as_keras(keras):
    """Keras's loop reads the float32 kernel in float16 afresh at every step, so the steps'
    gradients meet in float32; one cast for the whole sequence summed them in float16."""
    for ours, theirs in zip(_recurrent_gradients(keramic), _recurrent_gradients(keras)):
        np.testing.assert_array_equal(ours, theirs)


def _half_convolutions(lib):
    lib.mixed_precision.set_global_policy("mixed_float16")
    try:
        x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
        outputs = []
        for make in (
            lambda: lib.layers.Conv2D(4, 3),
            lambda: lib.layers.Conv1D(4, 3),
            lambda: lib.layers.DepthwiseConv2D(3),
            lambda: lib.layers.SeparableConv2D(4, 3),
        ):
            layer = make()
            inputs = x if not isinstance(layer, lib.layers.Conv1D) else x[:, 0]
            layer(inputs)
            shapes = [np.shape(w) for w in layer.get_weights()]
            layer.set_weights([np.random.default_rng(i).normal(size=s).astype("float32") * 0.3 for i, s in enumerate(shapes)])
            outputs.append(_numpy(layer(inputs)))
        return outputs
    finally:
        lib.mixed_precision.set_global_policy("float32")


def test_half_precision_convolutions_add_the_bias_after_rounding_as_keras(keras):
    """Keras adds a convolution's bias to its float16 result; torch's fused bias went in before
    the rounding (the TLB example's patch embedding, trained in mixed precision)."""
    for ours, theirs in zip(_half_convolutions(keramic), _half_convolutions(keras)):
        np.testing.assert_array_equal(ours, theirs)
