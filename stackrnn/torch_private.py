"""Every private torch API stackrnn relies on, in one place, each with what it is relied on for.

A torch release may rename or change any of these without notice; tests/test_torch_private.py checks that each is
still there and still behaves as used here, and names the API that changed when one does. Where a fallback exists
the callers take it when an API is missing (None here); the test fails anyway, so that a release that drops one
is noticed rather than silently slower.

    torch._VF.lstm / gru / rnn_tanh / rnn_relu   the fused RNN kernels behind torch.nn.LSTM & co (fused.py)
    torch._C._storage_Use_Count                  how many references a storage has (scratch.reusable)
    torch._C._are_functorch_transforms_active    whether torch.func transforms run (weight drop's C path)
    torch.autograd.forward_ad._current_level     whether forward-mode AD runs (the same)
    torch.ops.aten.native_layer_norm_backward    a layer norm's input gradient from saved mean and 1 / std
                                                 (engine.py; an aten op, not in torch's documented API)
    torch._higher_order_ops.scan.scan            a loop over time that torch.export keeps as a loop and torch.onnx
                                                 writes as an ONNX Scan (graphs.py: exported models keep T dynamic)
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd import forward_ad

# the fused kernels, by cell name (cells.RecurrentCell.kernel)
RNN_KERNELS = {
    "lstm": torch._VF.lstm,
    "gru": torch._VF.gru,
    "rnn_tanh": torch._VF.rnn_tanh,
    "rnn_relu": torch._VF.rnn_relu,
}

layer_norm_backward = torch.ops.aten.native_layer_norm_backward

try:
    from torch._higher_order_ops.scan import scan
except ImportError:  # pragma: no cover - a torch without it: export says so (export.py)
    scan = None

_use_count = getattr(torch._C, "_storage_Use_Count", None)
HAS_USE_COUNT = _use_count is not None


def storage_use_count(tensor: Tensor) -> int | None:
    """The references to tensor's storage (its storage object counted: a lone tensor gives 2), or None where
    this torch cannot tell."""
    return None if _use_count is None else _use_count(tensor.untyped_storage()._cdata)


def transforms_active() -> bool:
    """Whether torch.func transforms (grad, vmap, ...) or forward-mode AD are active around this call."""
    return torch._C._are_functorch_transforms_active() or forward_ad._current_level >= 0

