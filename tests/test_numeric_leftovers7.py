"""Small numeric and API mismatches with Keras 3.15 (torch backend), each checked against real Keras
computed in the test with the same weights (set_weights): half-precision LSTM / GRU gradients,
ConvLSTM under mixed precision, Conv2DTranspose roundings and strides, GroupNormalization's op
order, `Variable.shape`, and out-of-range class indices (`one_hot`, CategoryEncoding, the sparse
categorical cross-entropy op).

Half-precision results are compared for exact equality: the point of these fixes is the order of
roundings, which a tolerance would hide. Both libraries run the same torch CPU kernels here.
"""

import numpy as np
import pytest
import torch

import keramic

SHAPE = (2, 4, 5)  # batch, time, features


@pytest.fixture(scope="module")
def keras():
    """Real Keras once for the module (no clear_session per test, which costs about a second):
    every comparison here copies weights with set_weights and seeds explicitly."""
    return pytest.importorskip("keras", reason="real Keras 3 is the reference; pip install keras")


def _weights_like(keras_layer, input_shape, seed, scale=0.5):
    keras_layer.build(input_shape)
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=w.shape) * scale).astype("float32") for w in keras_layer.get_weights()]


def _run_with_grads(layer, x, weights, input_shape, **call_kwargs):
    """The layer's output and the gradients of `sum(y**2)` for its weights and its input."""
    layer.build(input_shape)
    layer.set_weights(weights)
    x = torch.tensor(x, requires_grad=True)
    y = layer(x, **call_kwargs)
    loss = (y.float() ** 2).sum()
    grads = torch.autograd.grad(loss, [x] + [v.value for v in layer.trainable_weights])
    return y.detach().float().numpy(), [g.float().numpy() for g in grads]


RECURRENT_CASES = [
    ("LSTM", {}),
    ("LSTM", {"go_backwards": True}),
    ("LSTM", {"use_cudnn": False}),
    ("LSTM", {"recurrent_dropout": 0.3}),  # Keras's implementation=1: gate by gate
    ("GRU", {}),
    ("GRU", {"reset_after": False}),
    ("GRU", {"use_bias": False}),
    ("GRU", {"recurrent_dropout": 0.3}),
]


@pytest.mark.parametrize("dtype", ["mixed_float16", "float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name,kwargs", RECURRENT_CASES)
def test_lstm_gru_half_precision_gradients_equal_keras(keras, name, kwargs, dtype):
    # Keras's LSTM / GRU (no mask, no recurrent dropout) cast the weights once and project the
    # whole sequence in one matmul; elsewhere its cell call adds the LSTM bias after h @ R.
    # Keras's CPU orthogonal initializer has no float16 kernel: build with zeros, then set_weights.
    kwargs = dict(kwargs, return_sequences=True, recurrent_initializer="zeros")
    weights = _weights_like(getattr(keras.layers, name)(3, **kwargs), SHAPE, seed=1)
    x = np.random.default_rng(0).normal(size=SHAPE).astype("float16" if dtype == "float16" else "float32")
    expected = _run_with_grads(getattr(keras.layers, name)(3, dtype=dtype, **kwargs), x, weights, SHAPE)
    got = _run_with_grads(getattr(keramic.layers, name)(3, dtype=dtype, **kwargs), x, weights, SHAPE)
    np.testing.assert_array_equal(got[0], expected[0])
    assert len(got[1]) == len(expected[1])
    for mine, theirs in zip(got[1], expected[1]):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
@pytest.mark.parametrize("mask", [[[1, 1, 1, 0], [1, 1, 0, 0]], [[1, 1, 1, 1], [1, 1, 1, 1]]])
def test_masked_lstm_gru_in_mixed_float16_step_as_keras(keras, name, mask):
    # Any mask (all true included) keeps Keras on its per-step loop, which casts the weights per step.
    kwargs = {"return_sequences": True, "recurrent_initializer": "zeros"}
    weights = _weights_like(getattr(keras.layers, name)(3, **kwargs), SHAPE, seed=2)
    x = np.random.default_rng(3).normal(size=SHAPE).astype("float32")
    mask = np.array(mask, bool)
    results = []
    for lib in (keras, keramic):
        layer = getattr(lib.layers, name)(3, dtype="mixed_float16", **kwargs)
        results.append(_run_with_grads(layer, x, weights, SHAPE, mask=torch.tensor(mask)))
    np.testing.assert_array_equal(results[1][0], results[0][0])
    for mine, theirs in zip(results[1][1], results[0][1]):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
@pytest.mark.parametrize("kwargs", [{"dropout": 0.2, "recurrent_dropout": 0.3}, {"dropout": 0.2}])
def test_lstm_gru_training_with_dropout_in_mixed_float16_equal_keras(keras, name, kwargs):
    kwargs = dict(kwargs, return_sequences=True, recurrent_initializer="zeros", seed=7)
    weights = _weights_like(getattr(keras.layers, name)(3, **kwargs), SHAPE, seed=10)
    x = np.random.default_rng(11).normal(size=SHAPE).astype("float32")
    results = []
    for lib in (keras, keramic):
        layer = getattr(lib.layers, name)(3, dtype="mixed_float16", **kwargs)
        results.append(_run_with_grads(layer, x, weights, SHAPE, training=True))
    np.testing.assert_array_equal(results[1][0], results[0][0])
    for mine, theirs in zip(results[1][1], results[0][1]):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize("dtype", ["mixed_float16", "float16"])
def test_conv_lstm2d_runs_in_half_precision_close_to_keras(keras, dtype):
    # keramic crashed under mixed_float16 (float32 weights in a float16 convolution). Keras steps
    # gate by gate with per-step casts, so the gradients' roundings differ slightly (not matched).
    shape = (2, 3, 5, 5, 2)
    kwargs = {"return_sequences": True, "padding": "same", "recurrent_initializer": "zeros"}
    weights = _weights_like(keras.layers.ConvLSTM2D(3, 3, **kwargs), shape, seed=12, scale=0.3)
    x = np.random.default_rng(13).normal(size=shape).astype("float16" if dtype == "float16" else "float32")
    results = []
    for lib in (keras, keramic):
        results.append(_run_with_grads(lib.layers.ConvLSTM2D(3, 3, dtype=dtype, **kwargs), x, weights, shape))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=2e-3, atol=2e-3)
    for mine, theirs in zip(results[1][1], results[0][1]):
        np.testing.assert_allclose(mine, theirs, rtol=2e-2, atol=2e-2)


