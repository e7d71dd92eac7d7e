"""Layers that combine others or mix images: Pipeline, RandomColorJitter, RandAugment, AugMix, MixUp, CutMix.

Composite layers keep their parts as attributes named as in Keras, so the parts' saving paths
(`rand_augment/random_shear`, `pipeline/layers/random_flip`, ...) are Keras's.
"""

import random as python_random

import torch

from keramic import random as keramic_random
from keramic.layers.base import Layer
from keramic.layers.preprocessing import augmentation as aug
from keramic.layers.preprocessing import colour
from keramic.layers.preprocessing.image import AutoContrast, Equalization, ImagePreprocessingLayer
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object


@keras_export("keras.layers")
class Pipeline(Layer):
    """Apply a list of layers in order (the Keras way to chain augmentations outside a model)."""

    _allows_non_tensor_positional_args = True  # as Keras's data layers

    _converts_input_args = False  # as Keras: inputs are taken as they come


    def __init__(self, layers, name=None):
        super().__init__(name=name)
        self._pipeline_layers = layers

    @property
    def layers(self):
        return self._pipeline_layers

    def build(self, input_shape):
        """Build each stage on the shape the previous one produces, so their configs carry build configs too."""
        shape = input_shape
        for layer in self._pipeline_layers:
            if not layer.built:
                layer.build_from_config({"input_shape": list(shape)})
            shape = layer.compute_output_shape(shape)

    def call(self, inputs, training=True, mask=None):
        """`mask` is accepted because Keras's Pipeline records it in its call arguments; stages carry masks themselves."""
        for layer in self._pipeline_layers:
            inputs = layer(inputs, training=training)
        return inputs

    def compute_output_shape(self, input_shape):
        for layer in self._pipeline_layers:
            input_shape = layer.compute_output_shape(input_shape)
        return input_shape

    def get_config(self):
        return {"layers": serialize_keras_object(self._pipeline_layers), "name": self.name}

    @classmethod
    def from_config(cls, config):
        layers = config.get("layers")
        if not isinstance(layers, (list, tuple)):
            raise ValueError(
                "`Pipeline` config must contain a `layers` key mapping to a list of serialized layers. "
                f"Received config with layers={layers}."
            )
        return cls(layers=[deserialize_keras_object(x) for x in layers], name=config.get("name"))


@keras_export("keras.layers")
class RandomColorJitter(aug.RandomImageLayer):
    """Brightness, contrast, saturation and hue jitter in one layer (each only when its factor is given)."""

    _USE_BASE_FACTOR = False

    def __init__(self, value_range=(0, 255), brightness_factor=None, contrast_factor=None, saturation_factor=None,
                 hue_factor=None, seed=None, data_format=None, **kwargs):
        super().__init__(value_range=value_range, seed=seed, data_format=data_format, **kwargs)
        self.value_range = value_range
        self.brightness_factor = brightness_factor
        self.contrast_factor = contrast_factor
        self.saturation_factor = saturation_factor
        self.hue_factor = hue_factor
        common = dict(value_range=value_range, seed=seed)
        self.random_brightness = colour.RandomBrightness(brightness_factor, **common) if brightness_factor is not None else None
        self.random_contrast = colour.RandomContrast(contrast_factor, **common) if contrast_factor is not None else None
        self.random_saturation = (colour.RandomSaturation(saturation_factor, data_format=data_format, **common)
                                  if saturation_factor is not None else None)
        self.random_hue = colour.RandomHue(hue_factor, data_format=data_format, **common) if hue_factor is not None else None

    def augment(self, images):
        for layer in (self.random_brightness, self.random_contrast, self.random_saturation, self.random_hue):
            if layer is not None:  # each draws from this layer's generator, as in Keras
                with layer._drawing_from(self.generator):
                    images = layer.transform_images(images, None, training=True)
        return images

    def get_config(self):
        return self._config(("value_range", "brightness_factor", "contrast_factor", "saturation_factor", "hue_factor", "seed"))


def _make_operation(owner, name, factor, value_range, interpolation, seed, data_format):
    """Operation `name` of RandAugment / AugMix, set as the attribute of that name (Keras's)."""
    geometric = dict(interpolation=interpolation, seed=seed, data_format=data_format)
    colour_args = dict(value_range=value_range, seed=seed, data_format=data_format)
    makers = {
        "random_shear": lambda: aug.RandomShear(x_factor=factor, y_factor=factor, **geometric),
        "random_translation": lambda: aug.RandomTranslation(height_factor=factor, width_factor=factor, **geometric),
        "random_rotation": lambda: aug.RandomRotation(factor=factor, **geometric),
        "random_brightness": lambda: colour.RandomBrightness(factor=factor, **colour_args),
        "random_color_degeneration": lambda: colour.RandomColorDegeneration(factor=factor, **colour_args),
        "random_contrast": lambda: colour.RandomContrast(factor=factor, **colour_args),
        "random_sharpness": lambda: colour.RandomSharpness(factor=factor, **colour_args),
        "solarization": lambda: colour.Solarization(addition_factor=factor, threshold_factor=factor, **colour_args),
        "random_posterization": lambda: colour.RandomPosterization(factor=max(1, int(8 * factor[1])), **colour_args),
        "auto_contrast": lambda: AutoContrast(value_range=value_range, data_format=data_format),
        "equalization": lambda: Equalization(value_range=value_range, data_format=data_format),
    }
    setattr(owner, name, makers[name]())


