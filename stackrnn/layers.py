"""Layer specifications and the recurrent layer: one cell per direction, run over time by the reference loop.

Dimension key: T time, B batch, D input features, H hidden units per direction, K directions (1 or 2),
P an LSTM's projection size (h has P features when it is set, H otherwise).

A layer specification (`LSTM(256)`, `GRU(128, bidirectional=True)`, `LSTM(256, proj_size=128)`) says what a
layer is; `RecurrentLayer` is the module built from it once the input size is known, which runs each direction
through recurrence.run_direction: the readable reference loop, or the engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .config import option
from .cells import CELLS, RecurrentCell, check_proj_size, make_cell
from .recurrence import LayerNorm, Recurrence, RecurrentDropout, Zoneout, run_direction
from .regularizers import check_probability, check_rate, drop_weight

# A layer's state: h (K, B, H), or for an LSTM the pair (h, c) of that shape (h (K, B, P) when projected).
# The torch.nn layout, per layer.
LayerState = Tensor | tuple[Tensor, Tensor]


def map_state(fn, state: list[LayerState]) -> list[LayerState]:
    """`fn` applied to every tensor of a stack's state (a list of h, or (h, c), per layer), keeping its shape."""
    return [tuple(fn(t) for t in s) if isinstance(s, tuple) else fn(s) for s in state]


@dataclass(frozen=True, kw_only=True)
class LayerOptions:
    """What a layer may have besides its cell, size, direction and biases, declared once: each field is a keyword of
    LSTM()/GRU()/RNN() and LayerSpec, a key of a `layers` table, and, through StackConfig (which takes these fields),
    a setting of every layer of a stack in every task's config, with its --flag and help."""

    weight_drop: float = option(0.0, "DropConnect on every layer's hidden-to-hidden weights (AWD-LSTM's wdrop)",
                                within="[0, 1)")
    recurrent_dropout: float = option(0.0, "dropout on h inside every layer's recurrence, one mask per sequence "
                                      "(Gal & Ghahramani); such layers run the engine, not the fused kernel",
                                      within="[0, 1)")
    zoneout: float | tuple | list = option(0.0, "zoneout rate of every layer (Krueger et al.), or [h rate, c rate] "
                                           "for LSTMs; such layers run the engine", within="[0, 1]")
    layer_norm: bool = option(False, "layer-normalised cells in every layer (Ba et al.); such layers run the engine")
    proj_size: int = option(0, "project every LSTM layer's h to this many features, below hidden_size (LSTMP, Sak et "
                            "al.; torch.nn.LSTM's proj_size); 0: none", within="[0, inf)")
    forget_bias: float = option(0.0, "a constant added to every LSTM layer's forget gate at every step, not learned "
                                "(TensorFlow's forget_bias; Jozefowicz et al. use 1): an untrained LSTM remembers")

    #: the options only an LSTM layer has: a stack's setting of them is the default of its LSTM layers alone
    LSTM_ONLY = ("proj_size", "forget_bias")

    @property
    def cell_options(self) -> dict:
        """The options the cell itself takes (make_cell's keywords)."""
        return {"layer_norm": self.layer_norm, "proj_size": self.proj_size,
                **({"forget_bias": float(self.forget_bias)} if self.forget_bias else {})}


