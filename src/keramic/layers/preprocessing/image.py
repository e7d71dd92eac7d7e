"""Image preprocessing: the shared base of image layers, sampling helpers, and the layers whose
output is deterministic (Resizing, CenterCrop, AutoContrast, Equalization, CLAHE,
MaxNumBoundingBoxes)."""


import numpy as np
import torch
import torch.nn.functional as F

from keramic import backend
from keramic import random as keramic_random
from keramic.layers.base import Layer
from keramic.serialization.registry import keras_export

_RESIZE_MODES = {"bilinear": "bilinear", "nearest": "nearest-exact", "bicubic": "bicubic"}
FILL_MODES = ("constant", "nearest", "wrap", "mirror", "reflect")


def standardize_data_format(data_format):
    data_format = data_format or backend.image_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"The `data_format` argument must be one of 'channels_first', 'channels_last'. Received: data_format={data_format}")
    return data_format


def to_channels_first(images: torch.Tensor, data_format: str) -> torch.Tensor:
    """(B, H, W, C) or (B, C, H, W) -> (B, C, H, W)."""
    return images.permute(0, 3, 1, 2) if data_format == "channels_last" else images


def from_channels_first(images: torch.Tensor, data_format: str) -> torch.Tensor:
    return images.permute(0, 2, 3, 1) if data_format == "channels_last" else images


def transform_value_range(images: torch.Tensor, original, target) -> torch.Tensor:
    """Linearly map pixel values from the range `original` to the range `target`."""
    if tuple(original) == tuple(target):
        return images
    scale = (target[1] - target[0]) / (original[1] - original[0])
    return (images - original[0]) * scale + target[0]


