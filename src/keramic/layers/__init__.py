"""Keras layers on PyTorch (`keramic.layers`)."""

from keramic.layers import operations  # noqa: F401  (registers graph operations)
from keramic.layers.activations import ELU, LeakyReLU, PReLU, ReLU, Softmax
from keramic.layers.adaptive_pooling import (
    AdaptiveAveragePooling1D,
    AdaptiveAveragePooling2D,
    AdaptiveAveragePooling3D,
    AdaptiveMaxPooling1D,
    AdaptiveMaxPooling2D,
    AdaptiveMaxPooling3D,
)
from keramic.layers.attention import EinsumDense, MultiHeadAttention
from keramic.layers.base import Layer
from keramic.layers.conv import Conv1D, Conv2D, Conv3D
from keramic.layers.conv_lstm import ConvLSTM1D, ConvLSTM2D, ConvLSTM3D
from keramic.layers.conv_transpose import Conv1DTranspose, Conv2DTranspose, Conv3DTranspose
from keramic.layers.core import Activation, Dense, Dropout, Flatten, Identity, Masking, Permute, RepeatVector, Reshape
from keramic.layers.depthwise import DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D
from keramic.layers.dot_attention import AdditiveAttention, Attention
from keramic.layers.embedding import Embedding, ReversibleEmbedding
from keramic.layers.grouped_query_attention import GroupedQueryAttention, GroupQueryAttention
from keramic.layers.input_layer import Input, InputLayer
from keramic.layers.input_spec import InputSpec  # noqa: F401
from keramic.layers.lambda_layer import Lambda
from keramic.layers.layer_serialization import deserialize, serialize
from keramic.layers.merging import (
    Add,
    Average,
    Concatenate,
    Dot,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    dot,
    maximum,
    minimum,
    multiply,
    subtract,
)
from keramic.layers.normalization import BatchNormalization, GroupNormalization, LayerNormalization, RMSNormalization, UnitNormalization
from keramic.layers.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    AveragePooling3D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
    MaxPooling1D,
    MaxPooling2D,
    MaxPooling3D,
)
from keramic.layers.preprocessing import *  # noqa: F403  (every preprocessing and augmentation layer: its __all__)
from keramic.layers.recurrent import (
    GRU,
    LSTM,
    RNN,
    Bidirectional,
    GRUCell,
    LSTMCell,
    SimpleRNN,
    SimpleRNNCell,
    TimeDistributed,
    Wrapper,
)
from keramic.layers.regularization import (
    ActivityRegularization,
    AlphaDropout,
    GaussianDropout,
    GaussianNoise,
    SpatialDropout1D,
    SpatialDropout2D,
    SpatialDropout3D,
)
from keramic.layers.reshaping import (
    Cropping1D,
    Cropping2D,
    Cropping3D,
    UpSampling1D,
    UpSampling2D,
    UpSampling3D,
    ZeroPadding1D,
    ZeroPadding2D,
    ZeroPadding3D,
)
from keramic.layers.rnn import StackedRNNCells
from keramic.layers.spectral_normalization import SpectralNormalization
from keramic.layers.torch_module_wrapper import TorchModuleWrapper

# Keras's other public names for the spatial layers.
Convolution1D, Convolution2D, Convolution3D = Conv1D, Conv2D, Conv3D
Convolution1DTranspose, Convolution2DTranspose, Convolution3DTranspose = Conv1DTranspose, Conv2DTranspose, Conv3DTranspose
SeparableConvolution1D, SeparableConvolution2D = SeparableConv1D, SeparableConv2D
MaxPool1D, MaxPool2D, MaxPool3D = MaxPooling1D, MaxPooling2D, MaxPooling3D
AvgPool1D, AvgPool2D, AvgPool3D = AveragePooling1D, AveragePooling2D, AveragePooling3D
GlobalMaxPool1D, GlobalMaxPool2D, GlobalMaxPool3D = GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D
GlobalAvgPool1D, GlobalAvgPool2D, GlobalAvgPool3D = (
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
)
