"""Random geometric and occlusion augmentation (flip, rotation, zoom, translation, shear, crop,
erasing, blur, perspective, elastic) and the base of every random image layer: identity at
inference, seeded and reproducible in training.

Each layer owns a `keramic.random.SeedGenerator` (`self.generator`, made in `__init__` where
Keras makes it, so an unseeded one takes its seed from Python's `random` in Keras's order) and
makes the same `keras.random` draws as Keras's layer, in the same order and shapes: with the same
seed (or the same `set_random_seed`) the training-mode pixels are Keras's.
"""

import math

import torch

from keramic import random as keramic_random
from keramic.layers.preprocessing.image import ImagePreprocessingLayer, affine_transform, resize
from keramic.ops import image as image_ops
from keramic.serialization.registry import keras_export


class RandomImageLayer(ImagePreprocessingLayer):
    """Random layers: pass images through (in the compute dtype) unless training."""

    def __init__(self, factor=None, value_range=None, seed=None, data_format=None, **kwargs):
        super().__init__(factor=factor, data_format=data_format, seed=seed, **kwargs)
        if value_range is not None:
            if len(value_range) != 2:
                raise ValueError(f"The `value_range` argument should be a list of two numbers. Received: value_range={value_range}")
            self.value_range = sorted(value_range) if self._SORTS_VALUE_RANGE else value_range
        self.seed = seed
        self._make_seed_generator(seed)

    _SORTS_VALUE_RANGE = True  # Keras sorts `value_range` in some layers and keeps it as given in others
    _INFERENCE_DRAWS = 0  # draws Keras's layer makes (and drops) when called in inference mode

    def transform_images(self, images, transformation=None, training=True):
        images = self._images_in_compute_dtype(images)
        if not training:
            self._advance_seed(self._inference_draws())
            return images
        return self.augment(images)

    def _inference_draws(self):
        return self._INFERENCE_DRAWS

    def augment(self, images):
        raise NotImplementedError

    def _per_image(self, images, low, high, dtype=None):
        """One uniform draw per image, shaped `(batch, 1, 1, 1)` as Keras draws it."""
        return self._uniform((images.shape[0], 1, 1, 1), low, high, dtype).to(images.device, images.dtype)

    def _clip(self, images):
        return images.clamp(self.value_range[0], self.value_range[1])


_LAYER_FILL_MODES = ("reflect", "wrap", "constant", "nearest")  # what Keras's layers accept ("mirror" is ops-only)


def _check_fill(fill_mode, interpolation):
    if fill_mode not in _LAYER_FILL_MODES:
        raise NotImplementedError(f"Unknown `fill_mode` {fill_mode}. Expected of one {_LAYER_FILL_MODES}.")
    if interpolation not in ("nearest", "bilinear"):
        raise NotImplementedError(f"Unknown `interpolation` {interpolation}. Expected of one ('nearest', 'bilinear').")


@keras_export("keras.layers")
class RandomFlip(RandomImageLayer):
    """Flip each image horizontally and/or vertically with probability 1/2."""

    _converts_input_args = False  # as Keras: inputs are taken as they come

    _USE_BASE_FACTOR = False

    def __init__(self, mode="horizontal_and_vertical", seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        if mode not in ("horizontal", "vertical", "horizontal_and_vertical"):
            raise ValueError(f"RandomFlip layer {self.name} received an unknown mode argument {mode}")
        self.mode = mode

    def augment(self, images):
        height_axis, width_axis = self._spatial_axes()
        flip = self._per_image(images, 0.0, 1.0) <= 0.5  # one draw per image, for both directions (as Keras)
        for flip_mode, axis in (("horizontal", width_axis), ("vertical", height_axis)):
            if flip_mode in self.mode:
                images = torch.where(flip, images.flip(axis), images)
        return images

    def get_config(self):
        return self._config(("seed", "mode"))


@keras_export("keras.layers")
class RandomRotation(RandomImageLayer):
    """Rotate by a random angle in `factor * 2pi` about the image centre."""

    _FACTOR_BOUNDS = (-1, 1)

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, data_format=None, **kwargs):
        super().__init__(factor=factor, seed=seed, data_format=data_format, **kwargs)
        _check_fill(fill_mode, interpolation)
        self.fill_mode = fill_mode
        self.interpolation = interpolation
        self.fill_value = fill_value

    def augment(self, images):
        height, width = self._height_width(images)
        degrees = self._uniform((images.shape[0],), self.factor[0] * 360.0, self.factor[1] * 360.0)
        angles = degrees * torch.tensor(math.pi / 180.0, dtype=degrees.dtype)
        cos, sin = torch.cos(angles), torch.sin(angles)
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        # Output pixel -> input pixel: rotate about the centre by -angle.
        transforms = torch.stack([cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy,
                                  torch.zeros_like(cos), torch.zeros_like(cos)], dim=1)
        if self.__dict__.get("_reused_matrix_swapped"):  # set by RandAugment: see there
            transforms = transforms[:, [4, 1, 5, 3, 0, 2, 6, 7]]
        return affine_transform(images, transforms, self.interpolation, self.fill_mode, self.fill_value, self.data_format)

    def get_config(self):
        return self._config(("factor", "fill_mode", "fill_value", "interpolation", "seed"))


