"""Ready-made image classification networks (`keras.applications`), with Keras's layer names and
configs, so that Keras's weight files (its ImageNet files or your own) load into them unchanged.

>>> model = keramic.applications.ResNet50(weights="imagenet")  # fetched once into ~/.keras/models
"""

from keramic.applications import (
    convnext,
    densenet,
    efficientnet,
    efficientnet_v2,
    imagenet_utils,
    inception_resnet_v2,
    inception_v3,
    mobilenet,
    mobilenet_v2,
    mobilenet_v3,
    nasnet,
    resnet,
    resnet50,
    resnet_v2,
    vgg16,
    vgg19,
    xception,
)
from keramic.applications.convnext import (
    ConvNeXtBase,
    ConvNeXtLarge,
    ConvNeXtSmall,
    ConvNeXtTiny,
    ConvNeXtXLarge,
)
from keramic.applications.densenet import (
    DenseNet121,
    DenseNet169,
    DenseNet201,
)
from keramic.applications.efficientnet import (
    EfficientNetB0,
    EfficientNetB1,
    EfficientNetB2,
    EfficientNetB3,
    EfficientNetB4,
    EfficientNetB5,
    EfficientNetB6,
    EfficientNetB7,
)
from keramic.applications.efficientnet_v2 import (
    EfficientNetV2B0,
    EfficientNetV2B1,
    EfficientNetV2B2,
    EfficientNetV2B3,
    EfficientNetV2L,
    EfficientNetV2M,
    EfficientNetV2S,
)
from keramic.applications.inception_resnet_v2 import (
    InceptionResNetV2,
)
from keramic.applications.inception_v3 import (
    InceptionV3,
)
from keramic.applications.mobilenet import (
    MobileNet,
)
from keramic.applications.mobilenet_v2 import (
    MobileNetV2,
)
from keramic.applications.mobilenet_v3 import (
    MobileNetV3Large,
    MobileNetV3Small,
)
from keramic.applications.nasnet import (
    NASNetLarge,
    NASNetMobile,
)
from keramic.applications.resnet import (
    ResNet50,
    ResNet101,
    ResNet152,
)
from keramic.applications.resnet_v2 import (
    ResNet50V2,
    ResNet101V2,
    ResNet152V2,
)
from keramic.applications.vgg16 import (
    VGG16,
)
from keramic.applications.vgg19 import (
    VGG19,
)
from keramic.applications.xception import (
    Xception,
)

__all__ = [
    "ConvNeXtBase",
    "ConvNeXtLarge",
    "ConvNeXtSmall",
    "ConvNeXtTiny",
    "ConvNeXtXLarge",
    "DenseNet121",
    "DenseNet169",
    "DenseNet201",
    "EfficientNetB0",
    "EfficientNetB1",
    "EfficientNetB2",
    "EfficientNetB3",
    "EfficientNetB4",
    "EfficientNetB5",
    "EfficientNetB6",
    "EfficientNetB7",
    "EfficientNetV2B0",
    "EfficientNetV2B1",
    "EfficientNetV2B2",
    "EfficientNetV2B3",
    "EfficientNetV2L",
    "EfficientNetV2M",
    "EfficientNetV2S",
    "InceptionResNetV2",
    "InceptionV3",
    "MobileNet",
    "MobileNetV2",
    "MobileNetV3Large",
    "MobileNetV3Small",
    "NASNetLarge",
    "NASNetMobile",
    "ResNet101",
    "ResNet101V2",
    "ResNet152",
    "ResNet152V2",
    "ResNet50",
    "ResNet50V2",
    "VGG16",
    "VGG19",
    "Xception",
    "convnext",
    "densenet",
    "efficientnet",
    "efficientnet_v2",
    "imagenet_utils",
    "inception_resnet_v2",
    "inception_v3",
    "mobilenet",
    "mobilenet_v2",
    "mobilenet_v3",
    "nasnet",
    "resnet",
    "resnet50",
    "resnet_v2",
    "vgg16",
    "vgg19",
    "xception",
]
