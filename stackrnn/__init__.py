"""stackrnn: deep (stacked) recurrent networks on PyTorch."""

from .api import ClassifierRun, LanguageModelRun, Run, TranslatorRun, fit, load, summary
from .cells import GRUCell, LSTMCell, RNNCell
from .errors import InputError
from .layers import GRU, LSTM, RNN, LayerSpec, LayerTrace, RecurrentLayer
from .models.classifier import SequenceClassifier
from .stack import StackedRNN

__version__ = "0.1.0"

__all__ = [
    "load", "fit", "Run", "LanguageModelRun", "ClassifierRun", "TranslatorRun",
    "StackedRNN", "LSTM", "GRU", "RNN", "LayerSpec", "LayerTrace", "RecurrentLayer",
    "LSTMCell", "GRUCell", "RNNCell", "summary", "InputError", "SequenceClassifier",
]
