"""`keras.applications.vgg16`: VGG16, with Keras's layer names and its caffe-mode preprocessing."""

from keramic.applications import _vgg, imagenet_utils
from keramic.applications.imagenet_utils import decode_predictions
from keramic.serialization.registry import keras_export

WEIGHTS_PATH = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5"
)
WEIGHTS_PATH_NO_TOP = (
    "https://storage.googleapis.com/tensorflow/keras-applications/"
    "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
)
WEIGHTS_HASHES = ("64373286793e3c8b2b4e3219cbf3544b", "6d6bbae143d832006294945121d1f1fc")


@keras_export("keras.applications")
def VGG16(
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="vgg16",
):
    """Instantiate VGG16 (`weights`: None, 'imagenet' or a weights file).

    >>> model = VGG16(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg")
    """
    weight_files = (
        ("vgg16_weights_tf_dim_ordering_tf_kernels.h5", WEIGHTS_PATH, WEIGHTS_HASHES[0]),
        ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", WEIGHTS_PATH_NO_TOP, WEIGHTS_HASHES[1]),
    )
    return _vgg.build_vgg(
        (2, 2, 3, 3, 3),
        name,
        weight_files,
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
    )


def preprocess_input(x, data_format=None):
    """Caffe convention: BGR, minus the ImageNet mean pixel."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="caffe")


__all__ = ["VGG16", "decode_predictions", "preprocess_input"]
