"""EfficientNetV2 B0-B3, S, M, L (`keras.applications.efficientnet_v2`): Tan and Le 2021, fused
and depthwise inverted bottlenecks. Inputs are raw pixels in [0, 255]: the rescaling (and for the
B variants the normalisation) is a layer of the model (`include_preprocessing`).

>>> model = EfficientNetV2B0(weights=None, include_top=False, input_shape=(32, 32, 3))
"""

import copy
import functools
import math

from keramic import initializers, layers
from keramic.applications import _common
from keramic.applications.imagenet_utils import decode_predictions
from keramic.models import Model

BASE_WEIGHTS_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/"
# Variant suffix -> (md5 with the classifier, md5 without it).
WEIGHTS_HASHES = {
    "b0": ("21ecbf6da12460d5c40bb2f29ceb2188", "893217f2bb855e2983157299931e43ff"),
    "b1": ("069f0534ff22adf035c89e2d9547a9dc", "0e80663031ca32d657f9caa404b6ec37"),
    "b2": ("424e49f28180edbde1e94797771950a7", "1dfe2e7a5d45b6632553a8961ea609eb"),
    "b3": ("1f1fc43bd98a6e4fd8fdfd551e02c7a0", "f6abf7b5849ac99a89b50dd3fd532856"),
    "-s": ("e1d88a8495beba45748fedd0cecbe016", "af0682fb74e8c54910f2d4393339c070"),
    "-m": ("a3bf6aa3276309f4fc6a34aa114c95cd", "1b8dc055df72dde80d614482840fe342"),
    "-l": ("27e6d408b53c7ebc868fefa357689935", "b0b66b5c863aef5b46e8608fe1711615"),
}


def _stage(kernel_size, num_repeat, input_filters, output_filters, expand_ratio, se_ratio, strides, conv_type):
    """One stage; conv_type 1 is the fused block (a full convolution instead of expand + depthwise)."""
    return {
        "kernel_size": kernel_size,
        "num_repeat": num_repeat,
        "input_filters": input_filters,
        "output_filters": output_filters,
        "expand_ratio": expand_ratio,
        "se_ratio": se_ratio,
        "strides": strides,
        "conv_type": conv_type,
    }


_B_STAGES = [
    _stage(3, 1, 32, 16, 1, 0, 1, 1),
    _stage(3, 2, 16, 32, 4, 0, 2, 1),
    _stage(3, 2, 32, 48, 4, 0, 2, 1),
    _stage(3, 3, 48, 96, 4, 0.25, 2, 0),
    _stage(3, 5, 96, 112, 6, 0.25, 1, 0),
    _stage(3, 8, 112, 192, 6, 0.25, 2, 0),
]
DEFAULT_BLOCKS_ARGS = {
    "efficientnetv2-s": [
        _stage(3, 2, 24, 24, 1, 0.0, 1, 1),
        _stage(3, 4, 24, 48, 4, 0.0, 2, 1),
        _stage(3, 4, 48, 64, 4, 0, 2, 1),
        _stage(3, 6, 64, 128, 4, 0.25, 2, 0),
        _stage(3, 9, 128, 160, 6, 0.25, 1, 0),
        _stage(3, 15, 160, 256, 6, 0.25, 2, 0),
    ],
    "efficientnetv2-m": [
        _stage(3, 3, 24, 24, 1, 0, 1, 1),
        _stage(3, 5, 24, 48, 4, 0, 2, 1),
        _stage(3, 5, 48, 80, 4, 0, 2, 1),
        _stage(3, 7, 80, 160, 4, 0.25, 2, 0),
        _stage(3, 14, 160, 176, 6, 0.25, 1, 0),
        _stage(3, 18, 176, 304, 6, 0.25, 2, 0),
        _stage(3, 5, 304, 512, 6, 0.25, 1, 0),
    ],
    "efficientnetv2-l": [
        _stage(3, 4, 32, 32, 1, 0, 1, 1),
        _stage(3, 7, 32, 64, 4, 0, 2, 1),
        _stage(3, 7, 64, 96, 4, 0, 2, 1),
        _stage(3, 10, 96, 192, 4, 0.25, 2, 0),
        _stage(3, 19, 192, 224, 6, 0.25, 1, 0),
        _stage(3, 25, 224, 384, 6, 0.25, 2, 0),
        _stage(3, 7, 384, 640, 6, 0.25, 1, 0),
    ],
    "efficientnetv2-b0": _B_STAGES,
    "efficientnetv2-b1": _B_STAGES,
    "efficientnetv2-b2": _B_STAGES,
    "efficientnetv2-b3": _B_STAGES,
}
CONV_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"},
}
DENSE_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"},
}