def saturate_cast(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Round-free clamp-and-cast into an integer dtype's range (floats pass through)."""
    if dtype.is_floating_point:
        return values.to(dtype)
    info = torch.iinfo(dtype)
    return values.clamp(info.min, info.max).to(dtype)


def resize(images, size, interpolation="bilinear", antialias=False, crop_to_aspect_ratio=False,
           pad_to_aspect_ratio=False, fill_value=0.0, data_format="channels_last"):
    """Resize a batch of images as Keras's torch backend does (torch's interpolate, no corner alignment)."""
    if interpolation not in _RESIZE_MODES:
        raise ValueError(
            f"Invalid value for argument `interpolation`. Expected one of {tuple(_RESIZE_MODES)} on the torch backend "
            f"(lanczos3/lanczos5/area are not available there). Received: interpolation={interpolation}"
        )
    if pad_to_aspect_ratio and crop_to_aspect_ratio:
        raise ValueError("Only one of `pad_to_aspect_ratio` & `crop_to_aspect_ratio` can be `True`.")
    out_dtype = images.dtype
    x = to_channels_first(images if images.is_floating_point() else images.float(), data_format)
    height, width = x.shape[-2], x.shape[-1]
    target_height, target_width = size
    if crop_to_aspect_ratio:
        crop_h = max(min(height, int(float(width * target_height) / target_width)), 1)
        crop_w = max(min(width, int(float(height * target_width) / target_height)), 1)
        top, left = int(float(height - crop_h) / 2), int(float(width - crop_w) / 2)
        x = x[:, :, top : top + crop_h, left : left + crop_w]
    elif pad_to_aspect_ratio:
        pad_h = max(height, int(float(width * target_height) / target_width))
        pad_w = max(width, int(float(height * target_width) / target_height))
        top, left = int(float(pad_h - height) / 2), int(float(pad_w - width) / 2)
        if top > 0:
            x = F.pad(x, (0, 0, top, top), value=float(fill_value))
        if left > 0:
            x = F.pad(x, (left, left, 0, 0), value=float(fill_value))
    if antialias and interpolation not in ("bilinear", "bicubic"):
        antialias = False
    align = False if interpolation in ("bilinear", "bicubic") else None
    y = F.interpolate(x, size=tuple(size), mode=_RESIZE_MODES[interpolation], align_corners=align, antialias=antialias)
    if interpolation == "bicubic" and out_dtype == torch.uint8:
        y = y.clamp(0, 255)
    y = from_channels_first(y, data_format)
    return y if y.dtype == out_dtype else (y.round() if not out_dtype.is_floating_point else y).to(out_dtype)


def _fix_index(index: torch.Tensor, size: int, fill_mode: str) -> torch.Tensor:
    """Map out-of-range sample indices back into [0, size) the way each fill mode extends the image."""
    if fill_mode in ("constant", "nearest"):
        return index.clamp(0, size - 1)
    if fill_mode == "wrap":
        return torch.remainder(index, size)
    if fill_mode == "mirror":
        period = max(size - 1, 1)
        return (torch.remainder(index + period, 2 * period) - period).abs()
    doubled = 2 * index + 1  # "reflect": mirror on the pixel edges
    period = 2 * size
    return torch.div((torch.remainder(doubled + period, 2 * period) - period).abs() - 1, 2, rounding_mode="floor")


def affine_transform(images, transforms, interpolation="bilinear", fill_mode="constant", fill_value=0.0,
                     data_format="channels_last"):
    """Sample each image at `(a0 x + a1 y + a2, b0 x + b1 y + b2)` for every output pixel `(x, y)`.

    `transforms` is (batch, 8) in Keras's layout; the last two (projective) entries must be zero.
    """
    if interpolation not in ("nearest", "bilinear"):
        raise ValueError(f"Invalid value for argument `interpolation`. Expected 'nearest' or 'bilinear'. Received: interpolation={interpolation}")
    if fill_mode not in FILL_MODES:
        raise ValueError(f"Invalid value for argument `fill_mode`. Expected one of {FILL_MODES}. Received: fill_mode={fill_mode}")
    x = to_channels_first(images, data_format)
    batch, channels, height, width = x.shape
    t = transforms.to(torch.float32).to(x.device)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=x.device),
                            torch.arange(width, dtype=torch.float32, device=x.device), indexing="ij")
    src_x = t[:, 0, None, None] * xs + t[:, 1, None, None] * ys + t[:, 2, None, None]
    src_y = t[:, 3, None, None] * xs + t[:, 4, None, None] * ys + t[:, 5, None, None]
    if interpolation == "nearest":
        corners = [(torch.round(src_y), torch.round(src_x), torch.ones_like(src_x))]
    else:
        y0, x0 = torch.floor(src_y), torch.floor(src_x)
        wy, wx = src_y - y0, src_x - x0
        corners = [(y0, x0, (1 - wy) * (1 - wx)), (y0, x0 + 1, (1 - wy) * wx),
                   (y0 + 1, x0, wy * (1 - wx)), (y0 + 1, x0 + 1, wy * wx)]
    flat = x.reshape(batch, channels, height * width).to(torch.float32)
    out = torch.zeros(batch, channels, height, width, dtype=torch.float32, device=x.device)
    for iy, ix, weight in corners:
        iy, ix = iy.long(), ix.long()
        fy, fx = _fix_index(iy, height, fill_mode), _fix_index(ix, width, fill_mode)
        gathered = torch.gather(flat, 2, (fy * width + fx).reshape(batch, 1, -1).expand(batch, channels, -1))
        gathered = gathered.reshape(batch, channels, height, width)
        if fill_mode == "constant":
            inside = ((iy >= 0) & (iy < height) & (ix >= 0) & (ix < width)).unsqueeze(1)
            gathered = torch.where(inside, gathered, torch.full_like(gathered, float(fill_value)))
        out = out + weight.unsqueeze(1) * gathered
    if not x.dtype.is_floating_point:
        out = out.round()
    return from_channels_first(out.to(x.dtype), data_format)


def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    """Channels-last RGB in [0, 1] -> HSV in [0, 1]."""
    r, g, b = images.unbind(-1)
    value = images.amax(-1)
    minimum = images.amin(-1)
    delta = value - minimum
    safe_value = torch.where(value > 0, value, torch.ones_like(value))
    saturation = torch.where(value > 0, delta / safe_value, torch.zeros_like(value))
    safe_delta = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(value == r, (g - b) / safe_delta,
                      torch.where(value == g, 2.0 + (b - r) / safe_delta, 4.0 + (r - g) / safe_delta))
    hue = torch.where(delta > 0, torch.remainder(hue / 6.0, 1.0), torch.zeros_like(hue))
    return torch.stack([hue, saturation, value], dim=-1)