CONV_TRANSPOSE_CASES = [
    {"strides": 2, "padding": "same"},
    {"strides": 2, "padding": "valid"},
    {"strides": 1, "padding": "same"},
    {"strides": 2, "padding": "same", "output_padding": 1},
]


@pytest.mark.parametrize("dtype", ["float16", "mixed_float16", "bfloat16", "float32"])
@pytest.mark.parametrize("kwargs", CONV_TRANSPOSE_CASES)
def test_conv2d_transpose_outputs_gradients_and_strides_equal_keras(keras, kwargs, dtype):
    # Keras: a contiguous channels-first input, torch's full output, the cut, then the bias.
    shape = (2, 5, 5, 3)
    weights = _weights_like(keras.layers.Conv2DTranspose(4, 3, **kwargs), shape, seed=4, scale=1.0)
    x = np.random.default_rng(5).normal(size=shape).astype("float32")
    results, strides = [], []
    for lib in (keras, keramic):
        layer = lib.layers.Conv2DTranspose(4, 3, dtype=dtype, **kwargs)
        results.append(_run_with_grads(layer, x, weights, shape))
        strides.append(layer(torch.tensor(x)).stride())  # an unseeded Dropout's mask follows them
    np.testing.assert_array_equal(results[1][0], results[0][0])
    for mine, theirs in zip(results[1][1], results[0][1]):
        np.testing.assert_array_equal(mine, theirs)
    assert strides[1] == strides[0]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_conv2d_transpose_output_padding_past_the_full_output_gets_the_bias(keras, dtype):
    # strides 3, kernel 2, output_padding 2: two rows/columns beyond torch's full output (zeros + bias).
    shape, kwargs = (1, 4, 4, 2), {"strides": 3, "padding": "valid", "output_padding": 2}
    weights = _weights_like(keras.layers.Conv2DTranspose(3, 2, **kwargs), shape, seed=6, scale=1.0)
    x = np.random.default_rng(7).normal(size=shape).astype("float32")
    outputs = []
    for lib in (keras, keramic):
        layer = lib.layers.Conv2DTranspose(3, 2, dtype=dtype, **kwargs)
        layer.build(shape)
        layer.set_weights(weights)
        outputs.append(layer(torch.tensor(x)).float().detach().numpy())
    assert outputs[1].shape == outputs[0].shape == (1, 13, 13, 3)
    np.testing.assert_array_equal(outputs[1], outputs[0])


GROUP_NORM_CASES = [
    ((2, 4, 4, 6), {"groups": 3}),
    ((2, 6, 4, 4), {"groups": 2, "axis": 1}),
    ((2, 3, 6, 5), {"groups": 3, "axis": -2, "center": False}),
    ((2, 8), {"groups": 4, "scale": False}),
]


