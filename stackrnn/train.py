"""Train a language model into a run directory: batch, forward, backward, clip, step — and around that loop,
evaluation, checkpoints, the time and step budgets, Ctrl-C, and the progress bar.

Dimension key: T window length, B batch, V vocabulary.
"""

from __future__ import annotations

import math
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .checkpoint import load_checkpoint, save_checkpoint
from .config import dumps_toml, from_dict, to_dict
from .data.pipeline import DataConfig, absolute_data_path, eval_batches, prepare, train_batches
from .errors import InputError
from .evaluate import evaluate_lm
from .generate import encode_prompts, generate
from .layers import LayerState
from .models.lm import LanguageModel, ModelConfig
from .optim import Schedule, TrainConfig, make_optimizer
from .run import BEST, CONFIG, VOCAB, RunDir


@dataclass
class RunConfig:
    """A language-model run's whole config: [model], [data] and [train], each owned by its module."""

    model: ModelConfig
    data: DataConfig
    train: TrainConfig

    def to_toml(self) -> str:
        return dumps_toml({"model": to_dict(self.model), "data": to_dict(self.data), "train": to_dict(self.train)})

    @classmethod
    def from_tables(cls, tables: dict, where: str) -> RunConfig:
        unknown = set(tables) - {"model", "data", "train"}
        if unknown:
            raise InputError(f"{where}: unknown section [{sorted(unknown)[0]}]; known sections: [model], [data], [train]")
        return cls(from_dict(ModelConfig, tables.get("model", {}), f"{where}: model"),
                   from_dict(DataConfig, tables.get("data", {}), f"{where}: data"),
                   from_dict(TrainConfig, tables.get("train", {}), f"{where}: train"))

    @classmethod
    def of_run(cls, run: RunDir) -> RunConfig:
        return cls.from_tables(run.load_config_tables(), str(run / CONFIG))


def load_run(path: str | Path, weights: str = BEST, device: str | torch.device = "cpu") -> tuple[RunConfig, "Tokenizer", LanguageModel]:  # noqa: F821
    """Load a run for generation, evaluation or inspection: its config, tokenizer and model (in eval mode).
    One function serves every command that reads a run."""
    run = RunDir.open(path, need=(CONFIG, VOCAB, weights))
    cfg = RunConfig.of_run(run)
    tokenizer = run.load_tokenizer()
    model = LanguageModel.from_config(cfg.model, len(tokenizer))
    run.load_model(model, weights)
    return cfg, tokenizer, model.to(device).eval()


@dataclass
class TrainResult:
    run: Path
    step: int
    epoch: int
    train_loss: float | None
    valid_loss: float | None
    best_valid_loss: float | None
    stopped: str  # "finished", "time budget", "step budget", "early stop" or "interrupted"
    seconds: float
    sample: str | None = None
    history: list[dict] = field(default_factory=list)
    model: LanguageModel | None = None  # the model in memory at the end (the last weights, not the best)


