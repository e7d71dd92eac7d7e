"""ImageNet helpers shared by every application (`keras.applications.imagenet_utils`): input
preprocessing in the three conventions the pretrained weights expect, and top-k class decoding."""

import json

import numpy as np
import torch

from keramic import ops
from keramic.symbolic import KerasTensor
from keramic.utils.file_utils import get_file, keras_home

CLASS_INDEX_PATH = "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json"
CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
_class_index = None


def preprocess_input(x, data_format=None, mode="caffe"):
    """Scale a batch of RGB images (channels last) as the weights were trained.

    `mode="caffe"`: RGB -> BGR, minus the ImageNet mean pixel; `"tf"`: to [-1, 1]; `"torch"`: to
    [0, 1], then normalised per channel. A float numpy array is modified in place, as Keras does.

    >>> preprocess_input(np.full((1, 2, 2, 3), 127.5), mode="tf")[0, 0, 0]
    array([0., 0., 0.])
    """
    if mode not in ("caffe", "tf", "torch"):
        raise ValueError(f"Expected mode to be one of 'caffe', 'tf' or 'torch', got {mode!r}.")
    if data_format not in (None, "channels_last"):
        raise ValueError(f"keramic applications use channels_last images; got data_format={data_format!r}.")
    if isinstance(x, torch.Tensor):
        return _preprocess_tensor(x, mode)
    if isinstance(x, KerasTensor):
        return _preprocess_symbolic(x, mode)
    x = np.asarray(x) if not isinstance(x, np.ndarray) else x
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype("float32")
    if mode == "tf":
        x /= 127.5
        x -= 1.0
        return x
    if mode == "torch":
        x /= 255.0
        x -= np.asarray(_TORCH_MEAN, dtype=x.dtype)
        x /= np.asarray(_TORCH_STD, dtype=x.dtype)
        return x
    x = x[..., ::-1]
    x -= np.asarray(_CAFFE_BGR_MEAN, dtype=x.dtype)
    return x


def _preprocess_tensor(x, mode):
    if not x.is_floating_point():
        x = x.to(torch.float32)
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - x.new_tensor(_TORCH_MEAN)) / x.new_tensor(_TORCH_STD)
    return torch.flip(x, dims=(-1,)) - x.new_tensor(_CAFFE_BGR_MEAN)


def _preprocess_symbolic(x, mode):
    """The same scaling on a symbolic input, recorded as the op nodes Keras records (the
    DeepLabV3+ example preprocesses inside its model)."""
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        x = x / 255.0
        mean, std = _TORCH_MEAN, _TORCH_STD
    else:
        x = ops.stack([x[..., channel] for channel in (2, 1, 0)], axis=-1)  # RGB -> BGR
        mean, std = _CAFFE_BGR_MEAN, None
    x = x + ops.reshape(ops.convert_to_tensor(-np.array(mean), dtype=x.dtype), (1,) * (len(x.shape) - 1) + (3,))
    if std is not None:
        x = x / ops.convert_to_tensor(np.array(std), dtype=x.dtype)
    return x


def decode_predictions(preds, top=5):
    """ImageNet class probabilities `(batch, 1000)` -> per sample, the `top` best
    `(class_id, class_name, score)` tuples, best first. Fetches Keras's class index once."""
    global _class_index
    preds = preds.detach().cpu().numpy() if isinstance(preds, torch.Tensor) else np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(
            "`decode_predictions` expects a batch of ImageNet predictions, an array of shape "
            f"(samples, 1000); got shape {preds.shape}."
        )
    if _class_index is None:
        path = get_file(
            "imagenet_class_index.json",
            CLASS_INDEX_PATH,
            cache_dir=keras_home(),
            cache_subdir="models",
            file_hash=CLASS_INDEX_MD5,
        )
        with open(path, encoding="utf-8") as f:
            _class_index = json.load(f)
    results = []
    for pred in preds:
        best = np.argsort(pred)[-top:][::-1]
        results.append([tuple(_class_index[str(i)]) + (pred[i],) for i in best])
    return results


def obtain_input_shape(input_shape, default_size, min_size, require_flatten, weights=None):
    """The `(height, width, channels)` an application is built for, checked against what the
    weights and a flattening classifier need."""
    if weights != "imagenet" and input_shape and len(input_shape) == 3:
        default_shape = (default_size, default_size, input_shape[-1])
    else:
        default_shape = (default_size, default_size, 3)
    if weights == "imagenet" and require_flatten:
        if input_shape is not None and tuple(input_shape) != default_shape:
            raise ValueError(
                f"With include_top=True and imagenet weights, input_shape must be {default_shape}; "
                f"got {tuple(input_shape)}."
            )
        return default_shape
    if input_shape:
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be three integers (height, width, channels); got {input_shape}.")
        if weights == "imagenet" and input_shape[-1] != 3:
            raise ValueError(f"imagenet weights need 3 input channels; got input_shape={input_shape}.")
        if any(d is not None and d < min_size for d in input_shape[:2]):
            raise ValueError(f"Input size must be at least {min_size}x{min_size}; got input_shape={input_shape}.")
    elif require_flatten:
        input_shape = default_shape
    else:
        input_shape = (None, None, 3)
    if require_flatten and None in input_shape:
        raise ValueError(f"With include_top=True the input_shape must be static; got {input_shape}.")
    return input_shape


def correct_pad(inputs, kernel_size):
    """Zero padding `((top, bottom), (left, right))` that makes a strided 'valid' convolution line up
    as TensorFlow's 'same' does (one pixel less before than after on even sizes)."""
    size = inputs.shape[1:3]
    if isinstance(kernel_size, int):
        kernel_size = (kernel_size, kernel_size)
    adjust = (1, 1) if size[0] is None else (1 - size[0] % 2, 1 - size[1] % 2)
    half = (kernel_size[0] // 2, kernel_size[1] // 2)
    return ((half[0] - adjust[0], half[0]), (half[1] - adjust[1], half[1]))
