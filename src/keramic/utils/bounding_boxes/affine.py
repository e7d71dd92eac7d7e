"""`affine_transform`: move `xyxy` boxes with an image that is rotated, sheared, scaled and shifted
about a centre (what Keras's RandomAffine-style layers do to their boxes).

Parameters are per image (shape `(batch,)`); angles are in degrees, translations and the centre
are fractions of the image size. Each box's four corners go through the matrix Keras builds
(torchvision's inverse affine matrix for the negated angles), and the result is the axis-aligned
box around them.
"""

import math

import torch

from keramic.ops.convert import to_tensor
from keramic.utils.bounding_boxes.geometry import _xyxy_only


def _per_image(value, batch: int, dtype: torch.dtype, device) -> torch.Tensor:
    return torch.as_tensor(value, dtype=dtype, device=device).reshape(-1).expand(batch)


def _corner_matrix(angle, translate_x, translate_y, scale, shear_x, shear_y, center_x, center_y, height, width):
    """(batch, 2, 3): the linear part (scale times the inverse of rotation-with-shear for the
    negated angles) and the offset that keeps the centre in place after the shift."""
    rotation = -angle * (math.pi / 180.0)
    shear_x, shear_y = -shear_x * (math.pi / 180.0), -shear_y * (math.pi / 180.0)
    # Rotation composed with shear; its determinant is 1, so its inverse is the adjugate.
    r00 = torch.cos(rotation - shear_y) / torch.cos(shear_y)
    r10 = -torch.sin(rotation - shear_y) / torch.cos(shear_y)
    r01 = r00 * torch.tan(shear_x) + torch.sin(rotation)
    r11 = torch.cos(rotation) - r10 * torch.tan(shear_x)
    linear = scale[:, None, None] * torch.stack([torch.stack([r11, -r01], -1), torch.stack([-r10, r00], -1)], -2)
    center = torch.stack([center_x * (width - 1), center_y * (height - 1)], -1)
    pivot = center - torch.stack([translate_x * (width - 1), translate_y * (height - 1)], -1)
    offset = center - (linear @ pivot[..., None])[..., 0]
    return torch.cat([linear, offset[..., None]], -1)


def affine_transform(
    boxes,
    angle,
    translate_x,
    translate_y,
    scale,
    shear_x,
    shear_y,
    height,
    width,
    center_x=None,
    center_y=None,
    bounding_box_format="xyxy",
) -> torch.Tensor:
    """`boxes` (`(batch, N, 4)`, or `(N, 4)` for one image) after the affine transform, in the
    dtype of `angle` (float32 for Python numbers).

    >>> affine_transform(boxes, angle=np.array([30.0]), translate_x=np.array([0.1]), translate_y=np.array([0.0]),
    ...                  scale=np.array([1.0]), shear_x=np.array([0.0]), shear_y=np.array([0.0]), height=64, width=80)
    """
    _xyxy_only("affine_transform", bounding_box_format)
    boxes = to_tensor(boxes)
    single = boxes.ndim == 2
    if single:
        boxes = boxes[None]
    dtype = angle.dtype if isinstance(angle, torch.Tensor) else to_tensor(angle).dtype
    dtype = dtype if dtype.is_floating_point else torch.float32
    batch, device = boxes.shape[0], boxes.device
    center_x, center_y = (0.5 if center is None else center for center in (center_x, center_y))
    angle, translate_x, translate_y, scale, shear_x, shear_y, center_x, center_y = (
        _per_image(value, batch, dtype, device)
        for value in (angle, translate_x, translate_y, scale, shear_x, shear_y, center_x, center_y)
    )
    matrix = _corner_matrix(angle, translate_x, translate_y, scale, shear_x, shear_y, center_x, center_y, height, width)
    x1, y1, x2, y2 = boxes.to(dtype).unbind(-1)
    corners = torch.stack([torch.stack(c, -1) for c in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))], -2)  # (B, N, 4, 2)
    moved = corners @ matrix[:, None, :, :2].transpose(-1, -2) + matrix[:, None, None, :, 2]
    result = torch.cat([moved.amin(-2), moved.amax(-2)], -1)
    return result[0] if single else result
