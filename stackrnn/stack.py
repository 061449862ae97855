"""StackedRNN: recurrent layers stacked so each layer's output at every step is the next layer's input.

Dimension key: T time, B batch, D input features, H hidden units per direction, K directions, L layers,
P an LSTM layer's projection size (its h and output have P features per direction instead of H).

For layer l = 1..L at step t, with h_t^(0) = x_t:

    h_t^(l) = cell_l(h_t^(l-1), h_{t-1}^(l))        (state (h, c) for an LSTM)
    optional residual:  h_t^(l) += P_l h_t^(l-1)      (from layer k upward; P_l a projection where sizes differ)
        or highway-gated:  h_t^(l) = g * h_t^(l) + (1 - g) * P_l h_t^(l-1),  g = sigmoid(W_g h_t^(l-1) + b_g)
    dropout between layers (standard, or variational: one mask for all t), never after the top one

Execution is planned once per call: maximal runs of alike layers (same cell, sizes, direction, bias) go through
torch's fused kernel in one call; a layer the kernel cannot run (zoneout, recurrent dropout, layer norm) goes
through the engine (engine.py, a hand-written backward). `fused=False` runs the readable step loop of
`RecurrentLayer` instead. All read the same parameters.
"""

from __future__ import annotations

import dataclasses

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .cells import CELLS
from .fused import can_fuse, run_fused
from .layers import LayerOptions, LayerSpec, LayerState, RecurrentLayer
from .regularizers import sequence_dropout

_TORCH_CELL = {nn.LSTM: "lstm", nn.GRU: "gru"}


