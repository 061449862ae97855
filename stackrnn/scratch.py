"""Buffers kept from call to call for the engine's transient work on the CPU: room that a computation needs only
until it returns (a product's packed operand, a layer-normalised recurrence's gradient of h W_hh^T).

Why keep them: glibc hands a large block back to the system when it is freed (or trims the top of its heap once
more than a threshold lies free there), so a fresh multi-megabyte tensor costs a page fault for every 4 KiB the
first time it is written. On the project's build machine a layer-normalised LSTM stack at hidden 256 took about
2,500 such faults per training step, several milliseconds of a 40-50 ms step; packing a weight gradient's
operand into fresh memory took twice as long as into memory written before. GPU memory comes from torch's
caching allocator, which already keeps blocks: there this module hands out fresh tensors.

One buffer per name, per thread (autograd may run backward on threads of its own) and per dtype, on the CPU
(like's device, whatever torch's default device is); it grows to the largest size asked for, up to MAX_BYTES;
larger requests get fresh tensors that are not kept.
A caller must be done with a buffer before anything on its thread asks for the same name again.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor

MAX_BYTES = 64 << 20  # kept per name and thread: beyond this, a page fault per 4 KiB is small beside the work

_local = threading.local()


def buffer(name: str, like: Tensor, numel: int) -> Tensor:
    """A 1-D tensor of `numel` values of like's dtype, on like's device, whose contents are undefined: on the CPU
    the buffer kept under `name` for this thread where it fits in MAX_BYTES, else a fresh one."""
    if like.device.type != "cpu" or numel * like.element_size() > MAX_BYTES:
        return like.new_empty(numel)
    kept = getattr(_local, "buffers", None)
    if kept is None:
        kept = _local.buffers = {}
    key = name, like.dtype
    held = kept.get(key)
    if held is None or held.numel() < numel:
        held = kept[key] = like.new_empty(numel)  # like's device (the CPU), not torch's default one
    return held[:numel]


def release() -> None:
    """Drops this thread's buffers (for tests, and for users who want the memory back)."""
    _local.buffers = {}
