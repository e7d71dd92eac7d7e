"""`keras.applications.vgg19`: VGG19, with Keras's layer names and its caffe-mode preprocessing."""

from keramic.applications import _vgg, imagenet_utils
from keramic.applications.imagenet_utils import decode_predictions
from keramic.serialization.registry import keras_export

WEIGHTS_PATH = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5"
)
WEIGHTS_PATH_NO_TOP = (
    "https://storage.googleapis.com/tensorflow/keras-applications/"
    "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
)
WEIGHTS_HASHES = ("cbe5617147190e668d6c5d5026f83318", "253f8cb515780f3b799900260a226db6")


@keras_export("keras.applications")
def VGG19(
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="vgg19",
):
    """Instantiate VGG19 (`weights`: None, 'imagenet' or a weights file).

    >>> model = VGG19(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg")
    """
    weight_files = (
        ("vgg19_weights_tf_dim_ordering_tf_kernels.h5", WEIGHTS_PATH, WEIGHTS_HASHES[0]),
        ("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", WEIGHTS_PATH_NO_TOP, WEIGHTS_HASHES[1]),
    )
    return _vgg.build_vgg(
        (2, 2, 4, 4, 4),
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


__all__ = ["VGG19", "decode_predictions", "preprocess_input"]
