"""Colour segmentation masks onto images, with Keras's class palette."""

import numpy as np
import torch

from keramic import backend
from keramic.ops.convert import to_tensor

# Keras's class palette: class i gets (i * _PALETTE) % 255 as its RGB colour.
_PALETTE = np.array([2**25 - 1, 2**15 - 1, 2**21 - 1])


def _class_colors(num_classes):
    return [((index * _PALETTE) % 255).tolist() for index in range(num_classes)]


def draw_segmentation_masks(images, segmentation_masks, num_classes=None, color_mapping=None, alpha=0.8, blend=True, ignore_index=-1, data_format=None):
    """Paint each pixel of `images` (B, H, W, 3) in its class colour from `segmentation_masks` (B, H, W, 1).

    With `blend` the colours are mixed in at `alpha` (ignored pixels keep the image) and a uint8
    NumPy array is returned; without it, the painted float32 tensor, as Keras returns them.
    `num_classes` defaults to the largest class id in the masks, as in Keras.
    """
    data_format = data_format or backend.image_data_format()
    images, masks = to_tensor(images), to_tensor(segmentation_masks)
    if images.ndim != 4:
        raise ValueError(f"`images` must be a batched 4D tensor; received shape {tuple(images.shape)}.")
    if data_format == "channels_first":
        images, masks = images.permute(0, 2, 3, 1), masks.permute(0, 2, 3, 1)
    if masks.is_floating_point() or masks.dtype == torch.bool:
        raise TypeError(f"`segmentation_masks` must hold integer class ids; received dtype {backend.standardize_dtype(masks.dtype)}.")
    images = images.to(torch.float32)
    if num_classes is None:
        num_classes = int(masks.max())
    colors = _class_colors(num_classes) if color_mapping is None else [color_mapping[i] for i in range(num_classes)]
    classes = masks[..., 0]  # negative ids match no class and keep the image's colour
    if int(classes.max()) >= num_classes:
        raise ValueError(f"segmentation_masks hold class {int(classes.max())}, but num_classes={num_classes}.")
    painted = images.clone()
    for index, color in enumerate(colors):
        painted[classes == index] = torch.tensor(color, dtype=torch.float32, device=painted.device)
    if not blend:
        return painted
    mixed = images * (1 - alpha) + painted * alpha
    mixed = torch.where((masks[..., 0] != ignore_index)[..., None], mixed, images)
    return backend.convert_to_numpy(mixed.to(torch.uint8))
