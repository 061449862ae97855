"""Data-parallel training with torch.distributed: the few collective steps the training loop needs.

Launched by torchrun (`torchrun --nproc-per-node N -m stackrnn.cli train ...`), or by `stackrnn train --nproc N`,
which runs torchrun for you. Every process builds the same model from the same seed, reads the same global
batch and trains on its own shard of it (`Task.shard`); DistributedDataParallel averages the gradients, so
the update is the one a single process makes on the whole batch. Only rank 0 writes the run directory. gloo
on CPU, NCCL on GPU; nothing home-made carries the gradients.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import InputError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Whether this process writes the run directory, the metrics and the progress bar."""
        return self.rank == 0


def launched() -> bool:
    """Whether torchrun started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> World:
    """Join the process group torchrun describes in the environment (once); a single process is World(0, 1)."""
    if not launched():
        return World()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return World(dist.get_rank(), dist.get_world_size())


def shutdown() -> None:
    """Leave the process group, if this process joined one (torch warns about a group never destroyed)."""
    if dist.is_available() and dist.is_initialized():
        # wait for every process first: one tearing down gloo while another still works makes that one abort
        dist.barrier()
        dist.destroy_process_group()


def exit_worker(code: int) -> None:
    """End a torchrun worker at once, once its output is flushed. The ordinary interpreter exit sometimes aborts
    ("terminate called without an active exception") as torch's native threads are torn down after gloo's, and
    torchrun then reports the finished run as failed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def device_of(device: torch.device) -> torch.device:
    """Each process of a multi-GPU run uses its own GPU."""
    if launched() and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def all_sum(values: list[float], world: World, device: torch.device) -> list[float]:
    """The element-wise sum of `values` over all processes (the values themselves in a single process)."""
    if world.size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def agree(code: int, world: World, device: torch.device) -> int:
    """The largest of every process's `code`: so that all stop at the same step when any one must (a time
    budget runs out on one clock, Ctrl-C reaches one process first)."""
    if world.size == 1:
        return code
    t = torch.tensor([code], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


class DataParallel:
    """What a training step does differently when it is one of `world.size` processes: each process trains on
    its shard of the global batch, the gradients are averaged by DistributedDataParallel, and the decisions to
    stop are taken together. In a single process every method is the identity.

        net = parallel.wrap(model)
        batch = parallel.shard(task, batch)
        parallel.objective(step).backward()      # weighted: the gradient of the whole batch's mean loss
        loss, items = parallel.batch_loss(step)  # the whole batch's
    """

    def __init__(self, world: World, device: torch.device) -> None:
        self.world, self.device = world, device
        self._sums = (0.0, 0.0)  # the whole batch's loss sum and items, of the last step weighed

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """What the steps run: the model, or its DistributedDataParallel wrapper, which averages the gradients."""
        return torch.nn.parallel.DistributedDataParallel(model) if self.world.size > 1 else model

    def shard(self, task, batch):
        """This process's part of the global `batch` (task: the run's tasks.Task)."""
        return task.shard(batch, self.world) if self.world.size > 1 else batch

    def objective(self, step) -> torch.Tensor:
        """What to backpropagate of a tasks.Step. DDP averages gradients over processes; weighting each by its
        share of the batch's items makes that the gradient of the whole batch's mean, even when shards differ
        in size."""
        if self.world.size == 1:
            return step.objective
        self._sums = all_sum([step.loss.item() * step.items, step.items], self.world, self.device)
        return step.objective * (step.items * self.world.size / self._sums[1])

    def batch_loss(self, step) -> tuple[float, int]:
        """The whole batch's mean loss and its items, for the step `objective` weighed last (read after the
        backward pass, so that a single process waits for the loss only once it is needed)."""
        if self.world.size == 1:
            return step.loss.item(), step.items
        loss_sum, items = self._sums
        return loss_sum / items, int(items)

    def agree(self, code: int) -> int:
        """The largest of every process's `code` (see `agree`)."""
        return agree(code, self.world, self.device)


def block(total: int, world: World) -> slice:
    """This process's contiguous block of `total` rows (total divisible by the world size)."""
    size = total // world.size
    return slice(world.rank * size, (world.rank + 1) * size)


def gather_batch_dim(t: torch.Tensor, world: World, dim: int = 1) -> torch.Tensor:
    """Every process's block of `t` along `dim`, joined in rank order: a carried state as one process has it."""
    if world.size == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(world.size)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=dim)


def check_launch(device: str, nproc: int) -> None:
    """An InputError unless `nproc` processes can train on `device` ("auto", "cpu", "cuda", "mps") here."""
    if device == "mps":
        raise InputError("--nproc: data-parallel training runs on cpu or cuda, not mps")
    if device in ("cuda", "auto") and torch.cuda.is_available() and torch.cuda.device_count() < nproc:
        raise InputError(f"--nproc {nproc}: this machine has {torch.cuda.device_count()} GPUs, one per process is "
                         "needed: use fewer processes, or --device cpu")


def launch(nproc: int, argv: list[str]) -> int:
    """Run this command line again under torchrun with `nproc` processes on this machine; its exit status."""
    if nproc < 1:
        raise InputError(f"--nproc: expected an integer >= 1, got {nproc}")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "stackrnn.cli", *argv]
    return subprocess.run(command).returncode