@pytest.mark.parametrize("dtype", ["float32", "mixed_float16", "float64"])
@pytest.mark.parametrize("shape,kwargs", GROUP_NORM_CASES)
def test_group_normalization_equals_keras_op_for_op(keras, shape, kwargs, dtype):
    # Inputs with a mean well away from zero: Keras's E[x^2] - E[x]^2 variance rounds differently
    # from a two-pass one. Keras computes float64 inputs in float32 too.
    weights = _weights_like(keras.layers.GroupNormalization(**kwargs), shape, seed=8, scale=1.0)
    x = (np.random.default_rng(9).normal(size=shape) * 3 + 5).astype("float64" if dtype == "float64" else "float32")
    results = []
    for lib in (keras, keramic):
        layer = lib.layers.GroupNormalization(dtype=dtype, **kwargs)
        results.append(_run_with_grads(layer, x, weights, shape))
    np.testing.assert_array_equal(results[1][0], results[0][0])
    for mine, theirs in zip(results[1][1], results[0][1]):
        np.testing.assert_array_equal(mine, theirs)


def test_variable_and_keras_tensor_attribute_types_as_keras(keras):
    described = []
    for lib in (keras, keramic):
        dense = lib.layers.Dense(3, name="dense")
        dense.build((2, 4))
        kernel = dense.kernel
        symbolic = lib.Input((4,), dtype="float32")
        described.append(
            (
                type(kernel.shape),
                kernel.shape,
                kernel.path,
                keramic.backend.standardize_dtype(kernel.dtype),
                isinstance(kernel.value, torch.Tensor),
                type(symbolic.shape),
                symbolic.shape,
                symbolic.dtype,
            )
        )
    assert described[1] == described[0]
    assert described[1][0] is tuple and described[1][1] == (4, 3)


def test_tuple_variable_shape_keeps_torch_working():
    variable = keramic.Variable(np.ones((2, 3), "float32"), name="v")
    assert variable.shape == (2, 3) and type(variable.shape) is tuple
    assert isinstance(variable.size(), torch.Size) and variable.numel() == 6 and variable.dim() == 2
    assert torch.zeros(variable.shape).shape == variable.size()
    (variable * 2).sum().backward()
    assert variable.grad.shape == torch.Size([2, 3])
    module = torch.nn.Module()
    module.weight = variable
    module.load_state_dict({"weight": torch.full((2, 3), 4.0)})
    assert float(variable.detach().sum()) == 24.0
    with pytest.raises(Exception, match="shape"):
        variable.assign(np.zeros((3, 2), "float32"))


def test_one_hot_out_of_range_as_keras(keras):
    # Negative indices: all-zero rows in both.
    for op in ("one_hot", "multi_hot"):
        ids = np.array([[0, -1, 2]]) if op == "multi_hot" else np.array([0, -1, 2, -3])
        expected = getattr(keras.ops, op)(ids, 3).numpy()
        np.testing.assert_array_equal(getattr(keramic.ops, op)(ids, 3).numpy(), expected)
    encode_negative = keras.layers.CategoryEncoding(3, output_mode="one_hot")(np.array([0, -1])).numpy()
    np.testing.assert_array_equal(
        keramic.layers.CategoryEncoding(3, output_mode="one_hot")(np.array([0, -1])).numpy(), encode_negative
    )
    # Indices >= num_classes: Keras fails inside torch; keramic names the op and the index.
    big = np.array([0, 3])
    with pytest.raises(RuntimeError, match="smaller than num_classes"):
        keras.ops.one_hot(big, 3)
    with pytest.raises(ValueError, match=r"`one_hot`.*index 3.*num_classes=3"):
        keramic.ops.one_hot(big, 3)
    with pytest.raises(RuntimeError):
        keras.ops.multi_hot(big[None], 3)
    with pytest.raises(ValueError, match="`multi_hot`"):
        keramic.ops.multi_hot(big[None], 3)
    for mode, ids in (("one_hot", big), ("multi_hot", big[None]), ("count", big[None])):
        with pytest.raises(RuntimeError):
            keras.layers.CategoryEncoding(3, output_mode=mode)(ids)
        with pytest.raises(ValueError, match="index 3"):
            keramic.layers.CategoryEncoding(3, output_mode=mode)(ids)


@pytest.mark.parametrize("target", [[3, 0], [-1, 0]])
def test_sparse_categorical_crossentropy_op_refuses_out_of_range_targets_as_keras(keras, target):
    output = np.array([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]], "float32")
    with pytest.raises(IndexError) as theirs:
        keras.ops.sparse_categorical_crossentropy(np.array(target), output)
    with pytest.raises(IndexError) as mine:
        keramic.ops.sparse_categorical_crossentropy(np.array(target), output)
    assert str(mine.value) == str(theirs.value)
