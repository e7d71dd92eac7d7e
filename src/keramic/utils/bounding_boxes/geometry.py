"""Box geometry as `keras.utils.bounding_boxes` offers it: crop/pad offsets, anchor deltas, CIoU.

Anchor deltas are the usual detection-head encoding: centre offsets in units of the anchor's
size and log size ratios, optionally divided by a per-coordinate `variance`.
"""

import math

import torch

from keramic import backend
from keramic.ops.convert import to_tensor
from keramic.utils.bounding_boxes.formats import convert_format

_CENTER_FORMATS = ("center_xywh", "center_yxhw")


def _xyxy_only(function, bounding_box_format):
    if bounding_box_format != "xyxy":
        raise NotImplementedError(f"{function} supports 'xyxy' boxes only; received {bounding_box_format!r}.")


def crop(boxes, top, left, height, width, bounding_box_format="xyxy"):
    """Boxes in the frame of the crop starting at (`top`, `left`), clipped to its `height` x `width`."""
    _xyxy_only("crop", bounding_box_format)
    x1, y1, x2, y2 = to_tensor(boxes).unbind(-1)
    x1, x2 = ((x - left).clamp(0, width) for x in (x1, x2))
    y1, y2 = ((y - top).clamp(0, height) for y in (y1, y2))
    return torch.stack([x1, y1, x2, y2], dim=-1)


def pad(boxes, top, left, height=None, width=None, bounding_box_format="xyxy"):
    """Boxes shifted by the padding added above (`top`) and to the left (`left`) of the image."""
    _xyxy_only("pad", bounding_box_format)
    x1, y1, x2, y2 = to_tensor(boxes).unbind(-1)
    return torch.stack([x1 + left, y1 + top, x2 + left, y2 + top], dim=-1)


def _image_hw(image_shape):
    return (None, None) if image_shape is None else (image_shape[0], image_shape[1])


def _variance(variance):
    if variance is None:
        return None
    variance = to_tensor(variance, "float32")
    if variance.shape[-1] != 4:
        raise ValueError(f"`variance` must hold 4 values (one per coordinate); received {variance.tolist()}.")
    return variance


def _check_center(argument, value):
    if value not in _CENTER_FORMATS:
        raise ValueError(f"`{argument}` must be 'center_xywh' or 'center_yxhw'; received {value!r}.")


def encode_box_to_deltas(anchors, boxes, anchor_format, box_format, encoding_format="center_yxhw", variance=None,
                         image_shape=None):
    """Deltas that turn `anchors` into `boxes`: centre offsets / anchor size, then log size ratios."""
    variance = _variance(variance)
    _check_center("encoding_format", encoding_format)
    height, width = _image_hw(image_shape)
    anchors = convert_format(anchors, anchor_format, encoding_format, height, width)
    boxes = convert_format(boxes, box_format, encoding_format, height, width)
    anchor_size = anchors[..., 2:].clamp(min=backend.epsilon())
    box_size = boxes[..., 2:].clamp(min=backend.epsilon())
    deltas = torch.cat([(boxes[..., :2] - anchors[..., :2]) / anchor_size, torch.log(box_size / anchor_size)], dim=-1)
    return deltas if variance is None else deltas / variance


def decode_deltas_to_boxes(anchors, boxes_delta, anchor_format, box_format, encoded_format="center_yxhw",
                           variance=None, image_shape=None):
    """Inverse of `encode_box_to_deltas`; dicts of per-level anchors and deltas decode level by level."""
    variance = _variance(variance)
    _check_center("encoded_format", encoded_format)
    height, width = _image_hw(image_shape)

    def decode(anchor, delta):
        anchor = convert_format(anchor, anchor_format, encoded_format, height, width)
        delta = to_tensor(delta)
        if variance is not None:
            delta = delta * variance
        size = anchor[..., 2:]
        box = torch.cat([delta[..., :2] * size + anchor[..., :2], torch.exp(delta[..., 2:]) * size], dim=-1)
        return convert_format(box, encoded_format, box_format, height, width)

    if isinstance(anchors, dict) and isinstance(boxes_delta, dict):
        return {level: decode(anchor, boxes_delta[level]) for level, anchor in anchors.items()}
    return decode(anchors, boxes_delta)


def compute_ciou(boxes1, boxes2, bounding_box_format, image_shape=None):
    """Complete IoU of matching boxes (elementwise): IoU minus centre-distance and aspect penalties."""
    height, width = _image_hw(image_shape)
    eps = backend.epsilon()
    a = convert_format(boxes1, bounding_box_format, "xyxy", height, width)
    b = convert_format(boxes2, bounding_box_format, "xyxy", height, width)
    ax1, ay1, ax2, ay2 = a[..., :4].unbind(-1)
    bx1, by1, bx2, by2 = b[..., :4].unbind(-1)
    width_a, height_a = ax2 - ax1, ay2 - ay1 + eps
    width_b, height_b = bx2 - bx1, by2 - by1 + eps
    overlap = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(min=0) * \
        (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp(min=0)
    union = width_a * height_a + width_b * height_b - overlap + eps
    iou = overlap / (union + eps)
    enclosing_diagonal = (torch.maximum(ax2, bx2) - torch.minimum(ax1, bx1)) ** 2 + \
        (torch.maximum(ay2, by2) - torch.minimum(ay1, by1)) ** 2 + eps
    centre_distance = ((bx1 + bx2 - ax1 - ax2) ** 2 + (by1 + by2 - ay1 - ay2) ** 2) / 4
    aspect = (4 / math.pi**2) * (torch.atan(width_b / height_b) - torch.atan(width_a / height_a)) ** 2
    alpha = aspect / (aspect - iou + (1 + eps))
    return iou - (centre_distance / enclosing_diagonal + aspect * alpha)