@dataclass(frozen=True)
class LayerSpec(LayerOptions):
    """What one layer of a stack is: cell type, hidden size per direction, direction, biases, and its options
    (LayerOptions, keywords only).

    Attributes:
        cell: one of "rnn_tanh", "rnn_relu", "gru", "lstm".
        hidden_size: H, units per direction; the layer's output has K * H features.
        bidirectional: run a second cell from the last valid step to the first and concatenate.
        bias: whether the cell has bias_ih and bias_hh.
        weight_drop: DropConnect rate on W_hh (AWD-LSTM), one mask per forward pass, in training only.
        recurrent_dropout: dropout on h_{t-1} inside the recurrence with one mask per sequence for all steps
            (Gal & Ghahramani 2016), in training only.
        zoneout: the probability that a unit keeps its previous value at a step (Krueger et al. 2016); one rate
            for h and c, or a pair (h rate, c rate) for an LSTM. Eval mode uses the expectation.
        layer_norm: layer-normalised cell (Ba et al. 2016; see cells.py).
        proj_size: P, LSTM only: h is projected to P < H features (LSTMP, Sak et al. 2014; torch.nn.LSTM's
            proj_size), so the layer's output has K * P features; c keeps H. 0: no projection.
    Layers with recurrent dropout, zoneout or layer norm (`recurrence`, one object per option: recurrence.py) run
    through the engine (engine.py), not the fused kernel.
    """

    cell: str
    hidden_size: int
    bidirectional: bool = False
    bias: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.cell, str) or self.cell not in CELLS:
            raise ValueError(f"cell: expected one of {sorted(CELLS)}, got {self.cell!r}")
        if isinstance(self.hidden_size, bool) or not isinstance(self.hidden_size, int) or self.hidden_size < 1:
            raise ValueError(f"hidden_size: expected an integer >= 1, got {self.hidden_size!r}")
        if not isinstance(self.bidirectional, bool):
            raise ValueError(f"bidirectional: expected True or False, got {self.bidirectional!r}")
        if not isinstance(self.bias, bool):
            raise ValueError(f"bias: expected True or False, got {self.bias!r}")
        if isinstance(self.forget_bias, bool) or not isinstance(self.forget_bias, (int, float)) or not math.isfinite(self.forget_bias):
            raise ValueError(f"forget_bias: expected a finite number, got {self.forget_bias!r}")
        if self.forget_bias and (self.cell != "lstm" or not self.bias):
            raise ValueError(f"forget_bias: shifts an LSTM's forget-gate bias, but this is a {self.cell!r} layer with "
                             f"bias={self.bias}; got forget_bias={self.forget_bias!r}")
        if not isinstance(self.layer_norm, bool):
            raise ValueError(f"layer_norm: expected True or False, got {self.layer_norm!r}")
        if self.cell != "lstm" and self.proj_size != 0:
            raise ValueError(f"proj_size: only LSTM layers have a projection, got proj_size={self.proj_size!r} "
                             f"for a {self.cell!r} layer")
        check_proj_size(self.proj_size, self.hidden_size)
        check_probability("weight_drop", self.weight_drop)
        check_probability("recurrent_dropout", self.recurrent_dropout)
        rates = self.zoneout if isinstance(self.zoneout, (tuple, list)) else (self.zoneout, self.zoneout)
        if len(rates) != 2:
            raise ValueError(f"zoneout: expected a rate or a pair (h rate, c rate), got {self.zoneout!r}")
        for rate in rates:
            check_rate("zoneout", rate)
        object.__setattr__(self, "zoneout", tuple(float(r) for r in rates) if isinstance(self.zoneout, (tuple, list))
                           else float(self.zoneout))

    @property
    def zoneout_rates(self) -> tuple[float, float]:
        """(rate on h, rate on c); a cell without c (GRU, RNN) has c rate 0."""
        h, c = self.zoneout if isinstance(self.zoneout, tuple) else (self.zoneout, self.zoneout)
        return (h, c) if self.cell == "lstm" else (h, 0.0)

    @property
    def recurrence(self) -> Recurrence:
        """The options that act inside the recurrence, one object each (recurrence.py)."""
        return Recurrence(Zoneout(*self.zoneout_rates) if self.zoneout_rates != (0.0, 0.0) else None,
                          RecurrentDropout(self.recurrent_dropout) if self.recurrent_dropout else None,
                          LayerNorm() if self.layer_norm else None)

    @property
    def fusable(self) -> bool:
        """Whether torch's fused kernel can run this layer: not with a mask, a choice or a normalisation inside
        the recurrence."""
        return not self.recurrence

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def state_sizes(self) -> tuple[int, ...]:
        """The features of each part of one direction's state: (h,) or, for an LSTM, (h, c); h has P when projected."""
        h = self.proj_size or self.hidden_size
        return (h, self.hidden_size) if self.cell == "lstm" else (h,)

    @property
    def output_size(self) -> int:
        """K * H features, or K * P when projected: the directions' h side by side."""
        return self.num_directions * self.state_sizes[0]


def LSTM(hidden_size: int, bidirectional: bool = False, bias: bool = True, **options) -> LayerSpec:
    """An LSTM layer of `hidden_size` units per direction; `options` any of LayerOptions (weight_drop,
    recurrent_dropout, zoneout, layer_norm, proj_size: with P, its h projected to P features)."""
    return LayerSpec("lstm", hidden_size, bidirectional, bias, **options)


def GRU(hidden_size: int, bidirectional: bool = False, bias: bool = True, **options) -> LayerSpec:
    """A GRU layer of `hidden_size` units per direction; `options` any of LayerOptions."""
    return LayerSpec("gru", hidden_size, bidirectional, bias, **options)


def RNN(hidden_size: int, nonlinearity: str = "tanh", bidirectional: bool = False, bias: bool = True,
        **options) -> LayerSpec:
    """An Elman RNN layer of `hidden_size` units per direction; nonlinearity "tanh" or "relu"; `options` any of
    LayerOptions."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
    return LayerSpec(f"rnn_{nonlinearity}", hidden_size, bidirectional, bias, **options)


@dataclass
class LayerTrace:
    """Every step of one layer, for inspection: T steps, B batch, K directions, H units, N gates.

    h: (T, B, K, H) the cell's hidden state after each step (before any residual connection adds the layer's
        input); for the reverse direction, index t is still time step t. (T, B, K, P) for a projected LSTM.
    c: (T, B, K, H) the LSTM cell state, or None for other cells.
    gates: (T, B, K, N * H) the sigmoid gate values of each step, in gate_names order (LSTM: input, forget,
        output; GRU: reset, update), or None for an Elman RNN.
    gate_names: the gates' names.

    At padded steps the state is carried unchanged, as the layer carries it.
    """

    h: Tensor
    c: Tensor | None
    gates: Tensor | None
    gate_names: tuple[str, ...]

    @classmethod
    def of(cls, records: list[list], gate_names: tuple[str, ...]) -> LayerTrace:
        """From run_direction's records of each direction: lists of (t, state, gates)."""
        def stack(pick) -> Tensor:  # (T, B, K, X), time in order whatever the direction ran
            return torch.stack([torch.stack([pick(r) for r in sorted(rec, key=lambda r: r[0])]) for rec in records], dim=2)

        lstm = isinstance(records[0][0][1], tuple)
        return cls(stack(lambda r: r[1][0] if lstm else r[1]), stack(lambda r: r[1][1]) if lstm else None,
                   stack(lambda r: r[2]) if gate_names else None, gate_names)


