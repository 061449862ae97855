"""The fast path: a run of alike layers through torch's fused RNN kernel (oneDNN on CPU, cuDNN on GPU).

Dimension key: T time, B batch, D input features, H hidden units per direction, K directions, N layers in the run,
P an LSTM's projection size (h's features when set, else H).

torch.nn.LSTM and friends are thin wrappers around `torch._VF.lstm / gru / rnn_tanh / rnn_relu`, which take the
weights as a flat list in the order (weight_ih, weight_hh, bias_ih, bias_hh) per layer and direction, with
weight_hr last for a projected LSTM (the kernel sees the projection from h0 having fewer features than c0). The
layers of a stack own their parameters under those names, so we hand the same tensors to the same kernel:
no copy, no second set of weights, and results identical to torch.nn by construction.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import torch_private
from .layers import LayerState, RecurrentLayer

_KERNELS = torch_private.RNN_KERNELS


def can_fuse(a: RecurrentLayer, b: RecurrentLayer) -> bool:
    """Whether layer b can join a's run: one kernel call needs one cell type, size, projection size, direction
    and bias setting. (Weight drop may differ: the kernel just receives each layer's dropped W_hh.)"""
    sa, sb = a.spec, b.spec
    if not (sa.fusable and sb.fusable):
        return False
    return ((sa.cell, sa.hidden_size, sa.proj_size, sa.bidirectional, sa.bias)
            == (sb.cell, sb.hidden_size, sb.proj_size, sb.bidirectional, sb.bias))


def run_fused(
    layers: list[RecurrentLayer],
    x: Tensor,
    states: list[LayerState],
    lengths: Tensor | None,
    dropout: float,
    training: bool,
    weights_hh: list[list[Tensor | None]] | None = None,
) -> tuple[Tensor, list[LayerState]]:
    """Run N alike layers in one kernel call.

    Args:
        x: (T, B, D) input of the first layer.
        states: N layer states, h (K, B, H) or (h, c) (h (K, B, P) when projected).
        lengths: (B,) int64 on the CPU for right-padded sequences, or None.
        dropout: dropout between the layers of the run (the kernel applies it; never after the last).
        weights_hh: per layer, the W_hh of each direction for this pass (weight drop), None for the parameter.
    Returns:
        output (T, B, K * H) (K * P when projected) of the last layer, zeros at padded steps; the N final layer states.
    """
    spec = layers[0].spec
    kernel = _KERNELS[spec.cell]
    lstm = spec.cell == "lstm"
    weights_hh = weights_hh or [None] * len(layers)
    weights = [w for layer, whh in zip(layers, weights_hh) for w in layer.flat_weights(whh)]
    # the kernel wants every layer's state stacked along dim 0: (N * K, B, H), and h (N * K, B, P) when projected
    if lstm:
        hx = (torch.cat([s[0] for s in states]), torch.cat([s[1] for s in states]))
    else:
        hx = torch.cat(states)
    n = len(layers)

    if lengths is None:
        result = _call(kernel, x, hx, weights, spec.bias, n, dropout, training, spec.bidirectional, False)
        output, h = result[0], result[1:]
    else:
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        # the kernel sees the batch sorted by decreasing length; permute the states the same way
        order = packed.sorted_indices
        hx = tuple(t.index_select(1, order) for t in hx) if lstm else hx.index_select(1, order)
        result = _call(kernel, packed.data, packed.batch_sizes, hx, weights, spec.bias, n, dropout, training, spec.bidirectional)
        out_packed = PackedSequence(result[0], packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
        output, _ = pad_packed_sequence(out_packed, total_length=x.shape[0])
        h = tuple(t.index_select(1, packed.unsorted_indices) for t in result[1:])

    k = spec.num_directions
    if lstm:
        hs, cs = h[0].split(k), h[1].split(k)
        return output, list(zip(hs, cs))
    return output, list(h[0].split(k))


_warned_dtypes: set[torch.dtype] = set()  # the autocast dtypes already warned about


def _call(kernel, *args):
    """The kernel call, falling back to float32 where oneDNN has no RNN in the autocast dtype: CPUs without
    AVX-512 BF16 cannot create a bf16 LSTM primitive under CPU autocast (nor could this build machine's CPU a
    float16 one), and torch.nn.LSTM fails there outright. The rest of the model (embedding, projections,
    decoder) keeps its autocast precision."""
    try:
        return kernel(*args)
    except RuntimeError as e:
        if not (torch.is_autocast_enabled("cpu") and "primitive descriptor" in str(e)):
            raise
    dtype = torch.get_autocast_dtype("cpu")
    if dtype not in _warned_dtypes:
        _warned_dtypes.add(dtype)
        name = str(dtype).removeprefix("torch.")
        warnings.warn(f"this CPU has no {name} RNN kernel (oneDNN's bfloat16 one needs AVX-512 BF16 or AMX): the "
                      f"recurrent layers run in float32 under {name} autocast, so expect little speed-up", stacklevel=3)
    with torch.autocast("cpu", enabled=False):
        return kernel(*(_to_float(a) for a in args))


def _to_float(a):
    if isinstance(a, Tensor):
        return a.float() if a.is_floating_point() else a
    if isinstance(a, (list, tuple)):
        return type(a)(_to_float(t) for t in a)
    return a
