"""A grid of images drawn with matplotlib, laid out, titled and saved as `keras.visualization` does."""

import math

import numpy as np

from keramic import backend
from keramic.visualization.optional import require


def _to_display_range(images: np.ndarray, value_range) -> np.ndarray:
    """Images mapped from `value_range` to [0, 255] in float32 (unchanged when already there)."""
    low, high = value_range
    if low == 0 and high == 255:
        return images
    low, high = np.float32(low), np.float32(high)
    return (images.astype(np.float32) - low) / (high - low) * np.float32(255) + np.float32(0)


def _title(index: int, y_true, y_pred, label_map) -> str:
    parts = []
    if y_true is not None and index < len(y_true):
        parts.append(f"Label: {label_map.get(y_true[index], 'Unknown')}")
    if y_pred is not None and index < len(y_pred):
        parts.append(f"Pred: {label_map.get(y_pred[index], 'Unknown')}")
    return "  ".join(parts)


def plot_image_gallery(
    images,
    y_true=None,
    y_pred=None,
    label_map: dict | None = None,
    rows: int | None = None,
    cols: int | None = None,
    value_range=(0, 255),
    scale: float = 2,
    path=None,
    show: bool | None = None,
    transparent: bool = True,
    dpi: int = 60,
    legend_handles: list | None = None,
    data_format: str | None = None,
) -> None:
    """Show (or save to `path`) a `rows` x `cols` grid of the first images of the batch `images`.

    Grid: `rows` defaults to ceil(sqrt(batch)), `cols` to batch // rows, as in Keras; each cell is
    `scale` inches square. Titles give `label_map[y_true[i]]` / `label_map[y_pred[i]]`. The
    figure is pyplot's current one: with `show=False` and no `path` it stays open for the caller.
    """
    plt = require("matplotlib.pyplot", "plot_image_gallery", "matplotlib")
    if path is not None and show:
        raise ValueError("plot_image_gallery() takes either `path` (save the figure) or `show=True`, not both.")
    if (y_true is not None or y_pred is not None) and label_map is None:
        raise ValueError("`y_true` and `y_pred` are shown through `label_map`: pass a `label_map` with them.")
    show = path is None if show is None else show
    data_format = data_format or backend.image_data_format()
    images = backend.convert_to_numpy(images)
    batch_size = images.shape[0] if images.ndim == 4 else 1
    rows = rows or math.ceil(math.sqrt(batch_size))
    cols = cols or math.ceil(batch_size // rows)
    if images.ndim != 4:
        raise ValueError(f"plot_image_gallery() needs a batch of images (4D); received shape {images.shape}.")
    images = images[: min(rows * cols, batch_size)]
    if data_format == "channels_first":
        images = images.transpose(0, 2, 3, 1)
    figure, axes = plt.subplots(
        nrows=rows, ncols=cols, figsize=(cols * scale, rows * scale), frameon=False, layout="tight", squeeze=True, sharex="row", sharey="col"
    )
    figure.subplots_adjust(wspace=0, hspace=0)
    axes = np.asarray(axes).reshape(rows, cols)
    if legend_handles is not None:
        figure.legend(handles=legend_handles, loc="lower center")
    images = _to_display_range(images, value_range)
    y_true = None if y_true is None else backend.convert_to_numpy(y_true)
    y_pred = None if y_pred is None else backend.convert_to_numpy(y_pred)
    for index in range(rows * cols):
        axis = axes[index // cols, index % cols]
        axis.imshow(images[index].astype(np.uint8))
        axis.margins(x=0, y=0)
        axis.axis("off")
        title = _title(index, y_true, y_pred, label_map)
        if title:
            axis.set_title(title, fontsize=8)
    if path is not None:
        figure.savefig(path, pad_inches=0, bbox_inches="tight", transparent=transparent, dpi=dpi)
        plt.close(figure)
    elif show:
        plt.show()
        plt.close(figure)