def choose_device(name: str) -> torch.device:
    """The device, chosen once at the entry point."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if (name == "cuda" and not torch.cuda.is_available()) or (name == "mps" and not mps):
        raise InputError(f"train.device: {name} was asked for but torch cannot use it here: use --device cpu or auto")
    if name not in ("cpu", "cuda", "mps"):
        raise InputError(f"train.device: expected auto, cpu, cuda or mps, got {name!r}")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _tensors(state: list[LayerState] | None) -> list[torch.Tensor]:
    return [t for s in state or [] for t in (s if isinstance(s, tuple) else (s,))]


def detach(state: list[LayerState] | None) -> list[LayerState] | None:
    """Cut the graph at the window boundary but keep the values: truncated BPTT. Without this, every backward
    pass would run back through every window since the start of the epoch."""
    if state is None:
        return None
    return [tuple(t.detach() for t in s) if isinstance(s, tuple) else s.detach() for s in state]


class StopRequest:
    """Ctrl-C asks the loop to stop at the next step boundary (with a checkpoint); a second Ctrl-C aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signals reach only the main thread
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("stopping after this step with a checkpoint (Ctrl-C again to abort at once)", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def train(cfg: RunConfig, out: str | Path, *, resume: bool = False, progress: bool | None = None) -> TrainResult:
    """Train the language model of `cfg` into run directory `out` (a new one, or an existing one with resume).

    Everything that can fail on the user's input (device, data, batch sizes, the sample prefix) is checked
    before the run directory is created or touched.
    """
    tc = cfg.train
    device = choose_device(tc.device)
    if resume:
        run = RunDir.open(out, need=(CONFIG, VOCAB))  # the checkpoint's files are checked as it loads
        data = prepare(cfg.data, tokenizer=run.load_tokenizer())
    else:
        absolute_data_path(cfg.data)
        data = prepare(cfg.data)
    train_batches(cfg.data, data.train, 0, tc.seed)  # too little text for these batches fails here
    if tc.sample_prefix:
        encode_prompts(data.tokenizer, [tc.sample_prefix])  # and a prefix the vocabulary cannot spell
    seed_everything(tc.seed)
    model = LanguageModel.from_config(cfg.model, len(data.tokenizer)).to(device)
    optimizer = make_optimizer(tc, model)
    batches_per_epoch = len(train_batches(cfg.data, data.train, 0, tc.seed))
    total_steps = min(tc.epochs * batches_per_epoch, tc.max_steps or math.inf)
    schedule = Schedule(tc, optimizer, total_steps)
    pos = {"step": 0, "epoch": 0, "batch": 0, "best_valid_loss": None, "seconds": 0.0, "skipped_steps": 0}
    state: list[LayerState] | None = None
    if resume:
        state = load_checkpoint(run, model, optimizer, schedule, pos, device)
        # a process killed after its last checkpoint logged steps that will now be trained again: drop them
        run.trim_metrics(pos["step"])
    else:
        run = RunDir.create(out)
        run.save_tokenizer(data.tokenizer)
    run.save_config_text(cfg.to_toml())  # on resume too: a longer --epochs must survive the next resume
    tqdm.write(f"{'resuming' if resume else 'training into'} {run.path}: {len(data.tokenizer)} tokens in the vocabulary, "
               f"{data.train.numel():,} training tokens, device {device}", file=sys.stderr)

    best = pos["best_valid_loss"]
    started = time.monotonic() - pos["seconds"]  # seconds of training in all, across resumes
    deadline = time.monotonic() + tc.max_minutes * 60 if tc.max_minutes else math.inf  # this invocation's budget
    bar = tqdm(total=tc.epochs * batches_per_epoch, initial=min(pos["step"], tc.epochs * batches_per_epoch),
               # None lets tqdm hide the bar when stderr is not a terminal (CI logs, pipes)
               disable=None if (tc.progress if progress is None else progress) else True,
               unit="batch", dynamic_ncols=True, leave=False)
    window_loss, window_tokens, window_start = 0.0, 0, time.monotonic()
    last_train_loss, valid_loss, stopped, evaluated_at = None, None, "finished", None
    bad_in_a_row, grad_norm = 0, None

    saved_at = pos["step"] if resume else None

    def checkpoint() -> None:
        nonlocal window_start, saved_at
        if saved_at == pos["step"]:
            return  # this step is on disk already; writing it again would push an older one out of previous/
        saved_at = pos["step"]
        t0 = time.monotonic()
        pos["seconds"] = t0 - started
        pos["best_valid_loss"] = best
        save_checkpoint(run, model, optimizer, schedule, pos, state)
        window_start += time.monotonic() - t0  # tokens/s measures training, not checkpoint writing

    def evaluate_and_keep_best(epoch: int, schedule_step: bool = True) -> None:
        nonlocal best, valid_loss, window_start, evaluated_at
        t0 = time.monotonic()
        valid_loss = evaluate_lm(model, eval_batches(cfg.data, data.valid), device) if data.valid.numel() > 1 else None
        if schedule_step:
            schedule.after_eval(valid_loss)
        if valid_loss is None or best is None or valid_loss < best:
            best = valid_loss
            run.save_model(model, BEST)
        run.append_metrics({"step": pos["step"], "epoch": epoch, "split": "valid", "loss": valid_loss,
                            "perplexity": _ppl(valid_loss), "lr": schedule.lr, "time": round(time.monotonic() - started, 2)})
        evaluated_at = pos["step"]
        window_start += time.monotonic() - t0  # nor evaluation

    def why_stop() -> str | None:
        if stop.requested:
            return "interrupted"
        if time.monotonic() > deadline:
            return "time budget"
        if tc.max_steps is not None and pos["step"] >= tc.max_steps:
            return "step budget"
        if tc.early_stop and schedule.since_best >= tc.early_stop:
            return "early stop"
        return None

    with run.lock(), StopRequest() as stop:
        try:
            while pos["epoch"] < tc.epochs and stopped == "finished":
                model.train()
                epoch_batches = train_batches(cfg.data, data.train, pos["epoch"], tc.seed)
                if pos["batch"] == 0:
                    state = None  # each epoch starts from zeros (d2l, Zaremba): the streams restart
                for x, y in epoch_batches.iter_from(pos["batch"]):
                    # budgets and Ctrl-C are honoured between steps, never inside one
                    if (reason := why_stop()) is not None:
                        stopped = reason
                        break
                    x, y = x.to(device), y.to(device)  # (T, B)
                    if cfg.data.sampling == "random":
                        state = None  # random windows are unrelated: nothing to carry
                    logits, loss, new_state = model(x, y, detach(state))
                    # Zaremba et al.'s loss is summed over the window's steps (and averaged over the batch);
                    # the model's penalty (AWD-LSTM's AR/TAR) joins the objective but not the reported loss
                    objective = loss + model.penalty()
                    (objective * x.shape[0] if tc.loss == "sum_steps" else objective).backward()
                    # the norm is needed anyway to catch a non-finite gradient; clip only when asked
                    norm = nn.utils.clip_grad_norm_(model.parameters(), tc.clip if tc.clip > 0 else math.inf)
                    pos["step"] += 1
                    pos["batch"] += 1
                    loss_value = loss.item()
                    if not (math.isfinite(loss_value) and math.isfinite(norm.item())):
                        # skip the update, keep the weights; a few such steps are survivable, a run of them is not
                        optimizer.zero_grad(set_to_none=True)
                        pos["skipped_steps"] += 1
                        bad_in_a_row += 1
                        run.append_metrics({"step": pos["step"], "epoch": pos["epoch"] + 1, "split": "train",
                                            "skipped": "non-finite loss or gradient"})
                        if bad_in_a_row >= tc.max_bad_steps:
                            raise InputError(f"training stopped: {bad_in_a_row} steps in a row had a non-finite loss or "
                                             f"gradient (up to step {pos['step']}); lower --lr or clip with --clip (the "
                                             f"last checkpoint in {run.path} is intact)")
                        state = detach(new_state) if all(torch.isfinite(t).all() for t in _tensors(new_state)) else None
                        continue
                    bad_in_a_row, grad_norm = 0, norm.item()
                    schedule.before_step(pos["step"] - 1)  # warmup and cosine, from the step count before this one
                    saved = [g["lr"] for g in optimizer.param_groups]
                    if cfg.data.variable_bptt:
                        # AWD-LSTM: a window's step size follows its length, so short windows count for less
                        for g in optimizer.param_groups:
                            g["lr"] *= x.shape[0] / cfg.data.num_steps
                    try:
                        optimizer.step()
                    finally:
                        for g, lr in zip(optimizer.param_groups, saved):
                            g["lr"] = lr
                    optimizer.zero_grad(set_to_none=True)  # free the gradients now; the next forward does not need them
                    state = new_state

                    window_loss += loss_value * x.numel()
                    window_tokens += x.numel()
                    elapsed = time.monotonic() - window_start
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_value:.3f}", ppl=f"{math.exp(min(loss_value, 50)):.2f}",
                                    tok_s=f"{window_tokens / max(elapsed, 1e-9):,.0f}", refresh=False)
                    if pos["step"] % tc.log_every == 0:
                        last_train_loss = window_loss / window_tokens
                        run.append_metrics({"step": pos["step"], "epoch": pos["epoch"] + 1, "split": "train",
                                            "loss": last_train_loss, "perplexity": _ppl(last_train_loss), "lr": schedule.lr,
                                            "tokens_per_s": round(window_tokens / max(elapsed, 1e-9), 1),
                                            "grad_norm": grad_norm,
                                            "time": round(time.monotonic() - started, 2)})
                        window_loss, window_tokens, window_start = 0.0, 0, time.monotonic()
                    if tc.eval_every and pos["step"] % tc.eval_every == 0:
                        evaluate_and_keep_best(pos["epoch"] + 1)
                        model.train()
                        checkpoint()
                    elif tc.save_every and pos["step"] % tc.save_every == 0:
                        checkpoint()
                else:  # the epoch ran to its end
                    pos["epoch"] += 1
                    pos["batch"] = 0
                    if window_tokens:
                        last_train_loss = window_loss / window_tokens
                    if not tc.eval_every:
                        evaluate_and_keep_best(pos["epoch"])
                    schedule.after_epoch(pos["epoch"])
                    checkpoint()
                    bar.write(_epoch_line(pos, last_train_loss, valid_loss, schedule.lr, time.monotonic() - started))
            if stopped != "finished":
                # keep what was learnt: unless this step was just evaluated, score it so the best weights include
                # it (without touching the schedule, which sees only the evaluations an uninterrupted run makes)
                if evaluated_at != pos["step"]:
                    evaluate_and_keep_best(pos["epoch"] + 1, schedule_step=False)
                checkpoint()
        finally:
            bar.close()

    sample = None
    if tc.sample_prefix:
        best_model = LanguageModel.from_config(cfg.model, len(data.tokenizer))
        run.load_model(best_model, BEST)
        sample = generate(best_model.to(device).eval(), data.tokenizer, [tc.sample_prefix], tc.sample_length,
                          temperature=0.8, seed=tc.seed)[0]
    return TrainResult(run.path, pos["step"], pos["epoch"], last_train_loss, valid_loss, best, stopped,
                       time.monotonic() - started, sample, run.read_metrics(), model)


def _ppl(loss: float | None) -> float | None:
    return None if loss is None else math.exp(min(loss, 50))


def _epoch_line(pos: dict, train_loss, valid_loss, lr: float, seconds: float) -> str:
    parts = [f"epoch {pos['epoch']}", f"step {pos['step']}"]
    if train_loss is not None:
        parts.append(f"train ppl {_ppl(train_loss):.2f}")
    if valid_loss is not None:
        parts.append(f"valid ppl {_ppl(valid_loss):.2f}")
    parts += [f"lr {lr:.3g}", f"{seconds:.0f}s"]
    return " | ".join(parts)