def _apply_drawing_from(layer, images, seed, replay=None):
    """`layer`'s training transformation of `images` with its draws taken from `seed` (or replayed);
    returns the output and the draws made."""
    with layer._drawing_from(seed, replay) as record:
        return layer.transform_images(images, None, training=True), record


# Keras's lists: the order sub-layers are made in, and the order their draws are made / indexed in.
_RAND_AUGMENT_MADE = ("random_shear", "random_translation", "random_rotation", "random_brightness",
                      "random_color_degeneration", "random_contrast", "random_sharpness", "solarization",
                      "random_posterization", "auto_contrast", "equalization")
_RAND_AUGMENT_OPS = ("random_shear", "random_translation", "random_rotation", "random_brightness",
                     "random_color_degeneration", "random_contrast", "random_sharpness", "random_posterization",
                     "solarization", "auto_contrast", "equalization")
_AUG_MIX_OPS = ("random_shear", "random_translation", "random_rotation", "random_posterization", "solarization",
                "auto_contrast", "equalization")
_AUG_MIX_COLOUR_OPS = ("random_brightness", "random_color_degeneration", "random_contrast", "random_sharpness")


@keras_export("keras.layers")
class RandAugment(aug.RandomImageLayer):
    """Apply `num_ops` operations chosen at random (per batch) from a fixed set, at strength `factor`.

    As Keras: the operations' indices, then every operation's transformation, are drawn from this
    layer's generator; each chosen operation applies its drawn transformation."""

    _FACTOR_BOUNDS = (0, 1)

    def __init__(self, value_range=(0, 255), num_ops=2, factor=0.5, interpolation="bilinear", seed=None, data_format=None, **kwargs):
        super().__init__(factor=factor, seed=seed, data_format=data_format, **kwargs)
        self.value_range = value_range
        self.num_ops = num_ops
        self.interpolation = interpolation
        for name in _RAND_AUGMENT_MADE:
            _make_operation(self, name, self.factor, value_range, interpolation, seed, data_format)

    def augment(self, images):
        chosen = self._randint((self.num_ops,), 0, len(_RAND_AUGMENT_OPS)).tolist()
        draws = [_apply_drawing_from(getattr(self, name), images, self.generator)[1] for name in _RAND_AUGMENT_OPS]
        brightness = _RAND_AUGMENT_OPS.index("random_brightness")
        span = self.random_brightness.value_range[1] - self.random_brightness.value_range[0]
        # Keras runs every operation at each step and keeps the chosen one's output, which on torch has
        # two side effects reproduced here for Keras's numbers: its RandomBrightness adds its offset
        # in place, so the offset (unclipped) reaches the images at every step whichever operation is
        # chosen; and its affine_transform swaps entries of the transform it is given in place, so
        # RandomRotation's drawn matrix (reused at every step) has them swapped at odd steps.
        for step, index in enumerate(chosen):
            if index > brightness:
                images = images + (draws[brightness][0] * span).to(images.device, images.dtype)
            layer = getattr(self, _RAND_AUGMENT_OPS[index])
            layer.__dict__["_reused_matrix_swapped"] = step % 2 == 1
            try:
                images = _apply_drawing_from(layer, images, None, draws[index])[0]
            finally:
                layer.__dict__.pop("_reused_matrix_swapped")
            if index < brightness:
                images = images + (draws[brightness][0] * span).to(images.device, images.dtype)
        return images

    def get_config(self):
        return self._config(("value_range", "num_ops", "factor", "interpolation", "seed"))


@keras_export("keras.layers")
class AugMix(aug.RandomImageLayer):
    """Mix `num_chains` chains of random operations with Dirichlet weights, then blend with the original.

    As Keras: the chain weights (normalised Gamma draws) and the blend weight (a Beta draw) are
    one per batch, each chain step picks an operation (or none) with Python's `random.choice`,
    and the operations draw from this layer's generator."""

    _FACTOR_BOUNDS = (0, 1)
    _SORTS_VALUE_RANGE = False

    def __init__(self, value_range=(0, 255), num_chains=3, chain_depth=3, factor=0.3, alpha=1.0, all_ops=True,
                 interpolation="bilinear", seed=None, data_format=None, **kwargs):
        super().__init__(factor=factor, seed=seed, data_format=data_format, **kwargs)
        self.value_range = value_range
        self.num_chains = num_chains
        self.chain_depth = chain_depth
        self.alpha = alpha
        self.all_ops = all_ops
        self.interpolation = interpolation
        self._operation_names = list(_AUG_MIX_OPS + (_AUG_MIX_COLOUR_OPS if all_ops else ()))
        for name in self._operation_names:
            _make_operation(self, name, self.factor, value_range, interpolation, seed, data_format)

    def augment(self, images):
        weights = self._draw(lambda seed: keramic_random.gamma((self.num_chains,), self.alpha, seed=seed))
        weights = (weights / weights.sum(-1, keepdim=True)).to(images.device, images.dtype)
        blend = self._draw(lambda seed: keramic_random.beta((), self.alpha, self.alpha, seed=seed)).to(images.device, images.dtype)
        mixed = torch.zeros_like(images)
        for chain in range(self.num_chains):
            augmented = images
            for _ in range(self.chain_depth):
                name = python_random.choice(self._operation_names + [None])
                if name is not None:
                    augmented = _apply_drawing_from(getattr(self, name), augmented, self.generator)[0]
            mixed = mixed + augmented * weights[chain]
        return self._clip(blend * images + (1 - blend) * mixed)

    def get_config(self):
        return self._config(("value_range", "num_chains", "chain_depth", "factor", "alpha", "all_ops", "interpolation", "seed"))


