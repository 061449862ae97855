"""stackrnn: deep (stacked) recurrent networks on PyTorch.

The public names below are imported on first use, not with the package: `stackrnn.runtime` (onnxruntime and numpy
alone) must load where torch is too big to install, and `import stackrnn.runtime` runs this file first.
"""

import sys
import types
from importlib import import_module

__version__ = "0.1.0"

#: each public name and the module that defines it
_PUBLIC = {
    **dict.fromkeys(("load", "fit", "Run", "LanguageModelRun", "ClassifierRun", "TranslatorRun", "summary"), "api"),
    **dict.fromkeys(("StackedRNN",), "stack"),
    **dict.fromkeys(("LSTM", "GRU", "RNN", "LayerSpec", "LayerTrace", "RecurrentLayer"), "layers"),
    **dict.fromkeys(("LSTMCell", "GRUCell", "RNNCell"), "cells"),
    **dict.fromkeys(("InputError",), "errors"),
    **dict.fromkeys(("SequenceClassifier",), "models.classifier"),
}

__all__ = list(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(import_module(f".{_PUBLIC[name]}", __name__), name)
    else:  # a submodule, as `import stackrnn` used to import several: stackrnn.layers, stackrnn.api ...
        try:
            value = import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


class _Package(types.ModuleType):
    """The package, which keeps a public name from being replaced by the submodule of the same name: importing
    stackrnn.summary (the module) binds it as the attribute `summary`, and stackrnn.summary is the function."""

    def __setattr__(self, name: str, value) -> None:
        if name in _PUBLIC and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