class RecurrentLayer(nn.Module):
    """One layer of a stack: a cell per direction, and the reference loop over time.

    Inputs: x, state, mask
        x: (T, B, D)
        state: the layer's initial state, h (K, B, H) or (h, c) (h (K, B, P) when projected); None for zeros
        mask: (T, B, 1) bool, True at valid steps of right-padded sequences; None when all steps are valid

    Outputs: output, state
        output: (T, B, K * H) (K * P when projected), the forward and reverse outputs concatenated; zeros at
            padded steps
        state: the final state, same layout as the input state; for the forward direction the state at each
            sequence's last valid step, for the reverse direction the state after step 0

    Attributes:
        cell: the forward-direction cell. cell_reverse: the reverse-direction cell, when bidirectional.
    """

    def __init__(self, spec: LayerSpec, input_size: int) -> None:
        super().__init__()
        self.spec = spec
        self.input_size = input_size
        self.cell = make_cell(spec.cell, input_size, spec.hidden_size, spec.bias, **spec.cell_options)
        if spec.bidirectional:
            self.cell_reverse = make_cell(spec.cell, input_size, spec.hidden_size, spec.bias, **spec.cell_options)

    @property
    def cells(self) -> list[RecurrentCell]:
        return [self.cell, self.cell_reverse] if self.spec.bidirectional else [self.cell]

    @property
    def is_lstm(self) -> bool:
        return self.spec.cell == "lstm"

    def hidden_weights(self, generator: torch.Generator | None = None) -> list[Tensor | None]:
        """W_hh of each direction for one forward pass: weight-dropped in training, else None (the parameter)."""
        if not (self.training and self.spec.weight_drop > 0):
            return [None] * len(self.cells)
        return [drop_weight(cell.weight_hh, self.spec.weight_drop, True, generator) for cell in self.cells]

    def flat_weights(self, weights_hh: list[Tensor | None] | None = None) -> list[Tensor]:
        """All parameters in the order torch's fused kernel takes them: forward cell, then reverse cell."""
        weights_hh = weights_hh or [None] * len(self.cells)
        return [w for cell, whh in zip(self.cells, weights_hh) for w in cell.flat_weights(whh)]

    def zero_state(self, batch: int, *, dtype: torch.dtype, device: torch.device) -> LayerState:
        # h (K, B, H or P), and an LSTM's c (K, B, H)
        parts = tuple(torch.zeros(self.spec.num_directions, batch, size, dtype=dtype, device=device)
                      for size in self.spec.state_sizes)
        return parts if self.is_lstm else parts[0]

    def forward(self, x: Tensor, state: LayerState | None = None, mask: Tensor | None = None,
                weights_hh: list[Tensor | None] | None = None,
                generator: torch.Generator | None = None, trace: list | None = None,
                engine: bool = False) -> tuple[Tensor, LayerState]:
        """`trace` (a list): append this layer's LayerTrace, every step's states and gates (see LayerTrace).
        `engine`: run each direction through engine.py's hand-written backward instead of this module's
        reference loop (same results; not with `trace`, which needs the loop's per-step records)."""
        if state is None:
            state = self.zero_state(x.shape[1], dtype=x.dtype, device=x.device)
        if weights_hh is None:
            weights_hh = self.hidden_weights()
        outputs, finals, records = [], [], []
        recurrence = self.spec.recurrence
        for k, cell in enumerate(self.cells):
            # (h, c)[k] or h[k]: this direction's (B, H) slice of the layer state (h (B, P) when projected)
            s0 = (state[0][k], state[1][k]) if self.is_lstm else state[k]
            options = recurrence.sample(cell, x, self.training, weights_hh[k], generator)
            record = [] if trace is not None else None
            out, s = run_direction(cell, x, s0, mask, k == 1, options, fast=engine, record=record)
            outputs.append(out)
            finals.append(s)
            records.append(record)
        if trace is not None:
            trace.append(LayerTrace.of(records, self.cells[0].gate_names))
        output = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)  # (T, B, K*H), K*P when projected
        if self.is_lstm:
            return output, (torch.stack([s[0] for s in finals]), torch.stack([s[1] for s in finals]))
        return output, torch.stack(finals)

    def extra_repr(self) -> str:
        s = self.spec
        return (f"{s.cell}, {self.input_size} -> {s.hidden_size}" + (f", proj_size={s.proj_size}" if s.proj_size else "")
                + (", bidirectional" if s.bidirectional else ""))

