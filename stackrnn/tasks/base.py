"""What the training loop needs from a task (language modelling, classification, ...), and nothing more.

The loop in train.py is the same for every task: batch, forward, backward, clip, step, with evaluation,
checkpoints, budgets and resume around it. A `Task` supplies the parts that differ: its data and vocabulary,
its model, one training step's loss, and its evaluation metrics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Protocol

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..run import RunDir


#: validation figures where higher is better (the others, losses, are lower-is-better)
HIGHER_IS_BETTER = frozenset({"accuracy", "bleu", "exact_match"})


class Batches(Protocol):
    """One epoch's batches, replayable from any position (for exact resume)."""

    def __len__(self) -> int: ...

    def iter_from(self, start: int) -> Iterator[Any]: ...


@dataclass
class Step:
    """One training step's result.

    loss: the reported loss (a scalar tensor), averaged over `items`.
    objective: what is backpropagated (the loss plus any penalty or scaling).
    items: how many tokens or examples `loss` averages over, to weight it in the logged mean.
    state: the recurrent state to carry into the next step (None when nothing is carried).
    lr_scale: a factor on the learning rate for this step only (AWD-LSTM's variable window length).
    """

    loss: Tensor
    objective: Tensor
    items: int
    state: Any = None
    lr_scale: float = 1.0


class Task(ABC):
    """A kind of training run. Subclasses set the class attributes and implement the methods.

    The life of a task object in `train`: `prepare` (reads and checks all data before the run directory is
    touched), `build_model`, then per epoch `batches` and per batch `step`, `evaluate` after epochs, `finish`.
    """

    # its config's [model] and [data] classes: {"model": ..., "data": ...} (its name and how messages name its
    # runs are its row in tasks/__init__.py)
    sections: ClassVar[dict[str, type]]
    unit: ClassVar[str]  # what `Step.items` counts, for the logged rate: "tokens" or "examples"
    files: ClassVar[tuple[str, ...]]  # files besides config.toml and weights that a finished run holds
    monitors: ClassVar[tuple[str, ...]] = ("loss",)  # validation figures that can pick the best weights; first: auto
    # the validation figures the line after each epoch shows after the loss: a format of `evaluate`'s dict
    valid_figures: ClassVar[str] = ""

    def __init__(self, cfg) -> None:  # cfg: train.RunConfig
        self.cfg = cfg

    @abstractmethod
    def prepare(self, run: RunDir | None) -> None:
        """Read, split and encode the data; with `run` (resuming), use that run's vocabulary. Every problem
        with the user's data is raised here, before anything is written."""

    @abstractmethod
    def save_vocab(self, run: RunDir) -> None:
        """Write the vocabulary (and label names) a new run needs to be loaded again."""

    @abstractmethod
    def load_vocab(self, run: RunDir) -> None:
        """Read what `save_vocab` wrote, so `build_model` can build the run's model without its data."""

    @abstractmethod
    def build_model(self) -> nn.Module: ...

    def init_weights(self, model: nn.Module) -> None:
        """Set up a new run's model before training (pretrained embeddings); not called when resuming."""

    @abstractmethod
    def batches(self, epoch: int) -> Batches:
        """The training batches of `epoch` (from 0), a function of (seed, epoch) only, so it can be replayed."""

    @abstractmethod
    def shard(self, batch: Any, world) -> Any:
        """This process's part of a global batch in data-parallel training (world: distributed.World)."""

    @abstractmethod
    def step(self, model: nn.Module, batch: Any, state: Any, device: torch.device) -> Step:
        """Forward one training batch; `state` is the carried state (None at the start of an epoch)."""

    @abstractmethod
    def evaluate(self, model: nn.Module, device: torch.device) -> dict | None:
        """Validation metrics, with at least "loss" (lower is better: it picks the best weights), or None when
        there is no validation data."""

    @abstractmethod
    def summary_model(self, vocab_size: int | None) -> tuple[nn.Module, tuple[int, ...], dict]:
        """For `stackrnn summary --config`: the model (reading the data for its vocabulary unless `vocab_size`
        is given), the input size of a typical batch, and the keyword arguments of `summary()`."""

    @abstractmethod
    def summary_input(self) -> tuple[tuple[int, ...], dict]:
        """The input size of a typical batch and the keyword arguments of `summary()` for this task's model."""

    @abstractmethod
    def evaluate_split(self, model: nn.Module, split: str, *, device: torch.device | str = "cpu", **options) -> dict:
        """Every figure of `stackrnn eval` on the run's held-out `split` ("valid" or "test")."""

    def monitored(self, name: str) -> str:
        """The validation figure `name` ("auto" resolved), checked against what this task measures."""
        from . import a_run_of  # (the registry imports this module)

        name = self.monitors[0] if name == "auto" else name
        if name not in self.monitors:
            raise InputError(f"train.monitor: {a_run_of(self.cfg.task)} measures {', '.join(self.monitors)} on its validation "
                             f"data, not {name}: use one of those (or auto)")
        return name

    def check_monitored(self, name: str) -> None:
        """After `prepare`, in training: refuse a monitored figure (already resolved) that this data can never
        improve, which would keep the first weights and decay the learning rate at every evaluation."""

    def score(self, valid: dict, name: str) -> float:
        """Validation figure `name` (already resolved) as a number where lower is better."""
        return -valid[name] if name in HIGHER_IS_BETTER else valid[name]

    def describe(self) -> str:
        """A fragment for the 'training into RUN: ...' line."""
        return ""

    def train_metrics(self, loss: float) -> dict:
        """Figures derived from a mean training loss for metrics.jsonl (perplexity for language models)."""
        return {}

    def epoch_summary(self, train_loss: float | None, valid: dict | None) -> list[str]:
        """Parts of the line printed after each epoch: the losses, then the task's `valid_figures`."""
        parts = [] if train_loss is None else [f"train loss {train_loss:.4f}"]
        if valid:
            parts.append(f"valid loss {valid['loss']:.4f}" + self.valid_figures.format(**valid))
        return parts

    def postfix(self, loss: float) -> dict:
        """The progress bar's figures for one step's loss."""
        return {"loss": f"{loss:.3f}"}

    def finish(self, run: RunDir, device: torch.device) -> str | None:
        """After training: something to show the user (a generated sample), or None."""
        return None

    def closing_items(self) -> tuple[float, float]:
        """For the time budget, until they have been timed: about how many training items (`Step.items`' unit)
        an evaluation and `finish` each take as long as (0: unknown, nothing is reserved). A forward pass costs
        about a third of a training step, whose backward pass costs about two forwards."""
        return 0.0, 0.0
