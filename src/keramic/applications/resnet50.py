"""`keras.applications.resnet50`: ResNet50 alone, with its caffe-mode preprocessing."""

from keramic.applications.resnet import ResNet50, decode_predictions, preprocess_input

__all__ = ["ResNet50", "decode_predictions", "preprocess_input"]
