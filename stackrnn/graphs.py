"""Exportable graphs of a trained model: the same math as the model in eval mode, written so that torch.export and
torch.onnx (its torch.export-based exporter) keep batch and time dynamic.

Dimension key: T time, B batch, K directions, H hidden units, P h's features (an LSTM's projection, else H),
G gate width, V vocabulary, S source steps, M encoder output features, A attentional vector size.

Why not the model's own forward: a Python loop over time is unrolled by torch.export and bakes the example length
into the graph (pytorch#122588), and packed sequences, which the fused kernel takes lengths by, export wrongly
(pytorch#62240). Here every layer's every direction is one `scan` over time (torch._higher_order_ops.scan, which
torch.export keeps as a loop and torch.onnx writes as an ONNX Scan), stepping the layer's own cell (`recur`, the
reference loop's step), so layer norm, a projection, forget_bias and mixed stacks export alike. Lengths are an
input and act by masking, as the reference loop's: a padded step keeps the state and outputs zeros; the reverse
direction keeps its initial state through the padding. In eval mode dropout, weight drop and recurrent dropout are
the identity and zoneout is its expectation, p * old + (1 - p) * new, which the step applies.

A stack's state is a flat list of tensors, layer by layer: h (K, B, P), then an LSTM's c (K, B, H) (`state_spec`),
so that it can be a graph's input and output: a language model generates step by step from the exported file.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .cells import RecurrentCell
from .torch_private import scan
from .layers import LayerState
from .models.attention import Attention
from .models.classifier import SequenceClassifier
from .models.forecaster import Forecaster
from .models.lm import LanguageModel
from .models.seq2seq import Memory, Seq2Seq
from .regularizers import zoneout
from .stack import StackedRNN


def state_spec(stack: StackedRNN, prefix: str = "state") -> list[dict]:
    """The flat state's tensors: [{"name": "state.0.h", "shape": [K, "B", P]}, ...], layer by layer, h before c."""
    spec = []
    for l, layer in enumerate(stack.layers):
        for part, size in zip("hc", layer.spec.state_sizes):
            spec.append({"name": f"{prefix}.{l}.{part}", "shape": [layer.spec.num_directions, "B", size]})
    return spec


def flatten(state: list[LayerState]) -> list[Tensor]:
    """A stack's state (per layer h or (h, c)) as the flat list `state_spec` describes."""
    return [t for s in state for t in (s if isinstance(s, tuple) else (s,))]


def unflatten(stack: StackedRNN, flat: list[Tensor]) -> list[LayerState]:
    """The inverse of `flatten`."""
    state, at = [], 0
    for layer in stack.layers:
        if layer.is_lstm:
            state.append((flat[at], flat[at + 1]))
            at += 2
        else:
            state.append(flat[at])
            at += 1
    return state


def valid_steps(lengths: Tensor, steps: int) -> Tensor:
    """(T, B, 1) bool, True at each sequence's valid steps."""
    return (torch.arange(steps, device=lengths.device).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(-1)


def _step(cell: RecurrentCell, rates: tuple[float, float], gi: Tensor, state):
    """One eval-mode step of a cell from its projected input gi (B, G): recur, then zoneout's expectation."""
    new = cell.recur(gi, state)
    zh, zc = rates
    if zh or zc:
        new = (zoneout(new[0], state[0], zh), zoneout(new[1], state[1], zc)) if isinstance(new, tuple) \
            else zoneout(new, state, zh)
    return new


def scan_direction(cell: RecurrentCell, rates: tuple[float, float], x: Tensor, state, valid: Tensor,
                   reverse: bool) -> tuple[Tensor, object]:
    """One direction of a layer over x (T, B, D) from `state` (h (B, P) or (h, c)), valid (T, B, 1): its outputs
    (T, B, P), zeros at padded steps, and its final state. The input projection of all steps is one product."""
    gi = cell.project_input(x)  # (T, B, G)

    def step(carry, xs):
        gi_t, valid_t = xs  # (B, G), (B, 1)
        new = _step(cell, rates, gi_t, carry)
        if isinstance(new, tuple):  # a padded step keeps the state
            new = tuple(torch.where(valid_t, n, s) for n, s in zip(new, carry))
        else:
            new = torch.where(valid_t, new, carry)
        return new, torch.where(valid_t, cell.output(new), 0.0)  # (B, P)

    final, out = scan(step, state, (gi, valid), reverse=reverse)
    return out, final


def run_stack(stack: StackedRNN, x: Tensor, state: list[LayerState], valid: Tensor) -> tuple[Tensor, list[LayerState]]:
    """StackedRNN.forward in eval mode through scans: x (T, B, D), valid (T, B, 1) -> output (T, B, K * P) of the
    top layer, and every layer's final state."""
    finals = []
    for i, layer in enumerate(stack.layers):
        x_in, outputs, ends = x, [], []
        for k, cell in enumerate(layer.cells):
            s0 = (state[i][0][k], state[i][1][k]) if layer.is_lstm else state[i][k]
            out, end = scan_direction(cell, layer.spec.zoneout_rates, x, s0, valid, reverse=k == 1)
            outputs.append(out)
            ends.append(end)
        x = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)  # (T, B, K * P)
        if stack.is_residual(i):
            x = stack.connect(i, x_in, x)
        if layer.is_lstm:
            finals.append((torch.stack([e[0] for e in ends]), torch.stack([e[1] for e in ends])))
        else:
            finals.append(torch.stack(ends))
    return x, finals


