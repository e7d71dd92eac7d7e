"""`keras.utils` without TensorFlow: sequences, labels, datasets, images, registry and graph helpers."""

import os

import numpy as np
import pytest
import torch

import keramic
from keramic import utils


@pytest.mark.interop
def test_pad_sequences_matches_keras(keras):
    sequences = [[1, 2, 3], [4], [], [5, 6, 7, 8, 9]]
    for kwargs in [{}, {"maxlen": 3}, {"padding": "post"}, {"truncating": "post", "maxlen": 2},
                   {"value": -1, "padding": "post", "maxlen": 6}, {"dtype": "float32", "value": 0.5}]:
        np.testing.assert_array_equal(utils.pad_sequences(sequences, **kwargs),
                                      keras.utils.pad_sequences(sequences, **kwargs), err_msg=str(kwargs))
        assert utils.pad_sequences(sequences, **kwargs).dtype == keras.utils.pad_sequences(sequences, **kwargs).dtype
    vectors = [np.ones((2, 3)), np.zeros((1, 3))]
    np.testing.assert_array_equal(utils.pad_sequences(vectors, dtype="float32"), keras.utils.pad_sequences(vectors, dtype="float32"))
    with pytest.raises(ValueError, match="'pre' or 'post'"):
        utils.pad_sequences(sequences, padding="middle")
    assert keramic.preprocessing.sequence.pad_sequences is utils.pad_sequences


@pytest.mark.interop
def test_label_and_norm_helpers_match_keras(keras):
    labels = np.array([[0], [2], [1], [2]])
    np.testing.assert_array_equal(utils.to_categorical(labels), keras.utils.to_categorical(labels))
    np.testing.assert_array_equal(utils.to_categorical([1, 0], 4), keras.utils.to_categorical([1, 0], 4))
    data = np.random.default_rng(0).normal(size=(3, 4))
    for kwargs in [{}, {"order": 1}, {"order": 2, "axis": 1}]:
        np.testing.assert_allclose(utils.normalize(data, **kwargs), keras.utils.normalize(data, **kwargs), rtol=1e-6)
    for data in [1, (1,), (1, 2), (1, 2, 3), [1, 2]]:
        assert utils.unpack_x_y_sample_weight(data) == keras.utils.unpack_x_y_sample_weight(data)
    for args in [(1,), ([1, 2],), (1, 2), (1, 2, 3)]:
        assert utils.pack_x_y_sample_weight(*args) == keras.utils.pack_x_y_sample_weight(*args)


@pytest.mark.interop
def test_split_dataset_sizes_match_keras_and_keep_every_sample(keras):
    # Keras's torch path splits with torch.utils.data.random_split (random order even without
    # `shuffle`), so only the sizes and the samples, not their order, are comparable.
    data = (np.arange(20).reshape(10, 2), np.arange(10))
    for kwargs in [{"left_size": 0.8}, {"right_size": 3}, {"left_size": 4}]:
        left, right = utils.split_dataset(data, **kwargs)
        k_left, k_right = keras.utils.split_dataset(data, **kwargs)
        assert (len(left), len(right)) == (len(k_left), len(k_right)), kwargs
        labels = sorted(int(left[i][1]) for i in range(len(left))) + sorted(int(right[i][1]) for i in range(len(right)))
        assert sorted(labels) == list(range(10))
        np.testing.assert_array_equal(left[0][0], data[0][int(left[0][1])])
    left, right = utils.split_dataset(np.arange(10), left_size=0.5, shuffle=True, seed=1)
    assert sorted(np.concatenate([list(left), list(right)]).tolist()) == list(range(10))
    assert [int(v) for v in utils.split_dataset(np.arange(6), left_size=2)[0]] == [0, 1]
    with pytest.raises(ValueError, match="left_size or right_size"):
        utils.split_dataset(np.arange(4))


def test_timeseries_windows_and_targets():
    data = np.arange(20)
    dataset = utils.timeseries_dataset_from_array(data, data * 10, sequence_length=4, sequence_stride=2,
                                                  sampling_rate=2, batch_size=3)
    batches = list(dataset)
    windows = np.concatenate([w for w, _ in batches])
    targets = np.concatenate([t for _, t in batches])
    starts = np.arange(0, 20 - 6, 2)  # the last window must fit: start + (4 - 1) * 2 < 20
    np.testing.assert_array_equal(windows, starts[:, None] + np.arange(0, 8, 2)[None])
    np.testing.assert_array_equal(targets, starts * 10)
    assert [len(w) for w, _ in batches] == [3, 3, 1] and len(dataset) == 3


