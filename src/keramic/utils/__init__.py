"""Helpers from `keras.utils`: data, images, sequences, registry and serialization, graph info."""

import numpy as np
import torch

from keramic.backend import clear_session, is_keras_tensor, set_random_seed, standardize_dtype
from keramic.serialization.public import deserialize_keras_object
from keramic.serialization.registry import (
    CustomObjectScope,
    custom_object_scope,
    get_custom_objects,
    get_registered_name,
    get_registered_object,
    register_keras_serializable,
)
from keramic.serialization.serialize import serialize_keras_object
from keramic.training.progress import Progbar
from keramic.utils import bounding_boxes, legacy
from keramic.utils.audio_dataset import audio_dataset_from_directory
from keramic.utils.config import Config
from keramic.utils.dataset_utils import (
    image_dataset_from_directory,
    split_dataset,
    text_dataset_from_directory,
    timeseries_dataset_from_array,
)
from keramic.utils.file_utils import get_file
from keramic.utils.image_utils import array_to_img, img_to_array, load_img, save_img
from keramic.utils.model_visualization import model_to_dot, plot_model
from keramic.utils.numerical_utils import normalize
from keramic.utils.py_dataset import PyDataset, Sequence
from keramic.utils.sequence_utils import pad_sequences


def to_categorical(x, num_classes=None):
    """Integer class labels -> one-hot float64 rows (numpy), as `keras.utils.to_categorical`; a
    torch tensor gives an int64 tensor, as Keras's torch backend does.

    A trailing axis of size 1 is dropped first; `num_classes` defaults to `max(x) + 1`.

    >>> to_categorical([0, 2])
    array([[1., 0., 0.],
           [0., 0., 1.]])
    """
    if isinstance(x, torch.Tensor):
        labels = x.squeeze(-1) if x.ndim > 1 and x.shape[-1] == 1 else x
        labels = labels.long()
        return torch.nn.functional.one_hot(labels, int(num_classes) if num_classes else int(labels.max()) + 1)
    y = np.asarray(x, dtype="int64")
    shape = y.shape[:-1] if y.ndim > 1 and y.shape[-1] == 1 else y.shape
    y = y.reshape(-1)
    if not num_classes:
        num_classes = int(np.max(y)) + 1
    one_hot = np.zeros((y.size, num_classes))
    one_hot[np.arange(y.size), y] = 1
    return one_hot.reshape(shape + (num_classes,))


def get_source_inputs(tensor):
    """The `Input` tensors a symbolic tensor was computed from."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return [tensor]
    layer, node_index, _ = history
    node = layer._inbound_nodes[node_index]
    if node.is_input:
        return [tensor]
    sources = []
    for parent in node.input_tensors:
        for source in get_source_inputs(parent):
            if not any(source is seen for seen in sources):
                sources.append(source)
    return sources


def pack_x_y_sample_weight(x, y=None, sample_weight=None):
    """`(x,)`, `(x, y)` or `(x, y, sample_weight)`: the tuple `fit` unpacks."""
    if y is None:
        return (x,) if isinstance(x, (list, tuple)) else x
    if sample_weight is None:
        return (x, y)
    return (x, y, sample_weight)


def unpack_x_y_sample_weight(data):
    """`(x, y, sample_weight)` from a batch of 1, 2 or 3 parts (missing parts are None)."""
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return (data, None, None)
    if len(data) == 1:
        return (data[0], None, None)
    if len(data) == 2:
        return (data[0], data[1], None)
    if len(data) == 3:
        return (data[0], data[1], data[2])
    raise ValueError(f"Data is expected as (x,), (x, y) or (x, y, sample_weight); found a tuple of {len(data)}.")


def enable_interactive_logging():
    from keramic import config

    config.enable_interactive_logging()


def disable_interactive_logging():
    from keramic import config

    config.disable_interactive_logging()


def is_interactive_logging_enabled():
    from keramic import config

    return config.is_interactive_logging_enabled()


__all__ = [
    "Config", "audio_dataset_from_directory", "bounding_boxes", "legacy",
    "CustomObjectScope", "Progbar", "PyDataset", "Sequence", "array_to_img", "clear_session", "custom_object_scope",
    "deserialize_keras_object", "disable_interactive_logging", "enable_interactive_logging", "get_custom_objects",
    "get_file", "get_registered_name", "get_registered_object", "get_source_inputs", "image_dataset_from_directory",
    "img_to_array", "is_interactive_logging_enabled", "is_keras_tensor", "load_img", "model_to_dot", "normalize",
    "pack_x_y_sample_weight", "pad_sequences", "plot_model", "register_keras_serializable", "save_img",
    "serialize_keras_object", "set_random_seed", "split_dataset", "standardize_dtype", "text_dataset_from_directory",
    "timeseries_dataset_from_array", "to_categorical", "unpack_x_y_sample_weight",
]
