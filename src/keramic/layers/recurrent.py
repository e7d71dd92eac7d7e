"""Recurrent layers, gathered from their modules (kept so `keramic.layers.recurrent` imports keep working)."""

from keramic.layers.cells import GRUCell, LSTMCell, SimpleRNNCell
from keramic.layers.conv_lstm import ConvLSTM1D, ConvLSTM2D, ConvLSTM3D
from keramic.layers.rnn import GRU, LSTM, RNN, SimpleRNN, StackedRNNCells
from keramic.layers.wrappers import Bidirectional, TimeDistributed, Wrapper

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Bidirectional",
    "ConvLSTM1D",
    "ConvLSTM2D",
    "ConvLSTM3D",
    "GRUCell",
    "LSTMCell",
    "SimpleRNN",
    "SimpleRNNCell",
    "StackedRNNCells",
    "TimeDistributed",
    "Wrapper",
]
