"""`keras.preprocessing`: the dataset builders and the `image` / `sequence` helpers."""

from keramic.preprocessing import image, sequence  # noqa: F401
from keramic.utils.dataset_utils import (  # noqa: F401
    image_dataset_from_directory,
    text_dataset_from_directory,
    timeseries_dataset_from_array,
)
