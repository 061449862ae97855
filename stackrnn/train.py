"""The training loop, the same for every task: batch, forward, backward, clip, step — and around that loop,
evaluation, checkpoints, the time and step budgets, Ctrl-C, and the progress bar. What differs between a
language model and a classifier (data, model, loss, metrics) comes from the run's `Task` (see tasks/).

`_loop` is the loop; its helpers come from below: the position and checkpoints (checkpoint.py), precision
(precision.py), data-parallel work (distributed.py), and instruments that look inside the steps, such as the
gradient probe of train.grad_every (instruments.py, which modules above this one fill).
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
from .checkpoint import Checkpointer, Position, resume as resume_checkpoint
from .config import dumps_toml, fill_saved, from_dict, lift_flat_keys, merge, read_toml, to_dict
from .data.tokenizers import Tokenizer
from .errors import InputError, did_you_mean, plural
from .instruments import Instrument, from_config as instruments_for
from .optim import Schedule, TrainConfig, make_optimizer
from .precision import Precision
from .run import BEST, CONFIG, TRAINER, RunDir
from .tasks import TASK_NAMES, Step, Task, a_run_of, task_class
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
        known = sections(task)
        unknown = set(tables) - {"task", *known}
        if unknown:
            section = sorted(unknown)[0]
            near = did_you_mean(section, known, show=lambda s: f"[{s}]")
            raise InputError(f"{where}: unknown section [{section}]{near}; known sections: "
                             + ", ".join(f"[{s}]" for s in known))
        return cls(**{name: from_dict(section, tables.get(name, {}), f"{where}: {name}") for name, section in known.items()},
                   task=task)

    @classmethod
    def of_run(cls, run: RunDir) -> RunConfig:
        """A saved run's config; options added since it was saved take the value it was trained with (`saved=`)."""
        tables, where = run.load_config_tables(), str(run / CONFIG)
        task = tables.get("task", "lm")
        if task in TASK_NAMES:
            for name, section in sections(task).items():
                if isinstance(tables.get(name), dict):
                    tables[name] = fill_saved(section, tables[name], f"{where}: {name}")
        return cls.from_tables(tables, where)

    def make_task(self) -> Task:
        return task_class(self.task)(self)


def sections(task: str) -> dict[str, type]:
    """The config sections of a task's runs: its own [model] and [data] classes, and the shared [train]."""
    return {**task_class(task).sections, "train": TrainConfig}


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
    name = getattr(cfg.data, "dataset", None) or (Path(source).stem if source else "embedded")
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
    """Everything about a run that can fail on the user's input, checked without writing anything: the monitored
    figure, the run directory, the data (read and encoded into the returned task; the monitored figure again,
    against it), TensorBoard, and how the batch divides among `world_size` processes. Returns the task, the run
    (when resuming) and the monitor."""
    choose_device(cfg.train.device)
    task = cfg.make_task()
    monitor = task.monitored(cfg.train.monitor)  # (first: a wrong one needs no data to be read)
    run = None
    if resume:
        run = RunDir.open(out, need=(CONFIG, *task.files))  # the checkpoint's files are checked as it loads
        if writer:
            with run.lock():  # a run another process is training fails here, before anything is written
                pass
    elif writer:  # (the other processes of a data-parallel run find the folder rank 0 may have made already)
        RunDir.check_new(out)
    task.prepare(run)
    task.check_monitored(monitor)
    if cfg.task == "lm" and cfg.data.batch_size % world_size:
        raise InputError(f"data.batch_size: {cfg.data.batch_size} streams cannot be shared equally by {world_size} "
                         f"processes: use a multiple of {world_size}")
    if cfg.train.tensorboard:
        check_available()
    return task, run, monitor