class StackedRNN(nn.Module):
    """A stack of recurrent layers, each with its own cell type, size and direction.

    Two ways to build one:

        StackedRNN(28, 256, num_layers=2, cell="lstm")                 # like torch.nn.LSTM
        StackedRNN(28, 256, num_layers=2, proj_size=128)               # like torch.nn.LSTM(..., proj_size=128)
        StackedRNN(28, layers=[LSTM(256), GRU(128, bidirectional=True), LSTM(256)], dropout=0.3)

    Args:
        input_size: D, features of each input step.
        hidden_size: H for every layer (torch.nn-like form; leave out with `layers`).
        num_layers: L (torch.nn-like form).
        cell: "rnn_tanh", "rnn_relu", "gru" or "lstm" (torch.nn-like form).
        bidirectional: every layer bidirectional (torch.nn-like form).
        dropout: probability of dropping each output of every layer but the top one, in training.
        batch_first: inputs and outputs are (B, T, ...) instead of (T, B, ...). States stay (K, B, H).
        bias: cells have biases (torch.nn-like form).
        proj_size: P < H, every LSTM layer's h projected to P features, as torch.nn.LSTM's (torch.nn-like form;
            per layer: LSTM(H, proj_size=P)). 0: none.
        layers: explicit layer specifications, bottom first, from stackrnn.LSTM / GRU / RNN.
        residual: add each layer's input to its output: True from the second layer up, or an int k from layer k
            (counting from 1) up, as GNMT does from the third. False: none.
        residual_projection: where a residual layer's input and output sizes differ, learn a projection P_l
            (no bias); False makes such a stack an error instead.
        highway: gate the residual connections per unit (highway networks, Srivastava et al. 2015): a learned
            g = sigmoid(W_g x + b_g) mixes the layer's output and its (projected) input, g * h + (1 - g) * P x;
            b_g starts at -1, so a new stack leans towards carrying its input. Needs `residual`.
        variational: dropout between layers uses one mask per sequence for every step (Gal & Ghahramani).
        fused: use torch's fused kernels where the layers allow; False runs the reference loop.

    Inputs: input, state=None, lengths=None, return_all_layers=False, generator=None
        input: (T, B, D), or (B, T, D) with batch_first.
        state: a list of L layer states as returned in `state`; None starts every layer from zeros.
        lengths: (B,) valid steps of each right-padded sequence, 1 <= lengths <= T. Padding never reaches a
            state, an output at a valid step, or the reverse direction; outputs at padded steps are zeros.
        return_all_layers: also return every layer's output.
        generator: a torch.Generator for the dropout and weight-drop masks (default: torch's global one).
        return_states: also return a LayerTrace per layer: its hidden (and cell) states and gate values at every
            step and direction (layers.LayerTrace). This runs the step loop; without it nothing is recorded.

    Outputs: output, state (and layer_outputs when return_all_layers)
        output: (T, B, K_L * H_L) the top layer's output at every step ((B, T, ...) with batch_first).
        state: list of L layer states; layer l's is h (K_l, B, H_l), or for an LSTM the pair (h, c), h being
            (K_l, B, P_l) when projected. This is torch.nn's h_n (and c_n) cut per layer: torch's h_n[l*K:(l+1)*K].
        layer_outputs: list of L tensors (T, B, K_l * H_l) (K_l * P_l when projected), each layer's output
            (residual included) before dropout.
        traces: (with return_states, last) list of L LayerTrace, time-major.

    Attributes:
        layers: nn.ModuleList of RecurrentLayer; layers[l].cell (and .cell_reverse) hold weight_ih, weight_hh,
            bias_ih, bias_hh (and a projected LSTM's weight_hr) with torch.nn's shapes and gate order.
        specs: the LayerSpec of every layer.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int | None = None,
        num_layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.0,
        batch_first: bool = False,
        bias: bool = True,
        proj_size: int = 0,
        *,
        layers: Sequence[LayerSpec] | None = None,
        residual: bool | int = False,
        residual_projection: bool = True,
        highway: bool = False,
        variational: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        _check_size("input_size", input_size)
        if layers is None:
            if hidden_size is None:
                raise ValueError("hidden_size: expected an integer >= 1 (or pass layers=[...]), got None")
            _check_size("hidden_size", hidden_size)
            _check_size("num_layers", num_layers)
            if cell not in CELLS:
                raise ValueError(f"cell: expected one of {sorted(CELLS)}, got {cell!r}")
            layers = [LayerSpec(cell, hidden_size, bidirectional, bias, proj_size=proj_size) for _ in range(num_layers)]
        else:
            if hidden_size is not None:
                raise ValueError(f"hidden_size: expected None when layers=[...] is given, got {hidden_size!r}")
            if proj_size != 0:
                raise ValueError(f"proj_size: expected 0 when layers=[...] is given (set it per layer: LSTM(H, "
                                 f"proj_size=P)), got {proj_size!r}")
            layers = list(layers)
            if not layers or not all(isinstance(s, LayerSpec) for s in layers):
                raise ValueError(f"layers: expected a non-empty list of stackrnn.LSTM/GRU/RNN specs, got {layers!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a number in [0, 1), got {dropout!r}")

        self.input_size = input_size
        self.dropout = float(dropout)
        self.batch_first = batch_first
        self.fused = fused
        self.specs: list[LayerSpec] = layers
        self.layers = nn.ModuleList()
        size = input_size
        for spec in layers:
            self.layers.append(RecurrentLayer(spec, size))
            size = spec.output_size
        self.output_size = size

        if isinstance(residual, bool):
            self.residual_from = 2 if residual else 0
        elif isinstance(residual, int) and 2 <= residual <= len(layers):
            self.residual_from = residual
        else:
            raise ValueError(f"residual: expected True, False or a layer number in [2, {len(layers)}], got {residual!r}")
        self.variational = bool(variational)
        #: a function (layer index, layer output (T, B, K * H)) called in forward on every layer's output, for
        #: instruments such as per-layer gradient norms (inspect/gradients.py); None: no call, fused runs as usual
        self.layer_output_hook = None
        # P_l for residual layers whose input and output sizes differ (keyed by layer index)
        self.residual_projections = nn.ModuleDict()
        for i, layer in enumerate(self.layers):
            if self.is_residual(i) and layer.input_size != layer.spec.output_size:
                if not residual_projection:
                    raise ValueError(f"residual: layer {i + 1} maps {layer.input_size} features to {layer.spec.output_size}, "
                                     "so its residual needs a projection, but residual_projection=False")
                self.residual_projections[str(i)] = nn.Linear(layer.input_size, layer.spec.output_size, bias=False)
        if not isinstance(highway, bool):
            raise ValueError(f"highway: expected True or False, got {highway!r}")
        if highway and not self.residual_from:
            raise ValueError("highway: gates the residual connections, but there are none; set residual too")
        # W_g, b_g of each highway-gated layer (keyed by layer index)
        self.highway_gates = nn.ModuleDict()
        for i, layer in enumerate(self.layers):
            if highway and self.is_residual(i):
                gate = nn.Linear(layer.input_size, layer.spec.output_size)
                nn.init.constant_(gate.bias, -1.0)
                self.highway_gates[str(i)] = gate

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def connect(self, i: int, x_in: Tensor, h: Tensor) -> Tensor:
        """Residual layer i's output: its cell output h (..., K * H) joined with its input x_in (..., D), as
        h + P x_in, or highway-gated g * h + (1 - g) * P x_in. Padded steps stay zero (h and x_in are zero
        there, and P has no bias)."""
        carry = self.residual_projections[str(i)](x_in) if str(i) in self.residual_projections else x_in
        if str(i) not in self.highway_gates:
            return h + carry
        g = torch.sigmoid(self.highway_gates[str(i)](x_in))
        return g * h + (1 - g) * carry

    def is_residual(self, i: int) -> bool:
        """Whether layer i (from 0) adds its input to its output."""
        return self.residual_from > 0 and i + 1 >= self.residual_from

    # -- running ----------------------------------------------------------------------------------------------
    def forward(
        self,
        input: Tensor,
        state: Sequence[LayerState] | None = None,
        lengths: Tensor | Sequence[int] | None = None,
        return_all_layers: bool = False,
        generator: torch.Generator | None = None,
        return_states: bool = False,
    ):
        x = self._check_input(input)
        if self.batch_first:
            x = x.transpose(0, 1)  # (T, B, D)
        steps, batch = x.shape[0], x.shape[1]
        lengths = self._check_lengths(lengths, steps, batch)
        states = self._check_state(state, batch, x)
        # every step's states come from the step loop; without return_states nothing of this costs anything
        fused = self._fusable(x) and not return_states
        traces: list | None = [] if return_states else None
        mask = None
        looped = not fused or not all(s.fusable for s in self.specs)
        if lengths is not None and looped:  # the fused kernel takes lengths by packing instead
            mask = (torch.arange(steps).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(-1).to(x.device)  # (T, B, 1)
        finals: list[LayerState] = []
        layer_outputs: list[Tensor] = []
        for first, last in self._plan(fused, return_all_layers or self.layer_output_hook is not None):
            if first > 0:  # between layers; inside a fused run the kernel applies the same (standard) dropout
                x = sequence_dropout(x, self.dropout, self.training, self.variational, generator)
            x_in = x
            # weight drop: one W_hh mask per layer and direction for this whole pass, in either path
            weights_hh = [self.layers[i].hidden_weights(generator) for i in range(first, last)]
            if fused and self.specs[first].fusable:
                x, new = run_fused(list(self.layers[first:last]), x, states[first:last], lengths, self.dropout,
                                   self.training, weights_hh)
                finals.extend(new)
            else:
                # layers the kernel cannot run take the engine (hand-written backward); fused=False, the reference loop
                x, new = self.layers[first](x, states[first], mask, weights_hh[0], generator, trace=traces,
                                            engine=self.fused)
                finals.append(new)
            if self.is_residual(first):  # planned as a run of its own
                x = self.connect(first, x_in, x)
            if self.layer_output_hook is not None:
                self.layer_output_hook(first, x)
            layer_outputs.append(x)

        output = x.transpose(0, 1) if self.batch_first else x
        extra = []
        if return_all_layers:
            extra.append([o.transpose(0, 1) for o in layer_outputs] if self.batch_first else layer_outputs)
        if return_states:
            extra.append(traces)  # time-major whatever batch_first says: (T, B, K, ...)
        return (output, finals, *extra)

    def _fusable(self, x: Tensor) -> bool:
        """Whether torch's fused kernel can run these layers on this input."""
        dtypes = (torch.float32, torch.float64, torch.bfloat16) + ((torch.float16,) if x.is_cuda else ())
        return self.fused and x.dtype in dtypes

    def _plan(self, fused: bool, per_layer: bool) -> list[tuple[int, int]]:
        """Split the layers into [first, last) runs: maximal alike runs for the fused kernel, else one by one."""
        # one kernel call per layer where something must happen between layers that the kernel cannot do:
        # a residual add, or a variational dropout mask
        if per_layer or not fused or (self.variational and self.dropout > 0):
            return [(i, i + 1) for i in range(len(self.layers))]
        runs, first = [], 0
        for i in range(1, len(self.layers) + 1):
            if (i == len(self.layers) or not can_fuse(self.layers[first], self.layers[i])
                    or self.is_residual(i) or self.is_residual(first)):
                runs.append((first, i))
                first = i
        return runs

    # -- states -----------------------------------------------------------------------------------------------
    def zero_state(self, batch: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> list[LayerState]:
        """The all-zeros initial state for a batch of `batch` sequences."""
        return [layer.zero_state(batch, dtype=dtype, device=torch.device(device)) for layer in self.layers]

    # -- checks: bad input is a ValueError naming the argument, what was expected and what came ---------------
    def _check_input(self, input: Tensor) -> Tensor:
        if not isinstance(input, Tensor):
            raise ValueError(f"input: expected a torch.Tensor, got {type(input).__name__}")
        layout = "(B, T, D)" if self.batch_first else "(T, B, D)"
        if input.dim() != 3:
            raise ValueError(f"input: expected a 3-d tensor {layout}, got shape {tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"input: expected last dimension D = input_size = {self.input_size}, got shape {tuple(input.shape)}")
        if input.shape[0] == 0 or input.shape[1] == 0:
            raise ValueError(f"input: expected at least one step and one sequence {layout}, got shape {tuple(input.shape)}")
        return input

    @staticmethod
    def _check_lengths(lengths, steps: int, batch: int) -> Tensor | None:
        if lengths is None:
            return None
        if not isinstance(lengths, Tensor):
            lengths = torch.as_tensor(list(lengths))
        if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.shape != (batch,):
            raise ValueError(f"lengths: expected {batch} integers (one per sequence), got {lengths.dtype} of shape {tuple(lengths.shape)}")
        lengths = lengths.to("cpu", torch.int64)  # pack_padded_sequence wants them on the CPU
        low, high = int(lengths.min()), int(lengths.max())
        if low < 1 or high > steps:
            raise ValueError(f"lengths: expected every length in [1, T = {steps}], got min {low} and max {high}")
        return lengths

    def _check_state(self, state, batch: int, x: Tensor) -> list[LayerState]:
        if state is None:
            return self.zero_state(batch, dtype=x.dtype, device=x.device)
        if not isinstance(state, (list, tuple)) or len(state) != len(self.layers):
            got = f"{type(state).__name__} of length {len(state)}" if isinstance(state, (list, tuple)) else type(state).__name__
            raise ValueError(f"state: expected a list of {len(self.layers)} layer states (one per layer), got {got}")
        for l, (layer, s) in enumerate(zip(self.layers, state)):
            # (directions, batch, features) per part: h, and an LSTM's c; h has P features when projected
            shapes = [(layer.spec.num_directions, batch, size) for size in layer.spec.state_sizes]
            want = (f"an LSTM state pair (h, c) of shapes {shapes[0]} and {shapes[1]}" if layer.is_lstm
                    else f"tensors of shape {shapes[0]}") + " (directions, batch, features)"
            parts = s if layer.is_lstm and isinstance(s, (tuple, list)) and len(s) == 2 else (s,)
            if len(parts) != len(shapes) or not all(isinstance(p, Tensor) and tuple(p.shape) == shape
                                                    for p, shape in zip(parts, shapes)):
                raise ValueError(f"state[{l}]: expected {want}, got {_describe(s)}")
        return list(state)

    # -- torch.nn conversion ----------------------------------------------------------------------------------
    @classmethod
    def from_torch(cls, module: nn.RNNBase, **kwargs) -> StackedRNN:
        """The equivalent stack of a torch.nn.RNN, GRU or LSTM, with its weights copied."""
        if isinstance(module, nn.RNN):
            cell = "rnn_" + module.nonlinearity
        elif type(module) in _TORCH_CELL:
            cell = _TORCH_CELL[type(module)]
        else:
            raise ValueError(f"module: expected a torch.nn.RNN, GRU or LSTM, got {type(module).__name__}")
        stack = cls(module.input_size, module.hidden_size, module.num_layers, cell, module.bidirectional,
                    module.dropout, module.batch_first, module.bias, getattr(module, "proj_size", 0), **kwargs)
        p = next(module.parameters())
        stack.to(device=p.device, dtype=p.dtype)
        with torch.no_grad():
            for ours, theirs in zip(stack._torch_parameter_names(), module._flat_weights_names):
                stack.get_parameter(ours).copy_(getattr(module, theirs))
        return stack

    def to_torch(self) -> nn.RNNBase:
        """The equivalent torch.nn.RNN, GRU or LSTM with these weights copied; only for stacks torch.nn can express."""
        first = self.specs[0]
        if any(s != first for s in self.specs):
            raise ValueError(f"to_torch: torch.nn needs one cell type, hidden size, projection, direction and bias for "
                             f"every layer, got {self.specs}")
        # every layer option but the projection is one torch.nn lacks: any other that differs from its default
        plain = LayerSpec(first.cell, first.hidden_size, first.bidirectional, first.bias, proj_size=first.proj_size)
        extra = [f"{f.name}={getattr(first, f.name)!r}" for f in dataclasses.fields(LayerOptions)
                 if getattr(first, f.name) != getattr(plain, f.name)]
        if extra:
            raise ValueError(f"to_torch: torch.nn has no {', '.join(e.split('=')[0] for e in extra)}; got {', '.join(extra)}")
        if self.residual_from or (self.variational and self.dropout):  # (highway needs residual)
            raise ValueError("to_torch: torch.nn has no residual connections or variational dropout; "
                             f"got residual={bool(self.residual_from)}, variational={self.variational}")
        cls = self.layers[0].cell.torch_class
        extra = {"nonlinearity": first.cell[4:]} if first.cell.startswith("rnn_") else {}
        if first.proj_size:
            extra["proj_size"] = first.proj_size
        p = next(self.parameters())
        module = cls(self.input_size, first.hidden_size, len(self.layers), bias=first.bias, batch_first=self.batch_first,
                     dropout=self.dropout, bidirectional=first.bidirectional, device=p.device, dtype=p.dtype, **extra)
        with torch.no_grad():
            for ours, theirs in zip(self._torch_parameter_names(), module._flat_weights_names):
                getattr(module, theirs).copy_(self.get_parameter(ours))
        module.train(self.training)
        return module

    def _torch_parameter_names(self) -> list[str]:
        """Our parameter names in the order of torch.nn's _flat_weights_names (layer, direction, w_ih w_hh b_ih b_hh,
        then w_hr when projected)."""
        names = []
        for l, layer in enumerate(self.layers):
            for cell_name in ("cell", "cell_reverse")[: layer.spec.num_directions]:
                kinds = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if layer.spec.bias else ()) \
                    + (("weight_hr",) if layer.spec.proj_size else ())
                names += [f"layers.{l}.{cell_name}.{k}" for k in kinds]
        return names

    def extra_repr(self) -> str:
        s = f"input_size={self.input_size}"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.variational:
            s += ", variational=True"
        if self.residual_from:
            s += f", residual={self.residual_from}" + (", highway=True" if len(self.highway_gates) else "")
        if self.batch_first:
            s += ", batch_first=True"
        return s


def _check_size(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")


def _describe(s) -> str:
    if isinstance(s, Tensor):
        return f"shape {tuple(s.shape)}"
    if isinstance(s, (tuple, list)):
        return "(" + ", ".join(_describe(p) for p in s) + ")"
    return type(s).__name__
