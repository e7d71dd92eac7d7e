"""Galleries of images with their boxes or segmentation masks drawn on, shown by `plot_image_gallery`."""

import numpy as np

from keramic import backend
from keramic.visualization.boxes import draw_bounding_boxes
from keramic.visualization.gallery import plot_image_gallery
from keramic.visualization.masks import draw_segmentation_masks
from keramic.visualization.optional import require


def _channels_last_batch(images, data_format: str | None) -> np.ndarray:
    images = backend.convert_to_numpy(images)
    if images.ndim != 4:
        raise ValueError(f"`images` must be a batched 4D tensor; received shape {images.shape}.")
    return images.transpose(0, 2, 3, 1) if (data_format or backend.image_data_format()) == "channels_first" else images


def plot_bounding_box_gallery(
    images,
    bounding_box_format: str,
    y_true: dict | None = None,
    y_pred: dict | None = None,
    value_range=(0, 255),
    true_color=(0, 188, 212),
    pred_color=(255, 235, 59),
    line_thickness: int = 2,
    font_scale: float = 1.0,
    text_thickness: int | None = None,
    class_mapping: dict | None = None,
    ground_truth_mapping: dict | None = None,
    prediction_mapping: dict | None = None,
    legend: bool = False,
    legend_handles: list | None = None,
    rows: int | None = None,
    cols: int | None = None,
    data_format: str | None = None,
    **kwargs,
) -> None:
    """`plot_image_gallery` of `images` with the `y_true` boxes drawn in `true_color`, then `y_pred`'s in `pred_color`.

    `ground_truth_mapping` / `prediction_mapping` name the classes of each (default `class_mapping`);
    `legend=True` adds "Ground Truth" / "Prediction" patches. Other keywords go to `plot_image_gallery`.
    """
    patches = require("matplotlib.patches", "plot_bounding_box_gallery", "matplotlib")
    images = _channels_last_batch(images, data_format)

    def draw(images, boxes, color, mapping):
        return draw_bounding_boxes(images, boxes, bounding_box_format, mapping, color, line_thickness, text_thickness, font_scale, "channels_last")

    if y_true is not None:
        images = draw(images, y_true, true_color, ground_truth_mapping or class_mapping)
    if y_pred is not None:
        images = draw(images, y_pred, pred_color, prediction_mapping or class_mapping)
    if legend:
        if legend_handles:
            raise ValueError("plot_bounding_box_gallery() takes `legend=True` or `legend_handles`, not both.")
        legend_handles = [
            patches.Patch(color=np.array(true_color) / 255.0, label="Ground Truth"),
            patches.Patch(color=np.array(pred_color) / 255.0, label="Prediction"),
        ]
    return plot_image_gallery(images, value_range=value_range, legend_handles=legend_handles, rows=rows, cols=cols, data_format="channels_last", **kwargs)


def _masks_channels_last(masks, data_format: str | None) -> np.ndarray:
    masks = backend.convert_to_numpy(masks).astype(np.int32)
    if masks.ndim == 3:  # (B, H, W), which Keras documents but fails on
        return masks[..., None]
    return masks.transpose(0, 2, 3, 1) if (data_format or backend.image_data_format()) == "channels_first" else masks


def plot_segmentation_mask_gallery(
    images,
    num_classes: int,
    value_range=(0, 255),
    y_true=None,
    y_pred=None,
    color_mapping: dict | None = None,
    blend: bool = True,
    alpha: float = 0.8,
    ignore_index: int = -1,
    data_format: str | None = None,
    **kwargs,
) -> None:
    """One gallery row per image: the image, then its `y_true` and `y_pred` masks drawn on it.

    Masks are (B, H, W, 1) or (B, H, W) class ids, coloured by `draw_segmentation_masks`. Other
    keywords go to `plot_image_gallery`.
    """
    images = _channels_last_batch(images, data_format)
    drawing = dict(num_classes=num_classes, color_mapping=color_mapping, alpha=alpha, ignore_index=ignore_index, blend=blend, data_format="channels_last")
    columns = [images]
    for masks in (y_true, y_pred):
        if masks is not None:
            columns.append(backend.convert_to_numpy(draw_segmentation_masks(images, _masks_channels_last(masks, data_format), **drawing)))
    gallery = np.stack([column[index] for index in range(len(images)) for column in columns], axis=0)
    return plot_image_gallery(gallery, value_range=value_range, rows=len(images), cols=len(columns), data_format="channels_last", **kwargs)
