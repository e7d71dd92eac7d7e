"""`keras.preprocessing.image`: image files <-> arrays, and aspect-preserving resize."""

import numpy as np
import torch

from keramic.utils.image_utils import array_to_img, img_to_array, load_img, save_img  # noqa: F401


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