def train(cfg: RunConfig, out: str | Path, *, resume: bool = False, progress: bool | None = None,
          callbacks: Sequence[Callable[[dict], None]] = (), instruments: Sequence[Instrument] = ()) -> TrainResult:
    """Train the model of `cfg` into run directory `out` (a new one, or an existing one with resume).
    `callbacks` are called with every record written to metrics.jsonl, in the process that writes it.
    `instruments` look inside the steps (see instruments.py), besides those the config asks for (grad_every).

    Everything that can fail on the user's input (device, data, batch sizes, the sample prefix) is checked
    before the run directory is created or touched.
    """
    begun = time.monotonic()  # --max-minutes counts from here: reading the data is part of the run
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = distributed.device_of(choose_device(cfg.train.device))
    world = distributed.setup(device)
    task, run, monitor = preflight(cfg, out, resume=resume, world_size=world.size, writer=world.main)
    new = not resume and world.main  # this process makes the run directory
    if run is None:
        run = RunDir.create(out) if new else RunDir(out)  # (rank 0 makes it; the other processes write nothing)
    try:
        return _train(cfg, task, run, monitor, device, world, begun, resume=resume, progress=progress,
                      callbacks=callbacks, instruments=[*instruments_for(cfg.train), *instruments])
    except BaseException:
        if new and not (run / TRAINER).exists():  # nothing to resume: free the --out for the next try (a full disk, Ctrl-C)
            run.discard()
        raise


# -- the loop's helpers: the time budget, logging, evaluation (and from their own modules: Position and
# Checkpointer, Precision, distributed.DataParallel) ------------------------------------------------------------

# how fast a checkpoint is assumed to be written until one has been timed: a slow disk's pace, in bytes per second
_DISK_PACE = 100e6


class Budget:
    """train.max_minutes: this invocation's deadline, and the closing work it must leave time for (the last
    evaluation and checkpoint, and the task's `finish`, such as the sample).

    Each part is timed whenever it runs; evaluations and checkpoints run during training too (at each epoch's
    end or every eval_every steps), so nothing is run just to be timed. Until a part has run, an estimate
    stands in: an evaluation and `finish` take as long as training on `Task.closing_items` items at its measured
    pace, and a checkpoint writes about four copies of the weights (last, and the optimizer's moments; the best
    weights are written by the evaluation) at a slow disk's pace. The pace is measured from the end of this
    invocation's first step on: that step also warms up (allocations, kernel choices) and can take many times
    as long as the others.
    """

    def __init__(self, minutes: float | None, begun: float, task: Task, model: nn.Module) -> None:
        self.deadline = begun + minutes * 60 if minutes else math.inf
        self.evaluation_items, self.finish_items = task.closing_items()
        weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        self.checkpoint_estimate = 4 * weight_bytes / _DISK_PACE
        self.seconds: dict[str, float] = {}  # measured: "evaluate", "checkpoint", "finish"
        self.since: float | None = None  # when the first step ended
        self.items, self.paused = 0, 0.0  # trained since then, and seconds spent on other work since then

    def took(self, part: str, seconds: float) -> None:
        self.seconds[part] = seconds
        self.paused += seconds

    def trained(self, items: int) -> None:
        """Count a training step's items, for the pace."""
        if self.deadline == math.inf:
            return
        if self.since is None:
            self.since, self.paused = time.monotonic(), 0.0
        else:
            self.items += items

    def out_of_time(self) -> bool:
        """Whether training must stop now for the closing work to end by the deadline."""
        if self.deadline == math.inf:
            return False
        now = time.monotonic()
        per_item = (now - self.since - self.paused) / self.items if self.items else 0.0  # seconds (0: not known yet)
        reserve = (self.seconds.get("evaluate", self.evaluation_items * per_item)
                   + self.seconds.get("checkpoint", self.checkpoint_estimate)
                   + self.seconds.get("finish", self.finish_items * per_item))
        return now + reserve > self.deadline


