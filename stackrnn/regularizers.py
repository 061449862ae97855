"""Regularisers for recurrent stacks: one small idea each, all the identity in eval mode, masks seedable.

Dimension key: T time, B batch, D features, V vocabulary, G = gates * H.
"""

from __future__ import annotations

import math
import sys

import torch
from torch import Tensor

from . import kernels, scratch, torch_private


def check_probability(name: str, p: float) -> float:
    """A dropout-like rate must be a number in [0, 1): 1 would drop everything and divide by zero."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1), got {p!r}")
    return float(p)


_BITS: dict[torch.device, Tensor] = {}  # the 16 single-bit masks of an int16, per device (made once, not per call)


def _bits(device: torch.device) -> Tensor:
    if device not in _BITS:
        _BITS[device] = torch.tensor([1 << i for i in range(15)] + [-(1 << 15)], dtype=torch.int16, device=device)
    return _BITS[device]


def _draw(n: int, q: float, like: Tensor, generator: torch.Generator | None) -> tuple[Tensor, int, int, float]:
    """Random words for n draws that come out True with probability q: (words (int64), bits per draw, threshold,
    q as drawn, in (0, 1)). Draw i is bit i mod 16 of the words' uint16 number i // 16 (bits 1, for q = 0.5), or
    True where the words' uint8 (bits 8) or int16 (bits 16) number i is below the threshold.

    Random bits come packed in 64-bit numbers: torch's bernoulli_ draws one number per element and costs about 7x
    more than 16 bits (torch.rand about 4x). q = 0.5 takes one bit per element, a multiple of 1/256 one byte, and
    any other q 16 bits, rounded to a multiple of 2**-16. On a 1024-unit layer W_hh has 4M elements: with
    bernoulli_ the draw was a fifth of a training step, and 16 bits still cost 5 ms where one bit costs 0.6."""
    if q == 0.5:
        bits, threshold, drawn = 1, 0, 0.5
    else:
        levels, bits = (256, 8) if (q * 256).is_integer() else (65536, 16)
        threshold = min(max(round(q * levels), 1), levels - 1)  # True when a uniform u in [0, levels) is below it
        drawn = threshold / levels
        threshold -= 32768 if bits == 16 else 0  # int16 numbers are uniform over [-32768, 32768)
    per_word = 64 // bits
    words = torch.randint(-2**63, 2**63 - 1, ((n + per_word - 1) // per_word,), dtype=torch.int64,
                          generator=generator, device=like.device)
    return words, bits, threshold, drawn


def _below(shape, q: float, like: Tensor, generator: torch.Generator | None) -> tuple[Tensor, float]:
    """A bool mask of `shape`, True with probability q (see _draw); returns (mask, q as drawn, in (0, 1))."""
    n = math.prod(shape)
    words, bits, threshold, drawn = _draw(n, q, like, generator)
    if bits == 1:
        mask = ((words.view(torch.int16).unsqueeze(-1) & _bits(like.device)) != 0).flatten()  # (n / 16, 16) flat
    else:
        mask = words.view(torch.uint8 if bits == 8 else torch.int16) < threshold
    return mask[:n].view(shape), drawn


def _keep_mask(shape, p: float, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Bernoulli(1 - p) mask scaled by 1 / (1 - p), so the expected value is unchanged. The keep rate may be
    rounded (see _below), and the scale uses the rate as drawn, so the expectation stays exact."""
    keep, q = _below(shape, 1 - p, like, generator)
    return keep.to(like.dtype).mul_(1 / q)


def locked_dropout(x: Tensor, p: float, training: bool, generator: torch.Generator | None = None) -> Tensor:
    """Variational dropout (Gal & Ghahramani 2016): x (T, B, D) with one mask per sequence, the same at every
    step, so a unit is either present for the whole sequence or absent for all of it."""
    if not training or p == 0:
        return x
    return x * _keep_mask((1, x.shape[1], x.shape[2]), p, x, generator)  # (1, B, D) broadcast over T


