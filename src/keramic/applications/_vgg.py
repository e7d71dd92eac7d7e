"""The VGG plan shared by VGG16 and VGG19 (Simonyan and Zisserman, 2014): five blocks of 3x3
convolutions and max pooling, then two 4096-unit layers."""

from collections.abc import Callable

from keramic import layers
from keramic.applications import _common, imagenet_utils
from keramic.models import Model
from keramic.serialization.registry import keras_export

_BLOCK_FILTERS = (64, 128, 256, 512, 512)


@_common.skips_initializers_when_loading
def build_vgg(
    convs_per_block,
    name,
    weights_prefix,
    weight_urls,
    include_top,
    weights,
    input_tensor,
    input_shape,
    pooling,
    classes,
    classifier_activation,
):
    """`weight_urls()`: (url with the classifier, url without it, their md5s), read at call time."""
    img_input, inputs, _ = _common.start(weights, include_top, classes, input_shape, input_tensor, 224, 32)
    x = img_input
    for block, (filters, convs) in enumerate(zip(_BLOCK_FILTERS, convs_per_block), start=1):
        for conv in range(1, convs + 1):
            x = layers.Conv2D(filters, (3, 3), activation="relu", padding="same", name=f"block{block}_conv{conv}")(x)
        x = layers.MaxPooling2D((2, 2), strides=(2, 2), name=f"block{block}_pool")(x)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(4096, activation="relu", name="fc1")(x)
        x = layers.Dense(4096, activation="relu", name="fc2")(x)
        _common.check_classifier_activation(classifier_activation, weights)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = _common.global_pool(x, pooling)
    model = Model(inputs, x, name=name)
    return _common.load_tf_kernels_weights(model, weights, include_top, weights_prefix, *weight_urls())


def variant(public_name: str, convs_per_block: tuple, weight_urls: Callable[[], tuple]) -> Callable:
    """The exported `VGG16`/`VGG19` function: `convs_per_block` convolutions in each of the five blocks.
    `weight_urls` is a callable so that the module's URL constants are read when weights load."""
    default_name = public_name.lower()

    def constructor(
        include_top=True,
        weights="imagenet",
        input_tensor=None,
        input_shape=None,
        pooling=None,
        classes=1000,
        classifier_activation="softmax",
        name=default_name,
    ):
        return build_vgg(
            convs_per_block, name, default_name, weight_urls, include_top, weights, input_tensor, input_shape,
            pooling, classes, classifier_activation,
        )  # fmt: skip

    constructor.__name__ = constructor.__qualname__ = public_name
    constructor.__module__ = f"keramic.applications.{default_name}"
    constructor.__doc__ = f"Instantiate {public_name} (`weights`: None, 'imagenet' or a weights file)."
    return keras_export("keras.applications")(constructor)


def preprocess_input(x, data_format=None):
    """Caffe convention: BGR, minus the ImageNet mean pixel."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="caffe")
