"""EfficientNet B0 to B7 (`keras.applications.efficientnet`): Tan and Le 2019, mobile inverted
bottlenecks with squeeze-and-excitation, scaled in width, depth and resolution. Inputs are raw
pixels in [0, 255]: the rescaling and normalisation are layers of the model.

>>> model = EfficientNetB0(weights=None, include_top=False, input_shape=(32, 32, 3))
"""

import copy
import functools
import math

from keramic import layers
from keramic.applications import _common, imagenet_utils
from keramic.applications.imagenet_utils import decode_predictions
from keramic.models import Model

BASE_WEIGHTS_PATH = "https://storage.googleapis.com/keras-applications/"
# Variant -> (md5 with the classifier, md5 without it).
WEIGHTS_HASHES = {
    "b0": ("902e53a9f72be733fc0bcb005b3ebbac", "50bc09e76180e00e4465e1a485ddc09d"),
    "b1": ("1d254153d4ab51201f1646940f018540", "74c4e6b3e1f6a1eea24c589628592432"),
    "b2": ("b15cce36ff4dcbd00b6dd88e7857a6ad", "111f8e2ac8aa800a7a99e3239f7bfb39"),
    "b3": ("ffd1fdc53d0ce67064dc6a9c7960ede0", "af6d107764bb5b1abb91932881670226"),
    "b4": ("18c95ad55216b8f92d7e70b3a046e2fc", "ebc24e6d6c33eaebbd558eafbeedf1ba"),
    "b5": ("ace28f2a6363774853a83a0b21b9421a", "38879255a25d3c92d5e44e04ae6cec6f"),
    "b6": ("165f6e37dce68623721b423839de8be5", "9ecce42647a20130c1f39a5d4cb75743"),
    "b7": ("8c03f828fec3ef71311cd463b6759d99", "cbcfe4450ddf6f3ad90b1b398090fe4a"),
}


def _stage(kernel_size, repeats, filters_in, filters_out, expand_ratio, strides):
    return {
        "kernel_size": kernel_size,
        "repeats": repeats,
        "filters_in": filters_in,
        "filters_out": filters_out,
        "expand_ratio": expand_ratio,
        "id_skip": True,
        "strides": strides,
        "se_ratio": 0.25,
    }


DEFAULT_BLOCKS_ARGS = [
    _stage(3, 1, 32, 16, 1, 1),
    _stage(3, 2, 16, 24, 6, 2),
    _stage(5, 2, 24, 40, 6, 2),
    _stage(3, 3, 40, 80, 6, 2),
    _stage(5, 3, 80, 112, 6, 1),
    _stage(5, 4, 112, 192, 6, 2),
    _stage(3, 1, 192, 320, 6, 1),
]
CONV_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"},
}
DENSE_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"},
}
IMAGENET_STDDEV_RGB = [0.229, 0.224, 0.225]


