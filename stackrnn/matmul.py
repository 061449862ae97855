"""The engine's matrix products, by the compiled gemm (stackrnn/csrc/gemm.h) where it runs: CPU tensors of
float32 or float64, with the C kernels built (kernels.steps). Elsewhere torch's own products, with the same
results to float rounding.

Why not torch.mm: on CPU torch's float32 products go to MKL, which on AMD processors runs its AVX2 code. On this
project's build machines (AMD Zen 5 and Zen 4, two cores) torch.mm ran the engine's products at a third to two
thirds of the speed of oneDNN, which torch.nn.LSTM's fused kernel runs; gemm.h ran them as fast as oneDNN. On
Intel processors MKL runs its own best code, and there the big products over all of a layer's rows (mm,
weight_grad, linear) go to torch.mm: on two cores of an Intel Xeon with AVX-512 and AMX (a virtual machine that
reports family 6, model 167) it ran them at 185-228 GFLOPS where gemm.h ran 131-191. The recurrence's 32-row
products stay with gemm.h (Packed) everywhere: 113-152 GFLOPS there against torch.mm's 92-109.
`stackrnn.settings.matmul` (default from $STACKRNN_MATMUL) overrides the choice of the big products: `compiled`
(gemm.h), `torch`, or `auto` (the default, by the processor's maker as above). Layers that the fused kernel runs never come here.

Dimension key: M rows, K the summed dimension, N columns (a (M, K) @ b (K, N)); D inputs, G outputs of a linear.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import kernels, settings


def library(*tensors: Tensor):
    """kernels.steps() for these tensors where the compiled gemm can multiply them (all on the CPU, of one dtype,
    float32 or float64), its threads set to torch's count; else None."""
    first = tensors[0]
    if not settings.gemm:
        return None
    if first.device.type != "cpu" or any(t.device != first.device or t.dtype != first.dtype for t in tensors):
        return None
    lib = kernels.steps(first.dtype)
    if lib is not None:
        lib.set_threads(torch.get_num_threads())
    return lib


@functools.cache
def _intel_with_mkl() -> bool:
    """True where torch's CPU products are MKL's and the processor is Intel's (MKL's fast paths are for those)."""
    if not torch.backends.mkl.is_available():
        return False
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:  # not Linux: Windows names the maker in the processor's description; elsewhere unknown
        text = platform.processor()
    return "GenuineIntel" in text


def big_products_by_torch() -> bool:
    """Whether mm, weight_grad and linear hand their products to torch.mm (settings.matmul, see above)."""
    choice = settings.matmul
    if choice not in settings.MATMUL:  # as $STACKRNN_MATMUL gave it
        raise ValueError(f"STACKRNN_MATMUL is {choice!r}: use one of {', '.join(settings.MATMUL)} (auto by default)")
    return choice == "torch" or (choice == "auto" and _intel_with_mkl())


def _big(*tensors: Tensor):
    """library(*tensors) for one of the big products, None where torch.mm runs it (big_products_by_torch)."""
    lib = library(*tensors)
    return None if lib is None or big_products_by_torch() else lib


