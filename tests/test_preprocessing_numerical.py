"""Numerical and audio preprocessing layers against real Keras 3 (torch backend): values, adapt
results, configs, and files both ways."""

import json
import os

import numpy as np
import pytest
import torch

from keramic.layers import preprocessing as ours
from layer_parity import assert_layer_parity

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "preprocessing")


def _numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _json(value):
    return json.loads(json.dumps(value))


@pytest.mark.interop
def test_discretization_adapt_and_outputs_match_keras(keras):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(500, 3)).astype("float32")
    batches = [data[:120], data[120:400], data[400:]]
    x = rng.normal(size=(6, 3)).astype("float32")
    for kwargs in (dict(num_bins=4), dict(num_bins=7, epsilon=0.05), dict(num_bins=3, output_mode="one_hot"),
                   dict(num_bins=5, output_mode="count"), dict(num_bins=5, output_mode="multi_hot")):
        for source in (data, batches):
            theirs = keras.layers.Discretization(**kwargs, name="d")
            mine = ours.Discretization(**kwargs, name="d")
            # Keras's adapt() checks for tf.data first (TensorFlow is absent): run the steps it runs.
            theirs.reset_state()
            for batch in source if isinstance(source, list) else [source]:
                theirs.update_state(batch)
            theirs.finalize_state()
            mine.adapt(source)
            assert mine.bin_boundaries == theirs.bin_boundaries, kwargs
            assert _json(mine.get_config()) == _json(theirs.get_config()), kwargs
            expected = _numpy(theirs(x))
            actual = _numpy(mine(x))
            assert actual.dtype == expected.dtype, kwargs
            np.testing.assert_array_equal(actual, expected, err_msg=str(kwargs))
            assert tuple(mine.compute_output_shape(x.shape)) == expected.shape
    fixed = dict(bin_boundaries=[-1.0, 0.0, 0.5, 2.0])
    np.testing.assert_array_equal(_numpy(ours.Discretization(**fixed)(x)), _numpy(keras.layers.Discretization(**fixed)(x)))


@pytest.mark.interop
def test_category_encoding_matches_keras(keras):
    ids = np.array([[0, 3, 3, 1], [2, 2, 0, 4]])
    weights = np.array([[0.5, 1.0, 2.0, 0.1], [1.0, 1.0, 3.0, 0.2]], "float32")
    for kwargs, x in ((dict(num_tokens=5), ids), (dict(num_tokens=6, output_mode="count"), ids),
                      (dict(num_tokens=5, output_mode="one_hot"), ids[:, :1]), (dict(num_tokens=5, output_mode="one_hot"), ids[0]),
                      (dict(num_tokens=5, output_mode="multi_hot"), ids[1])):
        theirs = keras.layers.CategoryEncoding(**kwargs, name="c")
        mine = ours.CategoryEncoding(**kwargs, name="c")
        np.testing.assert_array_equal(_numpy(mine(x)), _numpy(theirs(x)), err_msg=str(kwargs))
        assert _json(mine.get_config()) == _json(theirs.get_config())
        assert tuple(mine.compute_output_shape(x.shape)) == _numpy(theirs(x)).shape
    counted = keras.layers.CategoryEncoding(6, output_mode="count")(ids, count_weights=weights)
    np.testing.assert_allclose(_numpy(ours.CategoryEncoding(6, output_mode="count")(ids, count_weights=weights)), _numpy(counted))


@pytest.mark.interop
def test_normalization_adapt_matches_keras(keras):
    rng = np.random.default_rng(1)
    data = rng.normal(3.0, 2.0, size=(40, 4, 3)).astype("float32")
    for axis in (-1, (1, 2), None):
        theirs = keras.layers.Normalization(axis=axis)
        mine = ours.Normalization(axis=axis)
        theirs.adapt(data)
        mine.adapt(data)
        for a, b in zip(mine.get_weights(), theirs.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=str(axis))
        np.testing.assert_allclose(_numpy(mine(data[:3])), _numpy(theirs(data[:3])), atol=1e-5, err_msg=str(axis))


