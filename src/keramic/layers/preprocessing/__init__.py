"""Keras's preprocessing and augmentation layers, one module per idea."""

from keramic.layers.preprocessing.audio import MelSpectrogram, STFTSpectrogram
from keramic.layers.preprocessing.augmentation import (
    RandomCrop,
    RandomElasticTransform,
    RandomErasing,
    RandomFlip,
    RandomGaussianBlur,
    RandomPerspective,
    RandomRotation,
    RandomShear,
    RandomTranslation,
    RandomZoom,
)
from keramic.layers.preprocessing.colour import (
    RandomBrightness,
    RandomColorDegeneration,
    RandomContrast,
    RandomGrayscale,
    RandomHue,
    RandomInvert,
    RandomPosterization,
    RandomSaturation,
    RandomSharpness,
    Solarization,
)
from keramic.layers.preprocessing.hashing import HashedCrossing, Hashing
from keramic.layers.preprocessing.image import (
    AutoContrast,
    CenterCrop,
    ContrastLimitedAdaptiveHistogramEqualization,
    Equalization,
    MaxNumBoundingBoxes,
    Resizing,
)
from keramic.layers.preprocessing.lookup import IntegerLookup, StringLookup
from keramic.layers.preprocessing.mixing import AugMix, CutMix, MixUp, Pipeline, RandAugment, RandomColorJitter
from keramic.layers.preprocessing.numerical import CategoryEncoding, Discretization, Normalization, Rescaling
from keramic.layers.preprocessing.text import TextVectorization

__all__ = [
    "AugMix",
    "AutoContrast",
    "CategoryEncoding",
    "CenterCrop",
    "ContrastLimitedAdaptiveHistogramEqualization",
    "CutMix",
    "Discretization",
    "Equalization",
    "HashedCrossing",
    "Hashing",
    "IntegerLookup",
    "MaxNumBoundingBoxes",
    "MelSpectrogram",
    "MixUp",
    "Normalization",
    "Pipeline",
    "RandAugment",
    "RandomBrightness",
    "RandomColorDegeneration",
    "RandomColorJitter",
    "RandomContrast",
    "RandomCrop",
    "RandomElasticTransform",
    "RandomErasing",
    "RandomFlip",
    "RandomGaussianBlur",
    "RandomGrayscale",
    "RandomHue",
    "RandomInvert",
    "RandomPerspective",
    "RandomPosterization",
    "RandomRotation",
    "RandomSaturation",
    "RandomSharpness",
    "RandomShear",
    "RandomTranslation",
    "RandomZoom",
    "Rescaling",
    "STFTSpectrogram",
    "Resizing",
    "Solarization",
    "StringLookup",
    "TextVectorization",
]
