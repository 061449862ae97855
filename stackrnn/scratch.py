"""Memory kept from call to call for weight drop's dropped W_hh on the CPU (reusable()).

Why keep it: glibc hands a large block back to the system when it is freed (or trims the top of its heap once
more than a threshold lies free there), so a fresh multi-megabyte tensor costs a page fault for every 4 KiB the
first time it is written. A weight-dropped stack's training step measured 12% (hidden 256) and 22% (hidden 1024)
slower with fresh memory (docs/benchmarks.md). GPU memory comes from torch's caching allocator, which already
keeps blocks: there this module hands out fresh tensors. (Per-name buffers for the engine's transient work were
kept here too, until a whole training step measured no faster with them.)

reusable(): memory for a result that outlives the call (a weight-dropped W_hh, which the fused kernel's
autograd node holds until backward), kept per owner (the weight it is made from) and handed out again only once
nothing but this module holds it: a tensor, a view of it or a graph that saved it keeps it out of use.
"""

from __future__ import annotations

import threading
import weakref

import torch
from torch import Tensor

from . import settings, torch_private

MAX_BYTES = 256 << 20  # kept per weight: beyond this, a page fault per 4 KiB is small beside the work

POOL = 2  # memory kept per owner: a second forward pass before the first one's backward finds the second

_pools: dict[int, list[Tensor]] = {}  # id(owner) -> tensors whose storage this module keeps (dropped with owner)
_pools_lock = threading.Lock()


def _free(kept: Tensor) -> bool:
    """Whether only `kept` (and the storage object asked for here) refers to kept's memory."""
    return torch_private.storage_use_count(kept) == 2


def reusable(owner: Tensor, like: Tensor) -> Tensor:
    """An empty tensor of like's shape, dtype and device (contiguous), contents undefined: on the CPU, memory kept
    for `owner` that nothing else holds any more, else fresh memory, kept for owner's next call while fewer than
    POOL are. The tensor is a new one each time (its own autograd history and version counter) over that memory.
    Results over MAX_BYTES get fresh memory: so much kept idle per weight would cost more than its faults."""
    big = like.numel() * like.element_size() > MAX_BYTES
    # without torch's use count (private) nothing can tell when kept memory is free: fresh memory then
    if like.device.type != "cpu" or not torch_private.HAS_USE_COUNT or big or not settings.pool:
        return torch.empty(like.shape, dtype=like.dtype, device=like.device)
    with _pools_lock:
        pool = _pools.get(id(owner))
        if pool is None:
            pool = _pools[id(owner)] = []
            weakref.finalize(owner, _pools.pop, id(owner), None)
        free = [i for i, kept in enumerate(pool) if _free(kept)]
        fits = [i for i in free if pool[i].dtype == like.dtype and pool[i].shape == like.shape]
        if fits:
            kept = pool[fits[0]]
        else:
            kept = torch.empty(like.shape, dtype=like.dtype, device=like.device)
            if free:  # memory of another shape (the weight was resized) that nobody holds: this replaces it
                pool[free[0]] = kept
            elif len(pool) < POOL:
                pool.append(kept)
            else:
                return kept  # every kept one is in use: this one is not kept
        return kept.new_empty(0).set_(kept.untyped_storage(), 0, kept.shape, kept.stride())


def release() -> None:
    """Drops every owner's kept memory (for tests, and for users who want the memory back)."""
    with _pools_lock:
        for pool in _pools.values():
            pool.clear()