@pytest.mark.interop
@pytest.mark.parametrize(
    "name,kwargs,shape",
    [
        ("Rescaling", dict(scale=1 / 127.5, offset=-1), (2, 5, 3)),
        ("Normalization", dict(mean=[1.0, 2.0, 3.0], variance=[1.0, 4.0, 9.0]), (2, 3)),
        ("Normalization", dict(axis=-1), (2, 3)),
        ("Discretization", dict(bin_boundaries=[0.0, 1.0]), (2, 3)),
        ("CategoryEncoding", dict(num_tokens=4, output_mode="multi_hot"), (2, 3)),
        ("MelSpectrogram", dict(fft_length=32, sequence_stride=8, num_mel_bins=6, sampling_rate=800), (2, 64)),
        ("STFTSpectrogram", dict(mode="log", frame_length=16, frame_step=8), (2, 64, 1)),
    ],
)
def test_layers_in_models_and_files_both_ways(keras, tmp_path, name, kwargs, shape):
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 3, shape).astype("float32")
    if name == "CategoryEncoding":
        x = rng.integers(0, 4, shape).astype("float32")
    assert_layer_parity(
        keras, tmp_path,
        lambda: getattr(keras.layers, name)(**kwargs, name="layer"),
        lambda: getattr(ours, name)(**kwargs, name="layer"),
        x, atol=2e-5, rtol=1e-5, train=name == "STFTSpectrogram",
    )


@pytest.mark.interop
def test_mel_spectrogram_matches_keras(keras):
    signal = np.random.default_rng(3).normal(size=(2, 300)).astype("float32")
    for kwargs in (
        dict(fft_length=64, sequence_stride=16, num_mel_bins=10, sampling_rate=8000),
        dict(fft_length=64, sequence_stride=20, sequence_length=48, window="hamming", num_mel_bins=8, sampling_rate=4000,
             min_freq=100.0, max_freq=1500.0, power_to_db=False, mag_exp=1.0),
        dict(fft_length=32, sequence_stride=8, window=None, num_mel_bins=4, sampling_rate=1000, top_db=20.0, ref_power=2.0),
    ):
        theirs = keras.layers.MelSpectrogram(**kwargs, name="m")
        mine = ours.MelSpectrogram(**kwargs, name="m")
        expected = _numpy(theirs(signal))
        actual = _numpy(mine(signal))
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(actual, expected, atol=2e-5 * scale, err_msg=str(kwargs))
        assert _json(mine.get_config()) == _json(theirs.get_config())
        assert list(mine.compute_output_shape(signal.shape)) == list(expected.shape)


def test_stft_spectrogram_matches_recorded_keras():
    """Keras's STFTSpectrogram needs scipy (absent here): outputs recorded with it (see the fixture's script)."""
    with open(os.path.join(FIXTURES, "keras_tf_recorded.json")) as f:
        recorded = json.load(f)["stft"]
    signal = np.array(recorded["signal"], "float32")
    for case in recorded["cases"]:
        layer = ours.STFTSpectrogram(**case["kwargs"], name="stft")
        actual = _numpy(layer(signal))
        expected = np.array(case["output"], "float32")
        assert actual.shape == expected.shape, case["kwargs"]
        if case["kwargs"]["mode"] == "angle":  # +-pi are the same angle; the sign of a zero decides which
            actual, expected = np.cos(actual), np.cos(expected)
        np.testing.assert_allclose(actual, expected, rtol=2e-5, atol=2e-5, err_msg=str(case["kwargs"]))
        assert layer.get_config() == case["config"]
        assert [w.path for w in layer.weights] == case["weights"]
        assert tuple(layer.compute_output_shape(signal.shape)) == actual.shape


@pytest.mark.interop
def test_adapted_discretization_travels_in_files_both_ways(keras, tmp_path):
    """An adapted layer's config holds `num_bins` and `bin_boundaries` together; both sides rebuild it."""
    import keramic

    data = np.random.default_rng(4).normal(size=(200, 2)).astype("float32")
    inputs = keras.Input((2,))
    layer = keras.layers.Discretization(num_bins=5, output_mode="one_hot", name="d")
    layer.update_state(data)  # adapt()'s steps (Keras's adapt itself wants TensorFlow)
    layer.finalize_state()
    theirs = keras.Model(inputs, layer(inputs))
    x = data[:4]
    expected = theirs.predict(x, verbose=0)
    theirs.save(tmp_path / "keras.keras")
    mine = keramic.saving.load_model(tmp_path / "keras.keras")
    np.testing.assert_array_equal(mine.predict(x, verbose=0), expected)
    ours_layer = ours.Discretization(num_bins=5, output_mode="one_hot", name="d")
    ours_layer.adapt(data)
    assert ours_layer.bin_boundaries == layer.bin_boundaries
    our_inputs = keramic.Input((2,))
    keramic.Model(our_inputs, ours_layer(our_inputs)).save(tmp_path / "ours.keras")
    np.testing.assert_array_equal(keras.saving.load_model(tmp_path / "ours.keras").predict(x, verbose=0), expected)
