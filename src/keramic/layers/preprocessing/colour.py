"""Random colour augmentation: brightness, contrast, saturation, hue, sharpness, grayscale, inversion,
posterization, solarization. Identity at inference; in training, Keras's draws from the layer's SeedGenerator (see augmentation.py).

Each follows Keras's maths on pixel values in `value_range`, so where a layer's draw is fixed
(a one-point factor range) its training output equals Keras's.
"""

import torch
import torch.nn.functional as F

from keramic.layers.preprocessing.augmentation import RandomImageLayer
from keramic.layers.preprocessing.image import grayscale, hsv_to_rgb, rgb_to_hsv, transform_value_range
from keramic.serialization.registry import keras_export

_EPSILON = 1e-7  # Keras's backend.epsilon()


@keras_export("keras.layers")
class RandomBrightness(RandomImageLayer):
    """Add a random offset, `factor` times the value range, to every pixel."""

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(factor=factor, value_range=value_range, seed=seed, **kwargs)

    def augment(self, images):
        span = self.value_range[1] - self.value_range[0]
        return self._clip(images + self._per_image(images, *self.factor) * span)

    def get_config(self):
        return self._config(("factor", "value_range", "seed"))


@keras_export("keras.layers")
class RandomContrast(RandomImageLayer):
    """Scale each image's deviation from its per-channel mean by a random factor in
    `[1 - factor[0], 1 + factor[1]]` (Keras's range: `[1, 1 + f]` for a number `f`)."""

    _SORTS_VALUE_RANGE = False
    _FACTOR_BOUNDS = (0, 1)

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(factor=factor, value_range=value_range, seed=seed, **kwargs)

    def augment(self, images):
        contrast = self._per_image(images, 1.0 - self.factor[0], 1.0 + self.factor[1], self.compute_dtype)  # Keras's range
        mean = images.mean(dim=self._spatial_axes(), keepdim=True)
        return self._clip((images - mean) * contrast + mean)

    def get_config(self):
        return self._config(("factor", "value_range", "seed"))


@keras_export("keras.layers")
class RandomSaturation(RandomImageLayer):
    """Scale saturation by `f / (1 - f)` for a random `f` in `factor` (0 gives grayscale, 0.5 keeps it)."""

    _INFERENCE_DRAWS = 1

    def __init__(self, factor, value_range=(0, 255), data_format=None, seed=None, **kwargs):
        super().__init__(factor=factor, value_range=value_range, data_format=data_format, seed=seed, **kwargs)

    def augment(self, images):
        x = self._channels_last(images)
        amount = self._per_image(x, *self.factor)
        scale = amount / (1 - amount + _EPSILON)
        hsv = rgb_to_hsv(x)
        saturation = (hsv[..., 1:2] * scale).clamp(self.value_range[0], self.value_range[1])
        return self._restore_layout(hsv_to_rgb(torch.cat([hsv[..., :1], saturation, hsv[..., 2:]], dim=-1)))

    def get_config(self):
        return self._config(("factor", "value_range", "seed"))


@keras_export("keras.layers")
class RandomHue(RandomImageLayer):
    """Rotate hue by a random fraction of a turn, in either direction (half a turn at most)."""

    _SORTS_VALUE_RANGE = False
    _INFERENCE_DRAWS = 2

    _FACTOR_BOUNDS = (0, 1)

    def __init__(self, factor, value_range=(0, 255), data_format=None, seed=None, **kwargs):
        super().__init__(factor=factor, value_range=value_range, data_format=data_format, seed=seed, **kwargs)

    def augment(self, images):
        x = transform_value_range(self._channels_last(images), self.value_range, (0, 1))
        sign = torch.where(self._per_image(x, 0.0, 1.0) > 0.5, -1.0, 1.0).to(x.dtype)
        shift = sign * self._per_image(x, *self.factor) * 0.5
        hsv = rgb_to_hsv(x)
        hue = hsv[..., :1] + shift[..., :1]
        hue = torch.where(hue > 1.0, hue - 1.0, hue)
        hue = torch.where(hue < 0.0, hue + 1.0, hue)
        rgb = hsv_to_rgb(torch.cat([hue, hsv[..., 1:]], dim=-1)).clamp(0, 1)
        return self._restore_layout(transform_value_range(rgb, (0, 1), self.value_range))

    def get_config(self):
        return self._config(("factor", "value_range", "seed"))


@keras_export("keras.layers")
class RandomColorDegeneration(RandomImageLayer):
    """Blend each image towards its grayscale version by a random factor."""

    _FACTOR_BOUNDS = (-1, 1)
    _INFERENCE_DRAWS = 1

    def __init__(self, factor, value_range=(0, 255), data_format=None, seed=None, **kwargs):
        super().__init__(factor=factor, value_range=value_range, data_format=data_format, seed=seed, **kwargs)

    def augment(self, images):
        x = self._channels_last(images)
        gray = grayscale(x)
        amount = self._per_image(x, *self.factor)
        return self._restore_layout(self._clip(x + amount * (gray - x)))

    def get_config(self):
        return self._config(("factor", "value_range", "seed"))


