"""Recurrent layers: LSTM and RNN (nets of existing layers unrolled over time,
Caffe's ``RecurrentLayer``) and LSTMUnit, one LSTM step.

Importing this package registers its layer types.
"""

from caffepy.layers.recurrent.base import RecurrentLayer
from caffepy.layers.recurrent.lstm import LSTMLayer
from caffepy.layers.recurrent.lstm_unit import LSTMUnitLayer
from caffepy.layers.recurrent.rnn import RNNLayer

__all__ = ["LSTMLayer", "LSTMUnitLayer", "RNNLayer", "RecurrentLayer"]
