"""The trainer's checkpoint: everything needed to continue a run exactly where it stopped.

Weights go to last.safetensors, the optimizer's tensors to optimizer.safetensors, torch's RNG states and the
carried hidden state to trainer.safetensors, and the rest (position, schedule, optimizer skeleton, the fp16 loss
scaler's scale and growth tracker, Python and NumPy RNG states) to trainer.json. The three tensor files carry
the step in their metadata and trainer.json is written last, so a crash between writes is detected on loading
instead of mixing two steps. The checkpoint before the newest is kept in previous/, to resume from when the
newest is damaged; a checkpoint that cannot be written (a full disk) leaves the one before it in place.

The training loop's side: `Position` (where a run stands), `Checkpointer` (writes one during training) and
`resume` (a run's position and carried state, loaded).
"""

from __future__ import annotations

import os
import random
import time
import warnings
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from torch import Tensor, nn

from .distributed import World, block, gather_batch_dim
from .errors import InputError
from .layers import LayerState, map_state
from .optim import Schedule
from .run import LAST, OPTIMIZER, TRAINER, TRAINER_TENSORS, RunDir

FILES = (LAST, OPTIMIZER, TRAINER, TRAINER_TENSORS)
PREVIOUS = "previous"  # the checkpoint before the newest one


@dataclass
class Position:
    """Where a run stands: what trainer.json records, and a resumed run starts from."""

    step: int = 0  # optimizer steps taken, skipped ones included
    epoch: int = 0  # epochs finished
    batch: int = 0  # batches of the current epoch done
    best_valid_loss: float | None = None  # the best monitored figure, lower is better (named before monitor existed)
    best_valid: dict | None = None  # the validation metrics of the best weights
    seconds: float = 0.0  # seconds of training in all, across resumes
    skipped_steps: int = 0  # steps skipped for a non-finite loss or gradient
    scaler_skipped: int = 0  # fp16 steps the loss scaler skipped