class Window:
    """The training steps since the last train record: their mean loss and pace (with the time of evaluations and
    checkpoints left out, so that the pace is training's)."""

    def __init__(self) -> None:
        self.reset()
        self.pace = 0.0  # items per second
        self.mean_loss: float | None = None  # of the last window logged, or of the epoch at its end
        self.grad_norm: float | None = None  # of the last step that updated the weights

    def reset(self) -> None:
        self.loss, self.items, self.start = 0.0, 0, time.monotonic()

    def add(self, loss: float, items: int) -> None:
        self.loss += loss * items
        self.items += items
        self.pace = self.items / max(time.monotonic() - self.start, 1e-9)

    def pause(self, seconds: float) -> None:
        self.start += seconds

    def close(self) -> float:
        self.mean_loss = self.loss / self.items
        return self.mean_loss


class Metrics:
    """metrics.jsonl, which rank 0 writes; TensorBoard and the callbacks are views of it."""

    def __init__(self, run: RunDir, world: distributed.World, board: TensorBoardLog | None,
                 callbacks: Sequence[Callable[[dict], None]], started: float) -> None:
        self.run, self.world, self.board, self.callbacks, self.started = run, world, board, callbacks, started

    def time(self) -> float:
        """Seconds of training in all, across resumes."""
        return round(time.monotonic() - self.started, 2)

    def log(self, record: dict) -> None:
        if not self.world.main:
            return
        self.run.append_metrics(record)
        if self.board is not None:
            self.board.write(record)
        for callback in self.callbacks:
            callback(record)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


class Evaluator:
    """Validation: score the model, keep the best weights (model.safetensors) by the monitored figure, tell the
    schedule, log the figures. Every process evaluates, so that all take the same schedule decisions."""

    def __init__(self, task: Task, model: nn.Module, device: torch.device, monitor: str, schedule: Schedule,
                 run: RunDir, metrics: Metrics) -> None:
        self.task, self.model, self.device, self.monitor = task, model, device, monitor
        self.schedule, self.run, self.metrics = schedule, run, metrics
        self.valid: dict | None = None  # the last validation metrics
        self.at: int | None = None  # the step last evaluated

    def __call__(self, pos: Position, epoch: int, schedule_step: bool = True) -> float:
        """Evaluate at `pos` (logged as epoch `epoch`); the seconds it took."""
        t0 = time.monotonic()
        valid = self.task.evaluate(self.model, self.device)
        score = None if valid is None else self.task.score(valid, self.monitor)
        if schedule_step:
            self.schedule.after_eval(score)
        if score is None or pos.best_valid_loss is None or score < pos.best_valid_loss:
            pos.best_valid_loss, pos.best_valid = score, valid
            if self.metrics.world.main:
                self.run.save_model(self.model, BEST)
        self.metrics.log({"step": pos.step, "epoch": epoch, "split": "valid", **(valid or {"loss": None}),
                          "lr": self.schedule.lr, "time": self.metrics.time()})
        self.valid, self.at = valid, pos.step
        self.model.train()
        return time.monotonic() - t0


@dataclass
class _Loop:
    """What the loop works with, made once by `_train`."""

    tc: TrainConfig
    task: Task
    run: RunDir
    device: torch.device
    model: nn.Module
    net: nn.Module  # what the steps run: the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    precision: Precision
    parallel: distributed.DataParallel
    instruments: Sequence[Instrument]
    metrics: Metrics
    evaluate: Evaluator
    checkpointer: Checkpointer
    budget: Budget
    window: Window
    bar: tqdm