def _signed_range(factor, name):
    if isinstance(factor, (tuple, list)):
        if len(factor) != 2:
            raise ValueError(f"`{name}` should be a float or a tuple of two floats. Received: {name}={factor}")
        return float(factor[0]), float(factor[1])
    return -float(factor), float(factor)


@keras_export("keras.layers")
class RandomZoom(RandomImageLayer):
    """Zoom in or out by a random factor per axis (`width_factor=None` keeps the aspect ratio)."""

    _USE_BASE_FACTOR = False

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.height_factor = height_factor
        self.height_lower, self.height_upper = _signed_range(height_factor, "height_factor")
        self.width_factor = width_factor
        if width_factor is not None:
            self.width_lower, self.width_upper = _signed_range(width_factor, "width_factor")
        if self.height_lower < -1.0 or self.height_upper < -1.0:
            raise ValueError(f"`height_factor` argument must have values larger than -1. Received: height_factor={height_factor}")
        _check_fill(fill_mode, interpolation)
        self.fill_mode = fill_mode
        self.fill_value = fill_value
        self.interpolation = interpolation

    def zoom_transforms(self, height_zoom, width_zoom, height, width):
        """Keras's zoom matrix: scale about the centre by (width_zoom, height_zoom)."""
        zeros = torch.zeros_like(height_zoom)
        return torch.stack([width_zoom, zeros, (width - 1) / 2.0 * (1.0 - width_zoom), zeros, height_zoom,
                            (height - 1) / 2.0 * (1.0 - height_zoom), zeros, zeros], dim=1)

    def augment(self, images):
        height, width = self._height_width(images)
        height_zoom = self._uniform((images.shape[0],), 1.0 + self.height_lower, 1.0 + self.height_upper)
        width_zoom = (self._uniform((images.shape[0],), 1.0 + self.width_lower, 1.0 + self.width_upper)
                      if self.width_factor is not None else height_zoom)
        transforms = self.zoom_transforms(height_zoom, width_zoom, height, width)
        return affine_transform(images, transforms, self.interpolation, self.fill_mode, self.fill_value, self.data_format)

    def get_config(self):
        return self._config(("height_factor", "width_factor", "fill_mode", "interpolation", "seed", "fill_value"))


