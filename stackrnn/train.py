"""The training loop, the same for every task: batch, forward, backward, clip, step — and around that loop,
evaluation, checkpoints, the time and step budgets, Ctrl-C, and the progress bar. What differs between a
language model and a classifier (data, model, loss, metrics) comes from the run's `Task` (see tasks/).
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm  # a bar in a terminal, a widget in a notebook

from . import distributed
from .checkpoint import load_checkpoint, save_checkpoint
from .config import dumps_toml, from_dict, lift_flat_keys, merge, read_toml, to_dict
from .data.tokenizers import Tokenizer
from .errors import InputError, did_you_mean, plural
from .inspect.gradients import finite_or_none, probe_model
from .layers import map_state
from .optim import Schedule, TrainConfig, make_optimizer
from .run import BEST, CONFIG, TRAINER, RunDir
from .tasks import TASK_NAMES, Task, a_run_of, task_class
from .tensorboard import TensorBoardLog, check_available


@dataclass
class RunConfig:
    """A run's whole config: its task, and the [model], [data] and [train] sections, each owned by its module
    (the model and data sections' classes are the task's)."""

    model: object
    data: object
    train: TrainConfig
    task: str = "lm"

    def to_toml(self) -> str:
        return dumps_toml({"task": self.task, "model": to_dict(self.model), "data": to_dict(self.data),
                           "train": to_dict(self.train)})

    @classmethod
    def from_tables(cls, tables: dict, where: str) -> RunConfig:
        task = tables.get("task", "lm")
        if task not in TASK_NAMES:
            raise InputError(f"{where}: task: expected one of {', '.join(TASK_NAMES)}, got {task!r}")
        unknown = set(tables) - {"task", "model", "data", "train"}
        if unknown:
            section = sorted(unknown)[0]
            near = did_you_mean(section, ("model", "data", "train"), show=lambda s: f"[{s}]")
            raise InputError(f"{where}: unknown section [{section}]{near}; known sections: [model], [data], [train]")
        kind = task_class(task)
        return cls(from_dict(kind.ModelConfig, tables.get("model", {}), f"{where}: model"),
                   from_dict(kind.DataConfig, tables.get("data", {}), f"{where}: data"),
                   from_dict(TrainConfig, tables.get("train", {}), f"{where}: train"), task)

    @classmethod
    def of_run(cls, run: RunDir) -> RunConfig:
        return cls.from_tables(run.load_config_tables(), str(run / CONFIG))

    def make_task(self) -> Task:
        return task_class(self.task)(self)


def sections(task: str) -> dict[str, type]:
    """The config sections of a task's runs: its own [model] and [data] classes, and the shared [train]."""
    kind = task_class(task)
    return {"model": kind.ModelConfig, "data": kind.DataConfig, "train": TrainConfig}


def build_config(config: str | Path | dict | None, overrides: dict[str, dict], task: str | None = None,
                 where: str | None = None) -> RunConfig:
    """A run's config: the defaults, under `config` (a TOML file's path, or its tables as a dict; None for
    none), under `overrides` ({section: {field: value}}, e.g. from command-line options); `task` overrides the
    config's task. `where` names the config in messages (default: the file's path)."""
    if isinstance(config, dict):
        tables = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}  # (updated below)
        where = where or "config"
    else:
        tables = read_toml(config) if config else {}
        where = where or (str(config) if config else "options")
    if task is not None:
        if config and tables.get("task", "lm") != task:
            raise InputError(f"--task {task} but {where} is a config for task = {tables.get('task', 'lm')!r}: "
                             "leave out --task or use a config of that task (see examples/)")
        tables["task"] = task
    for section, values in overrides.items():
        if values:
            base = tables.setdefault(section, {})
            if not isinstance(base, dict):
                raise InputError(f"{where}: [{section}] must be a table")
            # (the file's layout before configs nested is lifted first, so that an option lands where it belongs)
            tables[section] = base = merge(lift_flat_keys(sections(tables.get("task", "lm"))[section], base, where), values)
            if section == "data" and ("dataset" in values or "data" in values):
                # a source given on the command line replaces the file's, whichever kind it was
                for other in ("dataset", "data"):
                    if other not in values:
                        base.pop(other, None)
    return RunConfig.from_tables(tables, where)


