"""Recurrent cells: one time step each, written as their equations.

Dimension key: B batch, T time, D input features, H hidden units, G = gates * H, P an LSTM's projection size.

Every cell owns the four parameters torch.nn gives its cells, with the same names, shapes and gate order:

    weight_ih (G, D)   weight_hh (G, H)   bias_ih (G,)   bias_hh (G,)

so a weight copies one to one to and from torch.nn.RNN / GRU / LSTM (and their *Cell variants). An LSTM with a
projection (`proj_size=P`, as torch.nn.LSTM's) also owns weight_hr (P, H); its h has P features, so its
weight_hh is (G, P). `output_size` is h's size: P when projected, else H.

A step is split in two, because the input part does not depend on the previous state:

    gi = project_input(x)        # x (T, B, D) -> gi (T, B, G): one matrix product for all steps
    state = recur(gi[t], state)  # the recurrence: only h @ W_hh and the pointwise gate math

`forward(x_t, state)` runs one step on (B, D) input, like torch.nn.LSTMCell.

Layer normalisation (Ba et al. 2016), `layer_norm=True`: each gate's block of W_ih x and of W_hh h is
normalised on its own (zero mean, unit variance over its H units, times a learned gain) before the bias is
added, and an LSTM's output reads tanh(LN(c')) instead of tanh(c'). It lives in project_input, project_hidden
and the LSTM's output, so every path that runs a cell (the step loop, generation, inspection) runs it alike.
torch's fused kernels have no layer norm: such layers run the engine (engine.py), which writes the same math
with its derivative.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# The state of a cell: h (B, H) for RNN and GRU, the pair (h, c) for LSTM (h (B, P) when projected).
State = Tensor | tuple[Tensor, Tensor]


class RecurrentCell(nn.Module):
    """Shared parameters and initialisation; subclasses write only their equations.

    Attributes:
        weight_ih: (gates * H, D) input-to-hidden weights, gate blocks stacked in the documented order.
        weight_hh: (gates * H, H) hidden-to-hidden weights; (gates * H, P) for an LSTM projected to P.
        bias_ih, bias_hh: (gates * H,) biases, or None when bias=False.
    """

    num_gates: int = 1
    #: the sigmoid gates `gates` reports, in its order (inspection: how often they saturate)
    gate_names: tuple[str, ...] = ()
    #: name of the fused kernel in torch._VF ("lstm", "gru", "rnn_tanh", "rnn_relu")
    kernel: str = ""
    #: the class torch.nn uses for a whole layer of this cell
    torch_class: type[nn.RNNBase] = nn.RNN
    #: P, the size of h when an LSTM projects it (LSTMCell sets it); 0 for no projection
    proj_size: int = 0

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, layer_norm: bool = False) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.layer_norm = bool(layer_norm)
        gates = self.num_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gates, input_size))
        self.weight_hh = nn.Parameter(torch.empty(gates, self.output_size))  # it multiplies h
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gates))
            self.bias_hh = nn.Parameter(torch.empty(gates))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        if self.layer_norm:  # per-gate gains of LN(W_ih x) and LN(W_hh h); the biases above are their shifts
            self.norm_ih = nn.Parameter(torch.empty(self.num_gates, hidden_size))
            self.norm_hh = nn.Parameter(torch.empty(self.num_gates, hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torch.nn's initialisation: U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias.
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, p in self.named_parameters():
            if name.startswith("norm_"):  # layer norm starts as the identity: gains 1, shifts 0
                nn.init.zeros_(p) if name.endswith("bias") else nn.init.ones_(p)
            else:
                nn.init.uniform_(p, -bound, bound)

    @property
    def output_size(self) -> int:
        """The size of h, which the cell emits and feeds back: P for a projected LSTM, else H."""
        return self.proj_size or self.hidden_size

    def flat_weights(self, weight_hh: Tensor | None = None) -> list[Tensor]:
        """The parameters in the order torch's fused kernels take them; `weight_hh` replaces W_hh (weight drop)."""
        whh = self.weight_hh if weight_hh is None else weight_hh
        if self.bias:
            return [self.weight_ih, whh, self.bias_ih, self.hidden_bias()]
        return [self.weight_ih, whh]

    def hidden_bias(self) -> Tensor | None:
        """b_hh as every path (this cell's step, torch's fused kernel, the engine) adds it to h W_hh^T: the one
        place a cell can shape its gates' bias without a parameter of its own."""
        return self.bias_hh

    # -- the step ---------------------------------------------------------------------------------------------
    def project_input(self, x: Tensor, bias: Tensor | None = None, linear=nn.functional.linear) -> Tensor:
        """x (..., D) -> gi (..., G) = x W_ih^T + b_ih (LN(x W_ih^T) + b_ih with layer norm), for any number of
        leading (time, batch) dims. `bias` replaces b_ih (the engine passes b_ih + b_hh, added inside the product),
        and `linear` torch's linear (the engine passes its own, which computes the same)."""
        bias = self.bias_ih if bias is None else bias
        if not self.layer_norm:
            return linear(x, self.weight_ih, bias)
        return self._normalised(linear(x, self.weight_ih), self.norm_ih, bias)

    def _normalised(self, z: Tensor, gain: Tensor, bias: Tensor | None) -> Tensor:
        """Layer norm of each gate's block of z (..., G) over its H units, times the gain (gates, H), plus bias."""
        blocks = z.unflatten(-1, (self.num_gates, self.hidden_size))
        z = (nn.functional.layer_norm(blocks, (self.hidden_size,)) * gain).flatten(-2)
        return z if bias is None else z + bias

    def project_hidden(self, h: Tensor, weight_hh: Tensor | None = None, h_mask: Tensor | None = None) -> Tensor:
        """h (B, H) (or (B, P) when projected) -> gh (B, G) = h W_hh^T + b_hh. `weight_hh` replaces W_hh for this
        call (weight drop); `h_mask` (like h) multiplies h in this product only (recurrent dropout), not where the
        cell uses h itself."""
        if h_mask is not None:
            h = h * h_mask
        weight = self.weight_hh if weight_hh is None else weight_hh
        if not self.layer_norm:
            return nn.functional.linear(h, weight, self.hidden_bias())
        return self._normalised(nn.functional.linear(h, weight), self.norm_hh, self.hidden_bias())

    def recur(self, gi: Tensor, state: State, weight_hh: Tensor | None = None, h_mask: Tensor | None = None) -> State:
        """One step from the projected input gi (B, G) and the previous state. Subclasses write the math."""
        raise NotImplementedError

    def gates(self, gi: Tensor, state: State, weight_hh: Tensor | None = None, h_mask: Tensor | None = None) -> Tensor | None:
        """The sigmoid gate values (B, len(gate_names) * H) of the step `recur(gi, state, weight_hh, h_mask)`
        takes, in gate_names order; None for a cell without gates. For inspection only: training never calls it."""
        return None

    def forward(self, x: Tensor, state: State | None = None) -> State:
        """One step: x (B, D), state or None (zeros) -> the new state."""
        if state is None:
            state = self.zero_state(x.shape[0], dtype=x.dtype, device=x.device)
        return self.recur(self.project_input(x), state)

    # -- the state --------------------------------------------------------------------------------------------
    def zero_state(self, batch: int, *, dtype: torch.dtype, device: torch.device) -> State:
        return torch.zeros(batch, self.output_size, dtype=dtype, device=device)

    @staticmethod
    def output(state: State) -> Tensor:
        """The part of the state the cell emits as its output: h (B, H), or (B, P) for a projected LSTM."""
        return state

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")
                + (", layer_norm=True" if self.layer_norm else ""))


