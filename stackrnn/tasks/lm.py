"""Language modelling as a task of the training loop: token streams cut into windows, the state carried
from window to window (truncated BPTT), scored by perplexity, and a generated sample at the end.

Dimension key: T window length, B batch, V vocabulary.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..data.pipeline import DataConfig, absolute_data_path, eval_batches, prepare, train_batches
from ..errors import InputError
from ..evaluate import evaluate_lm, lm_metrics
from ..generate import encode_prompts, generate
from ..layers import LayerState, map_state
from ..models.lm import LanguageModel, ModelConfig
from ..run import BEST, VOCAB, RunDir
from ..distributed import block
from .base import Batches, Step, Task


def perplexity(loss: float | None) -> float | None:
    return None if loss is None else math.exp(min(loss, 50))


def detach(state: list[LayerState] | None) -> list[LayerState] | None:
    """Cut the graph at the window boundary but keep the values: truncated BPTT. Without this, every backward
    pass would run back through every window since the start of the epoch."""
    if state is None:
        return None
    return map_state(Tensor.detach, state)


class LMTask(Task):
    sections = {"model": ModelConfig, "data": DataConfig}
    unit = "tokens"
    files = (VOCAB,)

    def prepare(self, run: RunDir | None) -> None:
        cfg = self.cfg
        if run is None:
            absolute_data_path(cfg.data)
        self.data = prepare(cfg.data, tokenizer=None if run is None else run.load_tokenizer())
        self.tokenizer = self.data.tokenizer
        train_batches(cfg.data, self.data.train, 0, cfg.train.seed)  # too little text for these batches fails here
        if cfg.train.sample_prefix:
            encode_prompts(self.tokenizer, [cfg.train.sample_prefix])  # and a prefix the vocabulary cannot spell

    def save_vocab(self, run: RunDir) -> None:
        run.save_tokenizer(self.tokenizer)

    def load_vocab(self, run: RunDir) -> None:
        self.tokenizer = run.load_tokenizer()

    def build_model(self) -> LanguageModel:
        return LanguageModel.from_config(self.cfg.model, len(self.tokenizer))

    def summary_model(self, vocab_size: int | None) -> tuple[nn.Module, tuple[int, ...], dict]:
        if vocab_size is None:
            self.tokenizer = prepare(self.cfg.data).tokenizer
            vocab_size = len(self.tokenizer)
        return (LanguageModel.from_config(self.cfg.model, vocab_size), *self.summary_input())

    def summary_input(self) -> tuple[tuple[int, ...], dict]:
        return (self.cfg.data.num_steps, self.cfg.data.batch_size), {"dtype": torch.long}

    def describe(self) -> str:
        return f"{len(self.tokenizer)} tokens in the vocabulary, {self.data.train.numel():,} training tokens"

    def batches(self, epoch: int) -> Batches:
        return train_batches(self.cfg.data, self.data.train, epoch, self.cfg.train.seed)

    def shard(self, batch: Any, world) -> Any:
        # a fixed block of streams per process, so each carries the state of its own streams from window to window
        cols = block(batch[0].shape[1], world)
        return tuple(t[:, cols] for t in batch)

    def step(self, model: LanguageModel, batch: Any, state: Any, device: torch.device) -> Step:
        x, y = (t.to(device) for t in batch)  # (T, B)
        if self.cfg.data.sampling == "random":
            state = None  # random windows are unrelated: nothing to carry
        _, loss, new_state = model(x, y, detach(state))
        # Zaremba et al.'s loss is summed over the window's steps (and averaged over the batch); the model's
        # penalty (AWD-LSTM's AR/TAR) joins the objective but not the reported loss
        objective = loss + getattr(model, "module", model).penalty()  # (the model itself, not its DDP wrapper)
        if self.cfg.train.loss == "sum_steps":
            objective = objective * x.shape[0]
        # AWD-LSTM: a window's step size follows its length, so short windows count for less
        scale = x.shape[0] / self.cfg.data.num_steps if self.cfg.data.variable_bptt else 1.0
        return Step(loss, objective, x.numel(), detach(new_state), scale)

    def evaluate(self, model: LanguageModel, device: torch.device) -> dict | None:
        if self.data.valid.numel() < 2:
            return None
        loss = evaluate_lm(model, eval_batches(self.cfg.data, self.data.valid), device)
        return {"loss": loss, "perplexity": perplexity(loss)}

    def evaluate_split(self, model: LanguageModel, split: str, *, device: torch.device | str = "cpu") -> dict:
        """`stackrnn eval`: loss, perplexity and (character models) bits per character on the run's `split`."""
        data = prepare(self.cfg.data, tokenizer=self.tokenizer)
        ids = data.valid if split == "valid" else data.test
        if ids is None or ids.numel() < 2:
            raise InputError(f"the run has no {split} split: train with --test-fraction (or a dataset with its own test set)")
        loss = evaluate_lm(model, eval_batches(self.cfg.data, ids), device)
        return {"split": split, "tokens": int(ids.numel()), **lm_metrics(loss, self.tokenizer.level)}

    def train_metrics(self, loss: float) -> dict:
        return {"perplexity": perplexity(loss)}

    def postfix(self, loss: float) -> dict:
        return {"loss": f"{loss:.3f}", "ppl": f"{perplexity(loss):.2f}"}

    def epoch_summary(self, train_loss: float | None, valid: dict | None) -> list[str]:
        parts = [] if train_loss is None else [f"train ppl {perplexity(train_loss):.2f}"]
        if valid:
            parts.append(f"valid ppl {valid['perplexity']:.2f}")
        return parts

    def closing_items(self) -> tuple[float, float]:
        # the evaluation is a forward pass over the validation tokens; a generated token (one time step of one
        # sequence, and the sampling) takes about as long as one time step of a training window's forward pass,
        # whose batch_size sequences run side by side
        sample = self.cfg.train.sample_length * self.cfg.data.batch_size if self.cfg.train.sample_prefix else 0
        return self.data.valid.numel() / 3, sample / 3

    def finish(self, run: RunDir, device: torch.device) -> str | None:
        tc = self.cfg.train
        if not tc.sample_prefix:
            return None
        best = self.build_model()
        run.load_model(best, BEST)
        return generate(best.to(device).eval(), self.tokenizer, [tc.sample_prefix], tc.sample_length,
                        temperature=0.8, seed=tc.seed)[0]
