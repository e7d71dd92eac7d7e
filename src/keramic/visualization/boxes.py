"""Draw bounding boxes and their class labels onto images with OpenCV, pixel for pixel as Keras does."""

import numpy as np

from keramic import backend
from keramic.utils.bounding_boxes.formats import convert_format
from keramic.visualization.optional import require


def _to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] are scaled to [0, 255], larger ones clipped; then cast (a copy) to uint8."""
    if images.dtype.kind == "f" and images.size > 0:
        images = np.clip(images, 0, 1) * 255 if images.max() <= 1.0 else np.clip(images, 0, 255)
    return np.array(images, dtype=np.uint8)


def _label_origin(x: int, y: int, font_scale: float, thickness: int) -> tuple[int, int]:
    """Where a label's baseline starts: just above the box, or inside it when the top edge is too close."""
    line_height = int(font_scale * 12)
    if y - 8 - 2 * line_height > 0:
        return x, y - 8
    return x + 3, y + 2 * line_height + thickness + 3


def draw_bounding_boxes(
    images,
    bounding_boxes: dict,
    bounding_box_format: str,
    class_mapping: dict | None = None,
    color=(128, 128, 128),
    line_thickness: int = 2,
    text_thickness: int | None = 1,
    font_scale: float = 1.0,
    data_format: str | None = None,
) -> np.ndarray:
    """A uint8 copy of `images` (B, H, W, C) with the boxes of `bounding_boxes` drawn on it.

    `bounding_boxes` holds "boxes" (B, N, 4) in `bounding_box_format`, "labels" (B, N) (-1 skips a
    box) and optionally "confidences" (B, N). Boxes whose label is in `class_mapping` get the class
    name (and " | 0.87" confidence) written by them. Unlike Keras, `channels_first` images work.
    """
    cv2 = require("cv2", "draw_bounding_boxes", "opencv-python")
    class_mapping = class_mapping or {}
    text_thickness = text_thickness or line_thickness
    data_format = data_format or backend.image_data_format()
    images = backend.convert_to_numpy(images)
    if images.ndim != 4:
        raise ValueError(f"`images` must be a batched 4D tensor; received shape {images.shape}.")
    if not isinstance(bounding_boxes, dict):
        raise TypeError(f"`bounding_boxes` must be a dict; received {type(bounding_boxes).__name__}: {bounding_boxes!r}")
    if "boxes" not in bounding_boxes or "labels" not in bounding_boxes:
        raise ValueError(f"`bounding_boxes` must have 'boxes' and 'labels' keys; received keys {sorted(bounding_boxes)}.")
    if data_format == "channels_first":
        images = images.transpose(0, 2, 3, 1)
    height, width = images.shape[1], images.shape[2]
    boxes = backend.convert_to_numpy(convert_format(bounding_boxes["boxes"], bounding_box_format, "xyxy", height, width))
    boxes = boxes.astype(np.int32)
    labels = backend.convert_to_numpy(bounding_boxes["labels"]).astype(np.int32)
    confidences = bounding_boxes.get("confidences")
    if confidences is not None:
        confidences = backend.convert_to_numpy(confidences)
    color = tuple(float(channel) for channel in color)
    drawn = []
    for index, image in enumerate(np.ascontiguousarray(_to_uint8(images))):
        for box, label in enumerate(labels[index]):
            if label == -1:
                continue
            x1, y1, x2, y2 = (int(value) for value in boxes[index, box])
            cv2.rectangle(image, (x1, y1), (x2, y2), color, line_thickness)
            if int(label) not in class_mapping:
                continue
            text = class_mapping[int(label)]
            if confidences is not None:
                text = f"{text} | {confidences[index][box]:.2f}"
            cv2.putText(
                img=image,
                text=text,
                org=_label_origin(x1, y1, font_scale, text_thickness),
                fontFace=cv2.FONT_HERSHEY_SIMPLEX,
                fontScale=font_scale,
                color=color,
                thickness=text_thickness,
            )
        drawn.append(image)
    result = np.stack(drawn, axis=0)
    return result.transpose(0, 3, 1, 2) if data_format == "channels_first" else result
