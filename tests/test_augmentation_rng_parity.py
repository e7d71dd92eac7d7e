"""Random image layers draw Keras's random numbers: each layer's SeedGenerator is made where
Keras makes it (an unseeded one from Python's `random`), and each call makes Keras's draws, so
with `seed=N`, or with `set_random_seed` and no seed, training-mode outputs equal Keras's (torch
backend) over consecutive calls, an inference call in between spends what Keras's spends, and a
Dense built afterwards gets Keras's kernel (the global generators are left where Keras leaves them).
"""

import numpy as np
import pytest

import keramic


@pytest.fixture(scope="module")
def keras():
    """Real Keras once per module: conftest's fixture clears Keras's session per test (a slow garbage
    collection); these tests need no clean session, `set_random_seed` resets what draws depend on."""
    return pytest.importorskip("keras", reason="real Keras 3 is the reference; pip install keras")


IMAGES = np.random.default_rng(0).uniform(0, 255, (2, 6, 7, 3)).astype("float32")

_LAYERS = {
    "flip": lambda L, s, **k: L.RandomFlip(seed=s, **k),
    "flip_vertical": lambda L, s, **k: L.RandomFlip("vertical", seed=s, **k),
    "rotation": lambda L, s, **k: L.RandomRotation(0.2, seed=s, **k),
    "zoom": lambda L, s, **k: L.RandomZoom(0.3, seed=s, **k),
    "zoom_both": lambda L, s, **k: L.RandomZoom((-0.3, 0.2), (0.1, 0.4), seed=s, **k),
    "translation": lambda L, s, **k: L.RandomTranslation(0.2, 0.3, seed=s, **k),
    "crop": lambda L, s, **k: L.RandomCrop(4, 5, seed=s, **k),
    "contrast": lambda L, s, **k: L.RandomContrast(0.4, seed=s, **k),
    "brightness": lambda L, s, **k: L.RandomBrightness(0.3, seed=s, **k),
    "hue": lambda L, s, **k: L.RandomHue(0.4, seed=s, **k),
    "saturation": lambda L, s, **k: L.RandomSaturation(0.4, seed=s, **k),
    "color_degeneration": lambda L, s, **k: L.RandomColorDegeneration(0.4, seed=s, **k),
    "sharpness": lambda L, s, **k: L.RandomSharpness(0.4, seed=s, **k),
    "grayscale": lambda L, s, **k: L.RandomGrayscale(0.5, seed=s, **k),
    "invert": lambda L, s, **k: L.RandomInvert(0.6, seed=s, **k),
    "posterization": lambda L, s, **k: L.RandomPosterization((2, 6), seed=s, **k),
    "solarization": lambda L, s, **k: L.Solarization(0.3, 0.6, seed=s, **k),
    "color_jitter": lambda L, s, **k: L.RandomColorJitter(
        brightness_factor=0.2, contrast_factor=0.3, saturation_factor=0.4, hue_factor=0.3, seed=s, **k),
    "shear": lambda L, s, **k: L.RandomShear(0.3, 0.2, seed=s, **k),
    "perspective": lambda L, s, **k: L.RandomPerspective(0.8, 0.5, seed=s, **k),
    "elastic": lambda L, s, **k: L.RandomElasticTransform(0.8, 0.9, seed=s, **k),
    "erasing": lambda L, s, **k: L.RandomErasing(0.8, seed=s, **k),
    "erasing_fill": lambda L, s, **k: L.RandomErasing(0.8, fill_value=7.0, seed=s, **k),
    "gaussian_blur": lambda L, s, **k: L.RandomGaussianBlur(0.8, 3, (0.5, 2.0), seed=s, **k),
    "mix_up": lambda L, s, **k: L.MixUp(0.3, seed=s, **k),
    "cut_mix": lambda L, s, **k: L.CutMix(0.8, seed=s, **k),
    "rand_augment": lambda L, s, **k: L.RandAugment(seed=s, **k),
    "rand_augment_3": lambda L, s, **k: L.RandAugment(num_ops=3, factor=0.3, seed=s, **k),
    "aug_mix": lambda L, s, **k: L.AugMix(seed=s, **k),
    "aug_mix_few": lambda L, s, **k: L.AugMix(num_chains=2, chain_depth=4, all_ops=False, seed=s, **k),
}  # fmt: skip
# Keras mixes single images wrongly (MixUp broadcasts them to a batch) or not at all (CutMix): the
# tests call those two on batches only.