def _train(cfg: RunConfig, task: Task, run: RunDir, monitor: str, device: torch.device, world: distributed.World,
           begun: float, *, resume: bool, progress: bool | None, callbacks: Sequence[Callable[[dict], None]],
           instruments: Sequence[Instrument]) -> TrainResult:
    """`train`, once the run directory is there (and, when resuming, opened and checked); `begun`: when train was
    called, by time.monotonic()."""
    tc = cfg.train
    seed_everything(tc.seed)
    model = task.build_model()
    if not resume:
        task.init_weights(model)
    model = model.to(device)
    optimizer = make_optimizer(tc, model)
    precision, parallel = Precision(tc.precision, device), distributed.DataParallel(world, device)
    net = parallel.wrap(model)
    batches_per_epoch = len(task.batches(0))
    schedule = Schedule(tc, optimizer, min(tc.epochs * batches_per_epoch, tc.max_steps or math.inf))
    pos, state = Position(), None
    if resume:
        pos, state = resume_checkpoint(run, model, optimizer, schedule, device, precision.scaler, world, monitor)
    elif world.main:
        task.save_vocab(run)
    if world.main:
        run.save_config_text(cfg.to_toml())  # on resume too: a longer --epochs must survive the next resume
        described = task.describe() + (f", {world.size} processes" if world.size > 1 else "")
        tqdm.write(f"{'resuming' if resume else 'training into'} {run.path}: {described + ', ' if described else ''}"
                   f"device {device}", file=sys.stderr)
    started = time.monotonic() - pos.seconds  # seconds of training in all, across resumes
    board = TensorBoardLog(run.path, pos.step if resume else None) if tc.tensorboard and world.main else None
    metrics = Metrics(run, world, board, callbacks, started)
    bar = tqdm(total=tc.epochs * batches_per_epoch, initial=min(pos.step, tc.epochs * batches_per_epoch),
               # None lets tqdm hide the bar when stderr is not a terminal (CI logs, pipes)
               disable=None if (tc.progress if progress is None else progress) and world.main else True,
               unit="batch", dynamic_ncols=True, leave=False)
    lp = _Loop(tc, task, run, device, model, net, optimizer, schedule, precision, parallel, instruments, metrics,
               Evaluator(task, model, device, monitor, schedule, run, metrics),
               Checkpointer(run, model, optimizer, schedule, precision.scaler, world, pos.step if resume else None,
                            started),
               Budget(tc.max_minutes, begun, task, model), Window(), bar)
    with run.lock() if world.main else contextlib.nullcontext(), StopRequest() as stop:
        try:
            stopped, state = _loop(lp, pos, state, stop)
            if stopped != "finished":
                # keep what was learnt: unless this step was just evaluated, score it so the best weights include
                # it (without touching the schedule, which sees only the evaluations an uninterrupted run makes)
                if lp.evaluate.at != pos.step:
                    _evaluate(lp, pos, pos.epoch + 1, schedule_step=False)
                _checkpoint(lp, pos, state)
        finally:
            bar.close()
            metrics.close()
    sample = task.finish(run, device) if world.main else None
    valid, best_valid = lp.evaluate.valid, pos.best_valid
    return TrainResult(run.path, pos.step, pos.epoch, lp.window.mean_loss, None if valid is None else valid["loss"],
                       None if best_valid is None else best_valid["loss"], stopped, time.monotonic() - started, sample,
                       run.read_metrics(), model, valid, best_valid)


# -- the loop ------------------------------------------------------------------------------------------------------