def default_out(cfg: RunConfig) -> str:
    """A new run's directory when none is named: runs/NAME-DATE-TIME, NAME from the dataset or data file."""
    source = getattr(cfg.data, "data", None)
    name = cfg.data.dataset or (Path(source).stem if source else "embedded")
    return f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def open_run(path: str | Path, weights: str = BEST, device: str | torch.device = "cpu",
             task: str | None = None) -> tuple[RunConfig, Task, nn.Module]:
    """Load a trained run for evaluation, prediction, generation or inspection: its config, its task (with the
    vocabulary loaded) and its model in eval mode. With `task`, a run of another task is refused clearly."""
    cfg = RunConfig.of_run(RunDir.open(path, need=(CONFIG,)))
    if task is not None and cfg.task != task:
        raise InputError(f"run {path} is {a_run_of(cfg.task)}, not {a_run_of(task)}: use the command for its task "
                         f"(generate for language models, predict for classifiers, translate for translators)")
    kind = cfg.make_task()
    run = RunDir.open(path, need=(CONFIG, *kind.files, weights))
    kind.load_vocab(run)
    model = kind.build_model()
    run.load_model(model, weights)
    return cfg, kind, model.to(device).eval()


def load_run(path: str | Path, weights: str = BEST, device: str | torch.device = "cpu") -> tuple[RunConfig, Tokenizer, nn.Module]:
    """A language-model run: its config, tokenizer and model (in eval mode)."""
    cfg, kind, model = open_run(path, weights, device, task="lm")
    return cfg, kind.tokenizer, model


@dataclass
class TrainResult:
    run: Path
    step: int
    epoch: int
    train_loss: float | None
    valid_loss: float | None
    best_valid_loss: float | None  # the validation loss of the best weights (picked by train.monitor)
    stopped: str  # "finished", "time budget", "step budget", "early stop" or "interrupted"
    seconds: float
    sample: str | None = None
    history: list[dict] = field(default_factory=list)
    model: nn.Module | None = None  # the model in memory at the end (the last weights, not the best)
    valid: dict | None = None  # the last validation metrics
    best_valid: dict | None = None  # the validation metrics of the best weights (model.safetensors)


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


def _tensors(state) -> list[torch.Tensor]:
    return [t for s in state or [] for t in (s if isinstance(s, tuple) else (s,))]


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


def preflight(cfg: RunConfig, out: str | Path, *, resume: bool, world_size: int = 1,
              writer: bool = True) -> tuple[Task, RunDir | None, str]:
    """Everything about a run that can fail on the user's input, checked without writing anything: the data
    (read and encoded into the returned task), the run directory, the monitored figure, TensorBoard, and how
    the batch divides among `world_size` processes. Returns the task, the run (when resuming) and the monitor."""
    choose_device(cfg.train.device)
    task = cfg.make_task()
    run = None
    if resume:
        run = RunDir.open(out, need=(CONFIG, *task.files))  # the checkpoint's files are checked as it loads
        if writer:
            with run.lock():  # a run another process is training fails here, before anything is written
                pass
    elif writer:  # (the other processes of a data-parallel run find the folder rank 0 may have made already)
        RunDir.check_new(out)
    task.prepare(run)
    if cfg.task == "lm" and cfg.data.batch_size % world_size:
        raise InputError(f"data.batch_size: {cfg.data.batch_size} streams cannot be shared equally by {world_size} "
                         f"processes: use a multiple of {world_size}")
    monitor = task.monitored(cfg.train.monitor)
    if cfg.train.tensorboard:
        check_available()
    return task, run, monitor