def _run(lib, make, seed, data_format="channels_last"):
    """Make the layer after `set_random_seed`, call it (train, inference, train), then build a Dense.

    No `clear_session` (slow, a full garbage collection): `set_random_seed` resets what draws
    depend on, and configs are compared without their auto-made names."""
    lib.utils.set_random_seed(3)
    images = IMAGES if data_format == "channels_last" else IMAGES.transpose(0, 3, 1, 2)
    layer = make(lib.layers, seed, **({} if data_format == "channels_last" else {"data_format": data_format}))
    record = {}
    for i, training in enumerate((True, False, True)):
        out = layer(images.copy(), training=training)  # a copy: Keras's RandomBrightness adds in place
        record[f"call{i}"] = np.asarray(lib.ops.convert_to_numpy(out))
    if not isinstance(layer, (lib.layers.MixUp, lib.layers.CutMix)):  # see _BATCH_ONLY
        record["single"] = np.asarray(lib.ops.convert_to_numpy(layer(images[0].copy(), training=True)))
    dense = lib.layers.Dense(2)
    dense.build((3,))
    record["dense"] = np.asarray(lib.ops.convert_to_numpy(dense.kernel))
    config = layer.get_config()
    config.pop("name")
    return record, config


def _compare(keras, make, seed, data_format="channels_last"):
    theirs, their_config = _run(keras, make, seed, data_format)
    ours, our_config = _run(keramic, make, seed, data_format)
    assert our_config == their_config
    for key in theirs:
        assert ours[key].shape == theirs[key].shape, key
        # float32 maths in a different order: up to a few ulps of 255
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5, atol=1e-3, err_msg=key)
    np.testing.assert_array_equal(ours["dense"], theirs["dense"])


@pytest.mark.interop
@pytest.mark.parametrize("seed", [11, None], ids=["seeded", "unseeded"])
@pytest.mark.parametrize("name", list(_LAYERS))
def test_training_outputs_match_keras(keras, name, seed):
    _compare(keras, _LAYERS[name], seed)


@pytest.mark.interop
@pytest.mark.parametrize("name", ["flip", "rotation", "zoom", "translation", "crop", "hue", "sharpness", "shear",
                                  "perspective", "erasing", "gaussian_blur", "cut_mix", "rand_augment"])
def test_channels_first_matches_keras(keras, name):
    _compare(keras, _LAYERS[name], 5, "channels_first")


@pytest.mark.interop
def test_model_of_augmentations_matches_keras(keras):
    """A Sequential of unseeded augmentations then a Dense: weights and training outputs as Keras's."""

    def run(lib):
        lib.utils.clear_session()  # the seed generators' auto names, compared below
        lib.utils.set_random_seed(21)
        layers = lib.layers
        model = lib.Sequential([
            lib.Input((6, 7, 3)), layers.RandomFlip(), layers.RandomRotation(0.1), layers.RandomZoom(0.2),
            layers.RandomTranslation(0.1, 0.1), layers.RandomContrast(0.2), layers.RandomBrightness(0.1),
            layers.RandomCrop(5, 5), layers.Flatten(), layers.Dense(3),
        ])  # fmt: skip
        outs = [np.asarray(lib.ops.convert_to_numpy(model(IMAGES.copy(), training=True))) for _ in range(2)]
        kernel = np.asarray(lib.ops.convert_to_numpy(model.layers[-1].kernel))
        return outs, kernel, [v.path for v in model.variables]

    theirs, ours = run(keras), run(keramic)
    np.testing.assert_array_equal(ours[1], theirs[1])
    for a, b in zip(ours[0], theirs[0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    assert ours[2] == theirs[2]


@pytest.mark.interop
def test_python_random_consumed_as_keras(keras):
    """Unseeded layers take their seeds from Python's `random`, RandomCrop twice (its recorded seed too)."""
    import random

    def run(lib):
        random.seed(4)
        layers = lib.layers
        made = [layers.RandomFlip(), layers.RandomCrop(3, 3), layers.RandomColorJitter(brightness_factor=0.1, hue_factor=0.1)]
        return random.random(), made[1].get_config()["seed"]

    assert run(keramic) == run(keras)


@pytest.mark.interop
@pytest.mark.parametrize("name", ["mix_up", "cut_mix"])
def test_mixed_labels_match_keras(keras, name):
    def run(lib):
        lib.utils.set_random_seed(8)
        layer = _LAYERS[name](lib.layers, None)
        labels = np.eye(3, dtype="float32")[[0, 2]]
        outs = []
        for _ in range(2):
            out = layer({"images": IMAGES.copy(), "labels": labels.copy()}, training=True)
            outs += [np.asarray(lib.ops.convert_to_numpy(out[key])) for key in ("images", "labels")]
        return outs

    for ours, theirs in zip(run(keramic), run(keras)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)