def round_filters(filters, width_coefficient, min_depth, depth_divisor):
    """Scale a channel count by the width coefficient and round it to the divisor."""
    filters *= width_coefficient
    minimum = min_depth or depth_divisor
    return int(max(minimum, int(filters + depth_divisor / 2) // depth_divisor * depth_divisor))


def round_repeats(repeats, depth_coefficient):
    """Scale a stage's block count by the depth coefficient (rounded up)."""
    return int(math.ceil(depth_coefficient * repeats))


def _squeeze_excite(x, filters, input_filters, se_ratio, activation, name):
    se = layers.GlobalAveragePooling2D(name=f"{name}se_squeeze")(x)
    se = layers.Reshape((1, 1, filters), name=f"{name}se_reshape")(se)
    se = layers.Conv2D(
        max(1, int(input_filters * se_ratio)), 1, padding="same", activation=activation,
        kernel_initializer=CONV_KERNEL_INITIALIZER, name=f"{name}se_reduce",
    )(se)  # fmt: skip
    se = layers.Conv2D(
        filters, 1, padding="same", activation="sigmoid", kernel_initializer=CONV_KERNEL_INITIALIZER,
        name=f"{name}se_expand",
    )(se)  # fmt: skip
    return layers.Multiply(name=f"{name}se_excite")([x, se])


def _residual(x, inputs, strides, input_filters, output_filters, survival_probability, name):
    if strides == 1 and input_filters == output_filters:
        if survival_probability:
            x = layers.Dropout(survival_probability, noise_shape=(None, 1, 1, 1), name=f"{name}drop")(x)
        x = layers.Add(name=f"{name}add")([x, inputs])
    return x


def MBConvBlock(
    input_filters,
    output_filters,
    expand_ratio=1,
    kernel_size=3,
    strides=1,
    se_ratio=0.0,
    bn_momentum=0.9,
    activation="swish",
    survival_probability=0.8,
    name=None,
):
    """Inverted bottleneck: 1x1 expand, depthwise filter, squeeze-and-excite, 1x1 project."""

    def apply(inputs):
        filters = input_filters * expand_ratio
        x = inputs
        if expand_ratio != 1:
            x = layers.Conv2D(
                filters=filters, kernel_size=1, strides=1, kernel_initializer=CONV_KERNEL_INITIALIZER,
                padding="same", data_format="channels_last", use_bias=False, name=f"{name}expand_conv",
            )(x)  # fmt: skip
            x = layers.BatchNormalization(axis=3, momentum=bn_momentum, name=f"{name}expand_bn")(x)
            x = layers.Activation(activation, name=f"{name}expand_activation")(x)
        x = layers.DepthwiseConv2D(
            kernel_size=kernel_size, strides=strides, depthwise_initializer=CONV_KERNEL_INITIALIZER,
            padding="same", data_format="channels_last", use_bias=False, name=f"{name}dwconv2",
        )(x)  # fmt: skip
        x = layers.BatchNormalization(axis=3, momentum=bn_momentum, name=f"{name}bn")(x)
        x = layers.Activation(activation, name=f"{name}activation")(x)
        if 0 < se_ratio <= 1:
            x = _squeeze_excite(x, filters, input_filters, se_ratio, activation, name)
        x = layers.Conv2D(
            filters=output_filters, kernel_size=1, strides=1, kernel_initializer=CONV_KERNEL_INITIALIZER,
            padding="same", data_format="channels_last", use_bias=False, name=f"{name}project_conv",
        )(x)  # fmt: skip
        x = layers.BatchNormalization(axis=3, momentum=bn_momentum, name=f"{name}project_bn")(x)
        return _residual(x, inputs, strides, input_filters, output_filters, survival_probability, name)

    return apply


def FusedMBConvBlock(
    input_filters,
    output_filters,
    expand_ratio=1,
    kernel_size=3,
    strides=1,
    se_ratio=0.0,
    bn_momentum=0.9,
    activation="swish",
    survival_probability=0.8,
    name=None,
):
    """Fused bottleneck: one full convolution in place of the 1x1 expand and the depthwise filter."""

    def apply(inputs):
        filters = input_filters * expand_ratio
        x = inputs
        if expand_ratio != 1:
            x = layers.Conv2D(
                filters, kernel_size=kernel_size, strides=strides, kernel_initializer=CONV_KERNEL_INITIALIZER,
                data_format="channels_last", padding="same", use_bias=False, name=f"{name}expand_conv",
            )(x)  # fmt: skip
            x = layers.BatchNormalization(axis=3, momentum=bn_momentum, name=f"{name}expand_bn")(x)
            x = layers.Activation(activation=activation, name=f"{name}expand_activation")(x)
        if 0 < se_ratio <= 1:
            x = _squeeze_excite(x, filters, input_filters, se_ratio, activation, name)
        x = layers.Conv2D(
            output_filters, kernel_size=1 if expand_ratio != 1 else kernel_size,
            strides=1 if expand_ratio != 1 else strides, kernel_initializer=CONV_KERNEL_INITIALIZER,
            padding="same", use_bias=False, name=f"{name}project_conv",
        )(x)  # fmt: skip
        x = layers.BatchNormalization(axis=3, momentum=bn_momentum, name=f"{name}project_bn")(x)
        if expand_ratio == 1:
            x = layers.Activation(activation=activation, name=f"{name}project_activation")(x)
        return _residual(x, inputs, strides, input_filters, output_filters, survival_probability, name)

    return apply


@_common.skips_initializers_when_loading
def EfficientNetV2(
    width_coefficient,
    depth_coefficient,
    default_size,
    dropout_rate=0.2,
    drop_connect_rate=0.2,
    depth_divisor=8,
    min_depth=8,
    bn_momentum=0.9,
    activation="swish",
    blocks_args="default",
    name="efficientnetv2",
    include_top=True,
    weights="imagenet",
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    include_preprocessing=True,
    weights_name=None,
):
    """An EfficientNetV2 built from `blocks_args` ("default": the stages of variant `weights_name`)."""
    if blocks_args == "default":
        blocks_args = DEFAULT_BLOCKS_ARGS[f"efficientnetv2{'-' if weights_name[0] == 'b' else ''}{weights_name}"]
    img_input, inputs, input_shape = _common.start(weights, include_top, classes, input_shape, input_tensor, default_size, 32)

    def filters_of(count):
        return round_filters(count, width_coefficient, min_depth, depth_divisor)

    x = img_input
    if include_preprocessing:
        if name.split("-")[-1].startswith("b") and input_shape[-1] == 3:
            x = layers.Rescaling(scale=1.0 / 255)(x)
            x = layers.Normalization(mean=[0.485, 0.456, 0.406], variance=[0.229**2, 0.224**2, 0.225**2], axis=3)(x)
        else:
            x = layers.Rescaling(scale=1.0 / 128.0, offset=-1)(x)
    x = layers.Conv2D(
        filters=filters_of(blocks_args[0]["input_filters"]), kernel_size=3, strides=2,
        kernel_initializer=CONV_KERNEL_INITIALIZER, padding="same", use_bias=False, name="stem_conv",
    )(x)  # fmt: skip
    x = layers.BatchNormalization(axis=3, momentum=bn_momentum, name="stem_bn")(x)
    x = layers.Activation(activation, name="stem_activation")(x)
    blocks_args = copy.deepcopy(blocks_args)
    done = 0
    total = float(sum(args["num_repeat"] for args in blocks_args))
    for i, args in enumerate(blocks_args):
        if args["num_repeat"] <= 0:
            raise ValueError(f"Every EfficientNetV2 stage needs num_repeat > 0; got {args['num_repeat']}.")
        args["input_filters"] = filters_of(args["input_filters"])
        args["output_filters"] = filters_of(args["output_filters"])
        block = {0: MBConvBlock, 1: FusedMBConvBlock}[args.pop("conv_type")]
        for j in range(round_repeats(args.pop("num_repeat"), depth_coefficient)):
            if j > 0:
                args["strides"] = 1
                args["input_filters"] = args["output_filters"]
            x = block(
                activation=activation, bn_momentum=bn_momentum, survival_probability=drop_connect_rate * done / total,
                name=f"block{i + 1}{chr(j + 97)}_", **args,
            )(x)  # fmt: skip
            done += 1
    x = layers.Conv2D(
        filters=filters_of(1280), kernel_size=1, strides=1, kernel_initializer=CONV_KERNEL_INITIALIZER,
        padding="same", data_format="channels_last", use_bias=False, name="top_conv",
    )(x)  # fmt: skip
    x = layers.BatchNormalization(axis=3, momentum=bn_momentum, name="top_bn")(x)
    x = layers.Activation(activation=activation, name="top_activation")(x)
    x = _common.classify_or_pool(
        x, include_top, pooling, classes, classifier_activation, weights, ("avg_pool", "max_pool"), dropout_rate,
        kernel_initializer=DENSE_KERNEL_INITIALIZER, bias_initializer=initializers.Constant(0.0),
    )  # fmt: skip
    model = Model(inputs, x, name=name)
    file_name = origin = file_hash = None
    if weights == "imagenet":
        file_name = name + (".h5" if include_top else "_notop.h5")
        origin = BASE_WEIGHTS_PATH + file_name
        file_hash = WEIGHTS_HASHES[weights_name][0 if include_top else 1]
    return _common.load_weights(model, weights, file_name, origin, file_hash)


def _variant(public_name, width, depth, size, weights_name):
    default_name = f"efficientnetv2{'-' if weights_name[0] == 'b' else ''}{weights_name}"
    build = functools.partial(
        EfficientNetV2, width_coefficient=width, depth_coefficient=depth, default_size=size, weights_name=weights_name
    )
    doc = f"Instantiate {public_name} (inputs in [0, 255]; default size {size}x{size})."
    return _common.variant(public_name, build, default_name, doc, include_preprocessing=True)


EfficientNetV2B0 = _variant("EfficientNetV2B0", 1.0, 1.0, 224, "b0")
EfficientNetV2B1 = _variant("EfficientNetV2B1", 1.0, 1.1, 240, "b1")
EfficientNetV2B2 = _variant("EfficientNetV2B2", 1.1, 1.2, 260, "b2")
EfficientNetV2B3 = _variant("EfficientNetV2B3", 1.2, 1.4, 300, "b3")
EfficientNetV2S = _variant("EfficientNetV2S", 1.0, 1.0, 384, "-s")
EfficientNetV2M = _variant("EfficientNetV2M", 1.0, 1.0, 480, "-m")
EfficientNetV2L = _variant("EfficientNetV2L", 1.0, 1.0, 480, "-l")


def preprocess_input(x, data_format=None):
    """The identity: EfficientNetV2 rescales inside the model (kept for API parity)."""
    return x


__all__ = [
    "EfficientNetV2B0", "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3", "EfficientNetV2L",
    "EfficientNetV2M", "EfficientNetV2S", "decode_predictions", "preprocess_input",
]  # fmt: skip