class Packed:
    """b (K, N), any strides, packed once for the compiled gemm; then packed(a) = a @ b for any a (M, K), as
    often as the recurrence needs it (b's values are copied: later changes to b are not seen).

    `lib` is library(b) (not None)."""

    def __init__(self, lib, b: Tensor) -> None:
        self.lib, (self.K, self.N) = lib, b.shape
        self.buffer = b.new_empty(lib.packed_size(self.K, self.N))
        lib.pack_b(self.K, self.N, b.data_ptr(), b.stride(0), b.stride(1), self.buffer.data_ptr())
        self._tiles = {}  # (rows M, a's stride along K) -> the product's room: the recurrence asks the same each step

    def tiles(self, rows: int, step: int = 1) -> Tensor:
        """The room csrc/gemm.h needs (tile_space) for an a of this many rows, `step` apart along K (1: a's rows
        run along memory), kept for the next call."""
        key = rows, step == 1
        if key not in self._tiles:
            self._tiles[key] = self.buffer.new_empty(max(1, self.lib.tile_space(rows, self.K, step)))
        return self._tiles[key]

    def __call__(self, a: Tensor, add: Tensor | None = None, out: Tensor | None = None) -> Tensor:
        """a (M, K) @ b, plus add ((M, N), or a bias (N,) for every row) where given, into out (M, N) where given:
        rows along memory, or with add None columns along memory (a transposed view, which gemm.h writes as such).
        a and add in any strides, of b's dtype and device."""
        M = a.shape[0]
        for name, t in (("a", a), ("add", add), ("out", out)):
            if t is not None and (t.dtype != self.buffer.dtype or t.device != self.buffer.device):
                raise ValueError(f"matmul: {name} is {t.dtype} on {t.device}, the packed b {self.buffer.dtype} on "
                                 f"{self.buffer.device}")
        if a.dim() != 2 or a.shape[1] != self.K:
            raise ValueError(f"matmul: a must be (M, {self.K}) for b ({self.K}, {self.N}), got {tuple(a.shape)}")
        if out is not None and tuple(out.shape) != (M, self.N):
            raise ValueError(f"matmul: out must be ({M}, {self.N}), got {tuple(out.shape)}")
        y = a.new_empty(M, self.N) if out is None else out
        if y.stride(1) != 1 and (add is not None or y.stride(0) != 1):
            raise ValueError("matmul: out must have rows or (without add) columns along memory")
        if M == 0 or self.N == 0:
            return y
        if add is not None:
            if tuple(add.shape) != (M, self.N):  # broadcast as addmm does: a bias (N,), a column (M, 1), ...
                try:
                    add = add.expand(M, self.N)
                except RuntimeError:
                    raise ValueError(f"matmul: add must broadcast to ({M}, {self.N}), got {tuple(add.shape)}") from None
            if add.stride(1) != 1:  # gemm.h reads add's rows along memory (any row stride, 0 for a bias)
                add = add.contiguous()
        ld_add = 0 if add is None else add.stride(0)
        self.lib.gemm_packed(M, self.N, self.K, a.data_ptr(), a.stride(0), a.stride(1), self.buffer.data_ptr(),
                             None if add is None else add.data_ptr(), ld_add, y.data_ptr(), y.stride(0), y.stride(1),
                             self.tiles(M, a.stride(1)).data_ptr())
        return y


def mm(a: Tensor, b: Tensor, add: Tensor | None = None) -> Tensor:
    """a (M, K) @ b (K, N) (+ add, (M, N) or (N,)), any strides: the compiled gemm where it runs and is chosen
    (big_products_by_torch), else torch."""
    lib = _big(a, b) if add is None else _big(a, b, add)
    if lib is None or a.numel() == 0 or b.numel() == 0:
        return torch.mm(a, b) if add is None else torch.addmm(add, a, b)
    return Packed(lib, b)(a, add)


def weight_grad(dy: Tensor, x: Tensor) -> Tensor:
    """dy^T x (G, D) for dy (M, G) and x (M, D), any strides: the gradient of a weight W (G, D) over M rows of
    y = x W^T. Where G is the longer side it is computed as (x^T dy)^T, written transposed: the kernel cuts a
    product's N into panels, and G rarely leaves a partial one where D (28 inputs, say) leaves most of one empty
    (at hidden 256 and 35 x 32 rows: 1.9 ms against 2.6)."""
    lib = _big(dy, x)
    if lib is None or dy.numel() == 0 or x.numel() == 0:
        return torch.mm(dy.t(), x)
    if x.shape[1] >= dy.shape[1]:
        return Packed(lib, x)(dy.t())
    out = dy.new_empty(dy.shape[1], x.shape[1])
    Packed(lib, dy)(x.t(), out=out.t())
    return out


class _Linear(torch.autograd.Function):
    """y = x W^T + b over all leading dimensions of x, its three products by the compiled gemm."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        rows = x.reshape(-1, x.shape[-1])  # (M, D)
        ctx.save_for_backward(rows, weight)
        ctx.shape, ctx.bias = x.shape, bias is not None
        return mm(rows, weight.t(), bias).view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    @once_differentiable  # the engine's recurrence, which reads this layer's output, is once-differentiable too
    def backward(ctx, dy: Tensor):
        rows, weight = ctx.saved_tensors
        dy = dy.reshape(-1, weight.shape[0])  # (M, G), maybe broadcast (stride 0): the gemm reads any strides
        dx = mm(dy, weight).view(ctx.shape) if ctx.needs_input_grad[0] else None
        dw = weight_grad(dy, rows) if ctx.needs_input_grad[1] else None  # (G, D), one product over all M rows
        db = dy.sum(0) if ctx.bias and ctx.needs_input_grad[2] else None
        return dx, dw, db


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """torch.nn.functional.linear(x, weight, bias): x (..., D), weight (G, D), bias (G,) or None -> (..., G), by
    the compiled gemm forward and backward where it runs (not under autocast, which chooses its own precision)."""
    tensors = (x, weight) if bias is None else (x, weight, bias)
    if (x.numel() == 0 or torch.is_autocast_enabled(x.device.type) or _big(*tensors) is None):
        return torch.nn.functional.linear(x, weight, bias)
    return _Linear.apply(x, weight, bias)
