"""[train]: the optimisation settings, and the optimizer and learning-rate schedule built from them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import option
from .errors import InputError


@dataclass
class TrainConfig:
    """[train]: how long, how fast, and how carefully to train."""

    epochs: int = option(10, "passes over the training data", within="[1, inf)")
    max_minutes: float | None = option(None, "end this invocation within this many minutes, cleanly and with a checkpoint (the "
                                        "closing evaluation and sample included: it stops training early enough for them)",
                                       within="(0, inf)")
    max_steps: int | None = option(None, "stop cleanly, with a checkpoint, after this many optimizer steps in all",
                                   within="[1, inf)")
    optimizer: str = option("adam", "sgd, adam or adamw", choices=("sgd", "adam", "adamw"))
    lr: float = option(0.002, "learning rate", within="(0, inf)")
    momentum: float = option(0.0, "SGD momentum", within="[0, inf)")
    weight_decay: float = option(0.0, "L2 penalty (decoupled for adamw)", within="[0, inf)")
    clip: float = option(1.0, "clip the gradient norm to this value; 0 turns clipping off", within="[0, inf)")
    loss: str = option("mean", "mean: mean cross-entropy per token; sum_steps: summed over the window's steps and "
                       "averaged over the batch (Zaremba et al., whose lr 1 assumes it)", choices=("mean", "sum_steps"))
    lr_schedule: str = option("plateau", "none; plateau: multiply lr by lr_decay when the validation figure stops improving; "
                              "step: multiply lr by lr_decay after every epoch from lr_decay_start on; "
                              "cosine: from lr down to lr * min_lr_ratio over the whole run",
                              choices=("none", "plateau", "step", "cosine"))
    warmup_steps: int = option(0, "raise the learning rate linearly from 0 over this many first steps",
                               within="[0, inf)")
    lr_decay: float = option(0.5, "factor applied to the learning rate by the schedule", within="(0, 1]")
    patience: int = option(0, "plateau schedule: evaluations without improvement before lr decays", within="[0, inf)")
    lr_decay_start: int = option(1, "step schedule: the first epoch (counting from 1) after which lr decays",
                                 within="[0, inf)")
    min_lr_ratio: float = option(0.0, "cosine schedule: the final learning rate as a fraction of lr", within="[0, 1]")
    # (checked by the task, whose validation measures which figures: Task.monitored)
    monitor: str = option("auto", "the validation figure that picks the best weights and drives early stopping and the "
                          "plateau schedule: auto (accuracy for classifiers, bleu for translators, loss for the others), "
                          "or another the task measures: loss; classify: accuracy; translate: bleu; forecast: owa, smape, "
                          "mase; speech: cer, wer, accuracy")
    early_stop: int = option(0, "stop after this many evaluations without a better validation figure (see monitor); 0: never",
                             within="[0, inf)")
    max_bad_steps: int = option(10, "skip steps whose loss or gradient is not finite; stop after this many in a row "
                                "(under fp16 a gradient that overflows the loss scale is the scaler's skip, not counted)",
                                within="[1, inf)")
    eval_every: int = option(0, "evaluate and checkpoint every N steps; 0: at the end of each epoch", within="[0, inf)")
    save_every: int = option(0, "also checkpoint (without evaluating) every N steps; 0: only with evaluations",
                             within="[0, inf)")
    log_every: int = option(50, "append training loss to metrics.jsonl every N steps", within="[1, inf)")
    grad_every: int = option(0, "every N steps, also log the gradient norm reaching each layer and each step of the "
                             "window (metrics.jsonl split 'grad'); 0: never", within="[0, inf)")
    seed: int = option(0, "seed of every random number generator")
    device: str = option("auto", "auto, cpu, cuda or mps")
    threads: int = option(0, "CPU threads of the training process (torch.set_num_threads); 0 keeps torch's default "
                          "(one per core). Small models on a busy machine often train fastest with 1",
                          within="[0, inf)")
    sample_prefix: str = option("", "after training, print text generated from this prefix ('' for none)")
    sample_length: int = option(200, "tokens to generate after training", within="[1, inf)")
    progress: bool = option(True, "show a progress bar")
    precision: str = option("fp32", "fp32; bf16: bfloat16 autocast for the forward pass; fp16: float16 autocast with "
                            "a dynamic loss scale (torch.amp.GradScaler; an overflowing step is skipped and the scale "
                            "lowered). CPU and GPU; the weights, optimizer and loss stay float32",
                            choices=("fp32", "bf16", "fp16"))
    tensorboard: bool = option(False, "also write the metrics as TensorBoard events into RUN/tensorboard "
                               "(needs the tensorboard package: pip install 'stackrnn[tensorboard]')")

    def validate(self) -> None:
        if not 0 <= self.seed < 2**63:  # (what torch.manual_seed takes; an interval with 2**63 in digits reads worse)
            raise InputError(f"train.seed: expected an integer in [0, 2**63), got {self.seed}")


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


class Schedule:
    """The learning rate at every step: a base rate that the plateau and step rules multiply by lr_decay, times
    a linear warmup over the first steps, times a cosine decay over the whole run when asked for.

    Kept as plain numbers (not a torch scheduler holding lambdas) so its state is JSON.
    """

    def __init__(self, cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int = 1) -> None:
        self.cfg, self.optimizer = cfg, optimizer
        self.total_steps = max(1, total_steps)
        self.base = cfg.lr  # lr after the plateau / step decays so far
        self.best = float("inf")
        self.bad_evals = 0  # evaluations without improvement since the last plateau decay
        self.since_best = 0  # evaluations without improvement since the best (early stopping)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def factor(self, step: int) -> float:
        """Warmup and cosine factors at `step` (the number of steps already taken)."""
        factor = 1.0
        if self.cfg.warmup_steps and step < self.cfg.warmup_steps:
            factor *= (step + 1) / self.cfg.warmup_steps
        if self.cfg.lr_schedule == "cosine":
            progress = min(step / self.total_steps, 1.0)
            low = self.cfg.min_lr_ratio
            factor *= low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))
        return factor

    def before_step(self, step: int) -> None:
        lr = self.base * self.factor(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def after_eval(self, valid_loss: float | None) -> bool:
        """Record an evaluation; returns whether it improved on the best so far. Plateau decays the base rate."""
        if valid_loss is None:
            return False
        if valid_loss < self.best:
            self.best, self.bad_evals, self.since_best = valid_loss, 0, 0
            return True
        self.bad_evals += 1
        self.since_best += 1
        if self.cfg.lr_schedule == "plateau" and self.bad_evals > self.cfg.patience:
            self.base *= self.cfg.lr_decay
            self.bad_evals = 0
        return False

    def after_epoch(self, epoch: int) -> None:
        """`epoch` counts from 1: the epoch just finished."""
        if self.cfg.lr_schedule == "step" and epoch >= self.cfg.lr_decay_start:
            self.base *= self.cfg.lr_decay

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_evals": self.bad_evals, "since_best": self.since_best, "base": self.base, "lr": self.lr}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_evals, self.base = float(state["best"]), int(state["bad_evals"]), float(state["base"])
        self.since_best = int(state["since_best"])
        for group in self.optimizer.param_groups:
            group["lr"] = float(state["lr"])
