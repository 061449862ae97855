"""Task heads over a StackedRNN. Each model's forward returns its outputs and, given targets, the loss."""

from .classifier import ClassifierConfig, SequenceClassifier
from .lm import LanguageModel, ModelConfig

__all__ = ["LanguageModel", "ModelConfig", "SequenceClassifier", "ClassifierConfig"]
