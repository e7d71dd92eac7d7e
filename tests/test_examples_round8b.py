"""Behaviours a further batch of keras-io examples (DQN CartPole, AOD-Net, CaiT, I-JEPA, molecule
generation, CutMix's ResNet-20, MelGAN, FCN, Forward-Forward, CSWin, focal modulation) leans on,
each reduced to a minimal case and checked against real Keras (torch backend) with the same weights
and seeds: AOD-Net's `ops.sum(model.losses)` over terms that require grad, CaiT's `training` handed
on by position, FCN's upsampling of one-pixel scores, and Forward-Forward's whole-array reductions
with `keepdims`."""

import numpy as np
import pytest

import keramic

pytestmark = pytest.mark.interop

RNG = np.random.default_rng(8)


def _regularized_dense(lib, kernel):
    layer = lib.layers.Dense(2, kernel_regularizer=lib.regularizers.L2(1e-2), bias_regularizer=lib.regularizers.L1(1e-2))
    layer.build((None, 3))
    layer.kernel.assign(kernel)
    return layer


def test_ops_sum_of_a_list_of_grad_tensors_as_keras(keras):
    """AOD-Net sums `model.losses` (tensors that require grad) with `ops.sum`; Keras stacks the list."""
    kernel = RNG.normal(size=(3, 2)).astype("float32")
    x = RNG.normal(size=(4, 3)).astype("float32")
    results = []
    for lib in (keras, keramic):
        layer = _regularized_dense(lib, kernel)
        terms = [*layer.losses, lib.ops.mean(layer(x))]
        results.append(float(lib.ops.convert_to_numpy(lib.ops.sum(terms))))
    np.testing.assert_allclose(results[1], results[0], rtol=1e-6)


def _positional_training_layer(lib):
    class Attend(lib.layers.Layer):
        """CaiT's attention layers hand `training` on to their Dropout by position."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.proj = lib.layers.Dense(4)
            self.drop = lib.layers.Dropout(0.5)

        def call(self, x, training=None):
            return self.drop(self.proj(x), training)

    return Attend()


def test_training_given_by_position_as_keras(keras):
    """A positional `training=None` is read as unset (no clash with the flag the call fills in), in
    a Functional model's construction and in eager calls."""
    kernel = RNG.normal(size=(3, 4)).astype("float32")
    x = RNG.normal(size=(2, 3)).astype("float32")
    outputs = []
    for lib in (keras, keramic):
        inputs = lib.Input((3,))
        layer = _positional_training_layer(lib)
        model = lib.Model(inputs, layer(inputs))
        layer.proj.kernel.assign(kernel)
        outputs.append([lib.ops.convert_to_numpy(model(x)), lib.ops.convert_to_numpy(layer(x, None))])
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-6)


def _one_pixel_upsampler(lib, kernel, interpolation):
    inputs = lib.Input((2, 2, 3))
    pooled = lib.layers.MaxPooling2D()(inputs)
    scores = lib.layers.Conv2D(4, 1, activation="softmax")(pooled)
    model = lib.Model(inputs, lib.layers.UpSampling2D(8, interpolation=interpolation)(scores))
    model.layers[2].set_weights([kernel, np.zeros(4, "float32")])
    model.compile(lib.optimizers.SGD(0.1), lib.losses.SparseCategoricalCrossentropy())
    return model


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_fcn_upsampling_from_one_pixel_trains_as_keras(keras, interpolation):
    """The FCN example upsamples VGG's 1x1 `block5_pool` scores by 32. With bilinear interpolation
    Keras's torch backend fails in the backward pass ("grad_input must be contiguous", a Keras
    bug); keramic trains, and its predictions match Keras's where Keras runs."""
    kernel = RNG.normal(size=(1, 1, 3, 4)).astype("float32")
    x = RNG.normal(size=(2, 2, 2, 3)).astype("float32")
    y = RNG.integers(0, 4, size=(2, 8, 8)).astype("float32")
    theirs, ours = (_one_pixel_upsampler(lib, kernel, interpolation) for lib in (keras, keramic))
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    our_losses = ours.fit(x, y, epochs=2, verbose=0).history["loss"]
    try:
        their_losses = theirs.fit(x, y, epochs=2, verbose=0).history["loss"]
    except RuntimeError as error:
        assert interpolation == "bilinear" and "contiguous" in str(error)
        assert np.all(np.isfinite(our_losses)) and our_losses[1] < our_losses[0]
    else:
        np.testing.assert_allclose(our_losses, their_losses, rtol=1e-5)


@pytest.mark.parametrize("name", ["sum", "max", "min", "prod", "amax", "amin", "mean"])
def test_whole_array_reductions_keep_dims_as_numpy(keras, name):
    """The Forward-Forward example expands `ops.sum(goodness, keepdims=True)` on axis 1. Keras's
    torch backend drops `keepdims` for sum/max/min/prod/amax/amin over all axes (a scalar; a Keras
    bug: its other backends and NumPy keep `(1, 1)`), so the example fails there; keramic keeps
    NumPy's shape, with Keras's value."""
    x = RNG.uniform(0.5, 1.5, size=(2, 3)).astype("float32")
    ours = keramic.ops.convert_to_numpy(getattr(keramic.ops, name)(x, keepdims=True))
    theirs = keras.ops.convert_to_numpy(getattr(keras.ops, name)(x, keepdims=True))
    assert ours.shape == getattr(np, name)(x, keepdims=True).shape == (1, 1)
    np.testing.assert_allclose(ours.reshape(()), theirs.reshape(()), rtol=1e-6)


@pytest.mark.parametrize("name", ["stack", "concatenate", "hstack", "vstack", "dstack"])
@pytest.mark.parametrize("dtypes", [("float64", "float64"), ("float64", "float32"), ("int64", "int32"), ("int64", "float32")])
def test_joining_keeps_64_bit_inputs_as_keras(keras, name, dtypes):
    """DQN-style replay buffers stack NumPy float64 states; Keras keeps 64-bit inputs 64-bit when
    joining arrays (no narrowing to `floatx()` as `result_type` gives)."""
    arrays = [np.arange(4, dtype=dtype).reshape(2, 2) for dtype in dtypes]
    ours = getattr(keramic.ops, name)(arrays)
    theirs = getattr(keras.ops, name)(arrays)
    assert keramic.backend.standardize_dtype(ours.dtype) == keras.backend.standardize_dtype(theirs.dtype)
    np.testing.assert_array_equal(keramic.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs))


@pytest.mark.parametrize("dtype", ["float64", "int64"])
def test_lists_of_tensors_keep_their_dtype_as_keras(keras, dtype):
    """`ops.convert_to_tensor` / `ops.sum` of a list of tensors stack them as they are (before,
    keramic read the list through NumPy and narrowed 64-bit values)."""
    results = []
    for lib in (keras, keramic):
        items = [lib.ops.convert_to_tensor(np.arange(3, dtype=dtype)) for _ in range(2)]
        results.append([lib.backend.standardize_dtype(f(items).dtype) for f in (lib.ops.convert_to_tensor, lib.ops.sum)])
    assert results[1] == results[0]
