"""Instruments: what looks inside training steps from outside the loop (the gradient probe of --grad-every).

The training loop knows no instrument by name. Before a step's forward pass it asks each instrument for a
context to run that pass in (where it can install hooks), and after the backward pass for the figures to log:

    class Instrument:
        split = "grad"                                  # metrics.jsonl's split for its records
        def before_step(self, step, model): ...         # a context manager, or None to leave this step alone
        def after_backward(self, step, scale): ...      # {figure: value} to log for this step, or None

Modules above train (inspect/) provide instruments and `register` a factory that builds one from the run's
[train] config, so `stackrnn train --grad-every N` and `stackrnn.fit(grad_every=N)` need no wiring of their own;
`train(..., instruments=[...])` adds others. This module sits below train and inspect, so that neither imports
the other.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from importlib import import_module
from typing import Callable

from torch import nn


class Instrument:
    """Looks at some training steps. Subclasses override what they need; the defaults watch nothing."""

    split: str = "instrument"  # the metrics record's split

    def before_step(self, step: int, model: nn.Module) -> AbstractContextManager | None:
        """Before the forward pass of step `step` (counting from 1) of `model` (the model itself, not its
        data-parallel wrapper): a context that pass runs in, or None to leave the step alone."""
        return None

    def after_backward(self, step: int, scale: float) -> dict | None:
        """After that step's backward pass: the figures to log for it (JSON values; the loop adds step, epoch,
        split and time), or None. `scale`: the fp16 loss scale the gradients were multiplied by (1 otherwise)."""
        return None


#: name -> factory(train_config) -> an instrument, or None when the config does not ask for it
_FACTORIES: dict[str, Callable[[object], Instrument | None]] = {}
#: the modules that register the instruments a config can ask for, imported (by name: they sit above this one)
#: before the config is read, since the package no longer imports everything with `import stackrnn`
PROVIDERS = ("stackrnn.inspect.gradients",)


def register(name: str, factory: Callable[[object], Instrument | None]) -> None:
    """Make `factory` build an instrument for every run whose [train] config asks for one (a second
    registration under the same name replaces the first)."""
    _FACTORIES[name] = factory


def from_config(train_config) -> list[Instrument]:
    """The instruments a run's [train] config (an optim.TrainConfig) asks for."""
    for module in PROVIDERS:
        import_module(module)
    return [i for factory in _FACTORIES.values() if (i := factory(train_config)) is not None]
