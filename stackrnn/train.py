"""Train a language model into a run directory: batch, forward, backward, clip, step — and around that loop,
evaluation, checkpoints, the time budget and the progress bar.

Dimension key: T window length, B batch, V vocabulary.
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from .data.pipeline import absolute_data_path, eval_batches, prepare, train_batches
from .errors import InputError
from .evaluate import evaluate_lm
from .generate import generate
from .layers import LayerState
from .models.lm import LanguageModel
from .optim import Schedule, make_optimizer
from .run import BEST, LAST, OPTIMIZER, TRAINER, TRAINER_TENSORS, RunConfig, RunDir


@dataclass
class TrainResult:
    run: Path
    step: int
    epoch: int
    train_loss: float | None
    valid_loss: float | None
    best_valid_loss: float | None
    stopped: str  # "finished", "time budget", "step budget" or "interrupted"
    seconds: float
    sample: str | None = None
    history: list[dict] = field(default_factory=list)


def choose_device(name: str) -> torch.device:
    """The device, chosen once at the entry point."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("train.device: cuda was asked for but torch sees no CUDA GPU: use --device cpu or auto")
    if name not in ("cpu", "cuda", "mps"):
        raise InputError(f"train.device: expected auto, cpu, cuda or mps, got {name!r}")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def detach(state: list[LayerState] | None) -> list[LayerState] | None:
    """Cut the graph at the window boundary but keep the values: truncated BPTT. Without this, every backward
    pass would run back through every window since the start of the epoch."""
    if state is None:
        return None
    return [tuple(t.detach() for t in s) if isinstance(s, tuple) else s.detach() for s in state]


def train(cfg: RunConfig, out: str | Path, *, resume: bool = False, progress: bool | None = None) -> TrainResult:
    """Train the language model of `cfg` into run directory `out` (a new one, or an existing one with resume)."""
    if resume:
        run = RunDir.open(out, need=("config.toml", "vocab.json", LAST, OPTIMIZER, TRAINER, TRAINER_TENSORS))
    else:
        absolute_data_path(cfg.data)
        data = prepare(cfg.data)  # read and check the data before creating anything on disk
        run = RunDir.create(out)
    tc = cfg.train
    device = choose_device(tc.device)
    seed_everything(tc.seed)
    if resume:
        data = prepare(cfg.data, tokenizer=run.load_tokenizer())
    else:
        run.save_config(cfg)
        run.save_tokenizer(data.tokenizer)
    tqdm.write(f"{'resuming' if resume else 'training into'} {run.path}: {len(data.tokenizer)} tokens in the vocabulary, "
               f"{data.train.numel():,} training tokens, device {device}", file=sys.stderr)

    model = LanguageModel.from_config(cfg.model, len(data.tokenizer)).to(device)
    optimizer = make_optimizer(tc, model)
    schedule = Schedule(tc, optimizer)
    pos = {"step": 0, "epoch": 0, "batch": 0, "best_valid_loss": None, "seconds": 0.0}
    state: list[LayerState] | None = None
    if resume:
        state = _load_checkpoint(run, model, optimizer, schedule, pos, device)

    best = pos["best_valid_loss"]
    started = time.monotonic() - pos["seconds"]
    budget = tc.max_minutes * 60 if tc.max_minutes else math.inf
    batches_per_epoch = len(train_batches(cfg.data, data.train, 0, tc.seed))
    bar = tqdm(total=tc.epochs * batches_per_epoch, initial=min(pos["step"], tc.epochs * batches_per_epoch),
               # None lets tqdm hide the bar when stderr is not a terminal (CI logs, pipes)
               disable=None if (tc.progress if progress is None else progress) else True,
               unit="batch", dynamic_ncols=True, leave=False)
    window_loss, window_tokens, window_start = 0.0, 0, time.monotonic()
    last_train_loss, valid_loss, stopped = None, None, "finished"

    def checkpoint() -> None:
        nonlocal window_start
        t0 = time.monotonic()
        pos["seconds"] = t0 - started
        pos["best_valid_loss"] = best
        _save_checkpoint(run, model, optimizer, schedule, pos, state)
        window_start += time.monotonic() - t0  # tokens/s measures training, not checkpoint writing

    def evaluate_and_keep_best(epoch: int) -> float | None:
        nonlocal best, valid_loss, window_start
        t0 = time.monotonic()
        valid_loss = evaluate_lm(model, eval_batches(cfg.data, data.valid), device) if data.valid.numel() > 1 else None
        schedule.after_eval(valid_loss)
        if valid_loss is None or best is None or valid_loss < best:
            best = valid_loss
            run.save_model(model, BEST)
        run.append_metrics({"step": pos["step"], "epoch": epoch, "split": "valid", "loss": valid_loss,
                            "perplexity": _ppl(valid_loss), "lr": schedule.lr, "time": round(time.monotonic() - started, 2)})
        window_start += time.monotonic() - t0  # nor evaluation
        return valid_loss

    try:
        while pos["epoch"] < tc.epochs and stopped == "finished":
            model.train()
            epoch_batches = train_batches(cfg.data, data.train, pos["epoch"], tc.seed)
            if pos["batch"] == 0:
                state = None  # each epoch starts from zeros (d2l, Zaremba): the streams restart
            for x, y in epoch_batches.iter_from(pos["batch"]):
                x, y = x.to(device), y.to(device)  # (T, B)
                if cfg.data.sampling == "random":
                    state = None  # random windows are unrelated: nothing to carry
                logits, loss, state = model(x, y, detach(state))
                # Zaremba et al.'s loss is summed over the window's steps (and averaged over the batch)
                (loss * x.shape[0] if tc.loss == "sum_steps" else loss).backward()
                if tc.clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), tc.clip)
                if cfg.data.variable_bptt:
                    # AWD-LSTM: a window's step size follows its length, so short windows do not count as much
                    saved = [g["lr"] for g in optimizer.param_groups]
                    for g in optimizer.param_groups:
                        g["lr"] *= x.shape[0] / cfg.data.num_steps
                optimizer.step()
                if cfg.data.variable_bptt:
                    for g, lr in zip(optimizer.param_groups, saved):
                        g["lr"] = lr
                optimizer.zero_grad(set_to_none=True)  # free the gradients now; the next forward does not need them

                pos["step"] += 1
                pos["batch"] += 1
                loss_value = loss.item()
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
                                        "time": round(time.monotonic() - started, 2)})
                    window_loss, window_tokens, window_start = 0.0, 0, time.monotonic()
                if tc.eval_every and pos["step"] % tc.eval_every == 0:
                    evaluate_and_keep_best(pos["epoch"] + 1)
                    model.train()
                    checkpoint()
                if time.monotonic() - started > budget:
                    stopped = "time budget"
                    break
                if tc.max_steps is not None and pos["step"] >= tc.max_steps:
                    stopped = "step budget"
                    break
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
    except KeyboardInterrupt:
        stopped = "interrupted"
    finally:
        bar.close()

    if stopped != "finished":
        # keep what was learnt: a validation pass picks the best weights, then a checkpoint to resume from
        evaluate_and_keep_best(pos["epoch"] + 1)
        checkpoint()
    sample = None
    if tc.sample_prefix:
        best_model = LanguageModel.from_config(cfg.model, len(data.tokenizer))
        run.load_model(best_model, BEST)
        sample = generate(best_model.to(device).eval(), data.tokenizer, [tc.sample_prefix], tc.sample_length,
                          temperature=0.8, seed=tc.seed)[0]
    return TrainResult(run.path, pos["step"], pos["epoch"], last_train_loss, valid_loss, best, stopped,
                       time.monotonic() - started, sample, run.read_metrics())


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


