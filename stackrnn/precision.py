"""Training in reduced precision: autocast for the forward pass and, under fp16, a dynamic loss scale, with its
overflows told apart from bad steps."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch

from .errors import InputError


# fp16 overflow steps in a row before training stops: the scale halves at each, and 40 take the default 2**16 below
# 2**-24, float16's smallest step, where no scale can help
_MAX_OVERFLOWS_IN_A_ROW = 40


class Precision:
    """The forward pass's number format (train.precision): fp32; bf16 autocast; or fp16 autocast with a loss scale.

    fp16's exponent range ends near 6e-8, below which small gradients become zero: the scaler multiplies the
    loss up before backward and divides the gradients back. bf16 has float32's exponent range and needs none.
    Under fp16 a finite loss with a non-finite gradient is the loss scale overflowing float16: the scaler's
    normal business (`step` skips the update, `update` lowers the scale), not a bad step, unless it goes on at
    every scale.

        with precision.autocast:
            loss = model(x, y)
        precision.backward(loss)                # scaled under fp16
        precision.unscale(optimizer)            # the gradients in true units, for clipping and the logged norm
        precision.step(optimizer)               # skipped when the fp16 gradients overflowed
        precision.update()
    """

    def __init__(self, name: str, device: torch.device) -> None:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name)
        self.autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        self.scaler = torch.amp.GradScaler(device.type, enabled=name == "fp16")
        self.overflows_in_a_row = 0

    def backward(self, objective: torch.Tensor) -> None:
        self.scaler.scale(objective).backward()  # (the scaler is the identity unless fp16)

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.unscale_(optimizer)  # so that clipping and the logged norm are in true units

    def overflowed(self, loss: float, norm: float) -> bool:
        return self.scaler.is_enabled() and math.isfinite(loss) and not math.isfinite(norm)

    def count(self, overflow: bool, step: int, run: Path) -> None:
        """Count a step's overflow, or its absence; overflows at every scale stop training."""
        self.overflows_in_a_row = self.overflows_in_a_row + 1 if overflow else 0
        if self.overflows_in_a_row >= _MAX_OVERFLOWS_IN_A_ROW:
            raise InputError(
                f"training stopped: {self.overflows_in_a_row} fp16 steps in a row had a non-finite gradient while the "
                f"loss scale fell to {self.scaler.get_scale():.3g} (up to step {step}): the gradients are not finite "
                f"in float16 at any scale; train with --precision bf16 or fp32, lower --lr or clip with --clip (the "
                f"last checkpoint in {run} is intact)")

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.step(optimizer)  # optimizer.step(), unless fp16 found an inf or nan gradient

    def update(self) -> None:
        self.scaler.update()  # fp16: halve the scale after an overflow, double it after 2000 clean steps