def test_timeseries_windows_are_cut_batch_by_batch():
    """The windows of a long series are not all made up front (here they would take 400 MB): each
    batch cuts its own, as Keras's tf.data pipeline does."""
    import tracemalloc

    data = np.arange(100_000, dtype="float32")
    tracemalloc.start()
    try:
        dataset = utils.timeseries_dataset_from_array(data, None, sequence_length=1000, batch_size=8)
        first = next(iter(dataset))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20
    np.testing.assert_array_equal(first, np.arange(8)[:, None] + np.arange(1000)[None])
    assert len(dataset) == -(-(100_000 - 999) // 8)


def test_py_dataset_feeds_fit_and_calls_epoch_hooks():
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 3)).astype("float32"), rng.random((32, 1)).astype("float32")

    class Batches(utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epochs_ended = 0

        def __len__(self):
            return 4

        def __getitem__(self, index):
            return x[index * 8:(index + 1) * 8], y[index * 8:(index + 1) * 8]

        def on_epoch_end(self):
            self.epochs_ended += 1

    model = keramic.Sequential([keramic.Input((3,)), keramic.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    data = Batches()
    history = model.fit(data, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and data.epochs_ended == 3  # as Keras: one more as fit resets after its building read
    assert utils.Sequence is utils.PyDataset


def _write_images(root, classes, count, size=(6, 5)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        os.makedirs(root / name)
        for i in range(count):
            pixels = rng.integers(0, 255, size + (3,), dtype="uint8")
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_image_dataset_from_directory_labels_sizes_and_splits(tmp_path):
    pytest.importorskip("PIL", reason="image datasets decode with Pillow")
    _write_images(tmp_path, ["cat", "dog"], 3)
    dataset = utils.image_dataset_from_directory(tmp_path, image_size=(4, 4), batch_size=4, shuffle=False, verbose=False)
    assert dataset.class_names == ["cat", "dog"]
    images, labels = zip(*dataset)
    assert [i.shape for i in images] == [(4, 4, 4, 3), (2, 4, 4, 3)]
    np.testing.assert_array_equal(np.concatenate(labels), [0, 0, 0, 1, 1, 1])
    train, validation = utils.image_dataset_from_directory(tmp_path, image_size=(4, 4), validation_split=0.5,
                                                           subset="both", seed=3, label_mode="categorical", verbose=False)
    assert train.num_elements + validation.num_elements == 6
    assert next(iter(train))[1].shape[-1] == 2
    grey = utils.image_dataset_from_directory(tmp_path, image_size=(3, 3), color_mode="grayscale", labels=None, verbose=False)
    assert next(iter(grey)).shape[-1] == 1
    with pytest.raises(ValueError, match="seed"):
        utils.image_dataset_from_directory(tmp_path, validation_split=0.5, subset="training", verbose=False)


def test_image_dataset_decodes_each_batch_as_it_is_read(tmp_path, monkeypatch):
    """A directory of images is not decoded up front (it need not fit in memory): each batch
    decodes its own files, as Keras's tf.data pipeline does, and gives the same arrays."""
    pytest.importorskip("PIL", reason="image datasets decode with Pillow")
    from keramic.utils import dataset_utils

    _write_images(tmp_path, ["cat", "dog"], 3)
    eager = np.concatenate([images for images, _ in utils.image_dataset_from_directory(
        tmp_path, image_size=(4, 4), batch_size=6, shuffle=False, verbose=False)])
    decoded = []
    real = dataset_utils._load_image
    monkeypatch.setattr(dataset_utils, "_load_image", lambda path, *args: decoded.append(path) or real(path, *args))
    dataset = utils.image_dataset_from_directory(tmp_path, image_size=(4, 4), batch_size=2, shuffle=False, verbose=False)
    assert decoded == []
    batches = iter(dataset)
    first, _ = next(batches)
    assert len(decoded) == 2
    rest = [images for images, _ in batches]
    assert len(decoded) == 6
    np.testing.assert_array_equal(np.concatenate([first, *rest]), eager)


def test_text_dataset_from_directory(tmp_path):
    for name, texts in {"neg": ["bad", "awful"], "pos": ["good"]}.items():
        os.makedirs(tmp_path / name)
        for i, text in enumerate(texts):
            (tmp_path / name / f"{i}.txt").write_text(text, encoding="utf-8")
    dataset = utils.text_dataset_from_directory(tmp_path, batch_size=8, shuffle=False, max_length=3, verbose=False)
    texts, labels = next(iter(dataset))
    assert list(texts) == ["bad", "awf", "goo"] and labels.tolist() == [0, 0, 1]
    assert dataset.class_names == ["neg", "pos"]


@pytest.mark.interop
def test_image_files_round_trip_like_keras(keras, tmp_path):
    pytest.importorskip("PIL", reason="image utilities use Pillow")
    pixels = np.random.default_rng(0).integers(0, 255, (5, 7, 3)).astype("float32")
    path = tmp_path / "image.png"
    utils.save_img(path, pixels, scale=False)
    keras_path = tmp_path / "keras.png"
    keras.utils.save_img(keras_path, pixels, scale=False)
    for kwargs in [{}, {"target_size": (3, 4)}, {"color_mode": "grayscale"}, {"target_size": (4, 4), "interpolation": "bilinear"}]:
        ours = utils.img_to_array(utils.load_img(path, **kwargs))
        theirs = keras.utils.img_to_array(keras.utils.load_img(keras_path, **kwargs))
        np.testing.assert_array_equal(ours, theirs, err_msg=str(kwargs))
    np.testing.assert_array_equal(utils.img_to_array(utils.load_img(path)), pixels)
    np.testing.assert_array_equal(utils.img_to_array(utils.load_img(path), data_format="channels_first"),
                                  keras.utils.img_to_array(keras.utils.load_img(keras_path), data_format="channels_first"))
    scaled = np.asarray(utils.array_to_img(pixels / 255.0))
    np.testing.assert_array_equal(scaled, np.asarray(keras.utils.array_to_img(pixels / 255.0)))
    assert keramic.preprocessing.image.load_img is utils.load_img
    resized = keramic.preprocessing.image.smart_resize(pixels, (4, 4))
    assert resized.shape == (4, 4, 3)


def test_plot_model_names_the_missing_package(tmp_path):
    model = keramic.Sequential([keramic.Input((2,)), keramic.layers.Dense(1)])
    try:
        import pydot  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pydot"):
            utils.plot_model(model, to_file=str(tmp_path / "model.png"))
        with pytest.raises(ImportError, match="graphviz"):
            utils.model_to_dot(model)
    else:
        assert utils.model_to_dot(model) is not None


def test_registry_and_serialization_helpers():
    @utils.register_keras_serializable(package="tests_utils")
    class Doubler(keramic.layers.Layer):
        def call(self, x):
            return x * 2

    assert utils.get_registered_name(Doubler) == "tests_utils>Doubler"
    assert utils.get_registered_object("tests_utils>Doubler") is Doubler
    config = utils.serialize_keras_object(Doubler(name="d"))
    assert config["registered_name"] == "tests_utils>Doubler"
    assert isinstance(utils.deserialize_keras_object(config), Doubler)

    class Local(keramic.layers.Layer):
        pass

    envelope = utils.serialize_keras_object(Local(name="local"))
    envelope["registered_name"] = "Local"
    with utils.custom_object_scope({"Local": Local}):
        assert isinstance(utils.deserialize_keras_object(envelope), Local)
    with pytest.raises(Exception, match="Local"):
        utils.deserialize_keras_object(envelope)


def test_graph_helpers():
    a, b = keramic.Input((2,), name="a"), keramic.Input((2,), name="b")
    out = keramic.layers.Dense(1)(keramic.ops.concatenate([a, b * 2.0], axis=-1))
    sources = utils.get_source_inputs(out)
    assert len(sources) == 2 and sources[0] is a and sources[1] is b
    assert utils.is_keras_tensor(out) and not utils.is_keras_tensor(torch.ones(1))
