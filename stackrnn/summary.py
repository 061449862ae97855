"""A Keras-style summary table: each layer, its type, output shape and parameter count, and the totals.

The table comes from one forward pass on a dummy input with hooks on the model's layers, so the shapes are
the ones the model really produces, for any model built from stackrnn and torch.nn parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .layers import RecurrentLayer
from .stack import StackedRNN


@dataclass
class SummaryRow:
    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int


@dataclass
class Summary:
    rows: list[SummaryRow]
    total_params: int
    trainable_params: int

    def __str__(self) -> str:
        header = ("Layer", "Type", "Output shape", "Param #")
        body = [(r.name, r.type, str(r.output_shape), f"{r.params:,}") for r in self.rows]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(4)]
        line = lambda row: "  ".join(c.rjust(w) if i == 3 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
        rule = "-" * len(line(header))
        return "\n".join([rule, line(header), rule.replace("-", "="), *map(line, body), rule,
                          f"Total params: {self.total_params:,}",
                          f"Trainable params: {self.trainable_params:,}",
                          f"Non-trainable params: {self.total_params - self.trainable_params:,}"])


def _layer_type(layer: RecurrentLayer) -> str:
    s = layer.spec
    name = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN(tanh)", "rnn_relu": "RNN(relu)"}[s.cell]
    return f"{name} bidirectional" if s.bidirectional else name


def summary(model: nn.Module, input_size: tuple[int, ...], dtype: torch.dtype = torch.float32, **forward_kwargs) -> Summary:
    """Run `model` once on zeros of `input_size` (e.g. (T, B, D) for a StackedRNN, (T, B) token ids with
    dtype=torch.long for a language model) and tabulate its layers in the order they ran.

    Returns a Summary; print it for the table. Parameters that belong to no listed layer appear as one
    "(other)" row, so the rows always add up to the total.
    """
    rows: list[SummaryRow] = []
    seen: set[int] = set()
    names = {m: n for n, m in model.named_modules()}

    def count(module: nn.Module) -> int:
        params = sum(p.numel() for p in module.parameters() if id(p) not in seen)
        seen.update(id(p) for p in module.parameters())
        return params

    def leaf_hook(module, _inputs, output):
        first = output
        while isinstance(first, (tuple, list)):
            first = first[0]
        shape = tuple(first.shape) if isinstance(first, Tensor) else ()
        rows.append(SummaryRow(names[module] or type(module).__name__, type(module).__name__, shape, count(module)))

    def stack_hook(stack, _inputs, output):
        # the fused kernel runs several layers in one call, so a stack lists its layers itself: every
        # layer's output has the top output's (T, B) or (B, T) and its own feature size
        lead = tuple(output[0].shape[:-1])
        for i, layer in enumerate(stack.layers):
            params = count(layer)
            if str(i) in stack.residual_projections:  # a layer's residual projection belongs to its row
                params += count(stack.residual_projections[str(i)])
            kind = _layer_type(layer) + (" +residual" if stack.is_residual(i) else "")
            rows.append(SummaryRow(f"{names[stack]}.layers.{i}".lstrip("."), kind, lead + (layer.spec.output_size,), params))

    inside_stacks = {id(m) for s in model.modules() if isinstance(s, StackedRNN) for m in s.modules() if m is not s}
    handles = []
    for module in model.modules():
        if id(module) in inside_stacks:
            continue
        if isinstance(module, StackedRNN):
            handles.append(module.register_forward_hook(stack_hook))
        elif not any(True for _ in module.children()):
            handles.append(module.register_forward_hook(leaf_hook))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_size, dtype=dtype, device=device), **forward_kwargs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    # an embedding that the model reads through its weight (nn.functional.embedding, as embedding dropout
    # needs) never runs as a module: its row is made here, first, as Keras lists it. Its output is the ids'
    # shape plus the embedding size.
    unseen = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Embedding) and id(m) not in inside_stacks
              and any(id(p) not in seen for p in m.parameters())]
    if dtype in (torch.long, torch.int) and unseen:
        rows[:0] = [SummaryRow(n, "Embedding", tuple(input_size) + (m.embedding_dim,), count(m)) for n, m in unseen]
    unique = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in unique.values())
    other = sum(p.numel() for i, p in unique.items() if i not in seen)
    if other:
        rows.append(SummaryRow("(other)", "parameters", (), other))
    trainable = sum(p.numel() for p in unique.values() if p.requires_grad)
    return Summary(rows, total, trainable)
