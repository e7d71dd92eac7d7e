"""`keras.applications.vgg19`: VGG19, with Keras's layer names and its caffe-mode preprocessing.

>>> model = VGG19(weights=None, include_top=False, input_shape=(32, 32, 3), pooling="avg")
"""

from keramic.applications import _vgg
from keramic.applications._vgg import preprocess_input
from keramic.applications.imagenet_utils import decode_predictions

WEIGHTS_PATH = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5"
)
WEIGHTS_PATH_NO_TOP = (
    "https://storage.googleapis.com/tensorflow/keras-applications/"
    "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
)
WEIGHTS_HASHES = ("cbe5617147190e668d6c5d5026f83318", "253f8cb515780f3b799900260a226db6")

VGG19 = _vgg.variant("VGG19", (2, 2, 4, 4, 4), lambda: (WEIGHTS_PATH, WEIGHTS_PATH_NO_TOP, WEIGHTS_HASHES))

__all__ = ["VGG19", "decode_predictions", "preprocess_input"]
