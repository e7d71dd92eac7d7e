"""Layers that combine others or mix images: Pipeline, RandomColorJitter, RandAugment, AugMix, MixUp, CutMix.

Composite layers keep their parts as attributes named as in Keras, so the parts' saving paths
(`rand_augment/random_shear`, `pipeline/layers/random_flip`, ...) are Keras's.
"""

import torch

from keramic.layers.base import Layer
from keramic.layers.preprocessing import augmentation as aug
from keramic.layers.preprocessing import colour
from keramic.layers.preprocessing.image import AutoContrast, Equalization, ImagePreprocessingLayer
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object


@keras_export("keras.layers")
class Pipeline(Layer):
    """Apply a list of layers in order (the Keras way to chain augmentations outside a model)."""


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
            if layer is not None:
                images = layer.transform_images(images, None, training=True)
        return images

    def get_config(self):
        return self._config(("value_range", "brightness_factor", "contrast_factor", "saturation_factor", "hue_factor", "seed"))


def _augmentation_layers(owner, factor, value_range, interpolation, seed, data_format):
    """The operations RandAugment and AugMix choose from, as attributes with Keras's names."""
    geometric = dict(interpolation=interpolation, seed=seed, data_format=data_format)
    colour_args = dict(value_range=value_range, seed=seed, data_format=data_format)
    owner.random_shear = aug.RandomShear(x_factor=factor, y_factor=factor, **geometric)
    owner.random_translation = aug.RandomTranslation(height_factor=factor, width_factor=factor, **geometric)
    owner.random_rotation = aug.RandomRotation(factor=factor, **geometric)
    owner.random_brightness = colour.RandomBrightness(factor=factor, value_range=value_range, seed=seed, data_format=data_format)
    owner.random_color_degeneration = colour.RandomColorDegeneration(factor=factor, **colour_args)
    owner.random_contrast = colour.RandomContrast(factor=factor, value_range=value_range, seed=seed, data_format=data_format)
    owner.random_sharpness = colour.RandomSharpness(factor=factor, **colour_args)
    owner.solarization = colour.Solarization(addition_factor=factor, threshold_factor=factor, value_range=value_range,
                                          seed=seed, data_format=data_format)
    owner.random_posterization = colour.RandomPosterization(factor=max(1, int(8 * factor[1])), **colour_args)
    owner.auto_contrast = AutoContrast(value_range=value_range, data_format=data_format)
    owner.equalization = Equalization(value_range=value_range, data_format=data_format)
    return [owner.random_shear, owner.random_translation, owner.random_rotation, owner.random_brightness,
            owner.random_color_degeneration, owner.random_contrast, owner.random_sharpness, owner.solarization,
            owner.random_posterization, owner.auto_contrast, owner.equalization]


@keras_export("keras.layers")
class RandAugment(aug.RandomImageLayer):
    """Apply `num_ops` operations chosen at random (per batch) from a fixed set, at strength `factor`."""

    _FACTOR_BOUNDS = (0, 1)

    def __init__(self, value_range=(0, 255), num_ops=2, factor=0.5, interpolation="bilinear", seed=None, data_format=None, **kwargs):
        super().__init__(factor=factor, seed=seed, data_format=data_format, **kwargs)
        self.value_range = value_range
        self.num_ops = num_ops
        self.interpolation = interpolation
        self._operations = _augmentation_layers(self, self.factor, value_range, interpolation, seed, data_format)

    def augment(self, images):
        for _ in range(self.num_ops):
            index = int(self._uniform((), 0, len(self._operations)).floor().clamp(max=len(self._operations) - 1))
            images = self._operations[index].transform_images(images, None, training=True)
        return images

    def get_config(self):
        return self._config(("value_range", "num_ops", "factor", "interpolation", "seed"))


