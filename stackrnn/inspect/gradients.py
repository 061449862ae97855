"""Gradient diagnostics: how much gradient reaches each layer of a stack, and each step of the unrolled window.

Deep and long recurrent networks fail to learn when the gradient shrinks (vanishes) or grows (explodes) on its
way down through the layers and back through the steps (Hochreiter 1991; Bengio et al. 1994; Pascanu et al.
2013). Watching the training loss does not show which; the norm of the gradient at each layer and each step
does: a norm falling by orders of magnitude from the top layer to the bottom, or from the window's last step to
its first, is vanishing gradient made visible.

    with GradientProbe(model.rnn) as probe:
        _, loss, _ = model(x, y)            # the forward pass must run while the probe is active
    loss.backward()                          # (inside or after the with block)
    probe.norms()                            # {"layer_grad_norm": [L], "step_grad_norm": [L][T]}

What is measured, for layer l (from 1 at the bottom) and step t, is the gradient of the loss with respect to
that layer's output x_t^(l) (the stack's `layer_output_hook` tensor, residual included, before dropout):
everything that flows back into layer l at step t from above it — the next layer (which has run its own full
backpropagation through time) or, for the top layer, the model's head. The path from h_{t+1}^(l) back to h_t^(l)
inside layer l itself is not part of it (it runs inside torch's fused kernel, where no hook reaches), so at the
top layer the steps show the head's per-step gradient, and the decay over the window shows from the layer below
the top downward.

The probe works for any stack (mixed cells, bidirectional, residual): it reads only the layer outputs. While
it is active the stack runs one fused kernel call per layer (so every output exists); otherwise nothing changes.
During training, `GradientInstrument` (registered with stackrnn.instruments for train.grad_every) probes every
N-th step and logs the norms as metrics records of split "grad".

Dimension key: L layers, T steps of the window, B batch, K directions, H hidden units.
"""

from __future__ import annotations

import math

from torch import Tensor

from ..instruments import Instrument, register
from ..stack import StackedRNN


class GradientProbe:
    """Capture dLoss/d(layer output) of every layer of `stack` in the forward passes run while active.

    Args:
        stack: the StackedRNN to watch (a model's `.rnn`).

    Attributes:
        squares: per layer index (from 0), the squared gradient norm of each step (T,), summed over batch and
            units; several forward passes while active (with the same T) add up.
    """

    def __init__(self, stack: StackedRNN) -> None:
        if not isinstance(stack, StackedRNN):
            raise TypeError(f"stack: expected a stackrnn.StackedRNN (a model's .rnn), got {type(stack).__name__}")
        self.stack = stack
        self.squares: dict[int, Tensor] = {}

    def __enter__(self) -> GradientProbe:
        if self.stack.layer_output_hook is not None:
            raise RuntimeError("the stack's layer_output_hook is already set: one probe at a time")
        self.squares = {}
        self.stack.layer_output_hook = self._watch
        return self

    def __exit__(self, *exc) -> None:
        # the tensor hooks already registered stay on their tensors and fire in a later backward
        self.stack.layer_output_hook = None

    def _watch(self, layer: int, x: Tensor) -> None:
        """Called by the stack on layer `layer`'s output x (T, B, K * H)."""
        if x.requires_grad:  # (under no_grad there is no gradient to wait for)
            x.register_hook(lambda grad: self._record(layer, grad))

    def _record(self, layer: int, grad: Tensor) -> None:
        square = grad.detach().float().pow(2).sum(dim=(1, 2))  # (T,)
        self.squares[layer] = self.squares[layer] + square if layer in self.squares else square

    def norms(self, scale: float = 1.0) -> dict[str, list]:
        """The norms of the gradients captured so far, divided by `scale` (the loss scale of an fp16 backward
        pass, which multiplied every gradient), bottom layer first, as plain floats:

            layer_grad_norm: (L,) the L2 norm of layer l's output gradient over the whole window
            step_grad_norm:  (L, T) the L2 norm of dL/dx_t^(l) over the batch and units, at each step t

        A layer whose output received no gradient (none flowed back yet, or the forward ran without grad) has
        an empty step list and a layer norm of 0.
        """
        layer_norms, step_norms = [], []
        for i in range(self.stack.num_layers):
            square = self.squares.get(i)
            steps = [] if square is None else (square.sqrt() / scale).tolist()
            layer_norms.append(math.sqrt(sum(s * s for s in steps)))
            step_norms.append(steps)
        return {"layer_grad_norm": layer_norms, "step_grad_norm": step_norms}


def probe_model(model) -> GradientProbe | None:
    """A probe on `model.rnn` (language models, classifiers), or None for a model without one stack (an
    encoder-decoder has two)."""
    stack = getattr(model, "rnn", None)
    return GradientProbe(stack) if isinstance(stack, StackedRNN) else None


def finite_or_none(values: list) -> list:
    """Non-finite floats (an exploding step) as None, so that the record stays valid JSON; nested lists too."""
    return [finite_or_none(v) if isinstance(v, list) else v if math.isfinite(v) else None for v in values]


class GradientInstrument(Instrument):
    """train.grad_every as a training instrument: every `every` steps, the step's forward pass runs under a
    probe and its backward pass fills it; the norms are logged as a metrics record of split "grad"."""

    split = "grad"

    def __init__(self, every: int) -> None:
        self.every = every
        self.probe: GradientProbe | None = None

    @classmethod
    def from_config(cls, train_config) -> GradientInstrument | None:
        return cls(train_config.grad_every) if train_config.grad_every else None

    def before_step(self, step: int, model) -> GradientProbe | None:
        self.probe = probe_model(model) if step % self.every == 0 else None
        return self.probe

    def after_backward(self, step: int, scale: float) -> dict | None:
        if self.probe is None:
            return None
        norms = self.probe.norms(scale=scale)  # (its hooks saw the scaled gradients)
        self.probe = None
        return {key: finite_or_none(values) for key, values in norms.items()}


register("grad_every", GradientInstrument.from_config)