class _BatchMixLayer(ImagePreprocessingLayer):
    """Mixing layers pair each sample with another of the batch; labels (in a dict) are mixed alike.

    Draws follow Keras's: a `keras.random.shuffle` of the batch indices and `keras.random.beta`
    weights, from the layer's SeedGenerator."""

    def __init__(self, factor=None, seed=None, data_format=None, **kwargs):
        super().__init__(factor=factor, data_format=data_format, seed=seed, **kwargs)
        self.seed = seed
        self._make_seed_generator(seed)

    def _shuffled_indices(self, count, dtype):
        return self._draw(lambda seed: keramic_random.shuffle(torch.arange(count, dtype=dtype), seed=seed))

    def _beta(self, count, alpha, dtype=None):
        return self._draw(lambda seed: keramic_random.beta((count,), alpha, alpha, dtype=dtype, seed=seed))

    def transform_images(self, images, transformation=None, training=True):
        images = self._images_in_compute_dtype(images)
        if not training or transformation is None:
            return images
        return self.mix_images(images, transformation)

    def transform_labels(self, labels, transformation=None, training=True):
        if not training or transformation is None:
            return labels
        labels = labels.to(torch.float32) if not labels.is_floating_point() else labels
        weight = transformation["label_weight"].to(labels.device, labels.dtype).view(-1, *([1] * (labels.dim() - 1)))
        return weight * labels + (1 - weight) * labels[transformation["permutation"].to(labels.device)]


@keras_export("keras.layers")
class MixUp(_BatchMixLayer):
    """Blend each image (and label) with another from the batch, weight ~ Beta(alpha, alpha)."""

    _USE_BASE_FACTOR = False

    def __init__(self, alpha=0.2, data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.alpha = alpha

    def get_random_transformation(self, data, training=True):
        images = data["images"] if isinstance(data, dict) else data
        count = images.shape[0]
        # Keras draws (and in inference drops) both, whatever `training` says.
        permutation = self._shuffled_indices(count, torch.int64)
        weight = self._beta(count, self.alpha)
        return {"permutation": permutation, "label_weight": weight} if training else None

    def mix_images(self, images, transformation):
        weight = transformation["label_weight"].to(images.device, images.dtype).view(-1, 1, 1, 1)
        return weight * images + (1 - weight) * images[transformation["permutation"].to(images.device)]

    def get_config(self):
        return self._config(("alpha", "seed"))


@keras_export("keras.layers")
class CutMix(_BatchMixLayer):
    """Paste a random box from another image of the batch; labels mix by the pasted area."""

    _FACTOR_BOUNDS = (0, 1)

    def __init__(self, factor=1.0, seed=None, data_format=None, **kwargs):
        super().__init__(factor=factor, seed=seed, data_format=data_format, **kwargs)

    def get_random_transformation(self, data, training=True):
        if not training:
            return None
        images = data["images"] if isinstance(data, dict) else data
        count = images.shape[0]
        height, width = self._height_width(images)
        dtype = self.compute_dtype
        alpha = self._uniform((), *self.factor, dtype=dtype) + 1e-6
        ratio = torch.sqrt(1.0 - self._beta(count, alpha, dtype))
        bounds = []
        for length in (width, height):
            extent = ratio * length
            start = self._uniform((count,), dtype=dtype) * (length - extent)
            bounds.append((start, start + extent))
        (left, right), (top, bottom) = bounds
        permutation = self._shuffled_indices(count, torch.int32)
        area = (right - left) * (bottom - top)
        return {"box": (top, bottom, left, right), "label_weight": 1.0 - area / (width * height),
                "permutation": permutation.long()}

    def mix_images(self, images, transformation):
        top, bottom, left, right = (v.view(-1, 1, 1) for v in transformation["box"])
        height, width = self._height_width(images)
        rows = torch.arange(height, dtype=top.dtype, device=top.device).view(1, -1, 1)
        cols = torch.arange(width, dtype=top.dtype, device=top.device).view(1, 1, -1)
        inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
        inside = inside.unsqueeze(-1) if self.data_format == "channels_last" else inside.unsqueeze(1)
        other = images[transformation["permutation"].to(images.device)]
        return torch.where(inside.to(images.device), other, images)

    def get_config(self):
        return self._config(("factor", "seed"))