def hsv_to_rgb(images: torch.Tensor) -> torch.Tensor:
    """Channels-last HSV in [0, 1] -> RGB in [0, 1]."""
    hue, saturation, value = images.unbind(-1)
    sector = torch.remainder(hue * 6.0, 6.0)

    def channel(n):
        k = torch.remainder(n + sector, 6.0)
        return value - value * saturation * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)

    return torch.stack([channel(5.0), channel(3.0), channel(1.0)], dim=-1)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """Channels-last RGB -> luma (ITU-R 601-2 weights), kept with one channel."""
    weights = torch.tensor([0.2989, 0.587, 0.114], dtype=images.dtype, device=images.device)
    return (images * weights).sum(-1, keepdim=True)


class ImagePreprocessingLayer(Layer):
    """Base of image layers: data format, `factor` ranges, single images, dict inputs, seeded randomness.

    Subclasses define `transform_images(images, transformation, training)` on channels-last or
    channels-first batches (`self.data_format`) and, when random, `get_random_transformation`.
    """

    _allows_non_tensor_positional_args = True  # as Keras's data layers

    _records_build_config = True  # Keras records a build config for it once called

    _USE_BASE_FACTOR = True
    _FACTOR_BOUNDS = (-1, 1)

    def __init__(self, factor=None, data_format=None, seed=None, bounding_box_format=None, **kwargs):
        super().__init__(**kwargs)
        self.bounding_box_format = bounding_box_format
        self.data_format = standardize_data_format(data_format)
        if self._USE_BASE_FACTOR:
            self._set_factor(factor or 0.0)
        elif factor is not None:
            raise ValueError(f"Layer {type(self).__name__} does not take a `factor` argument. Received: factor={factor}")

    def _set_factor(self, factor):
        self.factor = self._factor_range(factor, self._FACTOR_BOUNDS, "factor")

    @staticmethod
    def _factor_range(factor, bounds, name):
        message = (f"The `{name}` argument should be a number (or a list of two numbers) in the range "
                   f"[{bounds[0]}, {bounds[1]}]. Received: {name}={factor}")
        if isinstance(factor, (tuple, list)):
            if len(factor) != 2 or factor[0] > bounds[1] or factor[1] < bounds[0]:
                raise ValueError(message)
            return tuple(sorted(factor))
        if isinstance(factor, (int, float)):
            if factor < bounds[0] or factor > bounds[1]:
                raise ValueError(message)
            factor = abs(factor)
            return (max(-factor, bounds[0]), factor)
        raise ValueError(message)

    # ---------------------------------------------------------------- randomness
    def _make_seed_generator(self, seed):
        """The layer's `SeedGenerator` (Keras's `self.generator`), made where Keras makes it: an
        unseeded one takes its seed from Python's `random`, as Keras's does."""
        self.generator = keramic_random.SeedGenerator(seed)

    def _uniform(self, shape, low=0.0, high=1.0, dtype=None) -> torch.Tensor:
        """`keras.random.uniform` from the layer's SeedGenerator: each call advances it once, so the
        same calls in the same order as Keras's layer give Keras's numbers."""
        return self._draw(lambda seed: keramic_random.uniform(shape, low, high, dtype=dtype, seed=seed))

    def _randint(self, shape, low, high, dtype="int32") -> torch.Tensor:
        """`keras.random.randint` from the layer's SeedGenerator (one step of it)."""
        return self._draw(lambda seed: keramic_random.randint(shape, low, high, dtype=dtype, seed=seed))

    def _draw(self, make):
        """One draw: from the seed a composite layer lends (Keras's `seed=` argument of
        `get_random_transformation`), else from the layer's own generator; recorded or replayed
        while `_drawing_from` says so."""
        replay = self.__dict__.get("_draw_replay")
        if replay is not None:
            return replay.pop(0)
        value = make(self.__dict__.get("_draw_seed") or self.generator)
        record = self.__dict__.get("_draw_record")
        if record is not None:
            record.append(value)
        return value

    def _drawing_from(self, seed, replay=None):
        """A context in which this layer draws from `seed` (a SeedGenerator) and records its draws
        in the list it yields; with `replay` (an earlier such list) it reuses those draws instead,
        so a transformation drawn once can be applied again to other images (as Keras's composite
        layers apply a drawn transformation)."""
        return _Drawing(self, seed, replay)

    def _advance_seed(self, steps):
        """Spend `steps` draws of the generator without drawing (Keras's draws that go unused)."""
        for _ in range(steps):
            self.generator.next()

    # ---------------------------------------------------------------- calling
    def _as_input_tensor(self, x):
        if isinstance(x, np.ndarray) or isinstance(x, (float, int, np.generic)):
            array = np.asarray(x)
            dtype = self.compute_dtype if array.dtype.kind == "f" else None
            return backend.convert_to_tensor(array, dtype)
        return x

    def call(self, data, training=True):
        if isinstance(data, dict):
            images = data["images"]
            single = images.dim() == 3
            batch = {key: (value.unsqueeze(0) if single and torch.is_tensor(value) and key != "bounding_boxes" else value)
                     for key, value in data.items()}
            transformation = self.get_random_transformation(batch, training=training)
            result = dict(batch)
            result["images"] = self.transform_images(batch["images"], transformation, training=training)
            if "labels" in batch:
                result["labels"] = self.transform_labels(batch["labels"], transformation, training=training)
            if "segmentation_masks" in batch:
                result["segmentation_masks"] = self.transform_segmentation_masks(
                    batch["segmentation_masks"], transformation, training=training)
            if "bounding_boxes" in batch:
                if self.bounding_box_format is None:
                    raise ValueError(
                        "You passed an input with a 'bounding_boxes' key, but you didn't specify a bounding box format. "
                        f"Pass a `bounding_box_format` argument to your {type(self).__name__} layer, e.g. `bounding_box_format='xyxy'`."
                    )
                result["bounding_boxes"] = self.transform_bounding_boxes(batch["bounding_boxes"], transformation, training=training)
            if single:
                result = {k: (v.squeeze(0) if torch.is_tensor(v) and k != "bounding_boxes" else v) for k, v in result.items()}
            return result
        images = data
        if images.dim() not in (3, 4):
            raise ValueError(f"Expected image tensor to have rank 3 (single image) or 4 (batch of images). Received: data.shape={tuple(images.shape)}")
        single = images.dim() == 3
        if single:
            images = images.unsqueeze(0)
        transformation = self.get_random_transformation(images, training=training)
        out = self.transform_images(images, transformation, training=training)
        return out.squeeze(0) if single else out

    def get_random_transformation(self, data, training=True):
        return None

    def transform_images(self, images, transformation, training=True):
        raise NotImplementedError(f"{type(self).__name__} does not transform images.")

    def transform_labels(self, labels, transformation, training=True):
        return labels

    def transform_segmentation_masks(self, masks, transformation, training=True):
        return masks

    def transform_bounding_boxes(self, boxes, transformation, training=True):
        if training and transformation is not None:
            raise NotImplementedError(f"{type(self).__name__} does not transform bounding boxes in keramic yet.")
        return boxes

    def _images_in_compute_dtype(self, images):
        return images.to(backend.torch_dtype(self.compute_dtype))

    def _channels_last(self, images):
        """Channels-last view for per-pixel colour maths."""
        return images if self.data_format == "channels_last" else images.permute(0, 2, 3, 1)

    def _restore_layout(self, images):
        return images if self.data_format == "channels_last" else images.permute(0, 3, 1, 2)

    def _spatial_axes(self):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def _height_width(self, images):
        return (images.shape[1], images.shape[2]) if self.data_format == "channels_last" else (images.shape[2], images.shape[3])

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_spec(self, *args, **kwargs):
        from keramic.symbolic import KerasTensor

        data = args[0]
        if isinstance(data, dict):
            return data
        return KerasTensor(self.compute_output_shape(data.shape), self.compute_dtype)

    def _config(self, keys):
        """Base keys, then `data_format`, then `keys` read from same-named attributes."""
        config = super().get_config()
        config["data_format"] = self.data_format
        config.update({key: getattr(self, key) for key in keys})
        return config