@keras_export("keras.layers")
class RandomTranslation(RandomImageLayer):
    """Shift by a random fraction of the height and width."""

    _USE_BASE_FACTOR = False

    def __init__(self, height_factor, width_factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.height_factor = height_factor
        self.height_lower, self.height_upper = _signed_range(height_factor, "height_factor")
        self.width_factor = width_factor
        self.width_lower, self.width_upper = _signed_range(width_factor, "width_factor")
        _check_fill(fill_mode, interpolation)
        self.fill_mode = fill_mode
        self.fill_value = fill_value
        self.interpolation = interpolation

    def augment(self, images):
        height, width = self._height_width(images)
        dy = self._uniform((images.shape[0],), self.height_lower, self.height_upper) * height
        dx = self._uniform((images.shape[0],), self.width_lower, self.width_upper) * width
        ones, zeros = torch.ones_like(dx), torch.zeros_like(dx)
        transforms = torch.stack([ones, zeros, -dx, zeros, ones, -dy, zeros, zeros], dim=1)
        return affine_transform(images, transforms, self.interpolation, self.fill_mode, self.fill_value, self.data_format)

    def get_config(self):
        return self._config(("height_factor", "width_factor", "fill_mode", "interpolation", "seed", "fill_value"))


@keras_export("keras.layers")
class RandomShear(RandomImageLayer):
    """Shear along x and/or y by random factors (each sign equally likely)."""

    _USE_BASE_FACTOR = False
    _FACTOR_BOUNDS = (-1, 1)

    def __init__(self, x_factor=0.0, y_factor=0.0, interpolation="bilinear", fill_mode="reflect", fill_value=0.0,
                 data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.x_factor = self._factor_range(x_factor, self._FACTOR_BOUNDS, "x_factor")
        self.y_factor = self._factor_range(y_factor, self._FACTOR_BOUNDS, "y_factor")
        _check_fill(fill_mode, interpolation)
        self.fill_mode = fill_mode
        self.fill_value = fill_value
        self.interpolation = interpolation

    def augment(self, images):
        count = images.shape[0]
        dtype = self.compute_dtype
        sign = torch.where(self._uniform((count,), dtype=dtype) > 0.5, -1.0, 1.0)
        sy = self._uniform((count,), *self.y_factor, dtype=dtype) * sign
        sx = self._uniform((count,), *self.x_factor, dtype=dtype) * sign
        ones, zeros = torch.ones_like(sx), torch.zeros_like(sx)
        # Keras's shear matrix: about the top-left corner (no centring)
        transforms = torch.stack([ones, sx, zeros, sy, ones, zeros, zeros, zeros], dim=1)
        return affine_transform(images, transforms, self.interpolation, self.fill_mode, self.fill_value, self.data_format)

    def get_config(self):
        return self._config(("x_factor", "y_factor", "fill_mode", "interpolation", "seed", "fill_value"))


@keras_export("keras.layers")
class RandomCrop(RandomImageLayer):
    """Crop a random `(height, width)` window in training (images smaller than it are resized up first).

    At inference Keras 3 passes images through (despite the output shape it reports), while
    tf.keras 2 returns the centred crop of the target's aspect ratio resized to `(height, width)`.
    `rng_type` is tf.keras 2's argument: a layer read from a tf.keras file carries it, so it keeps
    tf.keras's inference and is written back in the form tf.keras reads (Keras 3 refuses it).
    """

    _converts_input_args = False  # as Keras: inputs are taken as they come

    _USE_BASE_FACTOR = False

    def __init__(self, height, width, seed=None, data_format=None, name=None, rng_type=None, **kwargs):
        # Keras records a seed drawn from Python's `random`, then makes its generator from the seed given.
        recorded = seed if seed is not None else keramic_random.make_default_seed()
        super().__init__(seed=seed, data_format=data_format, name=name, **kwargs)
        self.seed = recorded
        self.height = height
        self.width = width
        self.rng_type = rng_type

    def transform_images(self, images, transformation=None, training=True):
        """Inference: Keras 3's pass-through, or tf.keras 2's centred resize for its layers."""
        if training:
            return self.augment(self._images_in_compute_dtype(images))
        if self.rng_type is None:
            return images
        return self._centre_resize(self._images_in_compute_dtype(images))

    def augment(self, images):
        height, width = self._height_width(images)
        fits = height >= self.height and width >= self.width
        if self.rng_type is not None and not fits:
            return self._centre_resize(images)  # tf.keras's fallback
        if fits and (self.rng_type is not None or (height > self.height and width > self.width)):
            top = int(self._uniform((), 0, height - self.height + 1).floor().clamp(max=height - self.height))
            left = int(self._uniform((), 0, width - self.width + 1).floor().clamp(max=width - self.width))
        else:  # Keras 3's fallback: the target-sized window at the centred box's corner, then resized
            top, left, _, _ = self._centred_box(height, width)
        images = self._window(images, top, left, self.height, self.width)
        if self._height_width(images) != (self.height, self.width):
            images = resize(images, (self.height, self.width), "bilinear", data_format=self.data_format)
        return images

    def _centred_box(self, height, width):
        """`(top, left, height, width)` of the largest centred box of the target's aspect ratio."""
        crop_h = max(min(height, int(float(width * self.height) / self.width)), 1)
        crop_w = max(min(width, int(float(height * self.width) / self.height)), 1)
        return int(float(height - crop_h) / 2), int(float(width - crop_w) / 2), crop_h, crop_w

    def _centre_resize(self, images):
        """tf.keras 2's inference: the centred box of the target's aspect ratio, resized (bilinear) to the target."""
        images = self._window(images, *self._centred_box(*self._height_width(images)))
        if self._height_width(images) != (self.height, self.width):
            images = resize(images, (self.height, self.width), "bilinear", data_format=self.data_format)
        return images

    def _window(self, images, top, left, height, width):
        if self.data_format == "channels_last":
            return images[:, top : top + height, left : left + width, :]
        return images[:, :, top : top + height, left : left + width]

    def compute_output_shape(self, input_shape):
        input_shape = list(input_shape)
        h_axis, w_axis = (-3, -2) if self.data_format == "channels_last" else (-2, -1)
        input_shape[h_axis], input_shape[w_axis] = self.height, self.width
        return tuple(input_shape)

    def get_config(self):
        if self.rng_type is None:
            return self._config(("height", "width", "seed"))
        # tf.keras's own keys: it has no `data_format` (always channels-last) and refuses one.
        config = self._config(("rng_type", "height", "width", "seed"))
        if config["data_format"] == "channels_last":
            del config["data_format"]
        return config


@keras_export("keras.layers")
class RandomErasing(RandomImageLayer):
    """Erase a random rectangle (area fraction drawn from `scale`) with probability from `factor`."""

    _SORTS_VALUE_RANGE = False
    _FACTOR_BOUNDS = (0, 1)

    def __init__(self, factor=1.0, scale=(0.02, 0.33), fill_value=None, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(factor=factor, value_range=value_range, seed=seed, data_format=data_format, **kwargs)
        self.scale = self._factor_range(scale, (0, 1), "scale")
        self.fill_value = fill_value

    def augment(self, images):
        count = images.shape[0]
        height, width = self._height_width(images)
        dtype = self.compute_dtype
        sides = torch.sqrt(self._uniform((count, 2), *self.scale, dtype=dtype))  # (width, height) fractions
        boxes = []
        for length, side in ((width, sides[:, 0]), (height, sides[:, 1])):
            extent = side * length
            start = self._uniform((count,), dtype=dtype) * (length - extent)
            boxes.append((start, start + extent))
        (x0, x1), (y0, y1) = boxes
        probability = self._uniform((count,), *self.factor)
        chosen = self._uniform((count,)) < probability
        rows = torch.arange(height, dtype=x0.dtype, device=x0.device).view(1, -1, 1)
        cols = torch.arange(width, dtype=x0.dtype, device=x0.device).view(1, 1, -1)
        inside = ((cols >= x0.view(-1, 1, 1)) & (cols < x1.view(-1, 1, 1))
                  & (rows >= y0.view(-1, 1, 1)) & (rows < y1.view(-1, 1, 1)) & chosen.view(-1, 1, 1))
        inside = inside.unsqueeze(-1 if self.data_format == "channels_last" else 1).to(images.device)
        if self.fill_value is None:  # Keras's noise: standard normal times the range's top, then clipped
            fill = self._draw(lambda seed: keramic_random.normal(tuple(images.shape), dtype=dtype, seed=seed)) * self.value_range[1]
        elif isinstance(self.fill_value, (tuple, list)):
            fill = torch.tensor([float(v) for v in self.fill_value], dtype=images.dtype).expand_as(images)
        else:
            fill = torch.full_like(images, float(self.fill_value))
        fill = fill.to(images.device, images.dtype).clamp(self.value_range[0], self.value_range[1])
        return torch.where(inside, fill, images)

    def get_config(self):
        return self._config(("factor", "scale", "fill_value", "value_range", "seed"))


@keras_export("keras.layers")
class RandomGaussianBlur(RandomImageLayer):
    """Blur with a Gaussian kernel of random sigma, each image with probability from `factor`."""

    _SORTS_VALUE_RANGE = False
    _FACTOR_BOUNDS = (0, 1)

    def __init__(self, factor=1.0, kernel_size=3, sigma=1.0, value_range=(0, 255), data_format=None, seed=None, **kwargs):
        super().__init__(factor=factor, value_range=value_range, data_format=data_format, seed=seed, **kwargs)
        self.kernel_size = self._kernel_size(kernel_size)
        self.sigma = self._factor_range(sigma, (0, float("inf")), "sigma")

    @staticmethod
    def _kernel_size(size):
        if isinstance(size, int):
            return (size, size)
        if isinstance(size, (tuple, list)) and len(size) == 2:
            return tuple(size)
        raise ValueError(f"Invalid `kernel_size`: expected an int or two ints. Received: kernel_size={size}")

    def augment(self, images):
        count = images.shape[0]
        probability = self._uniform((count,), *self.factor)
        chosen = self._uniform((count,)) < probability
        sigma = self._uniform((2,), *self.sigma, dtype=self.compute_dtype) + 1e-6  # one pair per batch, as Keras
        blurred = image_ops.gaussian_blur(images, self.kernel_size, sigma, data_format=self.data_format)
        return self._clip(torch.where(chosen.view(-1, 1, 1, 1).to(images.device), blurred, images))

    def get_config(self):
        return self._config(("factor", "kernel_size", "sigma", "value_range", "seed"))


@keras_export("keras.layers")
class RandomPerspective(RandomImageLayer):
    """Move each corner by up to `scale` of half the image size, with probability from `factor`."""

    _FACTOR_BOUNDS = (0, 1)

    def __init__(self, factor=1.0, scale=1.0, interpolation="bilinear", fill_value=0.0, seed=None, data_format=None, **kwargs):
        super().__init__(factor=factor, seed=seed, data_format=data_format, **kwargs)
        if scale < 0.0 or scale > 1.0:
            raise ValueError(f"The `scale` argument should be a number in the range [0,1]. Received: scale={scale}")
        _check_fill("constant", interpolation)
        self.scale = scale
        self.interpolation = interpolation
        self.fill_value = fill_value

    def augment(self, images):
        count = images.shape[0]
        height, width = self._height_width(images)
        probability = self._uniform((count,), *self.factor)
        chosen = self._uniform((count,)) < probability
        shift = self._uniform((count, 4, 2), -0.5 * self.scale, 0.5 * self.scale, dtype=self.compute_dtype)
        corners = torch.tensor([[0.0, 0.0], [width - 1, 0.0], [0.0, height - 1], [width - 1, height - 1]],
                               dtype=shift.dtype, device=shift.device).expand(count, 4, 2)
        moved = corners + corners * shift  # Keras's corners: each moves by a fraction of its own coordinates
        warped = image_ops.perspective_transform(images, corners, moved, interpolation=self.interpolation,
                                                 fill_value=self.fill_value, data_format=self.data_format)
        return torch.where(chosen.view(-1, 1, 1, 1).to(images.device), warped.to(images.dtype), images)

    def get_config(self):
        return self._config(("factor", "scale", "interpolation", "fill_value", "seed"))


@keras_export("keras.layers")
class RandomElasticTransform(RandomImageLayer):
    """Displace pixels by a smoothed random field (strength `scale`), with probability from `factor`."""

    _SORTS_VALUE_RANGE = False
    _FACTOR_BOUNDS = (0, 1)

    def __init__(self, factor=1.0, scale=1.0, interpolation="bilinear", fill_mode="reflect", fill_value=0.0,
                 value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(factor=factor, value_range=value_range, seed=seed, data_format=data_format, **kwargs)
        self.scale = self._factor_range(scale, (0, 1), "scale")
        _check_fill(fill_mode, interpolation)
        self.interpolation = interpolation
        self.fill_mode = fill_mode
        self.fill_value = fill_value

    def augment(self, images):
        if self.scale[1] == 0 or self.factor[1] == 0:  # Keras draws nothing then and passes images through
            return images
        count = images.shape[0]
        height, width = self._height_width(images)
        probability = self._uniform((count,), *self.factor)
        chosen = self._uniform((count,)) < probability
        distortion = self._uniform((), *self.scale, dtype=self.compute_dtype)
        alpha = float(max(height, width) * (0.1 * distortion))
        sigma = float(min(height, width) * (0.05 * distortion))
        # As in Keras on torch, the displacement noise comes from torch's global generator.
        warped = image_ops.elastic_transform(images, alpha=alpha, sigma=sigma, interpolation=self.interpolation,
                                             fill_mode=self.fill_mode, fill_value=self.fill_value, data_format=self.data_format)
        return self._clip(torch.where(chosen.view(-1, 1, 1, 1).to(images.device), warped, images))

    def get_config(self):
        return self._config(("factor", "scale", "interpolation", "fill_mode", "fill_value", "value_range", "seed"))