# fp16 overflow steps in a row before training stops: the scale halves at each, and 40 take the default 2**16 below
# 2**-24, float16's smallest step, where no scale can help
_MAX_OVERFLOWS_IN_A_ROW = 40


def train(cfg: RunConfig, out: str | Path, *, resume: bool = False, progress: bool | None = None,
          callbacks: Sequence[Callable[[dict], None]] = ()) -> TrainResult:
    """Train the model of `cfg` into run directory `out` (a new one, or an existing one with resume).
    `callbacks` are called with every record written to metrics.jsonl, in the process that writes it.

    Everything that can fail on the user's input (device, data, batch sizes, the sample prefix) is checked
    before the run directory is created or touched.
    """
    begun = time.monotonic()  # --max-minutes counts from here: reading the data is part of the run
    device = distributed.device_of(choose_device(cfg.train.device))
    world = distributed.setup(device)
    task, run, monitor = preflight(cfg, out, resume=resume, world_size=world.size, writer=world.main)
    new = not resume and world.main  # this process makes the run directory
    if run is None:
        run = RunDir.create(out) if new else RunDir(out)  # (rank 0 makes it; the other processes write nothing)
    try:
        return _train(cfg, task, run, monitor, device, world, begun, resume=resume, progress=progress, callbacks=callbacks)
    except BaseException:
        if new and not (run / TRAINER).exists():  # nothing to resume: free the --out for the next try (a full disk, Ctrl-C)
            run.discard()
        raise