class _Drawing:
    """`ImagePreprocessingLayer._drawing_from`'s context: lends a seed, records or replays draws."""

    _KEYS = ("_draw_seed", "_draw_record", "_draw_replay")

    def __init__(self, layer, seed, replay):
        self.layer, self.seed, self.replay = layer, seed, replay

    def __enter__(self):
        record = []
        state = self.layer.__dict__
        self.saved = {key: state[key] for key in self._KEYS if key in state}
        state["_draw_seed"] = self.seed
        state["_draw_record"] = record if self.replay is None else None
        state["_draw_replay"] = list(self.replay) if self.replay is not None else None
        return record

    def __exit__(self, *exc):
        state = self.layer.__dict__
        for key in self._KEYS:
            state.pop(key, None)
        state.update(self.saved)
        return False


def _cropped_or_resized_shape(layer, input_shape):
    input_shape = list(input_shape)
    h_axis, w_axis = (-3, -2) if layer.data_format == "channels_last" else (-2, -1)
    input_shape[h_axis], input_shape[w_axis] = layer.height, layer.width
    return tuple(input_shape)


@keras_export("keras.layers")
class Resizing(ImagePreprocessingLayer):
    """Resize images to `(height, width)` (bilinear, nearest or bicubic), optionally keeping the aspect ratio.

    >>> Resizing(2, 2)(np.ones((1, 4, 4, 3), "float32")).shape
    torch.Size([1, 2, 2, 3])
    """

    _USE_BASE_FACTOR = False

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False, pad_to_aspect_ratio=False,
                 fill_mode="constant", fill_value=0.0, antialias=False, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        if fill_mode != "constant":
            raise ValueError(f"Invalid value for argument `fill_mode`. Only `'constant'` is supported. Received: fill_mode={fill_mode}")
        self.height = height
        self.width = width
        self.interpolation = interpolation
        self.crop_to_aspect_ratio = crop_to_aspect_ratio
        self.pad_to_aspect_ratio = pad_to_aspect_ratio
        self.fill_mode = fill_mode
        self.fill_value = fill_value
        self.antialias = bool(antialias)

    def transform_images(self, images, transformation=None, training=True):
        return resize(images, (self.height, self.width), self.interpolation, self.antialias, self.crop_to_aspect_ratio,
                      self.pad_to_aspect_ratio, self.fill_value, self.data_format)

    def transform_segmentation_masks(self, masks, transformation=None, training=True):
        return resize(masks, (self.height, self.width), "nearest", False, self.crop_to_aspect_ratio,
                      self.pad_to_aspect_ratio, self.fill_value, self.data_format)

    def compute_output_shape(self, input_shape):
        return _cropped_or_resized_shape(self, input_shape)

    def get_config(self):
        return self._config(("height", "width", "interpolation", "crop_to_aspect_ratio", "pad_to_aspect_ratio",
                             "fill_mode", "fill_value", "antialias"))