def sequence_dropout(x: Tensor, p: float, training: bool, variational: bool,
                     generator: torch.Generator | None = None) -> Tensor:
    """Dropout on x (T, B, D) as a stack is configured: variational (`locked_dropout`, one mask per sequence) or
    standard (a fresh draw per element). The stack between its layers and the models on their inputs and outputs
    all drop this way, so `variational` means the same everywhere."""
    if variational:
        return locked_dropout(x, p, training, generator)
    return torch.nn.functional.dropout(x, p, training)


def drop_weight(weight: Tensor, p: float, training: bool, generator: torch.Generator | None = None) -> Tensor:
    """DropConnect on a weight matrix (Wan et al. 2013; AWD-LSTM's weight drop on W_hh): a fresh mask per call,
    i.e. once per forward pass, shared by every step of it. The dropped tensor goes to the kernel as it is.

    A contiguous float32 or float64 CPU weight goes through the compiled kernel (csrc/drop.h), which reads each
    element's draw from the random words and never builds the mask: one pass forward and one backward, where
    PyTorch operations take six. Elsewhere (GPU, no C compiler, torch.func transforms, forward-mode AD) the same
    mask from the same words, as a tensor."""
    if not training or p == 0:
        return weight
    lib = _drop_kernel(weight)
    if lib is None or _transformed():
        return weight * _keep_mask(weight.shape, p, weight, generator)
    words, bits, threshold, drawn = _draw(weight.numel(), 1 - p, weight, generator)
    return _DropConnect.apply(weight, words, (lib, bits, threshold, 1 / drawn), True)


def _drop_kernel(weight: Tensor):
    """The compiled kernels for weight's type (kernels.Steps) where drop_connect can read it, else None."""
    if weight.device.type != "cpu" or not weight.is_contiguous() or sys.byteorder != "little":  # see drop.h
        return None
    return kernels.steps(weight.dtype)


def _transformed() -> bool:
    """Whether torch.func transforms or forward-mode AD are active: _DropConnect has no jvp or vmap rule, and the
    PyTorch path (the same mask from the same words) supports both."""
    return torch_private.transforms_active()


class _DropConnect(torch.autograd.Function):
    """weight (any shape, contiguous) -> weight * mask, the mask given as drop_connect's random words; the
    backward is the gradient times the same mask, itself a _DropConnect, so that a second derivative (a gradient
    penalty, say) goes through it as through weight * mask. (lib, bits, threshold, scale) travel as one argument.

    `reuse`: the dropped weight is written into memory kept for this weight (scratch.reusable) once the last
    pass's graph has let it go. A fresh 16 MB tensor a layer and pass (hidden 1024) cost the fused kernel's
    forward and backward about 20 ms of a 700 ms training step on the build machine, more than the drop itself:
    glibc hands such blocks back to the system when they are freed, and every 4 KiB faults again when written."""

    @staticmethod
    def forward(ctx, weight: Tensor, words: Tensor, how: tuple, reuse: bool = False) -> Tensor:
        ctx.save_for_backward(words)
        ctx.how = how
        lib, bits, threshold, scale = how
        out = (scratch.reusable(weight, weight) if reuse
               else torch.empty_like(weight, memory_format=torch.contiguous_format))
        lib.set_threads(torch.get_num_threads())
        lib.drop_connect(weight.numel(), bits, threshold, words.data_ptr(), scale, weight.data_ptr(), out.data_ptr())
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        (words,) = ctx.saved_tensors
        # a new tensor, not grad scaled in place: autograd may have handed the same grad to another input too
        # fresh memory: the gradient becomes weight.grad, which the caller keeps
        return _DropConnect.apply(grad.contiguous(), words, ctx.how), None, None, None


def embedding_dropout(weight: Tensor, p: float, training: bool, generator: torch.Generator | None = None) -> Tensor:
    """Drop whole words (Gal & Ghahramani; AWD-LSTM): rows of the embedding matrix (V, E) zeroed for a whole
    forward pass, so every occurrence of a dropped word disappears alike."""
    if not training or p == 0:
        return weight
    return weight * _keep_mask((weight.shape[0], 1), p, weight, generator)