def _train(cfg: RunConfig, task: Task, run: RunDir, monitor: str, device: torch.device, world: distributed.World,
           begun: float, *, resume: bool, progress: bool | None, callbacks: Sequence[Callable[[dict], None]]) -> TrainResult:
    """`train`, once the run directory is there (and, when resuming, opened and checked); `begun`: when train was
    called, by time.monotonic()."""
    tc = cfg.train
    seed_everything(tc.seed)
    model = task.build_model()
    if not resume:
        task.init_weights(model)
    model = model.to(device)
    optimizer = make_optimizer(tc, model)
    # fp16's exponent range ends near 6e-8, below which small gradients become zero: the scaler multiplies the
    # loss up before backward and divides the gradients back. bf16 has float32's exponent range and needs none.
    scaler = torch.amp.GradScaler(device.type, enabled=tc.precision == "fp16")
    # what the steps run: the model, or its DistributedDataParallel wrapper, which averages the gradients
    net = nn.parallel.DistributedDataParallel(model) if world.size > 1 else model
    batches_per_epoch = len(task.batches(0))
    total_steps = min(tc.epochs * batches_per_epoch, tc.max_steps or math.inf)
    schedule = Schedule(tc, optimizer, total_steps)
    pos = {"step": 0, "epoch": 0, "batch": 0, "best_valid_loss": None, "best_valid": None, "seconds": 0.0,
           "skipped_steps": 0, "scaler_skipped": 0}  # (scaler_skipped: fp16 steps the loss scaler skipped)
    state = None
    if resume:
        state = load_checkpoint(run, model, optimizer, schedule, pos, device, scaler)
        if state is not None and world.size > 1:  # the checkpoint holds every stream's state: keep this process's
            state = map_state(lambda t: t[:, distributed.block(t.shape[1], world)], state)
        # a process killed after its last checkpoint logged steps that will now be trained again: drop them
        if world.main:
            run.trim_metrics(pos["step"])
        if pos["best_valid"] is None and pos["best_valid_loss"] is not None and monitor == "loss":
            pos["best_valid"] = {"loss": pos["best_valid_loss"]}  # a checkpoint from before best_valid was kept
    elif world.main:
        task.save_vocab(run)
    if world.main:
        run.save_config_text(cfg.to_toml())  # on resume too: a longer --epochs must survive the next resume
    board = TensorBoardLog(run.path, pos["step"] if resume else None) if tc.tensorboard and world.main else None

    def log(record: dict) -> None:
        if not world.main:
            return
        run.append_metrics(record)  # metrics.jsonl is the record; TensorBoard and callbacks are views of it
        if board is not None:
            board.write(record)
        for callback in callbacks:
            callback(record)

    described = task.describe() + (f", {world.size} processes" if world.size > 1 else "")
    if world.main:
        tqdm.write(f"{'resuming' if resume else 'training into'} {run.path}: {described + ', ' if described else ''}"
               f"device {device}", file=sys.stderr)

    best = pos["best_valid_loss"]  # the best monitored figure so far, lower is better (named before monitor existed)
    started = time.monotonic() - pos["seconds"]  # seconds of training in all, across resumes
    deadline = begun + tc.max_minutes * 60 if tc.max_minutes else math.inf  # this invocation's budget
    # seconds the work that ends a run took when last done: the budget must leave room for it
    closing = {"evaluate": 0.0, "checkpoint": 0.0, "finish": 0.0}
    bar = tqdm(total=tc.epochs * batches_per_epoch, initial=min(pos["step"], tc.epochs * batches_per_epoch),
               # None lets tqdm hide the bar when stderr is not a terminal (CI logs, pipes)
               disable=None if (tc.progress if progress is None else progress) and world.main else True,
               unit="batch", dynamic_ncols=True, leave=False)
    window_loss, window_items, window_start = 0.0, 0, time.monotonic()
    last_train_loss, valid, stopped, evaluated_at = None, None, "finished", None
    bad_in_a_row, overflows_in_a_row, grad_norm = 0, 0, None

    saved_at = pos["step"] if resume else None

    def checkpoint() -> None:
        nonlocal window_start, saved_at
        if saved_at == pos["step"]:
            return  # this step is on disk already; writing it again would push an older one out of previous/
        saved_at = pos["step"]
        t0 = time.monotonic()
        pos["seconds"] = t0 - started
        pos["best_valid_loss"] = best
        saved_state = state
        if world.size > 1 and state is not None:  # every process's streams, as one process would carry them
            saved_state = map_state(lambda t: distributed.gather_batch_dim(t, world), state)
        if world.main:
            save_checkpoint(run, model, optimizer, schedule, pos, saved_state, scaler)
        closing["checkpoint"] = time.monotonic() - t0
        window_start += closing["checkpoint"]  # the logged rate measures training, not checkpoint writing

    def evaluate_and_keep_best(epoch: int, schedule_step: bool = True) -> None:
        nonlocal best, valid, window_start, evaluated_at
        t0 = time.monotonic()
        valid = task.evaluate(model, device)  # every process, so that all take the same schedule decisions
        score = None if valid is None else task.score(valid, monitor)
        if schedule_step:
            schedule.after_eval(score)
        if score is None or best is None or score < best:
            best = score
            pos["best_valid"] = valid
            if world.main:
                run.save_model(model, BEST)
        log({"step": pos["step"], "epoch": epoch, "split": "valid",
                            **(valid or {"loss": None}), "lr": schedule.lr,
                            "time": round(time.monotonic() - started, 2)})
        evaluated_at = pos["step"]
        closing["evaluate"] = time.monotonic() - t0
        window_start += closing["evaluate"]  # nor evaluation
        model.train()

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.precision)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    reasons = (None, "interrupted", "time budget", "step budget", "early stop")

    def why_stop() -> str | None:
        code = (1 if stop.requested else 2 if time.monotonic() + sum(closing.values()) > deadline
                else 3 if tc.max_steps is not None and pos["step"] >= tc.max_steps
                else 4 if tc.early_stop and schedule.since_best >= tc.early_stop else 0)
        return reasons[distributed.agree(code, world, device)]

    with run.lock() if world.main else contextlib.nullcontext(), StopRequest() as stop:
        try:
            if deadline < math.inf:
                # the closing work (evaluation, checkpoint, the task's sample) must end within the budget too: do it
                # once now, scoring the starting weights as nanoGPT does at step 0, to know how long it takes
                evaluate_and_keep_best(pos["epoch"] + 1, schedule_step=False)
                checkpoint()
                t0 = time.monotonic()
                if world.main:
                    task.finish(run, device)
                closing["finish"] = time.monotonic() - t0
            while pos["epoch"] < tc.epochs and stopped == "finished":
                model.train()
                epoch_batches = task.batches(pos["epoch"])
                if pos["batch"] == 0:
                    state = None  # each epoch starts from zeros (d2l, Zaremba): the streams restart
                for batch in epoch_batches.iter_from(pos["batch"]):
                    # budgets and Ctrl-C are honoured between steps, never inside one
                    if (reason := why_stop()) is not None:
                        stopped = reason
                        break
                    if world.size > 1:
                        batch = task.shard(batch, world)
                    # train.grad_every: this step's forward pass is probed, its backward pass fills the probe
                    probe = probe_model(model) if tc.grad_every and (pos["step"] + 1) % tc.grad_every == 0 else None
                    with autocast, probe or contextlib.nullcontext():
                        out = task.step(net, batch, state, device)
                    objective = out.objective
                    if world.size > 1:
                        # DDP averages gradients over processes; weighting each by its share of the batch's items
                        # makes that the gradient of the whole batch's mean, even when shards differ in size
                        loss_sum, items = distributed.all_sum([out.loss.item() * out.items, out.items], world, device)
                        objective = objective * (out.items * world.size / items)
                    scaler.scale(objective).backward()  # (the scaler is the identity unless fp16)
                    loss_value = out.loss.item() if world.size == 1 else loss_sum / items  # the whole batch's
                    if math.isfinite(loss_value):
                        scaler.unscale_(optimizer)  # so that clipping and the logged norm are in true units
                    # the norm is needed anyway to catch a non-finite gradient; clip only when asked
                    norm = nn.utils.clip_grad_norm_(model.parameters(), tc.clip if tc.clip > 0 else math.inf)
                    pos["step"] += 1
                    pos["batch"] += 1
                    if probe is not None:
                        norms = probe.norms(scale=scaler.get_scale())  # (its hooks saw the scaled gradients)
                        log({"step": pos["step"], "epoch": pos["epoch"] + 1, "split": "grad",
                             **{key: finite_or_none(values) for key, values in norms.items()},
                             "time": round(time.monotonic() - started, 2)})
                    # with fp16, a finite loss and a non-finite gradient is the loss scale overflowing float16: the
                    # scaler's normal business (scaler.step skips the update, scaler.update lowers the scale), not a
                    # bad step
                    overflow = scaler.is_enabled() and math.isfinite(loss_value) and not math.isfinite(norm.item())
                    if not (math.isfinite(loss_value) and (math.isfinite(norm.item()) or overflow)):
                        # skip the update, keep the weights; a few such steps are survivable, a run of them is not
                        optimizer.zero_grad(set_to_none=True)
                        pos["skipped_steps"] += 1
                        bad_in_a_row, overflows_in_a_row = bad_in_a_row + 1, 0
                        log({"step": pos["step"], "epoch": pos["epoch"] + 1, "split": "train",
                                            "skipped": "non-finite loss or gradient"})
                        if bad_in_a_row >= tc.max_bad_steps:
                            raise InputError(f"training stopped: {plural(bad_in_a_row, 'step')} in a row had a non-finite loss or "
                                             f"gradient (up to step {pos['step']}); lower --lr or clip with --clip (the "
                                             f"last checkpoint in {run.path} is intact)")
                        # (in a data-parallel run every process drops its state alike, so all stay in step)
                        state = out.state if world.size == 1 and all(torch.isfinite(t).all() for t in _tensors(out.state)) else None
                        continue
                    bad_in_a_row = 0
                    if overflow:
                        pos["scaler_skipped"] += 1  # the weights stay; the stream goes on from this step's state
                        overflows_in_a_row += 1
                        if overflows_in_a_row >= _MAX_OVERFLOWS_IN_A_ROW:
                            raise InputError(
                                f"training stopped: {overflows_in_a_row} fp16 steps in a row had a non-finite gradient "
                                f"while the loss scale fell to {scaler.get_scale():.3g} (up to step {pos['step']}): the "
                                f"gradients are not finite in float16 at any scale; train with --precision bf16 or "
                                f"fp32, lower --lr or clip with --clip (the last checkpoint in {run.path} is intact)")
                    else:
                        grad_norm, overflows_in_a_row = norm.item(), 0
                    schedule.before_step(pos["step"] - 1)  # warmup and cosine, from the step count before this one
                    saved = [g["lr"] for g in optimizer.param_groups]
                    for g in optimizer.param_groups:
                        g["lr"] *= out.lr_scale
                    try:
                        scaler.step(optimizer)  # optimizer.step(), unless fp16 found an inf or nan gradient
                    finally:
                        for g, lr in zip(optimizer.param_groups, saved):
                            g["lr"] = lr
                    scaler.update()  # fp16: halve the scale after an overflow, double it after 2000 clean steps
                    optimizer.zero_grad(set_to_none=True)  # free the gradients now; the next forward does not need them
                    state = out.state

                    batch_items = out.items if world.size == 1 else int(items)
                    window_loss += loss_value * batch_items
                    window_items += batch_items
                    elapsed = time.monotonic() - window_start
                    bar.update(1)
                    bar.set_postfix(**task.postfix(loss_value), refresh=False,
                                    **{f"{task.unit}/s": f"{window_items / max(elapsed, 1e-9):,.0f}"})
                    if pos["step"] % tc.log_every == 0:
                        last_train_loss = window_loss / window_items
                        log({"step": pos["step"], "epoch": pos["epoch"] + 1, "split": "train",
                                            "loss": last_train_loss, **task.train_metrics(last_train_loss),
                                            "lr": schedule.lr,
                                            f"{task.unit}_per_s": round(window_items / max(elapsed, 1e-9), 1),
                                            "grad_norm": grad_norm,
                                            **({"loss_scale": scaler.get_scale(), "scaler_skipped": pos["scaler_skipped"]}
                                               if scaler.is_enabled() else {}),
                                            "time": round(time.monotonic() - started, 2)})
                        window_loss, window_items, window_start = 0.0, 0, time.monotonic()
                    if tc.eval_every and pos["step"] % tc.eval_every == 0:
                        evaluate_and_keep_best(pos["epoch"] + 1)
                        checkpoint()
                    elif tc.save_every and pos["step"] % tc.save_every == 0:
                        checkpoint()
                else:  # the epoch ran to its end
                    pos["epoch"] += 1
                    pos["batch"] = 0
                    if window_items:
                        last_train_loss = window_loss / window_items
                    if not tc.eval_every:
                        evaluate_and_keep_best(pos["epoch"])
                    schedule.after_epoch(pos["epoch"])
                    checkpoint()
                    parts = [f"epoch {pos['epoch']}", f"step {pos['step']}", *task.epoch_summary(last_train_loss, valid),
                             f"lr {schedule.lr:.3g}", f"{time.monotonic() - started:.0f}s"]
                    if world.main:
                        bar.write(" | ".join(parts))
            if stopped != "finished":
                # keep what was learnt: unless this step was just evaluated, score it so the best weights include
                # it (without touching the schedule, which sees only the evaluations an uninterrupted run makes)
                if evaluated_at != pos["step"]:
                    evaluate_and_keep_best(pos["epoch"] + 1, schedule_step=False)
                checkpoint()
        finally:
            bar.close()
            if board is not None:
                board.close()

    sample = task.finish(run, device) if world.main else None
    best_valid = pos["best_valid"]
    return TrainResult(run.path, pos["step"], pos["epoch"], last_train_loss, None if valid is None else valid["loss"],
                       None if best_valid is None else best_valid["loss"], stopped, time.monotonic() - started, sample,
                       run.read_metrics(), model, valid, best_valid)