def save_checkpoint(run: RunDir, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Schedule, pos: Position,
                    state: list[LayerState] | None, scaler: torch.amp.GradScaler | None = None) -> None:
    """Write the checkpoint of position `pos`."""
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
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            trainer_tensors[f"rng.cuda.{i}"] = s
    for l, s in enumerate(state or []):
        for k, t in enumerate(s if isinstance(s, tuple) else (s,)):
            trainer_tensors[f"hidden.{l}.{k}"] = t
    np_state = np.random.get_state()
    py_state = random.getstate()
    step = pos.step
    moved = _keep_previous(run)
    try:
        run.save_model(model, LAST, step=step)
        run.save_tensors(OPTIMIZER, tensors, step=step)
        run.save_tensors(TRAINER_TENSORS, trainer_tensors, step=step)
        run.save_json(TRAINER, {  # last: it names the step the others must belong to
            **asdict(pos),
            "optimizer": skeleton,
            "schedule": schedule.state_dict(),
            # plain numbers ({} unless the scaler is enabled, i.e. under --precision fp16)
            "scaler": scaler.state_dict() if scaler is not None else {},
            "rng": {"python": [py_state[0], list(py_state[1]), py_state[2]],
                    "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])]},
        })
    except BaseException:
        # a write failed (a full disk): put the checkpoint this one was replacing back in place, whole, rather
        # than leave the run to resume from previous/ past a half-written newest one
        for name in FILES:
            if name in moved:
                os.replace(run / PREVIOUS / name, run / name)
            else:
                (run / name).unlink(missing_ok=True)
        raise


def _keep_previous(run: RunDir) -> list[str]:
    """Move the current checkpoint into previous/ before a new one is written, so that a damaged newest
    checkpoint still leaves one to resume from. Each move is a rename; the step stamps catch a half-done set.
    Returns the names moved."""
    if not (run / TRAINER).exists():
        return []
    previous = run / PREVIOUS
    previous.mkdir(exist_ok=True)
    moved = [name for name in FILES if (run / name).exists()]
    for name in moved:
        os.replace(run / name, previous / name)
    return moved


def load_checkpoint(run: RunDir, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Schedule, pos: Position,
                    device: torch.device, scaler: torch.amp.GradScaler | None = None) -> list[LayerState] | None:
    """Restore model, optimizer, schedule, loss scaler, RNG states and `pos` from the newest intact checkpoint
    (falling back to the previous one, with a warning, when the newest is damaged); return the carried hidden
    state."""
    try:
        return _load(run, model, optimizer, schedule, pos, device, scaler)
    except InputError as newest:
        previous = RunDir(run / PREVIOUS)
        if not (previous / TRAINER).exists():
            raise
        try:
            state = _load(previous, model, optimizer, schedule, pos, device, scaler)
        except InputError as e:
            raise InputError(f"both checkpoints are damaged: {newest} / {e}") from None
        # the damaged newest checkpoint is of no use: put the previous one back in its place, so the next
        # save keeps an intact checkpoint in previous/
        for name in FILES:
            if (previous / name).exists():
                os.replace(previous / name, run / name)
        warnings.warn(f"{newest}; resumed from the previous checkpoint, at step {pos.step}", stacklevel=2)
        return state


def _load(run: RunDir, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Schedule, pos: Position,
          device: torch.device, scaler: torch.amp.GradScaler | None = None) -> list[LayerState] | None:
    trainer = run.load_json(TRAINER)
    step = trainer.get("step")
    for name in (LAST, OPTIMIZER, TRAINER_TENSORS):
        if run.tensors_step(name) != step:
            raise InputError(f"{run / name} is from step {run.tensors_step(name)} but {run / TRAINER} from step {step} "
                             "(a crash while checkpointing?): the checkpoint cannot be resumed exactly")
    try:
        for key in (f.name for f in fields(pos)):
            # (keys that checkpoints of older versions lack keep their starting values)
            optional = key in ("skipped_steps", "scaler_skipped", "best_valid")
            setattr(pos, key, trainer.get(key, getattr(pos, key)) if optional else trainer[key])
        run.load_model(model, LAST)
        opt_tensors = run.load_tensors(OPTIMIZER)
        skeleton = trainer["optimizer"]
        opt_state = {"param_groups": skeleton["param_groups"], "state": {}}
        for pid, entry in skeleton["state"].items():
            opt_state["state"][int(pid)] = {k: (opt_tensors[v["tensor"]].to(device) if isinstance(v, dict) else v)
                                            for k, v in entry.items()}
        optimizer.load_state_dict(opt_state)
        schedule.load_state_dict(trainer["schedule"])
        if scaler is not None and scaler.is_enabled() and trainer.get("scaler"):
            scaler.load_state_dict(trainer["scaler"])  # (a checkpoint without one: the scaler starts afresh)
        tensors = run.load_tensors(TRAINER_TENSORS)
        torch.set_rng_state(tensors["rng.torch"])
        cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)
        py = trainer["rng"]["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        npr = trainer["rng"]["numpy"]
        np.random.set_state((npr[0], np.array(npr[1], dtype=np.uint32), npr[2], npr[3], npr[4]))
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
        raise InputError(f"{run / TRAINER} does not match the rest of the run ({type(e).__name__}: {e}): the checkpoint is damaged") from None
    layers = sorted({int(k.split(".")[1]) for k in tensors if k.startswith("hidden.")})
    if not layers or pos.batch == 0:
        return None
    state = []
    for l in layers:
        parts = [tensors[f"hidden.{l}.{k}"].to(device) for k in range(2) if f"hidden.{l}.{k}" in tensors]
        state.append(tuple(parts) if len(parts) == 2 else parts[0])
    return state


class Checkpointer:
    """Writes the checkpoint of a position during training, once per step at most; rank 0 writes it, with every
    process's carried state gathered in a data-parallel run, as one process would carry it."""

    def __init__(self, run: RunDir, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Schedule,
                 scaler: torch.amp.GradScaler, world: World, saved_at: int | None, started: float) -> None:
        self.run, self.model, self.optimizer, self.schedule, self.scaler = run, model, optimizer, schedule, scaler
        self.world, self.saved_at, self.started = world, saved_at, started

    def save(self, pos: Position, state) -> float | None:
        """Write the checkpoint of `pos` and the carried `state`: the seconds it took, or None when this step is on
        disk already (writing it again would push an older one out of previous/)."""
        if self.saved_at == pos.step:
            return None
        self.saved_at = pos.step
        t0 = time.monotonic()
        pos.seconds = t0 - self.started
        if self.world.size > 1 and state is not None:
            state = map_state(lambda t: gather_batch_dim(t, self.world), state)
        if self.world.main:
            save_checkpoint(self.run, self.model, self.optimizer, self.schedule, pos, state, self.scaler)
        return time.monotonic() - t0


def resume(run: RunDir, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Schedule, device: torch.device,
           scaler: torch.amp.GradScaler, world: World, monitor: str) -> tuple[Position, object]:
    """The position and carried state of the run's checkpoint, loaded into the model, optimizer, schedule and scaler."""
    pos = Position()
    state = load_checkpoint(run, model, optimizer, schedule, pos, device, scaler)
    if state is not None and world.size > 1:  # the checkpoint holds every stream's state: keep this process's
        state = map_state(lambda t: t[:, block(t.shape[1], world)], state)
    # a process killed after its last checkpoint logged steps that will now be trained again: drop them
    if world.main:
        run.trim_metrics(pos.step)
    if pos.best_valid is None and pos.best_valid_loss is not None and monitor == "loss":
        pos.best_valid = {"loss": pos.best_valid_loss}  # a checkpoint from before best_valid was kept
    return pos, state
