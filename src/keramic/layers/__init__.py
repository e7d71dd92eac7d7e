"""Keras layers on PyTorch (`keramic.layers`)."""

from keramic.layers.activations import ELU, LeakyReLU, PReLU, ReLU, Softmax
from keramic.layers.attention import EinsumDense, MultiHeadAttention
from keramic.layers.base import Layer
from keramic.layers.conv import Conv1D, Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
from keramic.layers.core import Activation, Dense, Dropout, Flatten, Permute, RepeatVector, Reshape
from keramic.layers.embedding import Embedding
from keramic.layers.input_layer import Input, InputLayer
from keramic.layers.lambda_layer import Lambda
from keramic.layers.merging import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from keramic.layers import operations  # noqa: F401  (registers graph operations)
from keramic.layers.normalization import BatchNormalization, LayerNormalization
from keramic.layers.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    MaxPooling1D,
    MaxPooling2D,
)
from keramic.layers.preprocessing import Normalization, Rescaling
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
from keramic.layers.reshaping import UpSampling2D, ZeroPadding2D