@keras_export("keras.layers")
class AugMix(aug.RandomImageLayer):
    """Mix `num_chains` chains of random operations with Dirichlet weights, then blend with the original."""

    _FACTOR_BOUNDS = (0, 1)

    def __init__(self, value_range=(0, 255), num_chains=3, chain_depth=3, factor=0.3, alpha=1.0, all_ops=True,
                 interpolation="bilinear", seed=None, data_format=None, **kwargs):
        super().__init__(factor=factor, seed=seed, data_format=data_format, **kwargs)
        self.value_range = value_range
        self.num_chains = num_chains
        self.chain_depth = chain_depth
        self.alpha = alpha
        self.all_ops = all_ops
        self.interpolation = interpolation
        operations = _augmentation_layers(self, self.factor, value_range, interpolation, seed, data_format)
        self._operations = operations if all_ops else operations[3:]

    def _sample(self, distribution):
        """Draw from a torch distribution with this layer's generator (reproducible under `seed`)."""
        state = torch.random.get_rng_state()
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (), generator=self._generator)))
        try:
            return distribution.sample()
        finally:
            torch.random.set_rng_state(state)

    def augment(self, images):
        count = images.shape[0]
        alpha = torch.tensor(float(self.alpha))
        weights = self._sample(torch.distributions.Dirichlet(alpha.expand(count, self.num_chains))).to(images.device, images.dtype)
        skip = self._sample(torch.distributions.Beta(alpha.expand(count), alpha.expand(count))).to(images.device, images.dtype)
        mixed = torch.zeros_like(images)
        for chain in range(self.num_chains):
            augmented = images
            depth = int(self._uniform((), 1, self.chain_depth + 1).floor().clamp(max=self.chain_depth))
            for _ in range(depth):
                index = int(self._uniform((), 0, len(self._operations)).floor().clamp(max=len(self._operations) - 1))
                augmented = self._operations[index].transform_images(augmented, None, training=True)
            mixed = mixed + weights[:, chain].view(-1, 1, 1, 1) * augmented
        skip = skip.view(-1, 1, 1, 1)
        return skip * images + (1 - skip) * mixed

    def get_config(self):
        return self._config(("value_range", "num_chains", "chain_depth", "factor", "alpha", "all_ops", "interpolation", "seed"))


class _BatchMixLayer(ImagePreprocessingLayer):
    """Mixing layers pair each sample with another of the batch; labels (in a dict) are mixed alike."""

    def __init__(self, factor=None, seed=None, data_format=None, **kwargs):
        super().__init__(factor=factor, data_format=data_format, seed=seed, **kwargs)
        self.seed = seed

    def _sample(self, distribution):
        state = torch.random.get_rng_state()
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (), generator=self._generator)))
        try:
            return distribution.sample()
        finally:
            torch.random.set_rng_state(state)

    def get_random_transformation(self, data, training=True):
        if not training:
            return None
        images = data["images"] if isinstance(data, dict) else data
        count = images.shape[0]
        permutation = torch.randperm(count, generator=self._generator)
        return {"permutation": permutation, **self.draw(images, count)}

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

    def draw(self, images, count):
        alpha = torch.tensor(float(self.alpha))
        weight = self._sample(torch.distributions.Beta(alpha.expand(count), alpha.expand(count)))
        return {"label_weight": weight}

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

    def draw(self, images, count):
        height, width = self._height_width(images)
        low, high = self.factor
        concentration = torch.tensor(max(float(high), 1e-6))
        ratio = self._sample(torch.distributions.Beta(concentration.expand(count), concentration.expand(count)))
        ratio = ratio.clamp(low, 1.0) if low > 0 else ratio
        cut = torch.sqrt(1.0 - ratio)
        box_h, box_w = (cut * height).floor(), (cut * width).floor()
        cy = self._uniform((count,), 0, height).floor()
        cx = self._uniform((count,), 0, width).floor()
        top, bottom = (cy - box_h / 2).clamp(0, height), (cy + box_h / 2).clamp(0, height)
        left, right = (cx - box_w / 2).clamp(0, width), (cx + box_w / 2).clamp(0, width)
        area = (bottom - top).floor() * (right - left).floor()
        return {"box": (top, bottom, left, right), "label_weight": 1.0 - area / (height * width)}

    def mix_images(self, images, transformation):
        top, bottom, left, right = (v.view(-1, 1, 1) for v in transformation["box"])
        height, width = self._height_width(images)
        rows = torch.arange(height).view(1, -1, 1)
        cols = torch.arange(width).view(1, 1, -1)
        inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
        inside = inside.unsqueeze(-1) if self.data_format == "channels_last" else inside.unsqueeze(1)
        other = images[transformation["permutation"].to(images.device)]
        return torch.where(inside.to(images.device), other, images)

    def get_config(self):
        return self._config(("factor", "seed"))
