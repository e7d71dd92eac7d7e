"""The filtering and warping ops of `keras.ops.image` (gaussian_blur, sobel_edges, ssim,
extract_patches_3d, perspective_transform, elastic_transform, scale_and_translate) against real
Keras 3 on the torch backend, eagerly and as graph nodes that move both ways in `.keras` files."""

import numpy as np
import pytest
import torch

import keramic
from keramic import ops

pytestmark = pytest.mark.interop

RNG = np.random.default_rng(0)
IMAGES = RNG.random((2, 9, 10, 3)).astype("float32")
OTHER = RNG.random((2, 9, 10, 3)).astype("float32")
START = np.array([[0, 0], [9, 0], [9, 8], [0, 8]], "float32")
END = np.array([[1, 1], [8, 0], [9, 7], [0, 8]], "float32")


def _close(mine, theirs, tol=1e-5):
    theirs = np.asarray(theirs.detach().cpu() if hasattr(theirs, "detach") else theirs)
    mine = np.asarray(mine.detach().cpu() if hasattr(mine, "detach") else mine)
    assert mine.shape == theirs.shape and mine.dtype == theirs.dtype
    np.testing.assert_allclose(mine, theirs, rtol=tol, atol=tol)


def _layout(x, data_format):
    return x if data_format == "channels_last" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_filters_match_keras(keras, data_format):
    x, y = _layout(IMAGES, data_format), _layout(OTHER, data_format)
    _close(ops.image.gaussian_blur(x, (5, 5), (1.5, 0.7), data_format), keras.ops.image.gaussian_blur(x, (5, 5), (1.5, 0.7), data_format))
    _close(ops.image.sobel_edges(x, data_format), keras.ops.image.sobel_edges(x, data_format))
    _close(ops.image.ssim(x, y, filter_size=5, data_format=data_format), keras.ops.image.ssim(x, y, filter_size=5, data_format=data_format))
    _close(ops.image.ssim(x[0], x[0], filter_size=3, data_format=data_format), keras.ops.image.ssim(x[0], x[0], filter_size=3, data_format=data_format))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_warps_match_keras(keras, data_format, interpolation):
    x = _layout(IMAGES, data_format)
    _close(ops.image.perspective_transform(x, START, END, interpolation, data_format=data_format),
           keras.ops.image.perspective_transform(x, START, END, interpolation, data_format=data_format), 1e-4)
    for fill_mode in ("reflect", "constant", "nearest"):
        torch.manual_seed(3)
        mine = ops.image.elastic_transform(x, 3.0, 1.0, interpolation, fill_mode, data_format=data_format)
        torch.manual_seed(3)  # both draw their displacement fields from torch's global generator
        theirs = keras.ops.image.elastic_transform(x, 3.0, 1.0, interpolation, fill_mode, data_format=data_format)
        _close(mine, theirs, 1e-4)


def test_extract_patches_3d_matches_keras(keras):
    volumes = RNG.random((2, 4, 6, 6, 2)).astype("float32")
    for kwargs in (dict(size=(2, 3, 3)), dict(size=(2, 3, 3), padding="same"), dict(size=2, strides=(1, 2, 3))):
        _close(ops.image.extract_patches_3d(volumes, **kwargs), keras.ops.image.extract_patches_3d(volumes, **kwargs))
    first = np.ascontiguousarray(volumes[0].transpose(3, 0, 1, 2))
    _close(ops.image.extract_patches_3d(first, 2, data_format="channels_first"),
           keras.ops.image.extract_patches_3d(first, 2, data_format="channels_first"))


@pytest.mark.parametrize("method", ["linear", "bilinear", "cubic", "lanczos3", "lanczos5"])
@pytest.mark.parametrize("antialias", [True, False])
def test_scale_and_translate_matches_keras(keras, method, antialias):
    args = (IMAGES, (2, 5, 17, 3), np.array([0.5, 1.7], "float32"), np.array([0.3, -1.2], "float32"), (1, 2), method, antialias)
    _close(ops.image.scale_and_translate(*args), keras.ops.image.scale_and_translate(*args), 1e-4)
    small = (IMAGES * 255).astype("uint8")
    args = (small, (2, 4, 5, 3), np.array([0.5, 0.5], "float32"), np.array([0.0, 0.0], "float32"), (1, 2), method, antialias)
    _close(ops.image.scale_and_translate(*args), keras.ops.image.scale_and_translate(*args))


def _graph(lib):
    images = lib.Input((9, 10, 3), name="images")
    other = lib.Input((9, 10, 3), name="other")
    volume = lib.ops.reshape(images, (-1, 3, 3, 10, 3))
    outputs = [
        lib.ops.image.sobel_edges(images),
        lib.ops.image.gaussian_blur(images, (3, 3), (1.0, 1.0)),
        lib.ops.image.ssim(images, other, filter_size=3),
        lib.ops.image.extract_patches_3d(volume, (1, 3, 5)),
        lib.ops.image.perspective_transform(images, START, END),
    ]
    return lib.Model([images, other], outputs)


def test_graph_nodes_move_both_ways_in_keras_files(keras, tmp_path):
    theirs, mine = _graph(keras), _graph(keramic)
    for model in (theirs, mine):
        assert [tuple(o.shape) for o in model.outputs] == [(None, 9, 10, 3, 2), (None, 9, 10, 3), (None,), (None, 3, 1, 2, 45), (None, 9, 10, 3)]
    keras_file, keramic_file = tmp_path / "keras.keras", tmp_path / "keramic.keras"
    theirs.save(keras_file)
    mine.save(keramic_file)
    loaded_here, loaded_there = keramic.saving.load_model(keras_file), keras.saving.load_model(keramic_file)
    expected = theirs.predict([IMAGES, OTHER], verbose=0)
    for outputs in (loaded_here.predict([IMAGES, OTHER], verbose=0), loaded_there.predict([IMAGES, OTHER], verbose=0)):
        for a, b in zip(outputs, expected):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
