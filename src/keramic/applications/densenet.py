"""DenseNet121/169/201 (`keras.applications.densenet`): Huang et al. 2017, densely connected blocks
joined by compressing transitions.

>>> model = DenseNet121(weights=None, include_top=False, input_shape=(32, 32, 3))
"""

import functools

from keramic import layers
from keramic.applications import _common, imagenet_utils
from keramic.applications.imagenet_utils import decode_predictions
from keramic.models import Model

BASE_WEIGHTS_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/densenet/"
# Blocks per stage -> (weights name, md5 with the classifier, md5 without it).
_WEIGHTS = {
    (6, 12, 24, 16): ("densenet121", "9d60b8095a5708f2dcce2bca79d332c7", "30ee3e1110167f948a6b9946edeeb738"),
    (6, 12, 32, 32): ("densenet169", "d699b8f76981ab1b30698df4c175e90b", "b8c4d4c20dd625c148057b9ff1c1176b"),
    (6, 12, 48, 32): ("densenet201", "1ceb130c1ea1b78c3bf6114dbdfd8807", "c13680b51ded0fb44dff2d8f86ac8bb1"),
}
_EPSILON = 1.001e-5


def dense_block(x, blocks, name):
    """`blocks` conv blocks, each concatenating 32 new channels onto its input."""
    for i in range(blocks):
        x = conv_block(x, 32, name=f"{name}_block{i + 1}")
    return x


def transition_block(x, reduction, name):
    """Batch norm, relu, a 1x1 convolution keeping `reduction` of the channels, 2x2 average pooling."""
    x = layers.BatchNormalization(axis=3, epsilon=_EPSILON, name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = layers.Conv2D(int(x.shape[3] * reduction), 1, use_bias=False, name=f"{name}_conv")(x)
    return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def conv_block(x, growth_rate, name):
    """Bottleneck (1x1 to 4*growth, 3x3 to growth), concatenated onto the input."""
    y = layers.BatchNormalization(axis=3, epsilon=_EPSILON, name=f"{name}_0_bn")(x)
    y = layers.Activation("relu", name=f"{name}_0_relu")(y)
    y = layers.Conv2D(4 * growth_rate, 1, use_bias=False, name=f"{name}_1_conv")(y)
    y = layers.BatchNormalization(axis=3, epsilon=_EPSILON, name=f"{name}_1_bn")(y)
    y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = layers.Conv2D(growth_rate, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    return layers.Concatenate(axis=3, name=f"{name}_concat")([x, y])


@_common.skips_initializers_when_loading
def DenseNet(
    blocks,
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="densenet",
):
    """A DenseNet with `blocks` conv blocks in each of its four dense stages."""
    img_input, inputs, _ = _common.start(weights, include_top, classes, input_shape, input_tensor, 224, 32)
    x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)))(img_input)
    x = layers.Conv2D(64, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = layers.BatchNormalization(axis=3, epsilon=_EPSILON, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)))(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for stage, count in enumerate(blocks, start=2):
        x = dense_block(x, count, name=f"conv{stage}")
        if stage < 5:
            x = transition_block(x, 0.5, name=f"pool{stage}")
    x = layers.BatchNormalization(axis=3, epsilon=_EPSILON, name="bn")(x)
    x = layers.Activation("relu", name="relu")(x)
    x = _common.classify_or_pool(x, include_top, pooling, classes, classifier_activation, weights, ("avg_pool", "max_pool"))
    model = Model(inputs, x, name=name)
    file_name = origin = file_hash = None
    if weights == "imagenet":
        if tuple(blocks) not in _WEIGHTS:
            raise ValueError(f"Keras publishes ImageNet weights only for DenseNet121/169/201, not blocks={blocks}.")
        weights_name, top_hash, notop_hash = _WEIGHTS[tuple(blocks)]
        suffix = "" if include_top else "_notop"
        file_name = f"{weights_name}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
        origin = BASE_WEIGHTS_PATH + file_name
        file_hash = top_hash if include_top else notop_hash
    return _common.load_weights(model, weights, file_name, origin, file_hash)


def _variant(public_name, blocks, default_name):
    doc = f"Instantiate {public_name} (`weights`: None, 'imagenet' or a weights file)."
    return _common.variant(public_name, functools.partial(DenseNet, blocks), default_name, doc)


DenseNet121 = _variant("DenseNet121", (6, 12, 24, 16), "densenet121")
DenseNet169 = _variant("DenseNet169", (6, 12, 32, 32), "densenet169")
DenseNet201 = _variant("DenseNet201", (6, 12, 48, 32), "densenet201")


def preprocess_input(x, data_format=None):
    """Torch convention: pixels to [0, 1], then normalised with ImageNet's mean and deviation."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="torch")


__all__ = ["DenseNet121", "DenseNet169", "DenseNet201", "decode_predictions", "preprocess_input"]
