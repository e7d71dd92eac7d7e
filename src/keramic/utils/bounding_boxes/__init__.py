"""`keras.utils.bounding_boxes`: box formats, clipping, crop/pad, affine moves, anchor deltas, IoU and CIoU, on torch tensors."""

from keramic.utils.bounding_boxes.affine import affine_transform
from keramic.utils.bounding_boxes.formats import clip_to_image_size, compute_iou, convert_format
from keramic.utils.bounding_boxes.geometry import compute_ciou, crop, decode_deltas_to_boxes, encode_box_to_deltas, pad

__all__ = ["affine_transform", "clip_to_image_size", "compute_ciou", "compute_iou", "convert_format", "crop", "decode_deltas_to_boxes",
           "encode_box_to_deltas", "pad"]
