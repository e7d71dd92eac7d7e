"""Behaviours a fifth batch of keras-io vision examples leans on (MobileViT's attention over
size-1 patch axes and its `val_accuracy` checkpoint, PatchConvNet's subclassed model that resizes
inside `call`), each reduced to a minimal model and checked against real Keras (torch backend)."""

import numpy as np
import pytest
import torch

import keramic

pytestmark = pytest.mark.interop

RNG = np.random.default_rng(5)


def _numpy(value):
    return np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)


def _attention_in_training(lib, x, weights=None):
    lib.utils.set_random_seed(3)
    layer = lib.layers.MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.5)
    layer(x, x)
    if weights is not None:
        layer.set_weights(weights)
    return layer, _numpy(layer(x, x, training=True))


@pytest.mark.parametrize("shape", [(4, 1, 6), (4, 2, 6), (1, 4, 6), (5, 6)])
def test_attention_dropout_drops_what_keras_drops(keras, shape):
    """MobileViT attends over `(patch, n, dim)` with n == 1 in its last block: Keras's einsum leaves
    the probabilities permuted in memory, and unseeded dropout draws its mask in memory order."""
    x = RNG.normal(size=(2, *shape)).astype("float32")
    theirs, expected = _attention_in_training(keras, x)
    _, ours = _attention_in_training(keramic, x, theirs.get_weights())
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_a_one_axis_tuple_softmax_is_keras_plain_softmax(keras):
    x = (RNG.normal(size=(3, 2, 7)) * 30).astype("float32")
    expected = _numpy(keras.layers.Softmax(axis=(2,))(x))
    ours = _numpy(keramic.layers.Softmax(axis=(2,))(x))
    np.testing.assert_array_equal(ours, expected)


def _checkpointed_by_accuracy(lib, path):
    inputs = lib.Input((3,))
    model = lib.Model(inputs, lib.layers.Dense(2, activation="softmax")(inputs))
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    x, y = np.ones((4, 3), "float32"), np.eye(2, dtype="float32")[[0, 1, 0, 1]]
    checkpoint = lib.callbacks.ModelCheckpoint(
        str(path), monitor="val_accuracy", save_best_only=True, save_weights_only=True
    )
    model.fit(x, y, validation_data=(x, y), epochs=2, callbacks=[checkpoint], verbose=0)
    return checkpoint


def test_a_checkpoint_on_a_compiled_metric_knows_its_direction_as_keras(keras, tmp_path):
    """MobileViT checkpoints on `val_accuracy` with mode 'auto'."""
    theirs = _checkpointed_by_accuracy(keras, tmp_path / "theirs.weights.h5")
    ours = _checkpointed_by_accuracy(keramic, tmp_path / "ours.weights.h5")
    assert (tmp_path / "ours.weights.h5").exists()
    assert ours.best == pytest.approx(float(theirs.best))


def _probed_model(lib, first):
    """A subclassed model without a `training` argument: `first` runs, then a probe records the
    training flag it is handed."""

    class Probe(lib.layers.Layer):
        def call(self, x, training=None):
            self.seen = training
            return x

    class Net(lib.Model):
        def __init__(self):
            super().__init__()
            self.resize = lib.layers.Resizing(4, 4)
            self.frozen = Probe()
            self.probe = Probe()

        def call(self, x):
            x = self.resize(x) if first == "resize" else self.frozen(x, training=False)
            return self.probe(x)

    return Net()


@pytest.mark.parametrize("first", ["resize", "explicit_false"])
def test_the_training_flag_one_call_settles_on_reaches_later_siblings_as_keras(keras, first):
    """PatchConvNet resizes in `call` (Resizing defaults to `training=True`): in Keras every layer
    called after it in the same outer call trains, its Dropout included, in `predict` too."""
    x = np.ones((2, 6, 6, 1), "float32")
    seen = []
    for lib in (keras, keramic):
        model = _probed_model(lib, first)
        flags = []
        for run in (lambda: model(x), lambda: model(x, training=True), lambda: model.predict(x, verbose=0)):
            run()
            flags.append(model.probe.seen)
        seen.append(flags)
    assert seen[1] == seen[0]


def _resize_then_dropout(lib):
    class Net(lib.Model):
        def __init__(self):
            super().__init__()
            self.resize = lib.layers.Resizing(4, 4)
            self.dense = lib.layers.Dense(8)
            self.dropout = lib.layers.Dropout(0.5)

        def call(self, x):
            return self.dropout(self.dense(self.resize(x)))

    return Net()


def test_dropout_after_a_resizing_drops_in_predict_with_keras_numbers(keras):
    x = RNG.normal(size=(3, 6, 6, 2)).astype("float32")
    theirs, ours = _resize_then_dropout(keras), _resize_then_dropout(keramic)
    theirs(x)
    ours(x)
    ours.set_weights(theirs.get_weights())
    keras.utils.set_random_seed(11)
    expected = theirs.predict(x, verbose=0)
    keramic.utils.set_random_seed(11)
    np.testing.assert_allclose(ours.predict(x, verbose=0), expected, rtol=1e-6)
    assert (expected == 0).any()


def _self_building_model(lib):
    class Net(lib.Model):
        """The Perceiver's shape: its own `build` makes weights and layers, then calls `super().build`."""

        def build(self, input_shape):
            self.latent = self.add_weight(shape=(2, 3), initializer="ones", name="latent")
            self.dense = lib.layers.Dense(3)
            super().build(input_shape)

        def call(self, x):
            return self.dense(x) + lib.ops.sum(self.latent)

    return Net()


def test_super_build_inside_a_subclassed_models_build_marks_it_built_as_keras(keras):
    theirs, ours = _self_building_model(keras), _self_building_model(keramic)
    for model in (theirs, ours):
        model.build((None, 3))
    assert ours.built and theirs.built
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    x = RNG.normal(size=(2, 3)).astype("float32")
    theirs(x)
    ours(x)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(_numpy(ours(x)), _numpy(theirs(x)), rtol=1e-6)