def _loop(lp: _Loop, pos: Position, state, stop: StopRequest) -> tuple[str, object]:
    """Train from `pos` (the carried `state`) until the epochs are done or something stops it: why it ended
    ("finished", "interrupted", "time budget", "step budget" or "early stop") and the state carried then."""
    tc, window, bad_in_a_row = lp.tc, lp.window, 0
    while pos.epoch < tc.epochs:
        lp.model.train()
        if pos.batch == 0:
            state = None  # each epoch starts from zeros (d2l, Zaremba): the streams restart
        batches = lp.task.batches(pos.epoch)
        for batch in batches.iter_from(pos.batch):
            # budgets and Ctrl-C are honoured between steps, never inside one
            if (stopped := _why_stop(lp, pos, stop)) is not None:
                return stopped, state
            out, loss, items, norm, watched = _forward_backward(lp, batch, state, pos.step + 1)
            pos.step += 1
            pos.batch += 1
            if watched:
                _log_instruments(lp, pos, watched)
            overflow = lp.precision.overflowed(loss, norm)
            if not (math.isfinite(loss) and (math.isfinite(norm) or overflow)):
                bad_in_a_row += 1
                state = _skip(lp, pos, out, bad_in_a_row)
                continue
            bad_in_a_row = 0
            _update(lp, pos, out.lr_scale, norm, overflow)
            state = out.state
            window.add(loss, items)
            lp.budget.trained(items)
            lp.bar.update(1)
            lp.bar.set_postfix(**lp.task.postfix(loss), refresh=False, **{f"{lp.task.unit}/s": f"{window.pace:,.0f}"})
            if pos.step % tc.log_every == 0:
                _log_train(lp, pos)
            if tc.eval_every and pos.step % tc.eval_every == 0:
                _evaluate(lp, pos, pos.epoch + 1)
                _checkpoint(lp, pos, state)
            elif tc.save_every and pos.step % tc.save_every == 0 and pos.batch < len(batches):
                # (not at the epoch's last batch: _end_epoch saves after its evaluation, which a checkpoint saved
                # before it would make a resumed run evaluate, and log, a second time)
                _checkpoint(lp, pos, state)
        _end_epoch(lp, pos, state)
    return "finished", state


_REASONS = (None, "interrupted", "time budget", "step budget", "early stop")


def _why_stop(lp: _Loop, pos: Position, stop: StopRequest) -> str | None:
    """Why training must stop before the next step, if it must; agreed by every process, so that all stop at the
    same step (a time budget runs out on one clock, Ctrl-C reaches one process first)."""
    tc = lp.tc
    code = (1 if stop.requested else 2 if lp.budget.out_of_time()
            else 3 if tc.max_steps is not None and pos.step >= tc.max_steps
            else 4 if tc.early_stop and lp.schedule.since_best >= tc.early_stop else 0)
    return _REASONS[lp.parallel.agree(code)]


def _forward_backward(lp: _Loop, batch, state, step: int) -> tuple[Step, float, int, float, list]:
    """Step `step`'s forward and backward pass, and its gradient clipped: the task's Step, the whole batch's mean
    loss and items, the gradient's norm before clipping (not finite when the gradient is not), and the
    instruments that watched the step."""
    watched = [(i, c) for i in lp.instruments if (c := i.before_step(step, lp.model)) is not None]
    with lp.precision.autocast, contextlib.ExitStack() as contexts:
        for _, context in watched:
            contexts.enter_context(context)
        out = lp.task.step(lp.net, lp.parallel.shard(lp.task, batch), state, lp.device)
    lp.precision.backward(lp.parallel.objective(out))
    loss, items = lp.parallel.batch_loss(out)
    if math.isfinite(loss):
        lp.precision.unscale(lp.optimizer)
    # the norm is needed anyway to catch a non-finite gradient; clip only when asked
    norm = nn.utils.clip_grad_norm_(lp.model.parameters(), lp.tc.clip if lp.tc.clip > 0 else math.inf)
    return out, loss, items, norm.item(), watched


def _update(lp: _Loop, pos: Position, lr_scale: float, norm: float, overflow: bool) -> None:
    """The optimizer step of a step whose loss and gradient are finite (or whose fp16 gradient overflowed, which
    the scaler skips); `lr_scale` multiplies the learning rate for this step only."""
    if overflow:
        pos.scaler_skipped += 1  # the weights stay; the stream goes on from this step's state
    else:
        lp.window.grad_norm = norm
    lp.precision.count(overflow, pos.step, lp.run.path)
    lp.schedule.before_step(pos.step - 1)  # warmup and cosine, from the step count before this one
    groups = lp.optimizer.param_groups
    saved = [g["lr"] for g in groups]
    for g in groups:
        g["lr"] *= lr_scale
    try:
        lp.precision.step(lp.optimizer)
    finally:
        for g, lr in zip(groups, saved):
            g["lr"] = lr
    lp.precision.update()
    lp.optimizer.zero_grad(set_to_none=True)  # free the gradients now; the next forward does not need them


