"""Behaviours the keras-io vision, text, timeseries and generative examples lean on.

Expected values come from real Keras (torch backend) or from Keras's documented algorithm
(a `RandomState(seed)` shuffle of the sorted file list, the last `int(split * n)` files for
validation), so no TensorFlow import is needed here.
"""

import os

import numpy as np
import pytest

import keramic


def _write_texts(root, per_class=7):
    for name in ("neg", "pos"):
        os.makedirs(os.path.join(root, name))
        for index in range(per_class):
            with open(os.path.join(root, name, f"{index}.txt"), "w", encoding="utf-8") as handle:
                handle.write(f"{name} {index}")


def _keras_split(root, seed, validation_split):
    """File texts and labels of Keras's training and validation subsets, by its algorithm."""
    texts, labels = [], []
    for label, name in enumerate(sorted(os.listdir(root))):
        for filename in sorted(os.listdir(os.path.join(root, name))):
            texts.append(f"{name} {filename[:-4]}")
            labels.append(label)
    np.random.RandomState(seed).shuffle(texts)
    np.random.RandomState(seed).shuffle(labels)
    cut = len(texts) - int(validation_split * len(texts))
    pairs = list(zip(texts, labels))
    return sorted(pairs[:cut]), sorted(pairs[cut:])


def test_text_directory_split_matches_keras_and_batches_have_numpy(tmp_path, capsys):
    _write_texts(str(tmp_path))
    train, validation = keramic.utils.text_dataset_from_directory(
        str(tmp_path), batch_size=4, validation_split=0.3, subset="both", seed=11)
    out = capsys.readouterr().out
    assert "Found 14 files belonging to 2 classes." in out
    assert "Using 10 files for training." in out and "Using 4 files for validation." in out

    def pairs(dataset):
        got = []
        for texts, labels in dataset:
            # As a TensorFlow eager tensor: .numpy() gives the strings as UTF-8 bytes.
            got += [(text.decode("utf-8"), int(label)) for text, label in zip(texts.numpy(), labels.numpy())]
        return sorted(got)

    expected_train, expected_validation = _keras_split(str(tmp_path), 11, 0.3)
    assert pairs(train) == expected_train
    assert pairs(validation) == expected_validation


def test_image_directory_training_subset_reshuffles_each_epoch(tmp_path):
    from PIL import Image

    for label, name in enumerate(("cat", "dog")):
        os.makedirs(tmp_path / name)
        for index in range(8):  # a flat colour per file identifies it after decoding
            colour = np.full((6, 5, 3), 10 * index + 100 * label, dtype=np.uint8)
            Image.fromarray(colour).save(tmp_path / name / f"{index}.png")
    train, validation = keramic.utils.image_dataset_from_directory(
        str(tmp_path), image_size=(4, 4), batch_size=3, validation_split=0.25, subset="both", seed=3, verbose=False)
    assert train.class_names == ["cat", "dog"]

    def order(dataset):
        return [int(image[0, 0, 0]) for images, _ in dataset for image in images.numpy()]

    expected_train, expected_validation = _keras_split_images(3, 0.25)
    first, second = order(train), order(train)
    assert sorted(first) == sorted(second) == expected_train
    assert first != second  # Keras's training subset is reshuffled every epoch
    assert order(validation) == order(validation)  # ... its validation half is not
    assert sorted(order(validation)) == expected_validation
    images, labels = next(iter(train))
    assert images.numpy().shape == (3, 4, 4, 3) and images[0].numpy().dtype == np.float32
    assert labels.numpy().dtype == np.int32


def _keras_split_images(seed, validation_split):
    colours = [10 * index + 100 * label for label in range(2) for index in range(8)]
    np.random.RandomState(seed).shuffle(colours)
    cut = len(colours) - int(validation_split * len(colours))
    return sorted(colours[:cut]), sorted(colours[cut:])


def test_text_vectorization_decodes_bytes_from_a_tensorflow_style_standardize():
    # tf.strings functions hand back bytes; the vocabulary must hold the words, not "b'word'".
    def standardize(texts):
        return np.char.encode(np.char.lower(np.asarray(texts, dtype=str)), "utf-8")

    layer = keramic.layers.TextVectorization(standardize=standardize, output_sequence_length=4)
    layer.adapt(["Good film", "good PLOT", "Good"])
    assert layer.get_vocabulary() == ["", "[UNK]", "good", "plot", "film"]
    assert np.asarray(layer(np.array([["GOOD film"]]))).tolist() == [[2, 4, 0, 0]]


def test_timeseries_dataset_shuffle_redraws_the_order_every_epoch():
    data = np.arange(40, dtype="float32")[:, None]
    dataset = keramic.utils.timeseries_dataset_from_array(
        data, np.arange(40), sequence_length=3, sampling_rate=2, batch_size=5, shuffle=True, seed=7)
    first = [int(t) for _, targets in dataset for t in targets.numpy()]
    second = [int(t) for _, targets in dataset for t in targets.numpy()]
    assert sorted(first) == sorted(second) == list(range(36))  # windows start at 0..35 (span 4)
    assert first != second
    windows, targets = next(iter(dataset))
    np.testing.assert_array_equal(windows.numpy()[:, :, 0], targets.numpy()[:, None] + np.array([0, 2, 4]))