@keras_export("keras.layers")
class CenterCrop(ImagePreprocessingLayer):
    """Crop the central `(height, width)` region; smaller images are aspect-cropped and resized up.

    >>> CenterCrop(2, 2)(np.ones((1, 4, 4, 3), "float32")).shape
    torch.Size([1, 2, 2, 3])
    """

    _USE_BASE_FACTOR = False

    def __init__(self, height, width, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.height = height
        self.width = width

    def transform_images(self, images, transformation=None, training=True):
        images = self._images_in_compute_dtype(images)
        height, width = self._height_width(images)
        top, left = (height - self.height) // 2, (width - self.width) // 2
        if height >= self.height and width >= self.width:
            if self.data_format == "channels_last":
                return images[:, top : top + self.height, left : left + self.width, :]
            return images[:, :, top : top + self.height, left : left + self.width]
        return resize(images, (self.height, self.width), "bilinear", crop_to_aspect_ratio=True, data_format=self.data_format)

    def compute_output_shape(self, input_shape):
        return _cropped_or_resized_shape(self, input_shape)

    def get_config(self):
        return self._config(("height", "width"))


@keras_export("keras.layers")
class AutoContrast(ImagePreprocessingLayer):
    """Stretch each image channel so its darkest pixel maps to the range's low end and its brightest to the high end."""

    _USE_BASE_FACTOR = False

    def __init__(self, value_range=(0, 255), **kwargs):
        super().__init__(**kwargs)
        self.value_range = value_range

    def transform_images(self, images, transformation=None, training=True):
        original = images
        x = transform_value_range(self._images_in_compute_dtype(images), self.value_range, (0, 255))
        # Keras reduces over axes 1 and 2 whatever the data format (for channels_first: channels and rows).
        low, high = x.amin(dim=(1, 2), keepdim=True), x.amax(dim=(1, 2), keepdim=True)
        scale = 255.0 / (high - low)
        out = (x * scale - low * scale).clamp(0.0, 255.0)
        out = transform_value_range(out, (0, 255), self.value_range)
        out = torch.where(torch.isnan(out), original.to(out.dtype), out)
        if original.dtype.is_floating_point or out.dtype == original.dtype:
            return out
        return saturate_cast(out.round(), original.dtype)

    def get_config(self):
        return self._config(("value_range",))


@keras_export("keras.layers")
class Equalization(ImagePreprocessingLayer):
    """Histogram equalization per channel (the histogram spans the whole batch, as in Keras); training only."""

    _USE_BASE_FACTOR = False

    def __init__(self, value_range=(0, 255), bins=256, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.bins = bins
        self.value_range = value_range

    def _equalize(self, channel):
        if tuple(self.value_range) != (0, 255):
            channel = transform_value_range(channel, self.value_range, (0, 255))
        indices = (channel.float() * (self.bins - 1) / 255.0).to(torch.int32).clamp(0, self.bins - 1)
        hist = torch.bincount(indices.reshape(-1).long(), minlength=self.bins)
        if int(torch.count_nonzero(hist)) <= 1:
            equalized = channel
        else:
            cdf = torch.cumsum(hist, 0)
            cdf_min = cdf[torch.nonzero(cdf)[0][0]]
            denominator = cdf[-1] - cdf_min
            denominator = torch.where(denominator == 0, torch.ones_like(denominator), denominator)
            table = torch.clamp(torch.round((cdf - cdf_min) * 255 / denominator), 0, 255)
            positions = torch.clamp(channel / 255.0 * (self.bins - 1), 0, self.bins - 1).to(torch.int32)
            equalized = table[positions.long()].to(channel.dtype)
        if tuple(self.value_range) != (0, 255):
            equalized = transform_value_range(equalized, (0, 255), self.value_range)
        return equalized

    def transform_images(self, images, transformation=None, training=True):
        if not training:
            return images
        x = self._images_in_compute_dtype(images)
        axis = -1 if self.data_format == "channels_last" else 1
        return torch.stack([self._equalize(c) for c in x.unbind(axis)], dim=axis)

    def get_config(self):
        return self._config(("bins", "value_range"))


def _pad_symmetric(x, pad_h, pad_w):
    """Pad bottom/right by mirroring with the edge pixel repeated (numpy's "symmetric")."""
    if pad_h:
        x = torch.cat([x, _mirror_rows(x, pad_h)], dim=2)
    if pad_w:
        x = torch.cat([x, _mirror_rows(x.transpose(2, 3), pad_w).transpose(2, 3)], dim=3)
    return x


def _mirror_rows(x, count):
    height = x.shape[2]
    index = torch.arange(height - 1, height - 1 - count, -1, device=x.device)
    index = torch.where(index < 0, -index - 1, index) % height
    return x.index_select(2, index)


@keras_export("keras.layers")
class ContrastLimitedAdaptiveHistogramEqualization(ImagePreprocessingLayer):
    """CLAHE: equalize each tile's histogram with its peaks clipped at `clip_limit`, blending tiles bilinearly
    (applied at inference too, as in Keras)."""

    _USE_BASE_FACTOR = False

    def __init__(self, value_range=(0, 255), clip_limit=4.0, tile_grid_size=(8, 8), data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.value_range = value_range
        self.clip_limit = clip_limit
        self.tile_grid_size = tile_grid_size

    def transform_images(self, images, transformation=None, training=True):
        original_dtype = images.dtype
        x = transform_value_range(to_channels_first(images, self.data_format).to(torch.float32), self.value_range, (0, 255))
        out = transform_value_range(self._equalize_tiles(x), (0, 255), self.value_range)
        return from_channels_first(out, self.data_format).to(original_dtype)

    def _equalize_tiles(self, x):
        """(B, C, H, W) in [0, 255]: per-tile clipped-histogram mappings, blended bilinearly between tile centres."""
        batch, channels, height, width = x.shape
        rows, cols = self.tile_grid_size
        tile_h, tile_w = -(-height // rows), -(-width // cols)
        padded = _pad_symmetric(x, tile_h * rows - height, tile_w * cols - width)
        tiles = padded.reshape(batch, channels, rows, tile_h, cols, tile_w).permute(0, 1, 2, 4, 3, 5)
        values = tiles.reshape(batch, channels, rows, cols, tile_h * tile_w).to(torch.int32).clamp(0, 255).long()
        hist = torch.zeros(batch, channels, rows, cols, 256, device=x.device)
        hist.scatter_add_(-1, values, torch.ones_like(values, dtype=torch.float32))
        if self.clip_limit > 0:
            # Keras counts in integers, so the limit is truncated to a whole count.
            limit = float(int(self.clip_limit * (tile_h * tile_w) / 256.0))
            clipped = hist.clamp(0, limit)
            hist = clipped + (hist - clipped).sum(-1, keepdim=True) / 256.0
        cdf = hist.cumsum(-1)
        cdf_min = cdf.amin(-1, keepdim=True)
        denominator = tile_h * tile_w - cdf_min
        denominator = torch.where(denominator == 0, torch.ones_like(denominator), denominator)
        tables = ((cdf - cdf_min) * 255.0 / denominator).clamp(0, 255)
        # Repeat the border tiles once on every side so edge pixels blend with themselves.
        tables = torch.cat([tables[:, :, :1], tables, tables[:, :, -1:]], dim=2)
        tables = torch.cat([tables[:, :, :, :1], tables, tables[:, :, :, -1:]], dim=3)

        def grid(size, tile, count):
            position = (torch.arange(size, dtype=torch.float32, device=x.device) - tile / 2.0) / tile + 1.0
            low = position.floor()
            weight = position - low
            return low.clamp(0, count + 1).long(), (low + 1).clamp(0, count + 1).long(), weight

        y0, y1, wy = grid(tile_h * rows, tile_h, rows)
        x0, x1, wx = grid(tile_w * cols, tile_w, cols)
        pixels = padded.clamp(0, 255).to(torch.int32).long()

        def lookup(ty, tx):
            table = tables[:, :, ty][:, :, :, tx]  # (B, C, H', W', 256)
            return torch.gather(table, -1, pixels.unsqueeze(-1)).squeeze(-1)

        top = lookup(y0, x0) * (1 - wx) + lookup(y0, x1) * wx
        bottom = lookup(y1, x0) * (1 - wx) + lookup(y1, x1) * wx
        out = top * (1 - wy[:, None]) + bottom * wy[:, None]
        return out[:, :, :height, :width]

    def get_config(self):
        return self._config(("value_range", "clip_limit", "tile_grid_size"))


@keras_export("keras.layers")
class MaxNumBoundingBoxes(ImagePreprocessingLayer):
    """Pad or truncate a dict's `bounding_boxes` to `max_number` boxes (images pass through)."""

    _USE_BASE_FACTOR = False

    def __init__(self, max_number, fill_value=-1, **kwargs):
        super().__init__(**kwargs)
        self.max_number = max_number
        self.fill_value = fill_value

    def transform_images(self, images, transformation=None, training=True):
        return images

    def transform_bounding_boxes(self, boxes, transformation=None, training=True):
        result = dict(boxes)
        for key, width in (("boxes", 4), ("labels", None)):
            value = torch.as_tensor(np.asarray(boxes[key])) if not torch.is_tensor(boxes[key]) else boxes[key]
            count = value.shape[1]
            if count >= self.max_number:
                value = value[:, : self.max_number]
            else:
                pad_shape = (value.shape[0], self.max_number - count) + ((width,) if width else ())
                value = torch.cat([value, torch.full(pad_shape, self.fill_value, dtype=value.dtype, device=value.device)], dim=1)
            result[key] = value
        return result

    def get_config(self):
        return self._config(("max_number",))