@_common.skips_initializers_when_loading
def EfficientNet(
    width_coefficient,
    depth_coefficient,
    default_size,
    dropout_rate=0.2,
    drop_connect_rate=0.2,
    depth_divisor=8,
    activation="swish",
    blocks_args="default",
    name="efficientnet",
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    weights_name=None,
):
    """An EfficientNet scaled by `width_coefficient` (channels) and `depth_coefficient` (repeats)."""
    if blocks_args == "default":
        blocks_args = DEFAULT_BLOCKS_ARGS
    img_input, inputs, _ = _common.start(weights, include_top, classes, input_shape, input_tensor, default_size, 32)

    def round_filters(filters, divisor=depth_divisor):
        filters *= width_coefficient
        rounded = max(divisor, int(filters + divisor / 2) // divisor * divisor)
        return int(rounded + divisor if rounded < 0.9 * filters else rounded)

    def round_repeats(repeats):
        return int(math.ceil(depth_coefficient * repeats))

    x = layers.Rescaling(1.0 / 255.0)(img_input)
    x = layers.Normalization(axis=3)(x)
    if weights == "imagenet":
        # The original network divides by the variance; Normalization divides by its square root.
        x = layers.Rescaling([1.0 / math.sqrt(stddev) for stddev in IMAGENET_STDDEV_RGB])(x)
    x = layers.ZeroPadding2D(padding=imagenet_utils.correct_pad(x, 3), name="stem_conv_pad")(x)
    x = layers.Conv2D(
        round_filters(32), 3, strides=2, padding="valid", use_bias=False,
        kernel_initializer=CONV_KERNEL_INITIALIZER, name="stem_conv",
    )(x)  # fmt: skip
    x = layers.BatchNormalization(axis=3, name="stem_bn")(x)
    x = layers.Activation(activation, name="stem_activation")(x)
    blocks_args = copy.deepcopy(blocks_args)
    done = 0
    total = float(sum(round_repeats(args["repeats"]) for args in blocks_args))
    for i, args in enumerate(blocks_args):
        if args["repeats"] <= 0:
            raise ValueError(f"Every EfficientNet stage needs repeats > 0; got repeats={args['repeats']}.")
        args["filters_in"] = round_filters(args["filters_in"])
        args["filters_out"] = round_filters(args["filters_out"])
        for j in range(round_repeats(args.pop("repeats"))):
            if j > 0:
                args["strides"] = 1
                args["filters_in"] = args["filters_out"]
            x = block(x, activation, drop_connect_rate * done / total, name=f"block{i + 1}{chr(j + 97)}_", **args)
            done += 1
    x = layers.Conv2D(
        round_filters(1280), 1, padding="same", use_bias=False,
        kernel_initializer=CONV_KERNEL_INITIALIZER, name="top_conv",
    )(x)  # fmt: skip
    x = layers.BatchNormalization(axis=3, name="top_bn")(x)
    x = layers.Activation(activation, name="top_activation")(x)
    x = _common.classify_or_pool(
        x, include_top, pooling, classes, classifier_activation, weights, ("avg_pool", "max_pool"), dropout_rate,
        kernel_initializer=DENSE_KERNEL_INITIALIZER,
    )  # fmt: skip
    model = Model(inputs, x, name=name)
    file_name = origin = file_hash = None
    if weights == "imagenet":
        file_name = name + (".h5" if include_top else "_notop.h5")
        origin = BASE_WEIGHTS_PATH + file_name
        file_hash = WEIGHTS_HASHES[weights_name][0 if include_top else 1]
    return _common.load_weights(model, weights, file_name, origin, file_hash)


def block(
    inputs,
    activation="swish",
    drop_rate=0.0,
    name="",
    filters_in=32,
    filters_out=16,
    kernel_size=3,
    strides=1,
    expand_ratio=1,
    se_ratio=0.0,
    id_skip=True,
):
    """Mobile inverted bottleneck: expand, depthwise filter, squeeze-and-excite, project, add."""
    filters = filters_in * expand_ratio
    if expand_ratio != 1:
        x = layers.Conv2D(
            filters, 1, padding="same", use_bias=False, kernel_initializer=CONV_KERNEL_INITIALIZER,
            name=f"{name}expand_conv",
        )(inputs)  # fmt: skip
        x = layers.BatchNormalization(axis=3, name=f"{name}expand_bn")(x)
        x = layers.Activation(activation, name=f"{name}expand_activation")(x)
    else:
        x = inputs
    if strides == 2:
        x = layers.ZeroPadding2D(padding=imagenet_utils.correct_pad(x, kernel_size), name=f"{name}dwconv_pad")(x)
    x = layers.DepthwiseConv2D(
        kernel_size, strides=strides, padding="valid" if strides == 2 else "same", use_bias=False,
        depthwise_initializer=CONV_KERNEL_INITIALIZER, name=f"{name}dwconv",
    )(x)  # fmt: skip
    x = layers.BatchNormalization(axis=3, name=f"{name}bn")(x)
    x = layers.Activation(activation, name=f"{name}activation")(x)
    if 0 < se_ratio <= 1:
        filters_se = max(1, int(filters_in * se_ratio))
        se = layers.GlobalAveragePooling2D(name=f"{name}se_squeeze")(x)
        se = layers.Reshape((1, 1, filters), name=f"{name}se_reshape")(se)
        se = layers.Conv2D(
            filters_se, 1, padding="same", activation=activation, kernel_initializer=CONV_KERNEL_INITIALIZER,
            name=f"{name}se_reduce",
        )(se)  # fmt: skip
        se = layers.Conv2D(
            filters, 1, padding="same", activation="sigmoid", kernel_initializer=CONV_KERNEL_INITIALIZER,
            name=f"{name}se_expand",
        )(se)  # fmt: skip
        x = layers.Multiply(name=f"{name}se_excite")([x, se])
    x = layers.Conv2D(
        filters_out, 1, padding="same", use_bias=False, kernel_initializer=CONV_KERNEL_INITIALIZER,
        name=f"{name}project_conv",
    )(x)  # fmt: skip
    x = layers.BatchNormalization(axis=3, name=f"{name}project_bn")(x)
    if id_skip and strides == 1 and filters_in == filters_out:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}drop")(x)
        x = layers.Add(name=f"{name}add")([x, inputs])
    return x


def _variant(public_name, width, depth, size, dropout, default_name):
    build = functools.partial(EfficientNet, width, depth, size, dropout, weights_name=default_name[-2:])
    doc = f"Instantiate {public_name} (inputs in [0, 255]; default size {size}x{size})."
    return _common.variant(public_name, build, default_name, doc)


EfficientNetB0 = _variant("EfficientNetB0", 1.0, 1.0, 224, 0.2, "efficientnetb0")
EfficientNetB1 = _variant("EfficientNetB1", 1.0, 1.1, 240, 0.2, "efficientnetb1")
EfficientNetB2 = _variant("EfficientNetB2", 1.1, 1.2, 260, 0.3, "efficientnetb2")
EfficientNetB3 = _variant("EfficientNetB3", 1.2, 1.4, 300, 0.3, "efficientnetb3")
EfficientNetB4 = _variant("EfficientNetB4", 1.4, 1.8, 380, 0.4, "efficientnetb4")
EfficientNetB5 = _variant("EfficientNetB5", 1.6, 2.2, 456, 0.4, "efficientnetb5")
EfficientNetB6 = _variant("EfficientNetB6", 1.8, 2.6, 528, 0.5, "efficientnetb6")
EfficientNetB7 = _variant("EfficientNetB7", 2.0, 3.1, 600, 0.5, "efficientnetb7")


def preprocess_input(x, data_format=None):
    """The identity: EfficientNet rescales and normalises inside the model (kept for API parity)."""
    return x


__all__ = [
    "EfficientNetB0", "EfficientNetB1", "EfficientNetB2", "EfficientNetB3", "EfficientNetB4",
    "EfficientNetB5", "EfficientNetB6", "EfficientNetB7", "decode_predictions", "preprocess_input",
]  # fmt: skip
