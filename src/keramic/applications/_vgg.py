"""The VGG plan shared by VGG16 and VGG19 (Simonyan and Zisserman, 2014): five blocks of 3x3
convolutions and max pooling, then two 4096-unit layers."""

from keramic import layers
from keramic.applications import _common, imagenet_utils
from keramic.models import Model

_BLOCK_FILTERS = (64, 128, 256, 512, 512)


@_common.skips_initializers_when_loading
def build_vgg(
    convs_per_block,
    name,
    weight_files,
    include_top,
    weights,
    input_tensor,
    input_shape,
    pooling,
    classes,
    classifier_activation,
):
    """`weight_files`: ((file name, url, md5) with the classifier, the same without it)."""
    _common.check_weights_argument(weights, include_top, classes)
    input_shape = imagenet_utils.obtain_input_shape(input_shape, 224, 32, include_top, weights)
    img_input, inputs = _common.image_input(input_shape, input_tensor)
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
    return _common.load_weights(model, weights, *weight_files[0 if include_top else 1])
