"""MobileNet v1 (`keras.applications.mobilenet`): Howard et al. 2017, depthwise separable
convolutions with a width multiplier `alpha`.

>>> model = MobileNet(weights=None, alpha=0.25, input_shape=(32, 32, 3), classes=10)
"""

import warnings

from keramic import layers
from keramic.applications import _common, imagenet_utils
from keramic.applications.imagenet_utils import decode_predictions
from keramic.models import Model
from keramic.serialization.registry import keras_export

BASE_WEIGHT_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
_ALPHA_TEXT = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}
_IMAGENET_SIZES = (128, 160, 192, 224)
# (pointwise filters, stride) of the 13 depthwise separable blocks.
_BLOCKS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)  # fmt: skip


@keras_export("keras.applications")
@_common.skips_initializers_when_loading
def MobileNet(
    input_shape=None,
    alpha=1.0,
    depth_multiplier=1,
    dropout=1e-3,
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
):
    """Instantiate MobileNet; ImageNet weights exist for alpha 0.25/0.5/0.75/1.0 at 128 to 224 pixels."""
    _common.check_weights_argument(weights, include_top, classes)
    default_size = 224
    if input_shape is not None and input_shape[0] == input_shape[1] and input_shape[0] in _IMAGENET_SIZES:
        default_size = input_shape[0]
    input_shape = imagenet_utils.obtain_input_shape(input_shape, default_size, 32, include_top, weights)
    rows, cols = input_shape[0], input_shape[1]
    if weights == "imagenet":
        if depth_multiplier != 1:
            raise ValueError(f"ImageNet weights need depth_multiplier=1; got {depth_multiplier}.")
        if alpha not in _ALPHA_TEXT:
            raise ValueError(f"ImageNet weights exist for alpha 0.25, 0.5, 0.75 or 1.0 only; got alpha={alpha}.")
        if rows != cols or rows not in _IMAGENET_SIZES:
            rows = 224
            warnings.warn(
                "`input_shape` is undefined, non-square, or its size is not 128, 160, 192 or 224: "
                "the weights for 224x224 inputs are loaded.",
                stacklevel=2,
            )
    img_input, inputs = _common.image_input(input_shape, input_tensor)
    x = _conv_block(img_input, 32, alpha, strides=(2, 2))
    for block_id, (filters, stride) in enumerate(_BLOCKS, start=1):
        x = _depthwise_conv_block(x, filters, alpha, depth_multiplier, strides=(stride, stride), block_id=block_id)
    if include_top:
        x = layers.GlobalAveragePooling2D(keepdims=True)(x)
        x = layers.Dropout(dropout, name="dropout")(x)
        x = layers.Conv2D(classes, (1, 1), padding="same", name="conv_preds")(x)
        x = layers.Reshape((classes,), name="reshape_2")(x)
        _common.check_classifier_activation(classifier_activation, weights)
        x = layers.Activation(activation=classifier_activation, name="predictions")(x)
    else:
        x = _common.global_pool(x, pooling)
    model = Model(inputs, x, name=name or f"mobilenet_{alpha:0.2f}_{rows}")
    file_name = origin = None
    if weights == "imagenet":
        suffix = "tf" if include_top else "tf_no_top"
        file_name = f"mobilenet_{_ALPHA_TEXT[alpha]}_{rows}_{suffix}.h5"
        origin = BASE_WEIGHT_PATH + file_name
    # Keras publishes no hash for these files.
    return _common.load_weights(model, weights, file_name, origin, None)


def _conv_block(inputs, filters, alpha, kernel=(3, 3), strides=(1, 1)):
    """The stem: a strided 3x3 convolution, batch norm, relu6."""
    x = layers.Conv2D(
        int(filters * alpha), kernel, padding="same", use_bias=False, strides=strides, name="conv1"
    )(inputs)
    x = layers.BatchNormalization(axis=-1, name="conv1_bn")(x)
    return layers.ReLU(6.0, name="conv1_relu")(x)


def _depthwise_conv_block(inputs, pointwise_conv_filters, alpha, depth_multiplier=1, strides=(1, 1), block_id=1):
    """A 3x3 depthwise convolution then a 1x1 pointwise one, each with batch norm and relu6."""
    x = inputs
    if strides != (1, 1):
        x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"conv_pad_{block_id}")(x)
    x = layers.DepthwiseConv2D(
        (3, 3),
        padding="same" if strides == (1, 1) else "valid",
        depth_multiplier=depth_multiplier,
        strides=strides,
        use_bias=False,
        name=f"conv_dw_{block_id}",
    )(x)
    x = layers.BatchNormalization(axis=-1, name=f"conv_dw_{block_id}_bn")(x)
    x = layers.ReLU(6.0, name=f"conv_dw_{block_id}_relu")(x)
    x = layers.Conv2D(
        int(pointwise_conv_filters * alpha),
        (1, 1),
        padding="same",
        use_bias=False,
        strides=(1, 1),
        name=f"conv_pw_{block_id}",
    )(x)
    x = layers.BatchNormalization(axis=-1, name=f"conv_pw_{block_id}_bn")(x)
    return layers.ReLU(6.0, name=f"conv_pw_{block_id}_relu")(x)


def preprocess_input(x, data_format=None):
    """TensorFlow convention: pixels scaled to [-1, 1]."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="tf")


__all__ = ["MobileNet", "decode_predictions", "preprocess_input"]
