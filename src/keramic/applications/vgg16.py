"""`keras.applications.vgg16`: VGG16, with Keras's layer names and its caffe-mode preprocessing.

>>> model = VGG16(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg")
"""

from keramic.applications import _vgg
from keramic.applications._vgg import preprocess_input
from keramic.applications.imagenet_utils import decode_predictions

WEIGHTS_PATH = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5"
)
WEIGHTS_PATH_NO_TOP = (
    "https://storage.googleapis.com/tensorflow/keras-applications/"
    "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
)
WEIGHTS_HASHES = ("64373286793e3c8b2b4e3219cbf3544b", "6d6bbae143d832006294945121d1f1fc")

VGG16 = _vgg.variant("VGG16", (2, 2, 3, 3, 3), lambda: (WEIGHTS_PATH, WEIGHTS_PATH_NO_TOP, WEIGHTS_HASHES))

__all__ = ["VGG16", "decode_predictions", "preprocess_input"]
