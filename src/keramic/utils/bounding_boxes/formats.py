"""Bounding-box formats as Keras names them, converted through corner form (`xyxy`).

Every format maps to and from absolute `x_min, y_min, x_max, y_max`, so each conversion is two
small steps instead of one function per pair; `rel_*` formats are fractions of the image size.
"""

import torch

from keramic import backend
from keramic.ops.convert import to_tensor

FORMATS = ("xyxy", "yxyx", "xywh", "center_xywh", "center_yxhw",
           "rel_xyxy", "rel_yxyx", "rel_xywh", "rel_center_xywh")


def _check_format(name: str) -> str:
    name = name.lower()
    if name not in FORMATS:
        raise ValueError(f"Unknown bounding box format {name!r}; expected one of {', '.join(FORMATS)}.")
    return name


def _image_size(name, height, width):
    if name.startswith("rel_") and (height is None or width is None):
        raise ValueError(f"Format {name!r} is relative to the image: pass `height` and `width`.")
    return height, width


def _to_xyxy(boxes, name, height, width):
    a, b, c, d = boxes.unbind(-1)
    relative = name.startswith("rel_")
    name = name[4:] if relative else name
    if name == "xyxy":
        corners = (a, b, c, d)
    elif name == "yxyx":
        corners = (b, a, d, c)
    elif name == "xywh":
        corners = (a, b, a + c, b + d)
    elif name == "center_xywh":
        corners = (a - c / 2, b - d / 2, a + c / 2, b + d / 2)
    else:  # center_yxhw
        corners = (b - d / 2, a - c / 2, b + d / 2, a + c / 2)
    if relative:  # scale the corners, not the sizes, as Keras does: the same float32 rounding
        x1, y1, x2, y2 = corners
        corners = (x1 * width, y1 * height, x2 * width, y2 * height)
    return torch.stack(corners, dim=-1)


def _from_xyxy(boxes, name, height, width):
    x1, y1, x2, y2 = boxes.unbind(-1)
    base = name[4:] if name.startswith("rel_") else name
    if base == "xyxy":
        parts = (x1, y1, x2, y2)
    elif base == "yxyx":
        parts = (y1, x1, y2, x2)
    elif base == "xywh":
        parts = (x1, y1, x2 - x1, y2 - y1)
    elif base == "center_xywh":
        parts = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
    else:  # center_yxhw
        parts = ((y1 + y2) / 2, (x1 + x2) / 2, y2 - y1, x2 - x1)
    if name.startswith("rel_"):
        a, b, c, d = parts
        if base == "yxyx":
            parts = (a / height, b / width, c / height, d / width)
        else:
            parts = (a / width, b / height, c / width, d / height)
    return torch.stack(parts, dim=-1)


def convert_format(boxes, source: str, target: str, height=None, width=None, dtype="float32"):
    """Boxes (..., 4) from format `source` to `target`; a dict's `"boxes"` entry is converted in place."""
    if isinstance(boxes, dict):
        converted = dict(boxes)
        converted["boxes"] = convert_format(boxes["boxes"], source, target, height, width, dtype)
        return converted
    source, target = _check_format(source), _check_format(target)
    _image_size(source, height, width)
    _image_size(target, height, width)
    tensor = to_tensor(boxes).to(backend.torch_dtype(dtype))
    if source == target:
        return tensor
    return _from_xyxy(_to_xyxy(tensor, source, height, width), target, height, width).to(backend.torch_dtype(dtype))


def clip_to_image_size(bounding_boxes, height=None, width=None, bounding_box_format="xyxy"):
    """Boxes clipped to the image; boxes left with no area get label -1 (dict input), as Keras."""
    if bounding_box_format not in ("xyxy", "rel_xyxy"):
        raise NotImplementedError(f"clip_to_image_size supports 'xyxy' and 'rel_xyxy' boxes; received {bounding_box_format!r}.")
    boxes = to_tensor(bounding_boxes["boxes"] if isinstance(bounding_boxes, dict) else bounding_boxes)
    if bounding_box_format == "xyxy":
        if height is None or width is None:
            raise ValueError("clip_to_image_size on 'xyxy' boxes needs `height` and `width`.")
        x_max, y_max = width, height
    else:
        x_max = y_max = 1.0
    x1, y1, x2, y2 = boxes.unbind(-1)
    clipped = torch.stack([x1.clamp(0, x_max), y1.clamp(0, y_max), x2.clamp(0, x_max), y2.clamp(0, y_max)], dim=-1)
    if not isinstance(bounding_boxes, dict):
        return clipped
    result = dict(bounding_boxes)
    result["boxes"] = clipped
    if "labels" in bounding_boxes:
        area = (clipped[..., 2] - clipped[..., 0]) * (clipped[..., 3] - clipped[..., 1])
        labels = to_tensor(bounding_boxes["labels"])
        result["labels"] = torch.where(area > 0, labels, torch.full_like(labels, -1))
    return result


def compute_iou(boxes1, boxes2, bounding_box_format: str, use_masking=False, mask_val=-1, image_shape=None):
    """Pairwise intersection over union: (..., N, 4) and (..., M, 4) -> (..., N, M)."""
    height = width = None
    if image_shape is not None:
        height, width = image_shape[0], image_shape[1]
    a = convert_format(boxes1, bounding_box_format, "xyxy", height, width)
    b = convert_format(boxes2, bounding_box_format, "xyxy", height, width)
    top_left = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    bottom_right = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    overlap = (bottom_right - top_left).clamp(min=0)
    intersection = overlap[..., 0] * overlap[..., 1]
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a[..., :, None] + area_b[..., None, :] - intersection
    iou = torch.clamp(intersection / union.clamp(min=backend.epsilon()), 0.0, 1.0)
    if use_masking:
        padded_a = (a < 0).all(-1)
        padded_b = (b < 0).all(-1)
        mask = padded_a[..., :, None] | padded_b[..., None, :]
        iou = torch.where(mask, torch.full_like(iou, mask_val), iou)
    return iou
