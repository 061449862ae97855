"""stackrnn: deep (stacked) recurrent networks on PyTorch."""

from .cells import GRUCell, LSTMCell, RNNCell
from .errors import InputError
from .layers import GRU, LSTM, RNN, LayerSpec, LayerTrace, RecurrentLayer
from .models.classifier import SequenceClassifier
from .stack import StackedRNN
from .summary import summary

__version__ = "0.1.0"

__all__ = [
    "StackedRNN", "LSTM", "GRU", "RNN", "LayerSpec", "LayerTrace", "RecurrentLayer",
    "LSTMCell", "GRUCell", "RNNCell", "summary", "InputError", "SequenceClassifier",
]