class RNNCell(RecurrentCell):
    """Elman RNN step.

        h' = act(W_ih x + b_ih + W_hh h + b_hh),   act = tanh or relu
    """

    num_gates = 1
    torch_class = nn.RNN

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 layer_norm: bool = False) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self.kernel = f"rnn_{nonlinearity}"
        super().__init__(input_size, hidden_size, bias, layer_norm)

    def recur(self, gi: Tensor, h: Tensor, weight_hh: Tensor | None = None, h_mask: Tensor | None = None) -> Tensor:
        pre = gi + self.project_hidden(h, weight_hh, h_mask)  # (B, H)
        return torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity!r}"


class GRUCell(RecurrentCell):
    """Gated recurrent unit step (Cho et al. 2014, as torch.nn.GRU computes it). Gate order: r, z, n.

        r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)          reset gate
        z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)          update gate
        n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))       candidate; r scales the hidden part *with* its bias
        h' = (1 - z) * n + z * h
    """

    num_gates = 3
    gate_names = ("reset", "update")
    kernel = "gru"
    torch_class = nn.GRU

    def gates(self, gi: Tensor, h: Tensor, weight_hh: Tensor | None = None, h_mask: Tensor | None = None) -> Tensor:
        pre = gi + self.project_hidden(h, weight_hh, h_mask)  # (B, 3H); the candidate's third is not a gate
        return torch.sigmoid(pre[:, : 2 * self.hidden_size])

    def recur(self, gi: Tensor, h: Tensor, weight_hh: Tensor | None = None, h_mask: Tensor | None = None) -> Tensor:
        i_r, i_z, i_n = gi.chunk(3, dim=-1)  # (B, H) each
        h_r, h_z, h_n = self.project_hidden(h, weight_hh, h_mask).chunk(3, dim=-1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return (1 - z) * n + z * h


class LSTMCell(RecurrentCell):
    """Long short-term memory step (Hochreiter & Schmidhuber 1997, with forget gate). Gate order: i, f, g, o.

        i  = sigmoid(W_ii x + b_ii + W_hi h + b_hi)    input gate
        f  = sigmoid(W_if x + b_if + W_hf h + b_hf)    forget gate
        g  = tanh(W_ig x + b_ig + W_hg h + b_hg)       candidate cell
        o  = sigmoid(W_io x + b_io + W_ho h + b_ho)    output gate
        c' = f * c + i * g
        h' = o * tanh(c')                              (with layer_norm: o * tanh(LN(c')))
        h' = W_hr (o * tanh(c'))                       with a projection (proj_size = P > 0; LSTMP, Sak et al. 2014)

    With forget_bias b_f (TensorFlow's), f = sigmoid(... + b_hf + b_f): a constant, in no parameter and no gradient.

    The state is the pair (h, c): h (B, H), or (B, P) when projected, and c (B, H); the output is h. The
    projection shrinks what the recurrence multiplies, W_hh (G, P), and what the next layer reads, while the
    memory c keeps H units; weight_hr (P, H) is torch.nn.LSTM's weight_hr_l{k}.
    """

    num_gates = 4
    gate_names = ("input", "forget", "output")
    kernel = "lstm"
    torch_class = nn.LSTM

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, layer_norm: bool = False,
                 proj_size: int = 0, forget_bias: float = 0.0) -> None:
        check_proj_size(proj_size, hidden_size)
        self.proj_size = proj_size  # before the base class makes W_hh, which is as wide as h
        super().__init__(input_size, hidden_size, bias, layer_norm)
        self.forget_bias = forget_bias
        if forget_bias:  # (G,): b_f on the forget gate's quarter; a buffer, so it moves with the cell but is not saved
            offset = torch.zeros(self.num_gates * hidden_size)
            offset[hidden_size:2 * hidden_size] = forget_bias
            self.register_buffer("forget_offset", offset, persistent=False)
        if self.layer_norm:  # LN(c') in the output, with a gain and a shift of its own
            self.norm_c = nn.LayerNorm(hidden_size)
        if proj_size:
            self.weight_hr = nn.Parameter(torch.empty(proj_size, hidden_size))
            self.reset_parameters()  # again, now with W_hr: torch.nn's U(-1/sqrt(H), 1/sqrt(H)) for it too

    def hidden_bias(self) -> Tensor | None:
        return self.bias_hh + self.forget_offset.to(self.bias_hh.dtype) if self.forget_bias else self.bias_hh

    def flat_weights(self, weight_hh: Tensor | None = None) -> list[Tensor]:
        # torch's kernels take W_hr last: (w_ih, w_hh, b_ih, b_hh, w_hr) per layer and direction
        return super().flat_weights(weight_hh) + ([self.weight_hr] if self.proj_size else [])

    def gates(self, gi: Tensor, state: tuple[Tensor, Tensor], weight_hh: Tensor | None = None,
              h_mask: Tensor | None = None) -> Tensor:
        i, f, _, o = (gi + self.project_hidden(state[0], weight_hh, h_mask)).chunk(4, dim=-1)
        return torch.sigmoid(torch.cat([i, f, o], dim=-1))

    def recur(self, gi: Tensor, state: tuple[Tensor, Tensor], weight_hh: Tensor | None = None, h_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h, c = state
        i, f, g, o = (gi + self.project_hidden(h, weight_hh, h_mask)).chunk(4, dim=-1)  # (B, H) each
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(self.norm_c(c) if self.layer_norm else c)  # (B, H)
        if self.proj_size:
            h = nn.functional.linear(h, self.weight_hr)  # (B, P) = (o * tanh(c')) W_hr^T
        return h, c

    def zero_state(self, batch: int, *, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        h = torch.zeros(batch, self.output_size, dtype=dtype, device=device)  # (B, P) when projected
        c = torch.zeros(batch, self.hidden_size, dtype=dtype, device=device)  # (B, H)
        return h, c

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", proj_size={self.proj_size}" if self.proj_size else "")

    @staticmethod
    def output(state: tuple[Tensor, Tensor]) -> Tensor:
        return state[0]


#: cell names accepted by StackedRNN(cell=...), mapped to (cell class, extra constructor arguments)
CELLS: dict[str, tuple[type[RecurrentCell], dict]] = {
    "rnn_tanh": (RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (RNNCell, {"nonlinearity": "relu"}),
    "gru": (GRUCell, {}),
    "lstm": (LSTMCell, {}),
}


def make_cell(name: str, input_size: int, hidden_size: int, bias: bool = True, layer_norm: bool = False,
              proj_size: int = 0, **options) -> RecurrentCell:
    """Build the cell registered under `name` (one of CELLS); `proj_size` and `options` (forget_bias) only for an
    LSTM."""
    cls, kwargs = CELLS[name]
    if proj_size:
        kwargs = {**kwargs, "proj_size": proj_size}
    return cls(input_size, hidden_size, bias=bias, layer_norm=layer_norm, **kwargs, **options)


def check_proj_size(proj_size, hidden_size: int) -> None:
    """An LSTM's projection size: an integer in [0, hidden_size), 0 meaning none (torch.nn.LSTM's rule: a
    projection only ever shrinks h). A ValueError naming proj_size and the values otherwise."""
    if isinstance(proj_size, bool) or not isinstance(proj_size, int) or not 0 <= proj_size < hidden_size:
        raise ValueError(f"proj_size: expected an integer in [0, hidden_size = {hidden_size}) (0: no projection), "
                         f"got {proj_size!r}")
