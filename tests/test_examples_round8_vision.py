"""Behaviours an eighth batch of keras-io vision examples leans on (image classification from
scratch's JPEG directory pipeline, the MoE example's usage counter under a custom train step,
semantic image clustering's neighbour reshape and twice-called augmentation), each reduced to a
minimal case and checked against real Keras (torch backend)."""

import warnings

import numpy as np
import pytest
import torch

import keramic

pytestmark = pytest.mark.interop


def _numpy(value):
    return np.asarray(value.detach().cpu().float() if isinstance(value, torch.Tensor) else value)


def _write_images(root, fmt, count=7):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (root / label).mkdir()
        for index in range(count):
            Image.fromarray(rng.integers(0, 255, (10, 9, 3), dtype=np.uint8)).save(root / label / f"{index}.{fmt}")


def _epochs(lib, root, **options):
    lib.utils.set_random_seed(0)
    dataset = lib.utils.image_dataset_from_directory(str(root), image_size=(8, 8), verbose=False, **options)
    dataset = dataset[0] if isinstance(dataset, list) else dataset
    mapped = dataset.map(lambda images, labels: (images, labels))  # the example maps its augmentation in
    return [[(np.asarray(x), np.asarray(y)) for x, y in source] for source in (dataset, mapped, dataset)]


@pytest.mark.parametrize(
    "options",
    [
        dict(batch_size=2, seed=1337, validation_split=0.2, subset="both"),
        dict(batch_size=3),  # no seed: Keras draws one from NumPy's generator
        dict(batch_size=None, seed=5),
    ],
)
def test_a_directory_dataset_shuffles_each_epoch_as_keras_tf_data(keras, tmp_path, options):
    """With TensorFlow loaded (the example imports tf.data), each epoch's batches are Keras's, so
    a seeded fit sees the same batch order."""
    pytest.importorskip("tensorflow")
    _write_images(tmp_path, "png")
    for ours, theirs in zip(_epochs(keramic, tmp_path, **options), _epochs(keras, tmp_path, **options)):
        assert len(ours) == len(theirs)
        for (x, y), (x_keras, y_keras) in zip(ours, theirs):
            np.testing.assert_array_equal(y, y_keras)
            np.testing.assert_allclose(x, x_keras, atol=1e-4)


def test_directory_jpegs_decode_as_keras_tf_data(keras, tmp_path):
    """TensorFlow's JPEG decoder (Keras's) uses the fast integer inverse DCT, which rounds pixels up
    to 4 levels away from Pillow's."""
    pytest.importorskip("tensorflow")
    _write_images(tmp_path, "jpg", count=2)
    options = dict(image_size=(10, 9), shuffle=False, verbose=False)
    ours = np.concatenate([x for x, _ in keramic.utils.image_dataset_from_directory(str(tmp_path), **options)])
    theirs = np.concatenate([_numpy(x) for x, _ in keras.utils.image_dataset_from_directory(str(tmp_path), **options)])
    np.testing.assert_array_equal(ours, theirs)


def test_directory_image_splits_list_their_files_as_keras(keras, tmp_path):
    """`file_paths` names each split's images in the seeded file order (examples map labels by it)."""
    _write_images(tmp_path, "png", count=4)
    options = dict(image_size=(4, 4), validation_split=0.25, subset="both", seed=3, verbose=False)
    ours = [split.file_paths for split in keramic.utils.image_dataset_from_directory(str(tmp_path), **options)]
    theirs = [split.file_paths for split in keras.utils.image_dataset_from_directory(str(tmp_path), **options)]
    assert ours == theirs


