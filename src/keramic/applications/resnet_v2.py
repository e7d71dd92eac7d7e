"""`keras.applications.resnet_v2`: the pre-activation ResNets and their `tf`-mode preprocessing."""

from keramic.applications import imagenet_utils
from keramic.applications.imagenet_utils import decode_predictions
from keramic.applications.resnet import ResNet50V2, ResNet101V2, ResNet152V2


def preprocess_input(x, data_format=None):
    """TensorFlow convention for ResNet v2: pixels scaled to [-1, 1]."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="tf")


__all__ = ["ResNet101V2", "ResNet152V2", "ResNet50V2", "decode_predictions", "preprocess_input"]
