"""Image files <-> arrays with Pillow (`load_img`, `img_to_array`, `array_to_img`, `save_img`)."""

import numpy as np
import torch

from keramic import backend


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("Image utilities need Pillow: `pip install pillow`.") from None
    return Image


def _data_format(data_format):
    return data_format or backend.image_data_format()


def load_img(path, color_mode="rgb", target_size=None, interpolation="nearest", keep_aspect_ratio=False):
    """Open an image file as a PIL image in `color_mode`, resized to `target_size` (height, width)."""
    Image = _pil()  # noqa: N806
    if hasattr(path, "read"):
        image = Image.open(path)
    else:
        with open(path, "rb") as handle:
            image = Image.open(handle)
            image.load()
    modes = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}
    if color_mode not in modes:
        raise ValueError(f"color_mode must be 'grayscale', 'rgb' or 'rgba'; received {color_mode!r}.")
    if image.mode != modes[color_mode]:
        image = image.convert(modes[color_mode])
    if target_size is not None:
        width, height = target_size[1], target_size[0]
        if image.size != (width, height):
            methods = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
                       "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}
            if interpolation not in methods:
                raise ValueError(f"Unsupported interpolation {interpolation!r}; use one of {sorted(methods)}.")
            if keep_aspect_ratio:
                image = _crop_to_aspect(image, width, height)
            image = image.resize((width, height), methods[interpolation])
    return image


def _crop_to_aspect(image, width, height):
    current_width, current_height = image.size
    crop_width = min(current_width, current_height * width // height)
    crop_height = min(current_height, current_width * height // width)
    left, top = (current_width - crop_width) // 2, (current_height - crop_height) // 2
    return image.crop((left, top, left + crop_width, top + crop_height))


def img_to_array(img, data_format=None, dtype=None):
    """A PIL image -> a float32 array (height, width, channels), or channels first."""
    array = np.asarray(img, dtype=dtype or "float32")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"img_to_array expects a 2D or 3D image; found shape {array.shape}.")
    return array.transpose(2, 0, 1) if _data_format(data_format) == "channels_first" else array


def array_to_img(x, data_format=None, scale=True, dtype=None):
    """A (height, width, channels) array -> a PIL image; `scale` maps values to 0..255."""
    Image = _pil()  # noqa: N806
    x = np.asarray(x, dtype=dtype or "float32")
    if x.ndim != 3:
        raise ValueError(f"array_to_img expects a 3D array; found shape {x.shape}.")
    if _data_format(data_format) == "channels_first":
        x = x.transpose(1, 2, 0)
    if scale:
        x = x - np.min(x)
        peak = np.max(x)
        if peak:
            x = x / peak
        x = x * 255
    channels = x.shape[2]
    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    if channels not in modes:
        raise ValueError(f"array_to_img supports 1, 3 or 4 channels; found {channels}.")
    pixels = x.astype("uint8")
    return Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, modes[channels])


def save_img(path, x, data_format=None, file_format=None, scale=True, **kwargs):
    """Write an array as an image file (format from `file_format` or the file name)."""
    image = array_to_img(x, data_format=data_format, scale=scale)
    if image.mode == "RGBA" and (file_format or str(path)).lower().endswith(("jpg", "jpeg")):
        image = image.convert("RGB")
    image.save(path, format=file_format, **kwargs)


def smart_resize(x, size, interpolation="bilinear", data_format="channels_last", backend_module=None):
    """Resize to `size` (height, width) after a centred crop to the target aspect ratio."""
    from keramic.ops.image import resize

    array = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype="float32"))
    height_axis = -3 if data_format == "channels_last" else -2
    height, width = array.shape[height_axis], array.shape[height_axis + 1]
    target_height, target_width = size
    crop_height = min(height, int(width * target_height / target_width))
    crop_width = min(width, int(height * target_width / target_height))
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    if data_format == "channels_last":
        cropped = array[..., top:top + crop_height, left:left + crop_width, :]
    else:
        cropped = array[..., top:top + crop_height, left:left + crop_width]
    out = resize(cropped, size, interpolation=interpolation, data_format=data_format)
    return out if isinstance(x, torch.Tensor) else out.cpu().numpy()