# -- checkpoints: tensors in safetensors, everything else in JSON --------------------------------------------
def _save_checkpoint(run: RunDir, model, optimizer, schedule: Schedule, pos: dict, state) -> None:
    opt_state = optimizer.state_dict()
    tensors, skeleton = {}, {"param_groups": opt_state["param_groups"], "state": {}}
    for pid, entry in opt_state["state"].items():
        skeleton["state"][str(pid)] = {}
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"{pid}.{key}"] = value
                skeleton["state"][str(pid)][key] = {"tensor": f"{pid}.{key}"}
            else:
                skeleton["state"][str(pid)][key] = value
    trainer_tensors = {"rng.torch": torch.get_rng_state()}
    for l, s in enumerate(state or []):
        for k, t in enumerate(s if isinstance(s, tuple) else (s,)):
            trainer_tensors[f"hidden.{l}.{k}"] = t
    np_state = np.random.get_state()
    py_state = random.getstate()
    # weights and optimizer first, trainer.json last: trainer.json says which position the others belong to
    run.save_model(model, LAST)
    run.save_tensors(OPTIMIZER, tensors)
    run.save_tensors(TRAINER_TENSORS, trainer_tensors)
    run.save_json(TRAINER, {
        **pos,
        "optimizer": skeleton,
        "schedule": schedule.state_dict(),
        "rng": {"python": [py_state[0], list(py_state[1]), py_state[2]],
                "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])]},
    })


def _load_checkpoint(run: RunDir, model, optimizer, schedule: Schedule, pos: dict, device) -> list[LayerState] | None:
    trainer = run.load_json(TRAINER)
    try:
        for key in pos:
            pos[key] = trainer[key]
        run.load_model(model, LAST)
        opt_tensors = run.load_tensors(OPTIMIZER)
        skeleton = trainer["optimizer"]
        opt_state = {"param_groups": skeleton["param_groups"], "state": {}}
        for pid, entry in skeleton["state"].items():
            opt_state["state"][int(pid)] = {k: (opt_tensors[v["tensor"]].to(device) if isinstance(v, dict) else v)
                                            for k, v in entry.items()}
        optimizer.load_state_dict(opt_state)
        schedule.load_state_dict(trainer["schedule"])
        tensors = run.load_tensors(TRAINER_TENSORS)
        torch.set_rng_state(tensors["rng.torch"])
        py = trainer["rng"]["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        npr = trainer["rng"]["numpy"]
        np.random.set_state((npr[0], np.array(npr[1], dtype=np.uint32), npr[2], npr[3], npr[4]))
    except (KeyError, TypeError, ValueError, IndexError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{run / TRAINER} does not match the rest of the run ({type(e).__name__}: {e}): the checkpoint is damaged") from None
    layers = sorted({int(k.split(".")[1]) for k in tensors if k.startswith("hidden.")})
    if not layers or pos["batch"] == 0:
        return None
    state = []
    for l in layers:
        parts = [tensors[f"hidden.{l}.{k}"].to(device) for k in range(2) if f"hidden.{l}.{k}" in tensors]
        state.append(tuple(parts) if len(parts) == 2 else parts[0])
    return state