def step_stack(stack: StackedRNN, x: Tensor, state: list[LayerState]) -> tuple[Tensor, list[LayerState]]:
    """One step of a unidirectional stack, no loop: x (B, D) -> top output (B, P), every layer's new state."""
    new_state = []
    for i, layer in enumerate(stack.layers):
        cell = layer.cell
        s = (state[i][0][0], state[i][1][0]) if layer.is_lstm else state[i][0]  # (B, P) from (1, B, P)
        new = _step(cell, layer.spec.zoneout_rates, cell.project_input(x), s)
        h = cell.output(new)
        if stack.is_residual(i):
            h = stack.connect(i, x, h)
        x = h
        new_state.append(tuple(t.unsqueeze(0) for t in new) if isinstance(new, tuple) else new.unsqueeze(0))
    return x, new_state


def frozen(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode whose parameters need no gradient: the exporter then traces no autograd
    around the scans (with gradients on, torch.onnx's type-promotion pass fails inside scan's autograd)."""
    return copy.deepcopy(model).eval().requires_grad_(False)


# -- the tasks' graphs --------------------------------------------------------------------------------------------
class Graph(nn.Module):
    """A task's exportable graph: `forward(*inputs)` takes and returns flat tensors, named and shaped by `inputs`
    and `outputs` ([{"name", "shape", "dtype"}], a shape's strings naming its dynamic axes: "T", "B", "S")."""

    inputs: list[dict]
    outputs: list[dict]

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = frozen(model)
        self.eval()


def tensor(name: str, shape: list, dtype: str = "float32") -> dict:
    return {"name": name, "shape": shape, "dtype": dtype}


def _states(stack: StackedRNN, prefix: str) -> list[dict]:
    return [tensor(s["name"].replace("state", prefix, 1), s["shape"]) for s in state_spec(stack)]


class LanguageModelGraph(Graph):
    """Inputs: tokens (T, B) int64, lengths (B,) int64, the state (state_spec). Outputs: logits (T, B, V), the new
    state. T = 1 with lengths 1 is one generation step."""

    def __init__(self, model: LanguageModel) -> None:
        super().__init__(model)
        self.inputs = [tensor("tokens", ["T", "B"], "int64"), tensor("lengths", ["B"], "int64"),
                       *_states(model.rnn, "state")]
        self.outputs = [tensor("logits", ["T", "B", model.vocab_size]), *_states(model.rnn, "new_state")]

    def forward(self, tokens: Tensor, lengths: Tensor, *state: Tensor):
        m = self.model
        x, valid = m.embed(tokens), valid_steps(lengths, tokens.shape[0])
        hidden, new = run_stack(m.rnn, x, unflatten(m.rnn, list(state)), valid)
        return (m.decode(hidden), *flatten(new))


class ClassifierGraph(Graph):
    """Inputs: tokens (T, B) int64 right-padded, lengths (B,) int64. Outputs: logits ((B, 1) for sigmoid output,
    (B, C) for softmax) and probabilities (B, C)."""

    def __init__(self, model: SequenceClassifier) -> None:
        super().__init__(model)
        self.inputs = [tensor("tokens", ["T", "B"], "int64"), tensor("lengths", ["B"], "int64")]
        width = 1 if model.output == "sigmoid" else model.num_classes
        self.outputs = [tensor("logits", ["B", width]), tensor("probabilities", ["B", model.num_classes])]

    def forward(self, tokens: Tensor, lengths: Tensor):
        m = self.model
        zeros = m.rnn.zero_state(tokens.shape[1], dtype=m.embedding.weight.dtype, device=tokens.device)
        hidden, _ = run_stack(m.rnn, m.embed(tokens), zeros, valid_steps(lengths, tokens.shape[0]))  # (T, B, D)
        pooled, _ = m.pool(hidden, lengths)  # (B, D)
        logits = m.head(pooled)
        return logits, m.probabilities(logits)


class EncoderGraph(Graph):
    """A translator's encoder and bridge. Inputs: source (S, B) int64 right-padded, lengths (B,) int64. Outputs:
    memory (S, B, M), keys (general and additive attention), mask (S, B) bool, the decoder's initial state, and
    the initial feed (B, A) (input feeding): what the decoder step takes, under the same names."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__(model)
        self.inputs = [tensor("source", ["S", "B"], "int64"), tensor("lengths", ["B"], "int64")]
        self.outputs = encoder_outputs(model)

    def forward(self, source: Tensor, lengths: Tensor):
        m = self.model
        batch = source.shape[1]
        x = m.source_embedding(source)  # (S, B, E)
        valid = valid_steps(lengths, source.shape[0])  # (S, B, 1)
        memory, finals = run_stack(m.encoder, x, m.encoder.zero_state(batch, dtype=x.dtype, device=x.device), valid)
        out = [memory] + ([m.attention.keys(memory)] if has_keys(m) else []) + [valid.squeeze(-1)]
        out += flatten(m._bridge(finals, batch, memory))
        if m.input_feed:
            out.append(memory.new_zeros(batch, m.feed_size))
        return tuple(out)


class DecoderStepGraph(Graph):
    """One decoder step. Inputs: tokens (B,) int64 (the previous target tokens), then the encoder graph's outputs
    (memory, keys, mask, state, feed). Outputs: logits (B, V), the new state, the new feed (input feeding), the
    attention weights (S, B) (with attention)."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__(model)
        self.inputs = [tensor("tokens", ["B"], "int64"), *encoder_outputs(model)]
        self.outputs = [tensor("logits", ["B", model.target_vocab]), *_states(model.decoder, "new_state")]
        if model.input_feed:
            self.outputs.append(tensor("new_feed", ["B", model.feed_size]))
        if model.attention is not None:
            self.outputs.append(tensor("attention", ["S", "B"]))

    def forward(self, *inputs: Tensor):
        m = self.model
        named = dict(zip([i["name"] for i in self.inputs], inputs))
        x = m.target_embedding(named["tokens"])  # (B, E)
        if m.input_feed:
            x = torch.cat([x, named["feed"]], dim=-1)
        state = [named[s["name"]] for s in state_spec(m.decoder)]
        top, new = step_stack(m.decoder, x, unflatten(m.decoder, state))  # (B, H_d)
        memory = named["memory"]
        keys = named.get("keys", memory)  # dot attention's keys are the memory
        attentional, weights = m._attend(top, Memory(memory, keys, named["mask"]))
        out = [m.output(attentional), *flatten(new)]
        if m.input_feed:
            out.append(attentional)
        if weights is not None:
            out.append(weights)
        return tuple(out)


def encoder_outputs(model: Seq2Seq) -> list[dict]:
    """The encoder graph's outputs, which the decoder step takes: memory, keys (unless they are the memory), mask,
    the decoder's initial state, the initial feed (input feeding)."""
    spec = [tensor("memory", ["S", "B", model.encoder.output_size])]
    if has_keys(model):
        spec.append(tensor("keys", ["S", "B", model.attention.memory_map.out_features]))
    spec += [tensor("mask", ["S", "B"], "bool"), *_states(model.decoder, "state")]
    return spec + ([tensor("feed", ["B", model.feed_size])] if model.input_feed else [])


def has_keys(model: Seq2Seq) -> bool:
    """Whether the encoder graph outputs attention keys apart from the memory (dot attention's are the memory)."""
    return isinstance(model.attention, Attention) and model.attention.kind != "dot"


# -- forecasting ---------------------------------------------------------------------------------------------------
class ScanStack(nn.Module):
    """A batch-first StackedRNN's eval-mode forward through `run_stack`'s scans, every step valid: a Forecaster's
    graphs put it in place of the model's `rnn`, so that the Forecaster's own methods (scaling, inputs, the
    quantile head) run unchanged with time as a scan. x (B, T, D), state (default zeros) -> (B, T, P), state."""

    def __init__(self, stack: StackedRNN) -> None:
        super().__init__()
        self.stack = stack

    def forward(self, x: Tensor, state: list[LayerState] | None = None) -> tuple[Tensor, list[LayerState]]:
        x = x.transpose(0, 1)  # (T, B, D)
        if state is None:
            state = self.stack.zero_state(x.shape[1], dtype=x.dtype, device=x.device)
        valid = torch.ones_like(x[..., :1], dtype=torch.bool)  # (T, B, 1)
        out, final = run_stack(self.stack, x, state, valid)
        return out.transpose(0, 1), final


class _ForecasterGraph(Graph):
    """A Forecaster's graph: the model's copy reads time through scans (ScanStack). Dimension key as
    models/forecaster.py's: L past steps (context + largest lag), H horizon, F time features, K lags, Q
    quantiles, S static features (the series' embedding and its log scale)."""

    def __init__(self, model: Forecaster) -> None:
        super().__init__(model)
        self.model.rnn = ScanStack(self.model.rnn)
        m = self.model
        self.L, self.H, self.F = m.past_length, m.horizon, m.time_features
        self.S = (m.embedding.embedding_dim if m.embedding is not None else 0) + 1

    def example(self) -> tuple[Tensor, ...]:
        """Inputs of batch EXAMPLE (3) for tracing: positive values (a count head's too), series 0."""
        sizes = {"B": 3}
        out = []
        for spec in self.inputs:
            shape = [sizes.get(d, d) for d in spec["shape"]]
            out.append(torch.zeros(shape, dtype=torch.long) if spec["dtype"] == "int64" else torch.ones(shape))
        return tuple(out)


class QuantileForecastGraph(_ForecasterGraph):
    """The quantile head (MQ-RNN): every quantile of every horizon step at once, as Forecaster.forecast gives them.
    Inputs: past (B, L) the last L values (NaN where missing), time (B, L + H, F) their time features and the
    horizon's, series (B,) int64 ids. Outputs: quantiles (B, H, Q) on the series' own scale (a shorter horizon
    is their first steps: each step's quantiles depend on nothing after it)."""

    def __init__(self, model: Forecaster) -> None:
        super().__init__(model)
        self.inputs = [tensor("past", ["B", self.L]), tensor("time", ["B", self.L + self.H, self.F]),
                       tensor("series", ["B"], "int64")]
        self.outputs = [tensor("quantiles", ["B", self.H, len(model.levels)])]

    def forward(self, past: Tensor, time: Tensor, series: Tensor) -> tuple[Tensor]:
        m = self.model
        z, _, loc, scale, static = m._prepare(past, series)
        unit = m._unit(past[:, -self.L:], scale)
        return (m._quantiles(z, time, static, self.H, unit) * scale[..., None] + loc[..., None],)  # (a tuple, as
        # every graph's outputs are)


class ForecastEncoderGraph(_ForecasterGraph):
    """A distribution head's context read, as Forecaster._sample begins. Inputs: past (B, L), time (B, L, F) the
    past steps' features, series (B,) int64. Outputs: values (B, L) the scaled past (0 where missing), the lagged
    values of each step come from (the samples are appended to it), loc and scale (B, 1), static (B, S), and the
    stack's state after the context (state_spec), which the step graph takes."""

    def __init__(self, model: Forecaster) -> None:
        super().__init__(model)
        self.inputs = [tensor("past", ["B", self.L]), tensor("time", ["B", self.L, self.F]),
                       tensor("series", ["B"], "int64")]
        self.outputs = [tensor("values", ["B", self.L]), tensor("loc", ["B", 1]), tensor("scale", ["B", 1]),
                        tensor("static", ["B", self.S]), *_states(model.rnn, "state")]

    def forward(self, past: Tensor, time: Tensor, series: Tensor):
        m = self.model
        z, _, loc, scale, static = m._prepare(past, series)
        _, state = m.rnn(m._inputs(z, time, static, self.L - m.context, self.L))
        return (z, loc, scale, static, *flatten(state))


#: each distribution head's parameters, as the step graph outputs them (over the scaled value; a count's own for
#: the negative binomial): torch.distributions' StudentT(df, mu, sigma), Normal(mu, sigma), NegativeBinomial(
#: total_count, logits)
DISTRIBUTION_PARAMETERS = {"student_t": ("df", "mu", "sigma"), "gaussian": ("mu", "sigma"),
                           "negative_binomial": ("total_count", "logits")}


class ForecastStepGraph(_ForecasterGraph):
    """One step of a distribution head's path, without sampling. Inputs: lagged (B, K) the scaled values at
    each lag before the step, time (B, F) its features, static (B, S) (the encoder's), scale (B, 1) (the negative
    binomial's only), and the state. Outputs: the step's distribution parameters (DISTRIBUTION_PARAMETERS, each
    (B,)), mean (B,) the distribution's mean in the units fed back (scaled; what Forecaster.forward feeds), and
    the new state. The caller samples (or takes the mean), appends the value, and calls the next step."""

    def __init__(self, model: Forecaster) -> None:
        super().__init__(model)
        count = model.head == "negative_binomial"
        self.inputs = [tensor("lagged", ["B", len(model.lags)]), tensor("time", ["B", self.F]),
                       tensor("static", ["B", self.S]), *([tensor("scale", ["B", 1])] if count else []),
                       *_states(model.rnn, "state")]
        self.outputs = [*(tensor(p, ["B"]) for p in DISTRIBUTION_PARAMETERS[model.head]), tensor("mean", ["B"]),
                        *_states(model.rnn, "new_state")]

    def forward(self, *inputs: Tensor):
        m = self.model
        named = dict(zip([i["name"] for i in self.inputs], inputs))
        stack = m.rnn.stack
        x = torch.cat([named["lagged"], named["time"], named["static"]], -1)  # (B, K + F + S), as Forecaster._inputs
        state = [named[s["name"]] for s in state_spec(stack)]
        top, new = step_stack(stack, x, unflatten(stack, state))
        params = m.out(top)  # (B, P)
        softplus = nn.functional.softplus
        if m.head == "negative_binomial":  # Forecaster._distribution's, without building the distribution
            scale = named["scale"]  # (B, 1)
            mu = softplus(params[:, 0]) * scale[:, 0]
            alpha = softplus(params[:, 1]) / scale[:, 0].sqrt() + 1e-6
            total_count, logits = 1 / alpha, torch.log(mu * alpha + 1e-12)
            out = [total_count, logits, total_count * torch.exp(logits) / scale[:, 0]]
        else:
            mu, sigma = params[:, 0], softplus(params[:, 1]) + 1e-4
            out = ([2 + softplus(params[:, 2])] if m.head == "student_t" else []) + [mu, sigma, mu]
        return (*out, *flatten(new))


def forecast_graphs(model: Forecaster) -> dict[str, Graph]:
    """A forecaster's graphs: the quantile head's one ("model"), or a distribution head's context read and step
    ("encoder", "step"), the paths sampled outside the graphs."""
    if model.head == "quantile":
        return {"model": QuantileForecastGraph(model)}
    return {"encoder": ForecastEncoderGraph(model), "step": ForecastStepGraph(model)}


#: each task's graphs, by name (a translator's are two: the decoder is stepped token by token)
GRAPHS = {"lm": {"model": LanguageModelGraph}, "classify": {"model": ClassifierGraph},
          "translate": {"encoder": EncoderGraph, "decoder": DecoderStepGraph}}


def graphs_of(task: str, model: nn.Module) -> dict[str, Graph]:
    """The exportable graphs of a model of `task`, by name."""
    if task == "forecast":
        return forecast_graphs(model)
    return {name: make(model) for name, make in GRAPHS[task].items()}