def _usage_after_custom_fit(lib):
    """The MoE example's shape: a layer counts its calls in a non-trainable variable, and the
    model trains through its own `train_step` with compiled metrics."""

    class Counted(lib.layers.Layer):
        def __init__(self):
            super().__init__()
            self.dense = lib.layers.Dense(2)
            self.usage = lib.Variable(np.zeros(2, "float32"), trainable=False)

        def call(self, x):
            self.usage.assign(self.usage + 1.0)
            return self.dense(x)

    class Model(lib.Model):
        def __init__(self):
            super().__init__()
            self.counted = Counted()

        def call(self, x, training=False):
            return self.counted(x)

        def train_step(self, data):
            x, y = data
            self.zero_grad()
            y_pred = self(x, training=True)
            loss = self.compute_loss(x, y, y_pred)
            loss.backward()
            with torch.no_grad():
                self.optimizer.apply([v.value.grad for v in self.trainable_weights], self.trainable_weights)
            for metric in self.metrics:
                metric.update_state(loss) if metric.name == "loss" else metric.update_state(y, y_pred)
            return {m.name: m.result() for m in self.metrics}

    model = Model()
    model(np.zeros((2, 3), "float32"))
    model.compile("sgd", "mse", metrics=["mae"])
    model.fit(np.ones((4, 3), "float32"), np.zeros((4, 2), "float32"), batch_size=2, epochs=1, verbose=0)
    return np.asarray(model.counted.usage.numpy())


def test_a_custom_train_step_fit_assigns_a_call_counter_as_often_as_keras(keras):
    """keramic creates the compiled metrics from one forward pass before a custom step, as Keras
    does symbolically; that pass must keep no assignment (the MoE example's expert usage count)."""
    np.testing.assert_array_equal(_usage_after_custom_fit(keramic), _usage_after_custom_fit(keras))


@pytest.mark.parametrize(
    "shape,newshape",
    [
        ((None, 4), (-1, 3, 4)),  # the clustering example's neighbours, one row per neighbour
        ((None, 5, 6), (-1, 3, 6)),
        ((None, None, 6), (-1, 3, 6)),
        ((2, 6), (None, 3)),
        ((4, 6), (2, None, 3)),
        ((2, 6), (3, -1)),
    ],
)
def test_reshaping_a_keras_tensor_gives_keras_static_shape(keras, shape, newshape):
    """Keras states the shape by rule (a -1 is worked out only when every input dim is known); a
    dry run on placeholders would settle on a batch size that happens to divide."""
    ours = keramic.ops.reshape(keramic.KerasTensor(shape), newshape)
    theirs = keras.ops.reshape(keras.KerasTensor(shape), newshape)
    assert tuple(ours.shape) == tuple(theirs.shape)


def _flips_of_a_layer_called_twice(lib):
    lib.utils.set_random_seed(0)
    flip = lib.layers.RandomFlip(mode="horizontal")
    first, second = lib.Input((1, 2, 1)), lib.Input((1, 2, 1))
    model = lib.Model([first, second], [flip(first), flip(second)])
    x = np.arange(12, dtype="float32").reshape(6, 1, 2, 1)
    return [_numpy(output) for output in model([x, x], training=True)]


def test_a_layer_called_twice_in_a_functional_model_draws_in_keras_order(keras):
    """The clustering example's augmentation runs on anchors and on neighbours: Keras runs a
    depth's calls in the order its backward walk reaches them, here the second call first."""
    for ours, theirs in zip(_flips_of_a_layer_called_twice(keramic), _flips_of_a_layer_called_twice(keras)):
        np.testing.assert_array_equal(ours, theirs)


def _explicitly_built(lib):
    """A subclassed model whose `call` takes two inputs, built from one shape (as examples do before
    `summary()`): Keras never runs `call` there, so the build cannot fail on it."""

    class TwoInputs(lib.Model):
        def __init__(self):
            super().__init__()
            self.dense = lib.layers.Dense(3)

        def call(self, inputs):
            a, b = inputs
            return self.dense(a) + b

    model = TwoInputs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.build((None, 4))
    built = (model.built, len(model.weights), model.dense.built, [str(w.message) for w in caught if issubclass(w.category, UserWarning)])
    output = model([np.ones((2, 4), "float32"), np.ones((2, 3), "float32")])
    return built, tuple(output.shape), len(model.weights)


def test_an_explicit_build_whose_run_fails_marks_the_model_built_as_keras(keras):
    ours, theirs = _explicitly_built(keramic), _explicitly_built(keras)
    assert ours == theirs
    assert ours[0][:3] == (True, 0, False) and ours[0][3] and ours[2] == 2
