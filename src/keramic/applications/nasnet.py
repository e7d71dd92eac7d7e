"""NASNet Mobile and Large (`keras.applications.nasnet`): Zoph et al. 2018, normal and reduction
cells found by architecture search. Large's default input is 331x331, Mobile's 224x224.

>>> model = NASNetMobile(weights=None, include_top=False, input_shape=(32, 32, 3))
"""

from keramic import layers
from keramic.applications import _common, imagenet_utils
from keramic.applications.imagenet_utils import decode_predictions
from keramic.models import Model
from keramic.scopes import name_scope
from keramic.serialization.registry import keras_export

BASE_WEIGHTS_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/nasnet/"
NASNET_MOBILE_WEIGHT_PATH = f"{BASE_WEIGHTS_PATH}NASNet-mobile.h5"
NASNET_MOBILE_WEIGHT_PATH_NO_TOP = f"{BASE_WEIGHTS_PATH}NASNet-mobile-no-top.h5"
NASNET_LARGE_WEIGHT_PATH = f"{BASE_WEIGHTS_PATH}NASNet-large.h5"
NASNET_LARGE_WEIGHT_PATH_NO_TOP = f"{BASE_WEIGHTS_PATH}NASNet-large-no-top.h5"
# Default size -> ((file name, url, md5) with the classifier, the same without it).
_WEIGHT_FILES = {
    224: (
        ("nasnet_mobile.h5", NASNET_MOBILE_WEIGHT_PATH, "020fb642bf7360b370c678b08e0adf61"),
        ("nasnet_mobile_no_top.h5", NASNET_MOBILE_WEIGHT_PATH_NO_TOP, "1ed92395b5b598bdda52abe5c0dbfd63"),
    ),
    331: (
        ("nasnet_large.h5", NASNET_LARGE_WEIGHT_PATH, "11577c9a518f0070763c2b964a382f17"),
        ("nasnet_large_no_top.h5", NASNET_LARGE_WEIGHT_PATH_NO_TOP, "d81d89dc07e6e56530c4e77faddd61b5"),
    ),
}
_BN = {"axis": -1, "momentum": 0.9997, "epsilon": 1e-3}