def _skip(lp: _Loop, pos: Position, out: Step, bad_in_a_row: int):
    """A step whose loss or gradient is not finite: skip the update and keep the weights; a few such steps are
    survivable, a run of them is not. The state to carry on with."""
    lp.optimizer.zero_grad(set_to_none=True)
    pos.skipped_steps += 1
    lp.precision.count(False, pos.step, lp.run.path)
    lp.metrics.log({"step": pos.step, "epoch": pos.epoch + 1, "split": "train", "skipped": "non-finite loss or gradient"})
    if bad_in_a_row >= lp.tc.max_bad_steps:
        raise InputError(f"training stopped: {plural(bad_in_a_row, 'step')} in a row had a non-finite loss or gradient "
                         f"(up to step {pos.step}); lower --lr or clip with --clip (the last checkpoint in "
                         f"{lp.run.path} is intact)")
    # (in a data-parallel run every process drops its state alike, so all stay in step)
    finite = lp.parallel.world.size == 1 and all(torch.isfinite(t).all() for t in _tensors(out.state))
    return out.state if finite else None


def _log_instruments(lp: _Loop, pos: Position, watched: list) -> None:
    scale = lp.precision.scaler.get_scale()  # (1 unless fp16)
    for instrument, _ in watched:
        figures = instrument.after_backward(pos.step, scale)
        if figures is not None:
            lp.metrics.log({"step": pos.step, "epoch": pos.epoch + 1, "split": instrument.split, **figures,
                            "time": lp.metrics.time()})


def _log_train(lp: _Loop, pos: Position) -> None:
    loss, scaler = lp.window.close(), lp.precision.scaler
    lp.metrics.log({"step": pos.step, "epoch": pos.epoch + 1, "split": "train", "loss": loss,
                    **lp.task.train_metrics(loss), "lr": lp.schedule.lr,
                    f"{lp.task.unit}_per_s": round(lp.window.pace, 1), "grad_norm": lp.window.grad_norm,
                    **({"loss_scale": scaler.get_scale(), "scaler_skipped": pos.scaler_skipped}
                       if scaler.is_enabled() else {}),
                    "time": lp.metrics.time()})
    lp.window.reset()


def _evaluate(lp: _Loop, pos: Position, epoch: int, schedule_step: bool = True) -> None:
    seconds = lp.evaluate(pos, epoch, schedule_step)
    lp.budget.took("evaluate", seconds)
    lp.window.pause(seconds)  # the logged pace measures training, not evaluation


def _checkpoint(lp: _Loop, pos: Position, state) -> None:
    seconds = lp.checkpointer.save(pos, state)
    if seconds is not None:
        lp.budget.took("checkpoint", seconds)
        lp.window.pause(seconds)  # nor checkpoint writing


def _end_epoch(lp: _Loop, pos: Position, state) -> None:
    """The epoch ran to its end: evaluate (unless eval_every does), step the schedule, checkpoint, say so."""
    pos.epoch += 1
    pos.batch = 0
    if lp.window.items:
        lp.window.close()
    if not lp.tc.eval_every:
        _evaluate(lp, pos, pos.epoch)
    lp.schedule.after_epoch(pos.epoch)
    _checkpoint(lp, pos, state)
    parts = [f"epoch {pos.epoch}", f"step {pos.step}", *lp.task.epoch_summary(lp.window.mean_loss, lp.evaluate.valid),
             f"lr {lp.schedule.lr:.3g}", f"{time.monotonic() - lp.metrics.started:.0f}s"]
    if lp.parallel.world.main:
        lp.bar.write(" | ".join(parts))
