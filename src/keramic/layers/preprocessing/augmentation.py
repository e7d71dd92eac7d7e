"""Random geometric and occlusion augmentation (flip, rotation, zoom, translation, shear, crop,
erasing, blur, perspective, elastic) and the base of every random image layer: identity at
inference, seeded and reproducible in training.

Each layer draws from its own `torch.Generator`, seeded from `seed` (or at random when `seed` is
None), so two layers built with the same seed transform the same batches the same way. The draws
are not Keras's own random stream, so training-mode pixels differ from Keras's; inference
outputs and configs equal Keras's, and so do training outputs where a factor range is a single
point (the geometric maths is Keras's).
"""

import math

import torch
import torch.nn.functional as F

from keramic.layers.preprocessing.image import ImagePreprocessingLayer, affine_transform, resize
from keramic.serialization.registry import keras_export


class RandomImageLayer(ImagePreprocessingLayer):
    """Random layers: pass images through (in the compute dtype) unless training."""

    def __init__(self, factor=None, value_range=None, seed=None, data_format=None, **kwargs):
        super().__init__(factor=factor, data_format=data_format, seed=seed, **kwargs)
        if value_range is not None:
            if len(value_range) != 2:
                raise ValueError(f"The `value_range` argument should be a list of two numbers. Received: value_range={value_range}")
            self.value_range = sorted(value_range)
        self.seed = seed

    def transform_images(self, images, transformation=None, training=True):
        images = self._images_in_compute_dtype(images)
        if not training:
            return images
        return self.augment(images)

    def augment(self, images):
        raise NotImplementedError

    def _per_image(self, images, low, high):
        """One uniform draw per image, shaped to broadcast over (H, W, C)."""
        return self._uniform((images.shape[0], 1, 1, 1), low, high).to(images.device, images.dtype)

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

    _USE_BASE_FACTOR = False

    def __init__(self, mode="horizontal_and_vertical", seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        if mode not in ("horizontal", "vertical", "horizontal_and_vertical"):
            raise ValueError(f"RandomFlip layer {self.name} received an unknown mode argument {mode}")
        self.mode = mode

    def augment(self, images):
        height_axis, width_axis = self._spatial_axes()
        for flip_mode, axis in (("horizontal", width_axis), ("vertical", height_axis)):
            if flip_mode in self.mode:
                flip = self._per_image(images, 0.0, 1.0) < 0.5
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
        angles = self._uniform((images.shape[0],), self.factor[0] * 2 * math.pi, self.factor[1] * 2 * math.pi)
        cos, sin = torch.cos(angles), torch.sin(angles)
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        # Output pixel -> input pixel: rotate about the centre by -angle.
        transforms = torch.stack([cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy,
                                  torch.zeros_like(cos), torch.zeros_like(cos)], dim=1)
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
        height, width = self._height_width(images)
        count = images.shape[0]
        sign = torch.where(self._uniform((count,)) > 0.5, -1.0, 1.0)
        sy = self._uniform((count,), *self.y_factor) * sign
        sx = self._uniform((count,), *self.x_factor) * sign
        ones, zeros = torch.ones_like(sx), torch.zeros_like(sx)
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        transforms = torch.stack([ones, sx, -sx * cy, sy, ones, -sy * cx, zeros, zeros], dim=1)
        return affine_transform(images, transforms, self.interpolation, self.fill_mode, self.fill_value, self.data_format)

    def get_config(self):
        return self._config(("x_factor", "y_factor", "fill_mode", "interpolation", "seed", "fill_value"))


@keras_export("keras.layers")
class RandomCrop(RandomImageLayer):
    """Crop a random `(height, width)` window in training (images smaller than it are resized up first)."""

    _USE_BASE_FACTOR = False

    def __init__(self, height, width, seed=None, data_format=None, name=None, **kwargs):
        if seed is None:
            seed = int(torch.randint(0, 2**30, ()).item())  # Keras too records a drawn seed
        super().__init__(seed=seed, data_format=data_format, name=name, **kwargs)
        self.height = height
        self.width = width

    def transform_images(self, images, transformation=None, training=True):
        """Inference passes images through untouched, as Keras's RandomCrop does (despite its output shape)."""
        return self.augment(self._images_in_compute_dtype(images)) if training else images

    def augment(self, images):
        height, width = self._height_width(images)
        if height > self.height and width > self.width:
            top = int(self._uniform((), 0, height - self.height + 1).floor().clamp(max=height - self.height))
            left = int(self._uniform((), 0, width - self.width + 1).floor().clamp(max=width - self.width))
        else:  # Keras's fallback: a centred box of the target's aspect ratio, then resized
            crop_h = max(min(height, int(float(width * self.height) / self.width)), 1)
            crop_w = max(min(width, int(float(height * self.width) / self.height)), 1)
            top, left = int(float(height - crop_h) / 2), int(float(width - crop_w) / 2)
        if self.data_format == "channels_last":
            images = images[:, top : top + self.height, left : left + self.width, :]
        else:
            images = images[:, :, top : top + self.height, left : left + self.width]
        if self._height_width(images) != (self.height, self.width):
            images = resize(images, (self.height, self.width), "bilinear", data_format=self.data_format)
        return images

    def compute_output_shape(self, input_shape):
        input_shape = list(input_shape)
        h_axis, w_axis = (-3, -2) if self.data_format == "channels_last" else (-2, -1)
        input_shape[h_axis], input_shape[w_axis] = self.height, self.width
        return tuple(input_shape)

    def get_config(self):
        return self._config(("height", "width", "seed"))


@keras_export("keras.layers")
class RandomErasing(RandomImageLayer):
    """Erase a random rectangle (area fraction drawn from `scale`) with probability from `factor`."""

    _FACTOR_BOUNDS = (0, 1)

    def __init__(self, factor=1.0, scale=(0.02, 0.33), fill_value=None, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(factor=factor, value_range=value_range, seed=seed, data_format=data_format, **kwargs)
        self.scale = self._factor_range(scale, (0, 1), "scale")
        self.fill_value = fill_value

    def augment(self, images):
        x = self._channels_last(images)
        count, height, width = x.shape[0], x.shape[1], x.shape[2]
        area = self._uniform((count,), *self.scale)
        side = torch.sqrt(area)
        box_h, box_w = (side * height).round().clamp(1, height), (side * width).round().clamp(1, width)
        top = (self._uniform((count,)) * (height - box_h + 1)).floor()
        left = (self._uniform((count,)) * (width - box_w + 1)).floor()
        chosen = self._uniform((count,)) < self._uniform((count,), *self.factor)
        rows = torch.arange(height).view(1, -1, 1)
        cols = torch.arange(width).view(1, 1, -1)
        inside = ((rows >= top.view(-1, 1, 1)) & (rows < (top + box_h).view(-1, 1, 1))
                  & (cols >= left.view(-1, 1, 1)) & (cols < (left + box_w).view(-1, 1, 1)) & chosen.view(-1, 1, 1))
        if self.fill_value is None:
            fill = self._uniform(x.shape, *self.value_range).to(x.device, x.dtype)
        else:
            fill = torch.full_like(x, float(self.fill_value))
        return self._restore_layout(torch.where(inside.unsqueeze(-1).to(x.device), fill, x))

    def get_config(self):
        return self._config(("factor", "scale", "fill_value", "value_range", "seed"))


@keras_export("keras.layers")
class RandomGaussianBlur(RandomImageLayer):
    """Blur with a Gaussian kernel of random sigma, each image with probability from `factor`."""

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
        x = images.permute(0, 3, 1, 2) if self.data_format == "channels_last" else images
        count, channels = x.shape[0], x.shape[1]
        sigma = self._uniform((count,), *self.sigma).clamp_min(1e-3)
        chosen = self._uniform((count,)) < self._uniform((count,), *self.factor)
        kh, kw = self.kernel_size
        out = []
        for i in range(count):
            gy = torch.exp(-0.5 * ((torch.arange(kh) - (kh - 1) / 2.0) / sigma[i]) ** 2)
            gx = torch.exp(-0.5 * ((torch.arange(kw) - (kw - 1) / 2.0) / sigma[i]) ** 2)
            kernel = (gy[:, None] * gx[None, :]) / (gy.sum() * gx.sum())
            kernel = kernel.to(x.device, x.dtype).expand(channels, 1, kh, kw)
            padded = F.pad(x[i : i + 1], ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2), mode="reflect")
            blurred = F.conv2d(padded, kernel, groups=channels)
            out.append(blurred if bool(chosen[i]) else x[i : i + 1])
        out = self._clip(torch.cat(out))
        return out.permute(0, 2, 3, 1) if self.data_format == "channels_last" else out

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
        x = images.permute(0, 3, 1, 2) if self.data_format == "channels_last" else images
        count = x.shape[0]
        chosen = (self._uniform((count,)) < self._uniform((count,), *self.factor)).float()
        corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
        moved = corners + (self._uniform((count, 4, 2), -1.0, 1.0) * self.scale * 0.5) * chosen.view(-1, 1, 1)
        grid = _perspective_grid(corners, moved, x.shape[2], x.shape[3])
        mode = "bilinear" if self.interpolation == "bilinear" else "nearest"
        filled = F.grid_sample(x - self.fill_value, grid.to(x.device, x.dtype), mode=mode, padding_mode="zeros", align_corners=True)
        out = filled + self.fill_value
        return out.permute(0, 2, 3, 1) if self.data_format == "channels_last" else out

    def get_config(self):
        return self._config(("factor", "scale", "interpolation", "fill_value", "seed"))


def _homography(source, target):
    """3x3 matrices H (per batch) with H @ source_i ~ target_i for four point pairs."""
    rows = []
    for i in range(4):
        sx, sy = source[:, i, 0], source[:, i, 1]
        tx, ty = target[:, i, 0], target[:, i, 1]
        ones, zeros = torch.ones_like(sx), torch.zeros_like(sx)
        rows.append(torch.stack([sx, sy, ones, zeros, zeros, zeros, -tx * sx, -tx * sy], dim=1))
        rows.append(torch.stack([zeros, zeros, zeros, sx, sy, ones, -ty * sx, -ty * sy], dim=1))
    a = torch.stack(rows, dim=1)
    b = torch.stack([target[:, i, j] for i in range(4) for j in range(2)], dim=1)
    h = torch.linalg.solve(a.double(), b.double().unsqueeze(-1)).squeeze(-1).float()
    return torch.cat([h, torch.ones(h.shape[0], 1)], dim=1).view(-1, 3, 3)


def _perspective_grid(corners, moved, height, width):
    """Sampling grid (normalised coordinates) that maps the moved corners back to the originals."""
    count = moved.shape[0]
    h = _homography(moved, corners.expand(count, 4, 2))
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).view(1, -1, 3)
    mapped = points @ torch.linalg.inv(h).transpose(1, 2)
    return (mapped[..., :2] / mapped[..., 2:].clamp_min(1e-6)).view(count, height, width, 2)