@_common.skips_initializers_when_loading
def NASNet(
    input_shape=None,
    penultimate_filters=4032,
    num_blocks=6,
    stem_block_filters=96,
    skip_reduction=True,
    filter_multiplier=2,
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    pooling=None,
    classes=1000,
    default_size=None,
    classifier_activation="softmax",
    name="NASNet",
):
    """A NASNet-A with `num_blocks` normal cells between each pair of reduction cells."""
    _common.check_weights_argument(weights, include_top, classes)
    if isinstance(input_shape, tuple) and None in input_shape and weights == "imagenet":
        raise ValueError(f"With ImageNet weights a NASNet needs a static input_shape; got {input_shape}.")
    default_size = default_size or 331
    input_shape = imagenet_utils.obtain_input_shape(input_shape, default_size, 32, include_top, weights)
    img_input, inputs = _common.image_input(input_shape, input_tensor)
    if penultimate_filters % (24 * (filter_multiplier**2)) != 0:
        raise ValueError(
            "For NASNet-A models, `penultimate_filters` must be a multiple of 24 * filter_multiplier**2 "
            f"({24 * filter_multiplier**2}); got {penultimate_filters}."
        )
    filters = penultimate_filters // 24
    x = layers.Conv2D(
        stem_block_filters, (3, 3), strides=(2, 2), padding="valid", use_bias=False, name="stem_conv1",
        kernel_initializer="he_normal",
    )(img_input)  # fmt: skip
    x = layers.BatchNormalization(**_BN, name="stem_bn1")(x)
    p = None
    x, p = _reduction_a_cell(x, p, filters // (filter_multiplier**2), block_id="stem_1")
    x, p = _reduction_a_cell(x, p, filters // filter_multiplier, block_id="stem_2")
    for i in range(num_blocks):
        x, p = _normal_a_cell(x, p, filters, block_id=f"{i}")
    x, p0 = _reduction_a_cell(x, p, filters * filter_multiplier, block_id=f"reduce_{num_blocks}")
    p = p if skip_reduction else p0
    for i in range(num_blocks):
        x, p = _normal_a_cell(x, p, filters * filter_multiplier, block_id=f"{num_blocks + i + 1}")
    x, p0 = _reduction_a_cell(x, p, filters * filter_multiplier**2, block_id=f"reduce_{2 * num_blocks}")
    p = p if skip_reduction else p0
    for i in range(num_blocks):
        x, p = _normal_a_cell(x, p, filters * filter_multiplier**2, block_id=f"{2 * num_blocks + i + 1}")
    x = layers.Activation("relu")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D()(x)
        _common.check_classifier_activation(classifier_activation, weights)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = _common.global_pool(x, pooling)
    model = Model(inputs, x, name=name)
    files = (None, None, None)
    if weights == "imagenet":
        if default_size not in _WEIGHT_FILES:
            raise ValueError("ImageNet weights exist only for NASNetLarge and NASNetMobile.")
        files = _WEIGHT_FILES[default_size][0 if include_top else 1]
    return _common.load_weights(model, weights, *files)


@keras_export("keras.applications")
def NASNetMobile(
    input_shape=None,
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="nasnet_mobile",
):
    """Instantiate NASNetMobile (default input 224x224; `weights`: None, 'imagenet' or a file).

    Keras 3.15 refuses this model on its torch backend; keramic builds it.
    """
    if not include_top and input_shape is None:
        input_shape = (224, 224, 3)
    return NASNet(
        input_shape, penultimate_filters=1056, num_blocks=4, stem_block_filters=32, skip_reduction=False,
        filter_multiplier=2, include_top=include_top, weights=weights, input_tensor=input_tensor, pooling=pooling,
        classes=classes, default_size=224, classifier_activation=classifier_activation, name=name,
    )  # fmt: skip


@keras_export("keras.applications")
def NASNetLarge(
    input_shape=None,
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="nasnet_large",
):
    """Instantiate NASNetLarge (default input 331x331; `weights`: None, 'imagenet' or a file)."""
    return NASNet(
        input_shape, penultimate_filters=4032, num_blocks=6, stem_block_filters=96, skip_reduction=True,
        filter_multiplier=2, include_top=include_top, weights=weights, input_tensor=input_tensor, pooling=pooling,
        classes=classes, default_size=331, classifier_activation=classifier_activation, name=name,
    )  # fmt: skip


def _separable_conv_block(ip, filters, kernel_size=(3, 3), strides=(1, 1), block_id=None):
    """relu, separable conv (strided ones padded as TensorFlow's 'same'), BN, relu, separable conv, BN."""
    with name_scope(f"separable_conv_block_{block_id}"):  # Keras's scope: it reaches the weight paths
        return _separable_conv_layers(ip, filters, kernel_size, strides, block_id)


def _separable_conv_layers(ip, filters, kernel_size, strides, block_id):
    x = layers.Activation("relu")(ip)
    if strides == (2, 2):
        x = layers.ZeroPadding2D(
            padding=imagenet_utils.correct_pad(x, kernel_size), name=f"separable_conv_1_pad_{block_id}"
        )(x)
    x = layers.SeparableConv2D(
        filters, kernel_size, strides=strides, name=f"separable_conv_1_{block_id}",
        padding="valid" if strides == (2, 2) else "same", use_bias=False,
    )(x)  # fmt: skip
    x = layers.BatchNormalization(**_BN, name=f"separable_conv_1_bn_{block_id}")(x)
    x = layers.Activation("relu")(x)
    x = layers.SeparableConv2D(
        filters, kernel_size, name=f"separable_conv_2_{block_id}", padding="same", use_bias=False
    )(x)
    return layers.BatchNormalization(**_BN, name=f"separable_conv_2_bn_{block_id}")(x)


def _adjust_block(p, ip, filters, block_id=None):
    """Bring the previous cell's output `p` to the spatial size and width of `ip`."""
    if p is None:
        return ip
    with name_scope("adjust_block"):
        if p.shape[-2] != ip.shape[-2]:
            with name_scope(f"adjust_reduction_block_{block_id}"):
                return _adjust_reduction(p, filters, block_id)
        if p.shape[-1] != filters:
            with name_scope(f"adjust_projection_block_{block_id}"):
                return _adjust_projection(p, filters, block_id)
    return p


def _adjust_reduction(p, filters, block_id):
    p = layers.Activation("relu", name=f"adjust_relu_1_{block_id}")(p)
    p1 = layers.AveragePooling2D((1, 1), strides=(2, 2), padding="valid", name=f"adjust_avg_pool_1_{block_id}")(p)
    p1 = layers.Conv2D(
        filters // 2, (1, 1), padding="same", use_bias=False, name=f"adjust_conv_1_{block_id}",
        kernel_initializer="he_normal",
    )(p1)  # fmt: skip
    p2 = layers.ZeroPadding2D(padding=((0, 1), (0, 1)))(p)
    p2 = layers.Cropping2D(cropping=((1, 0), (1, 0)))(p2)
    p2 = layers.AveragePooling2D((1, 1), strides=(2, 2), padding="valid", name=f"adjust_avg_pool_2_{block_id}")(p2)
    p2 = layers.Conv2D(
        filters // 2, (1, 1), padding="same", use_bias=False, name=f"adjust_conv_2_{block_id}",
        kernel_initializer="he_normal",
    )(p2)  # fmt: skip
    p = layers.Concatenate(axis=-1)([p1, p2])
    return layers.BatchNormalization(**_BN, name=f"adjust_bn_{block_id}")(p)


def _adjust_projection(p, filters, block_id):
    p = layers.Activation("relu")(p)
    p = layers.Conv2D(
        filters, (1, 1), strides=(1, 1), padding="same", name=f"adjust_conv_projection_{block_id}",
        use_bias=False, kernel_initializer="he_normal",
    )(p)  # fmt: skip
    return layers.BatchNormalization(**_BN, name=f"adjust_bn_{block_id}")(p)


def _squeeze_input(ip, filters, prefix, block_id):
    h = layers.Activation("relu")(ip)
    h = layers.Conv2D(
        filters, (1, 1), strides=(1, 1), padding="same", name=f"{prefix}_conv_1_{block_id}", use_bias=False,
        kernel_initializer="he_normal",
    )(h)  # fmt: skip
    return layers.BatchNormalization(**_BN, name=f"{prefix}_bn_1_{block_id}")(h)


def _normal_a_cell(ip, p, filters, block_id=None):
    """A normal cell: five branch pairs at the same resolution, concatenated with `p` (inside Keras's
    name scopes, which reach the weight paths: `normal_A_block_<id>/block_<n>/...`)."""
    with name_scope(f"normal_A_block_{block_id}"):
        p = _adjust_block(p, ip, filters, block_id)
        h = _squeeze_input(ip, filters, "normal", block_id)
        with name_scope("block_1"):
            x1_1 = _separable_conv_block(h, filters, kernel_size=(5, 5), block_id=f"normal_left1_{block_id}")
            x1_2 = _separable_conv_block(p, filters, block_id=f"normal_right1_{block_id}")
            x1 = layers.Add(name=f"normal_add_1_{block_id}")([x1_1, x1_2])
        with name_scope("block_2"):
            x2_1 = _separable_conv_block(p, filters, (5, 5), block_id=f"normal_left2_{block_id}")
            x2_2 = _separable_conv_block(p, filters, (3, 3), block_id=f"normal_right2_{block_id}")
            x2 = layers.Add(name=f"normal_add_2_{block_id}")([x2_1, x2_2])
        with name_scope("block_3"):
            x3 = layers.AveragePooling2D((3, 3), strides=(1, 1), padding="same", name=f"normal_left3_{block_id}")(h)
            x3 = layers.Add(name=f"normal_add_3_{block_id}")([x3, p])
        with name_scope("block_4"):
            x4_1 = layers.AveragePooling2D((3, 3), strides=(1, 1), padding="same", name=f"normal_left4_{block_id}")(p)
            x4_2 = layers.AveragePooling2D((3, 3), strides=(1, 1), padding="same", name=f"normal_right4_{block_id}")(p)
            x4 = layers.Add(name=f"normal_add_4_{block_id}")([x4_1, x4_2])
        with name_scope("block_5"):
            x5 = _separable_conv_block(h, filters, block_id=f"normal_left5_{block_id}")
            x5 = layers.Add(name=f"normal_add_5_{block_id}")([x5, h])
        x = layers.Concatenate(axis=-1, name=f"normal_concat_{block_id}")([p, x1, x2, x3, x4, x5])
    return x, ip


def _reduction_a_cell(ip, p, filters, block_id=None):
    """A reduction cell: strided branch pairs halving the resolution (Keras's scopes, as above)."""
    with name_scope(f"reduction_A_block_{block_id}"):
        p = _adjust_block(p, ip, filters, block_id)
        h = _squeeze_input(ip, filters, "reduction", block_id)
        h3 = layers.ZeroPadding2D(padding=imagenet_utils.correct_pad(h, 3), name=f"reduction_pad_1_{block_id}")(h)
        with name_scope("block_1"):
            x1_1 = _separable_conv_block(h, filters, (5, 5), strides=(2, 2), block_id=f"reduction_left1_{block_id}")
            x1_2 = _separable_conv_block(p, filters, (7, 7), strides=(2, 2), block_id=f"reduction_right1_{block_id}")
            x1 = layers.Add(name=f"reduction_add_1_{block_id}")([x1_1, x1_2])
        with name_scope("block_2"):
            x2_1 = layers.MaxPooling2D((3, 3), strides=(2, 2), padding="valid", name=f"reduction_left2_{block_id}")(h3)
            x2_2 = _separable_conv_block(p, filters, (7, 7), strides=(2, 2), block_id=f"reduction_right2_{block_id}")
            x2 = layers.Add(name=f"reduction_add_2_{block_id}")([x2_1, x2_2])
        with name_scope("block_3"):
            x3_1 = layers.AveragePooling2D((3, 3), strides=(2, 2), padding="valid", name=f"reduction_left3_{block_id}")(h3)
            x3_2 = _separable_conv_block(p, filters, (5, 5), strides=(2, 2), block_id=f"reduction_right3_{block_id}")
            x3 = layers.Add(name=f"reduction_add3_{block_id}")([x3_1, x3_2])
        with name_scope("block_4"):
            x4 = layers.AveragePooling2D((3, 3), strides=(1, 1), padding="same", name=f"reduction_left4_{block_id}")(x1)
            x4 = layers.Add()([x2, x4])
        with name_scope("block_5"):
            x5_1 = _separable_conv_block(x1, filters, (3, 3), block_id=f"reduction_left4_{block_id}")
            x5_2 = layers.MaxPooling2D((3, 3), strides=(2, 2), padding="valid", name=f"reduction_right5_{block_id}")(h3)
            x5 = layers.Add(name=f"reduction_add4_{block_id}")([x5_1, x5_2])
        x = layers.Concatenate(axis=-1, name=f"reduction_concat_{block_id}")([x2, x3, x4, x5])
    return x, ip


def preprocess_input(x, data_format=None):
    """TensorFlow convention: pixels scaled to [-1, 1]."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="tf")


__all__ = ["NASNetLarge", "NASNetMobile", "decode_predictions", "preprocess_input"]
