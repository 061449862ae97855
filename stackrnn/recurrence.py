"""What a layer does inside its recurrence, and the one entry point that runs one direction of a layer.

Dimension key: T time, B batch, D input features, H hidden units, P h's features (an LSTM's projection size where
it has one, else H).

A layer's options that act inside the recurrence are one small object each: `Zoneout`, `RecurrentDropout` and
`LayerNorm`, gathered per layer in a `Recurrence` (built from the LayerSpec: `spec.recurrence`). Each knows what it
draws for a pass and what the two paths that run a direction read from it: the readable reference loop below, and
the engine (engine.py), which computes the same with a hand-written backward. A layer with any of them cannot go to
torch's fused kernel. For one forward pass of one direction, `Recurrence.sample` draws what is drawn once per pass
(recurrent dropout's mask) into a `Pass`, which `run_direction` hands to the path it picks; what is drawn per
step (zoneout's masks) each path draws from the Pass, the same way from the same generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from . import engine
from .cells import RecurrentCell, State
from .regularizers import recurrent_mask, zoneout, zoneout_factors, zoneout_keeps


@dataclass(frozen=True)
class Zoneout:
    """Units keep their previous value at a step with probability h (for h) and c (an LSTM's c; Krueger et al.
    2016); eval uses the expectation. The masks are fresh at every step, drawn for all steps at once, h's first."""

    h: float
    c: float = 0.0

    def keeps(self, x: Tensor, sizes: tuple[int, int], training: bool, generator) -> tuple[Tensor | None, ...]:
        """The reference loop's masks (T, B, P) and (T, B, H), bool, True where a unit keeps its value; None in eval
        or where a rate is 0."""
        return zoneout_keeps(x.shape[0], x.shape[1], sizes, (self.h, self.c), training, x, generator)

    def factors(self, x: Tensor, sizes: tuple[int, int], training: bool, generator,
                dtype: torch.dtype) -> tuple[Tensor | None, ...]:
        """The same masks (the same draws) as 1.0 / 0.0 in `dtype`: the engine's keep factors."""
        return zoneout_factors(x.shape[0], x.shape[1], sizes, (self.h, self.c), training, x, dtype, generator)


@dataclass(frozen=True)
class RecurrentDropout:
    """Dropout on h_{t-1} inside h W_hh^T, one (B, P) mask per sequence for all steps (Gal & Ghahramani 2016), in
    training only; the state, the output and a GRU's interpolation keep the undropped h."""

    rate: float

    def mask(self, batch: int, size: int, like: Tensor, generator) -> Tensor:
        return recurrent_mask(batch, size, self.rate, like, generator)


@dataclass(frozen=True)
class LayerNorm:
    """Layer-normalised cell (Ba et al. 2016): the cell owns the gains and computes it (cells.py); the engine reads
    the gains from the cell (engine.run_direction)."""


NO_ZONEOUT = Zoneout(0.0, 0.0)


@dataclass(frozen=True)
class Recurrence:
    """A layer's options inside the recurrence (None where off). Falsy when there are none: torch's fused kernel
    can run such a layer."""

    zoneout: Zoneout | None = None
    recurrent_dropout: RecurrentDropout | None = None
    layer_norm: LayerNorm | None = None

    def __bool__(self) -> bool:
        return any(option is not None for option in (self.zoneout, self.recurrent_dropout, self.layer_norm))

    def sample(self, cell: RecurrentCell, x: Tensor, training: bool, weight_hh: Tensor | None = None,
               generator: torch.Generator | None = None) -> Pass:
        """One direction's options for one forward pass over x (T, B, D): recurrent dropout's mask drawn here (in
        training); `weight_hh` the pass's W_hh where weight drop replaced it."""
        h_mask = None
        if training and self.recurrent_dropout is not None:  # on h, so (B, P) when projected
            h_mask = self.recurrent_dropout.mask(x.shape[1], cell.output_size, x, generator)
        return Pass(weight_hh, h_mask, self.zoneout or NO_ZONEOUT, training, generator)


@dataclass
class Pass:
    """One direction's recurrence options for one forward pass, as both paths read them.

    weight_hh: W_hh for the pass (weight drop), or None for the cell's own. h_mask: (B, P) recurrent dropout's
    mask, or None. zoneout: the rates (both 0 without). training: whether zoneout draws masks (else it keeps the
    expectation). generator: where masks are drawn from (None: torch's global generator)."""

    weight_hh: Tensor | None = None
    h_mask: Tensor | None = None
    zoneout: Zoneout = NO_ZONEOUT
    training: bool = False
    generator: torch.Generator | None = None


def run_direction(cell: RecurrentCell, x: Tensor, state: State, mask: Tensor | None, reverse: bool,
                  options: Pass | None = None, fast: bool = False,
                  record: list | None = None) -> tuple[Tensor, State]:
    """Run `cell` over x (T, B, D) from `state`, forward in time or in reverse. Returns (output (T, B, P), final
    state); c (an LSTM's) has H features.

    `options`: the pass's recurrence options (Pass()). With a mask (T, B, 1) bool, a padded step leaves the state
    unchanged and outputs zeros; padding is on the right, so the reverse direction keeps its initial state through
    the padding and starts at each sequence's last valid step. `fast`: through the engine (engine.py, a
    hand-written backward; the same results), where it runs this cell and nothing asks for `record`; else the
    reference loop, which with `record` (a list) appends (t, state after the step, the cell's gate values) at
    every step, for inspection."""
    options = options or Pass()
    if fast and record is None and engine.supports(cell):
        return engine.run_direction(cell, x, state, mask, reverse, options)
    return reference_loop(cell, x, state, mask, reverse, options, record)


def reference_loop(cell: RecurrentCell, x: Tensor, state: State, mask: Tensor | None, reverse: bool, options: Pass,
                   record: list | None = None) -> tuple[Tensor, State]:
    """run_direction's readable path, which every fast one is tested against: autograd records every step."""
    weight_hh, h_mask, rates = options.weight_hh, options.h_mask, options.zoneout
    # one mask per part of the state: h (T, B, P), c (T, B, H), bool, or None
    keep_h, keep_c = rates.keeps(x, (cell.output_size, cell.hidden_size), options.training, options.generator)
    gi = cell.project_input(x)  # (T, B, G): the input half of every step in one matrix product
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    outputs: list[Tensor] = [None] * x.shape[0]  # type: ignore[list-item]
    for t in steps:
        new = cell.recur(gi[t], state, weight_hh, h_mask)
        if rates.h or rates.c:
            if isinstance(new, tuple):
                new = (zoneout(new[0], state[0], rates.h, None if keep_h is None else keep_h[t]),
                       zoneout(new[1], state[1], rates.c, None if keep_c is None else keep_c[t]))
            else:
                new = zoneout(new, state, rates.h, None if keep_h is None else keep_h[t])
        if mask is not None:
            valid = mask[t]  # (B, 1)
            if isinstance(new, tuple):
                new = tuple(torch.where(valid, n, s) for n, s in zip(new, state))
            else:
                new = torch.where(valid, new, state)
            outputs[t] = torch.where(valid, cell.output(new), 0.0)
        else:
            outputs[t] = cell.output(new)
        if record is not None:
            record.append((t, new, cell.gates(gi[t], state, weight_hh, h_mask)))
        state = new
    return torch.stack(outputs), state