@keras_export("keras.layers")
class RandomElasticTransform(RandomImageLayer):
    """Displace pixels by a smoothed random field (strength `scale`), with probability from `factor`."""

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
        x = images.permute(0, 3, 1, 2) if self.data_format == "channels_last" else images
        count, _, height, width = x.shape
        chosen = (self._uniform((count,)) < self._uniform((count,), *self.factor)).float().view(-1, 1, 1, 1)
        strength = self._uniform((count, 1, 1, 1), *self.scale)
        field = self._uniform((count, 2, height, width), -1.0, 1.0)
        kernel = torch.ones(2, 1, 5, 5) / 25.0
        field = F.conv2d(F.pad(field, (2, 2, 2, 2), mode="replicate"), kernel, groups=2) * strength * chosen
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        grid = torch.stack([xs, ys], dim=-1).unsqueeze(0) + field.permute(0, 2, 3, 1) * (8.0 / max(height, width))
        padding = {"constant": "zeros", "nearest": "border"}.get(self.fill_mode, "reflection")
        mode = "bilinear" if self.interpolation == "bilinear" else "nearest"
        out = F.grid_sample(x, grid.to(x.device, x.dtype), mode=mode, padding_mode=padding, align_corners=True)
        out = self._clip(out)
        return out.permute(0, 2, 3, 1) if self.data_format == "channels_last" else out

    def get_config(self):
        return self._config(("factor", "scale", "interpolation", "fill_mode", "fill_value", "value_range", "seed"))