@keras_export("keras.layers")
class RandomSharpness(RandomImageLayer):
    """Blend each image with a smoothed copy (Keras's 3x3 kernel): amounts above 0.5 sharpen, below soften."""

    _FACTOR_BOUNDS = (0, 1)
    _INFERENCE_DRAWS = 1

    def __init__(self, factor, value_range=(0, 255), data_format=None, seed=None, **kwargs):
        super().__init__(factor=factor, value_range=value_range, data_format=data_format, seed=seed, **kwargs)

    def augment(self, images):
        x = images.permute(0, 3, 1, 2) if self.data_format == "channels_last" else images
        kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], dtype=x.dtype, device=x.device) / 13.0
        channels = x.shape[1]
        smooth = F.conv2d(x, kernel.expand(channels, 1, 3, 3), padding=1, groups=channels)
        amount = self._per_image(x, *self.factor).view(-1, 1, 1, 1) * 2.0
        out = self._clip(x + (1.0 - amount) * (smooth - x))
        return out.permute(0, 2, 3, 1) if self.data_format == "channels_last" else out

    def get_config(self):
        return self._config(("factor", "value_range", "seed"))


@keras_export("keras.layers")
class RandomGrayscale(RandomImageLayer):
    """Turn each image grayscale (kept with all its channels) with probability `factor`."""

    _USE_BASE_FACTOR = False
    _INFERENCE_DRAWS = 1

    def __init__(self, factor=0.5, data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        if factor < 0 or factor > 1:
            raise ValueError(f"`factor` should be between 0 and 1. Received: factor={factor}")
        self.factor = factor

    def augment(self, images):
        x = self._channels_last(images)
        gray = grayscale(x).expand_as(x)
        chosen = self._per_image(x, 0.0, 1.0) < self.factor
        return self._restore_layout(torch.where(chosen, gray, x))

    def get_config(self):
        return self._config(("factor",))


@keras_export("keras.layers")
class RandomInvert(RandomImageLayer):
    """Invert pixel values within `value_range`, each image with probability drawn from `factor`."""

    _SORTS_VALUE_RANGE = False
    _FACTOR_BOUNDS = (0, 1)

    def __init__(self, factor=1.0, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(factor=factor, value_range=value_range, seed=seed, data_format=data_format, **kwargs)

    def augment(self, images):
        probability = self._per_image(images, *self.factor)  # Keras draws the probability first
        chosen = self._per_image(images, 0.0, 1.0) < probability
        inverted = self.value_range[1] - images  # Keras's inversion (the lower end of the range ignored)
        return torch.where(chosen, inverted, images)

    def get_config(self):
        return self._config(("factor", "value_range", "seed"))


@keras_export("keras.layers")
class RandomPosterization(RandomImageLayer):
    """Keep a random number of high bits (1 to 8) of each 8-bit channel value."""

    _FACTOR_BOUNDS = (1, 8)

    def __init__(self, factor, value_range=(0, 255), data_format=None, seed=None, **kwargs):
        super().__init__(factor=factor, value_range=value_range, data_format=data_format, seed=seed, **kwargs)

    def _inference_draws(self):
        return int(self.factor[0] != self.factor[1])

    def augment(self, images):
        # A plain cast to uint8 as Keras's (out-of-range values wrap as torch's cast makes them; they
        # arise inside RandAugment, whose brightness offsets reach the images unclipped).
        x = transform_value_range(images, self.value_range, (0, 255)).to(torch.uint8).to(torch.int32)
        if self.factor[0] != self.factor[1]:  # Keras's draw: `randint` below the upper factor, as uint8
            bits = self._randint((images.shape[0],), int(self.factor[0]), int(self.factor[1]), "uint8")
            bits = bits.to(torch.int32).view(-1, 1, 1, 1)
        else:
            bits = torch.full((images.shape[0], 1, 1, 1), int(self.factor[0]), dtype=torch.int32)
        shift = (8 - bits).to(x.device)
        x = (x >> shift) << shift
        return transform_value_range(x.to(images.dtype), (0, 255), self.value_range)

    def get_config(self):
        return self._config(("factor", "value_range", "seed"))


@keras_export("keras.layers")
class Solarization(RandomImageLayer):
    """Add a random amount, then invert pixels above a random threshold."""

    _USE_BASE_FACTOR = False

    def __init__(self, addition_factor=0.0, threshold_factor=0.0, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(value_range=value_range, seed=seed, **kwargs)
        self.addition_factor = self._factor_range(addition_factor, (0, 1), "addition_factor")
        self.threshold_factor = self._factor_range(threshold_factor, (0, 1), "threshold_factor")

    def augment(self, images):
        x = transform_value_range(images, self.value_range, (0, 255))
        # Keras scales only the upper end of each range by 255; kept as is so configs mean the same.
        addition = self._per_image(x, self.addition_factor[0], self.addition_factor[1] * 255, self.compute_dtype)
        threshold = self._per_image(x, self.threshold_factor[0], self.threshold_factor[1] * 255, self.compute_dtype)
        x = (x + addition).clamp(0, 255)
        x = torch.where(x < threshold, x, 255 - x)
        return transform_value_range(x, (0, 255), self.value_range)

    def get_config(self):
        return self._config(("value_range", "addition_factor", "threshold_factor", "seed"))
