"""Behaviours a seventh batch of keras-io vision examples leans on (SimCLR's contrastive model,
gradient centralization's dropout CNN, Grad-CAM's gradient through an inner activation), each
reduced to a minimal model and checked against real Keras (torch backend)."""

import numpy as np
import pytest
import torch

import keramic

pytestmark = pytest.mark.interop


def _numpy(value):
    return np.asarray(value.detach().cpu().float() if isinstance(value, torch.Tensor) else value)


def _pooled_then(lib, layer, shape):
    """`layer` after a pooling layer (whose output Keras lays out channels-first in memory)."""
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    pool = {3: lib.layers.MaxPooling1D, 4: lib.layers.MaxPooling2D, 5: lib.layers.MaxPooling3D}[len(shape)](1)
    return layer(pool(x))


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda L: L.Conv2D(4, 3), (2, 8, 8, 3)),
        (lambda L: L.Conv2D(4, 3, padding="same"), (2, 8, 8, 3)),
        (lambda L: L.DepthwiseConv2D(3), (2, 8, 8, 3)),
        (lambda L: L.SeparableConv2D(4, 3), (2, 8, 8, 3)),
        (lambda L: L.Conv1D(4, 3, padding="causal"), (2, 8, 3)),
        (lambda L: L.Conv3D(4, 3), (2, 5, 5, 5, 3)),
    ],
)
def test_a_convolution_after_pooling_returns_keras_memory_layout(keras, make, shape):
    """Keras hands torch a channels_last-format input, so the output is contiguous whatever the
    input's layout; the strides matter because an unseeded Dropout's mask follows them."""
    theirs = _pooled_then(keras, make(keras.layers), shape)
    ours = _pooled_then(keramic, make(keramic.layers), shape)
    assert ours.stride() == theirs.stride()


def _dropout_after_pooling(lib):
    model = lib.Sequential(
        [lib.Input((10, 10, 3)), lib.layers.MaxPooling2D(), lib.layers.Conv2D(4, 3), lib.layers.Dropout(0.5), lib.layers.Flatten()]
    )
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    torch.manual_seed(3)
    return _numpy(model(rng.normal(size=(2, 10, 10, 3)).astype("float32"), training=True))


def test_unseeded_dropout_after_a_pooled_convolution_drops_what_keras_drops(keras):
    np.testing.assert_allclose(_dropout_after_pooling(keramic), _dropout_after_pooling(keras), rtol=1e-5, atol=1e-5)


def _conv_bias_gradients(lib, make, shape):
    layer = make(lib.layers)
    x = np.random.default_rng(2).normal(size=shape).astype("float32")
    layer.build(x.shape)
    layer.set_weights([np.random.default_rng(3).normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    y = layer(torch.tensor(x))
    (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
    return _numpy(y), _numpy(layer.bias.value.grad)


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda L: L.Conv2D(8, 3, padding="same"), (4, 9, 9, 5)),
        (lambda L: L.Conv1D(8, 3), (4, 30, 5)),
        (lambda L: L.DepthwiseConv2D(3), (4, 9, 9, 5)),
        (lambda L: L.SeparableConv2D(8, 3), (4, 9, 9, 5)),
    ],
)
def test_a_convolution_bias_and_its_gradient_round_as_keras(keras, make, shape):
    """Keras adds the bias after the convolution, so its gradient is autograd's sum: a bias fused
    into torch's kernel sums in another order, a difference deep nets with BatchNorm amplify."""
    theirs = _conv_bias_gradients(keras, make, shape)
    ours = _conv_bias_gradients(keramic, make, shape)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)



def _py_dataset_calls(lib, validation):
    calls = []

    class Batches(lib.utils.PyDataset):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def __len__(self):
            return 2

        def __getitem__(self, index):
            calls.append((self.name, "get", index))
            return np.full((2, 3), index, "float32"), np.zeros((2, 1), "float32")

        def on_epoch_end(self):
            calls.append((self.name, "end"))

    model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(Batches("train"), validation_data=Batches("val") if validation else None, epochs=2, shuffle=False, verbose=0)
    model.evaluate(Batches("test"), verbose=0)
    return calls


@pytest.mark.parametrize("validation", [False, True])
def test_fit_and_evaluate_end_a_py_dataset_pass_after_building_as_keras(keras, validation):
    """Keras resets its epoch iterator after the building read, which calls the dataset's
    `on_epoch_end` (the keypoint example reshuffles there, so the first epoch's order follows)."""
    assert _py_dataset_calls(keramic, validation) == _py_dataset_calls(keras, validation)