def test_built_sequential_takes_a_functional_name_as_keras(keras):
    names = {}
    for module in (keras, keramic):
        module.backend.clear_session()
        inner = module.Sequential([module.layers.Dense(2)])
        inner(np.zeros((1, 3), "float32"))
        inputs = module.Input((3,))
        names[module.__name__] = module.Model(inputs, module.layers.Dense(1)(inputs)).name
    assert names["keramic"] == names["keras"] == "functional_1"


def test_model_checkpoint_verbose_messages_as_keras(keras, tmp_path, capsys):
    x = np.linspace(0, 1, 8, dtype="float32")[:, None]
    lines = {}
    for module in (keras, keramic):
        model = module.Sequential([module.Input((1,)), module.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        path = str(tmp_path / f"{module.__name__}.weights.h5")
        checkpoint = module.callbacks.ModelCheckpoint(path, monitor="loss", verbose=1, save_weights_only=True)
        capsys.readouterr()
        model.fit(x, x, epochs=1, verbose=0, callbacks=[checkpoint])
        out = capsys.readouterr().out.replace(path, "PATH")
        lines[module.__name__] = [line for line in out.splitlines() if line.startswith("Epoch")]
    assert lines["keramic"] == lines["keras"] == [
        "Epoch 1: saving model to PATH", "Epoch 1: finished saving model to PATH"]


@pytest.mark.parametrize("dtype", ["uint8", "int32"])
def test_extract_patches_of_integer_images_as_keras(keras, dtype):
    images = (np.arange(2 * 6 * 4 * 3) % 251).reshape(2, 6, 4, 3).astype(dtype)
    expected = keras.ops.image.extract_patches(keras.ops.convert_to_tensor(images), size=2)
    got = keramic.ops.image.extract_patches(images, size=(2, 2), strides=2)
    assert str(got.dtype) == str(expected.dtype)
    np.testing.assert_array_equal(keramic.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(expected))


def test_compute_loss_override_without_training_argument_as_keras(keras):
    """A Keras-3.0-style override (no `training`, its own parameter names) is called positionally."""
    x = np.linspace(-1, 1, 12, dtype="float32").reshape(6, 2)
    y = (x[:, :1] * 3.0).astype("float32")
    results = {}
    for module in (keras, keramic):

        class Scaled(module.Model):
            def __init__(self):
                super().__init__()
                self.dense = module.layers.Dense(1, kernel_initializer="ones")

            def call(self, inputs):
                return self.dense(inputs)

            def compute_loss(self, inputs=None, targets=None, predictions=None, weights=None, allow_empty=False):
                return module.ops.mean(module.ops.abs(targets - predictions)) + 0.0 * module.ops.sum(inputs)

        model = Scaled()
        model.compile(optimizer=module.optimizers.SGD(0.1))
        history = model.fit(x, y, batch_size=3, epochs=2, shuffle=False, verbose=0)
        results[module.__name__] = history.history["loss"] + [model.evaluate(x, y, verbose=0)]
    np.testing.assert_allclose(results["keramic"], results["keras"], rtol=1e-5)


def test_string_lookup_multi_hot_encodes_each_ragged_row():
    # Tag lists of unequal lengths, one multi-hot row each (Keras takes them as a tf.RaggedTensor).
    tags = [["cs.LG"], ["cs.CV", "cs.LG"], ["stat.ML", "cs.LG", "cs.CV"], []]
    lookup = keramic.layers.StringLookup(output_mode="multi_hot")
    lookup.adapt(["cs.LG", "cs.LG", "cs.LG", "cs.CV", "cs.CV", "stat.ML"])
    assert lookup.get_vocabulary() == ["[UNK]", "cs.LG", "cs.CV", "stat.ML"]
    encoded = keramic.ops.convert_to_numpy(lookup(tags + [["unknown", "cs.CV"]]))
    assert encoded.tolist() == [[0, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0]]
    counts = keramic.layers.StringLookup(output_mode="count", vocabulary=["a", "b"])
    assert keramic.ops.convert_to_numpy(counts([["a", "a", "b"], ["b"]])).tolist() == [[0, 2, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match="ragged batch"):
        keramic.layers.StringLookup(vocabulary=["a", "b"])([["a", "b"], ["a"]])


@pytest.mark.parametrize("crop", [False, True])
def test_image_directory_resizes_as_keras_without_antialiasing(keras, tmp_path, crop):
    """Keras decodes, then resizes with bilinear interpolation and no antialiasing (float pixels);
    Pillow's own downscaling would give different numbers."""
    from PIL import Image

    os.makedirs(tmp_path / "only")
    pixels = np.random.default_rng(5).integers(0, 256, size=(13, 11, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "only" / "a.png")
    dataset = keramic.utils.image_dataset_from_directory(
        str(tmp_path), labels=None, image_size=(6, 4), batch_size=1, shuffle=False, verbose=False,
        crop_to_aspect_ratio=crop)
    got = next(iter(dataset)).numpy()[0]
    source = pixels.astype("float32")
    if crop:
        expected = keras.preprocessing.image.smart_resize(source, (6, 4))
    else:
        expected = keras.ops.image.resize(source, (6, 4), interpolation="bilinear")
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(expected), atol=1e-3)