def check_rate(name: str, p: float) -> float:
    """A keep-the-old-value rate such as zoneout's may be anything in [0, 1]: 1 keeps the initial state."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1], got {p!r}")
    return float(p)


def recurrent_mask(batch: int, size: int, p: float, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Recurrent dropout (Gal & Ghahramani 2016): a (B, H) mask on h_{t-1} inside the recurrence, drawn once per
    sequence and used at every step, scaled by 1 / (1 - p)."""
    return _keep_mask((batch, size), p, like, generator)


def zoneout_masks(steps: int, batch: int, size: int, p: float, like: Tensor,
                  generator: torch.Generator | None = None) -> Tensor:
    """(T, B, H) bool: where a unit keeps its previous value, drawn with probability p (rounded to a multiple of
    2**-16; 1 keeps every unit), fresh at every step. Drawn for all steps at once: one call instead of one per step,
    which would dominate a small layer's step."""
    if p >= 1:
        return torch.ones((steps, batch, size), dtype=torch.bool, device=like.device)
    return _below((steps, batch, size), p, like, generator)[0]


def zoneout_keeps(steps: int, batch: int, sizes: tuple[int, int], rates: tuple[float, float], training: bool,
                  like: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor | None, Tensor | None]:
    """One direction's zoneout masks (see zoneout_masks) for h and for c, of sizes (h's, c's), in training where
    the rate is not 0, else None; h's drawn first. The reference loop draws them here, and the engine draws the
    same through zoneout_factors, so a seeded generator gives both the same masks."""
    return tuple(zoneout_masks(steps, batch, size, rate, like, generator) if training and rate else None
                 for size, rate in zip(sizes, rates))


def zoneout_factors(steps: int, batch: int, sizes: tuple[int, int], rates: tuple[float, float], training: bool,
                    like: Tensor, dtype: torch.dtype,
                    generator: torch.Generator | None = None) -> tuple[Tensor | None, Tensor | None]:
    """zoneout_keeps(...) as 1.0 and 0.0 in `dtype` (the engine's carry factors), from the same random words, so
    the same masks. For float32 and float64 on the CPU, one pass of the compiled kernel (csrc/drop.h) writes
    them from the words, where PyTorch took a compare into a bool tensor and a cast: two passes and a tensor
    more. A layer's two (35, 32, 256) masks took 1.3-1.5 ms so against 2.0 on the build machine, drawing the
    words alone 1.0-1.1 (interleaved, 600 rounds)."""
    lib = kernels.steps(dtype) if like.device.type == "cpu" and sys.byteorder == "little" else None  # see drop.h
    if lib is None or _transformed():
        return tuple(None if keep is None else keep.to(dtype)
                     for keep in zoneout_keeps(steps, batch, sizes, rates, training, like, generator))

    def factors(size: int, rate: float) -> Tensor:  # zoneout_masks's draw, written as numbers
        out = torch.empty((steps, batch, size), dtype=dtype, device=like.device)  # the CPU, whatever the default
        if rate >= 1:
            return out.fill_(1)
        words, bits, threshold, _ = _draw(out.numel(), rate, like, generator)
        lib.set_threads(torch.get_num_threads())
        lib.drop_connect(out.numel(), bits, threshold, words.data_ptr(), 1.0, None, out.data_ptr())
        return out

    return tuple(factors(size, rate) if training and rate else None for size, rate in zip(sizes, rates))


def zoneout(new: Tensor, old: Tensor, p: float, keep: Tensor | None = None) -> Tensor:
    """Zoneout (Krueger et al. 2016) of one step's (B, H) state: with `keep` (training; a step of
    zoneout_masks) each unit where it is True keeps its previous value; without (eval) the expectation,
    p * old + (1 - p) * new."""
    if p == 0:
        return new
    if keep is None:
        return torch.lerp(new, old, p)
    return torch.where(keep, old, new)
