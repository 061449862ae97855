"""The engine: one direction of a layer that torch's fused kernel cannot run (layer norm, zoneout, recurrent
dropout), with a hand-written backward pass.

Dimension key: T time, B batch, D input features, H hidden units, N gates, G = N * H.

The reference loop (`recurrence.reference_loop`) lets autograd record every step: per step it builds a dozen graph
nodes, and its backward pass computes W_hh's gradient as T small matrix products. Here autograd sees one node
per direction instead:

    forward   gi = project_input(x)                   (T, B, G)  one matrix product, outside (matmul.linear)
              for each step:  gh = h W_hh^T (+ LN)     (B, G)     the only product inside the recurrence
                              pointwise gate math, zoneout and padding as one carry factor
    backward  for each step, in reverse:  the pointwise derivatives from coefficients prepared for all steps at
              once, then dh_{t-1} = dgh W_hh                     the only product inside the recurrence
              dW_hh = dGH^T H, the gains' and biases' gradients  one product / reduction over all T * B rows
              dgi (T, B, G) goes back to autograd, which runs matmul.linear's backward: two products over all rows

Zoneout and padding are both "a unit keeps its previous value", so they become one carry factor per step,
a = 1 - valid * (1 - keep) (keep: the zoneout mask in training, the rate in eval), and every new state is
lerp(cell state, previous state, a). Outputs are zero at padded steps.

Each cell type writes its gate math and its derivative once, in a `_Math` class below; the loop, layer norm of
W_hh h, zoneout, recurrent dropout, padding, direction and an LSTM's projection (h = (o tanh c') W_hr^T, one
more product per step, its weight gradient again one product over all steps) are shared. Results equal the
reference loop's (to float rounding); tests/test_engine.py checks that and gradchecks every path in float64.

An LSTM or GRU step's pointwise work (layer norms, gates, c, tanh, zoneout, padding, the next step's dropped-out
h) runs as one call into a compiled C kernel where one could be built (stackrnn/kernels.py, stackrnn/csrc/):
PyTorch would run it as about ten kernels, each a pass over the step's tensors. An LSTM's whole loop over the
steps is one call into C (csrc/loops.h): the Python loop below costs about 25 us a step, a sixth of a step at
256 units. The products, per step and over all steps (the input projection, the weight gradients), go through
the compiled gemm of the same library (matmul.py), which runs them two to four times as fast as torch.mm on
this project's (AMD) build machine. The same math stays here as PyTorch operations (the `_Math` classes) for
RNN cells, projections, other dtypes and devices, and machines without a C compiler; tests check the two
against each other and gradcheck both.

Not supported: torch.func transforms (grad, vmap) of a stack that runs the engine (the Function keeps
per-step values that setup_context could not see); fused=False runs the loop, which they can trace.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import kernels, matmul, torch_private
from .cells import GRUCell, LSTMCell, RecurrentCell, RNNCell, State

_EPS = 1e-5  # torch.nn.functional.layer_norm's and nn.LayerNorm's default, as the cells use
# aten's layer-norm backward from saved mean and 1/std: the input gradient only (gains are summed over all steps)
_ln_backward = torch_private.layer_norm_backward


class _Product:
    """x (B, K) -> x weight^T (B, N) for a weight (N, K) used at every step of a pass; with transposed=True,
    x (B, N) -> x weight (B, K) (the backward's products).

    The recurrence's products have only B rows, which torch.mm (MKL) runs slowly on CPU: where the compiled gemm
    runs (matmul.py: CPU, float32 or float64) the weight is packed for it once per pass (`compiled`, which the
    LSTM's time loops in C also read). Elsewhere torch.mm. (oneDNN's packed matmul once ran them where the gemm
    does not; a whole training step measured no faster with it: docs/benchmarks.md.)
    """

    def __init__(self, weight: Tensor, transposed: bool = False) -> None:
        lib = matmul.library(weight)
        self.compiled = matmul.Packed(lib, weight if transposed else weight.t()) if lib is not None else None
        self.weight = weight.t() if transposed else weight  # (N, K): x -> x self.weight^T

    def __call__(self, x: Tensor, add: Tensor | None = None) -> Tensor:
        if self.compiled is not None:
            return self.compiled(x, add)
        return torch.mm(x, self.weight.t()) if add is None else torch.addmm(add, x, self.weight.t())


# A cell's `_Math` runs its gate math forward step by step, and backward from coefficients prepared for all steps
# at once. What forward keeps for backward it hands over as a flat list (stash), which _Recurrence saves with
# save_for_backward, so that autograd frees it after backward; backward hands it back (unstash), and whatever
# backward prepares lives only until backward returns (release).


class _LSTMMath:
    """c' = f c + i g,  h' = o tanh(c')  (or o tanh(LN(c')) with layer norm), on pre = gi + gh, gate order i f g o."""

    additive = True  # the cell reads gi + gh only, so b_hh can join gi's product before the loop
    num_gates = 4

    def __init__(self, hidden: int, norm_c: tuple[Tensor, Tensor] | None = None) -> None:
        self.H = hidden
        self.norm_c = norm_c  # (gain, shift) of LN(c'), or None
        self.cn, self.c, self.mean, self.rstd = [], [], [], []  # LN(c') per step

    def begin(self, steps: int, batch: int, like: Tensor) -> None:
        # every step's gates and tanh(c') written in place: no list to stack, no second copy of the largest tensor
        self.act = like.new_empty(steps, batch, 4 * self.H)
        self.tc = like.new_empty(steps, batch, self.H)

    def step(self, s: int, pre: Tensor, gh: None, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """pre (B, 4H) is this step's own tensor: it is overwritten."""
        H = self.H
        act, tc = self.act[s], self.tc[s]
        # tanh(x) = 2 sigmoid(2x) - 1: one sigmoid pass over all four gates, and two cheap in-place passes, in
        # place of a separate tanh (torch's CPU tanh is 1.5-3x slower than its sigmoid)
        pre[:, 2 * H:3 * H].mul_(2)
        torch.sigmoid(pre, out=act)
        g = act[:, 2 * H:3 * H].mul_(2).sub_(1)
        c = torch.addcmul(act[:, H:2 * H] * state[1], act[:, :H], g)
        if self.norm_c is None:
            torch.tanh(c, out=tc)
        else:
            cn, mean, rstd = torch.native_layer_norm(c, (H,), None, None, _EPS)
            for keep, value in ((self.cn, cn), (self.c, c), (self.mean, mean), (self.rstd, rstd)):
                keep.append(value)
            torch.tanh(torch.addcmul(self.norm_c[1], cn, self.norm_c[0]), out=tc)
        return act[:, 3 * H:] * tc, c

    def stash(self) -> list[Tensor]:
        kept = [self.act, self.tc, *self.cn, *self.c, *self.mean, *self.rstd]
        del self.act, self.tc, self.cn, self.c, self.mean, self.rstd
        return kept

    def unstash(self, kept: list[Tensor]) -> None:
        self.act, self.tc = kept[:2]
        T = self.act.shape[0]
        per_step = [kept[2 + k * T:2 + (k + 1) * T] for k in range(4)] if self.norm_c is not None else [[]] * 4
        self.cn, self.c, self.mean, self.rstd = per_step

    def cell_outputs(self) -> Tensor:
        """o * tanh(c') of every step (T, B, H): what a projection multiplies."""
        return self.act[..., 3 * self.H:] * self.tc

    def prepare(self, c_prev: Tensor) -> None:
        """Coefficients of every step's derivative at once, c_prev (T, B, H) the cell state before each step:
        dpre = [dc, dc, dc, dh] * coef, each gate's derivative times what the gate multiplies."""
        i, f, g, o = self.act.split(self.H, dim=-1)  # (T, B, H) views
        tc = self.tc
        coef = self.act.new_empty(*self.act.shape[:2], 4, self.H)
        torch.mul(i * (1 - i), g, out=coef[:, :, 0])
        torch.mul(f * (1 - f), c_prev, out=coef[:, :, 1])
        torch.mul(1 - g * g, i, out=coef[:, :, 2])
        torch.mul(o * (1 - o), tc, out=coef[:, :, 3])
        self.coef, self.f = coef, f
        self.o_dtanh = o * (1 - tc * tc)  # dh -> d(the tanh's argument)
        if self.norm_c is not None:  # LN(c')'s gain and shift gradients, summed step by step
            self.d_gain, self.d_shift = torch.zeros_like(self.norm_c[0]), torch.zeros_like(self.norm_c[1])

    def step_back(self, s: int, dh: Tensor, dc: Tensor, d_pre: Tensor) -> tuple[None, Tensor]:
        """From the gradients of step s's new (h, c): writes dpre (B, 4H) into d_pre; returns (dh_prev direct
        part, dc_prev)."""
        if self.norm_c is None:
            dc = torch.addcmul(dc, dh, self.o_dtanh[s])
        else:
            dcn = dh * self.o_dtanh[s]  # gradient of the normalised c' after gain and shift
            self.d_gain.add_((dcn * self.cn[s]).sum(0))
            self.d_shift.add_(dcn.sum(0))
            dc = dc + _ln_backward(dcn * self.norm_c[0], self.c[s], (self.H,), self.mean[s], self.rstd[s], None,
                                   None, (True, False, False))[0]
        d_pre = d_pre.view(-1, 4, self.H)
        torch.mul(dc.unsqueeze(1), self.coef[s, :, :3], out=d_pre[:, :3])
        torch.mul(dh, self.coef[s, :, 3], out=d_pre[:, 3])
        return None, dc * self.f[s]

    def extra_grads(self) -> tuple[Tensor | None, Tensor | None]:
        """Gradients of LN(c')'s gain and shift, summed over all steps and the batch."""
        return (None, None) if self.norm_c is None else (self.d_gain, self.d_shift)

    def release(self) -> None:
        self.__dict__ = {"H": self.H, "norm_c": self.norm_c}


class _GRUMath:
    """r, z = sigmoid(gi_rz + gh_rz),  n = tanh(gi_n + r gh_n),  h' = (1 - z) n + z h;  gate order r z n."""

    additive = False  # r scales gh_n with its bias: gi and gh stay apart
    num_gates = 3

    def __init__(self, hidden: int, norm_c: None = None) -> None:
        self.H = hidden
        self.rz, self.n, self.ghn = [], [], []

    def begin(self, steps: int, batch: int, like: Tensor) -> None:
        pass

    def step(self, s: int, gi: Tensor, gh: Tensor, state: Tensor) -> tuple[Tensor, None]:
        H = self.H
        rz = (gi[:, :2 * H] + gh[:, :2 * H]).sigmoid_()
        ghn = gh[:, 2 * H:]
        n = torch.addcmul(gi[:, 2 * H:], rz[:, :H], ghn).tanh_()
        self.rz.append(rz)
        self.n.append(n)
        self.ghn.append(ghn)
        return torch.lerp(n, state, rz[:, H:]), None

    def stash(self) -> list[Tensor]:
        # lists of steps on the torch path; (T, B, .) tensors where the compiled step wrote them
        kept = [x if isinstance(x, Tensor) else torch.stack(x) for x in (self.rz, self.n, self.ghn)]
        del self.rz, self.n, self.ghn
        return kept

    def unstash(self, kept: list[Tensor]) -> None:
        self.rz, self.n, self.ghn = kept

    def prepare(self, h_prev: Tensor) -> None:
        r, z = self.rz.split(self.H, dim=-1)
        n, ghn = self.n, self.ghn
        dn = (1 - z) * (1 - n * n)  # dh -> d(n's argument)
        dr = dn * ghn * r * (1 - r)
        dz = (h_prev - n) * z * (1 - z)
        self.coef_i = torch.stack([dr, dz, dn], dim=-2)  # (T, B, 3, H): dgi = dh * coef_i, per gate
        self.coef_h = torch.stack([dr, dz, dn * r], dim=-2)  # dgh = dh * coef_h
        self.z = z
        self.dh = []

    def step_back(self, s: int, dh: Tensor, dc: None, d_gh: Tensor) -> tuple[Tensor, None]:
        self.dh.append(dh)
        torch.mul(dh.unsqueeze(1), self.coef_h[s], out=d_gh.view(-1, 3, self.H))
        return dh * self.z[s], None

    def input_grad(self) -> Tensor:
        dh = torch.stack(self.dh[::-1])  # (T, B, H) in step order
        return (dh.unsqueeze(-2) * self.coef_i).flatten(-2)

    def extra_grads(self) -> tuple[None, None]:
        return None, None

    def release(self) -> None:
        self.__dict__ = {"H": self.H}


class _RNNMath:
    """h' = tanh(pre) or relu(pre), pre = gi + gh."""

    additive = True
    num_gates = 1

    def __init__(self, hidden: int, norm_c: None = None, relu: bool = False) -> None:
        self.relu = relu
        self.h = []

    def begin(self, steps: int, batch: int, like: Tensor) -> None:
        pass

    def step(self, s: int, pre: Tensor, gh: None, state: Tensor) -> tuple[Tensor, None]:
        h = pre.relu_() if self.relu else pre.tanh_()
        self.h.append(h)
        return h, None

    def stash(self) -> list[Tensor]:
        kept = [torch.stack(self.h)]
        del self.h
        return kept

    def unstash(self, kept: list[Tensor]) -> None:
        (self.h,) = kept

    def prepare(self, h_prev: Tensor) -> None:
        self.coef = (self.h > 0).to(self.h.dtype) if self.relu else 1 - self.h * self.h

    def step_back(self, s: int, dh: Tensor, dc: None, d_pre: Tensor) -> tuple[None, None]:
        torch.mul(dh, self.coef[s], out=d_pre)
        return None, None

    def extra_grads(self) -> tuple[None, None]:
        return None, None

    def release(self) -> None:
        self.__dict__ = {"relu": self.relu}


def _math_for(cell: RecurrentCell):
    """The cell's `_Math` class and its extra arguments, or None for a cell the engine does not know."""
    if isinstance(cell, LSTMCell):
        return _LSTMMath, {}
    if isinstance(cell, GRUCell):
        return _GRUMath, {}
    if isinstance(cell, RNNCell):
        return _RNNMath, {"relu": cell.nonlinearity == "relu"}
    return None


def supports(cell: RecurrentCell) -> bool:
    """Whether the engine can run this cell (the three built-in cell types, an LSTM's projection included)."""
    return _math_for(cell) is not None


class _Recurrence(torch.autograd.Function):
    """One direction over all steps. Inputs (None where absent):

        make_math             a function (LN(c') gain and shift, or None) -> the cell's fresh _Math
        reverse               run from the last step to the first
        gi (T, B, G)          projected input, with b_hh already added for additive cells (LSTM, RNN)
        h0 (B, P), c0 (B, H)  initial state (c0 None but for LSTM; P = H but for a projected LSTM)
        w_hh (G, P)           this pass's W_hh (maybe weight-dropped)
        b_hh (G,)             GRU only: its hidden bias, which r scales
        g_hh (G,)             layer norm of h W_hh^T: the gains (flattened (N, H))
        ln_c_gain, ln_c_shift (H,)   LSTM layer norm of c'
        a_h (T, B, P), a_c (T, B, H), or (T, B, 1): carry factors (zoneout and padding), in time order
        valid (T, B, 1)       1 at valid steps, 0 at padding; the output is zero there
        h_mask (B, P)         recurrent dropout on h inside h W_hh^T
        w_hr (P, H)           an LSTM's projection: h = (o * tanh(c')) W_hr^T
        g_ih, b_in (G,)       with the LSTM kernel and layer norm only: gi is x W_ih^T as it comes from the
                              product, and the kernel takes LN(gi) g_ih + b_in (b_ih + b_hh, or None) per step

    Returns out (T, B, P) in time order, and the final h and c (c: an empty tensor for cells without it).
    """

    @staticmethod
    def forward(ctx, make_math, reverse, gi, h0, c0, w_hh, b_hh, g_hh, ln_c_gain, ln_c_shift, a_h, a_c, valid, h_mask,
                w_hr, g_ih=None, b_in=None):
        T, B, G = gi.shape
        math = make_math(None if ln_c_gain is None else (ln_c_gain, ln_c_shift))
        num_gates = math.num_gates
        product = _Product(w_hh)  # h -> h W_hh^T
        project = _Product(w_hr) if w_hr is not None else None  # an LSTM's o * tanh(c') -> h (B, P)
        order = range(T - 1, -1, -1) if reverse else range(T)
        math.begin(T, B, gi)
        # the compiled step (stackrnn/kernels.py): same math, one pass per step. An LSTM with layer norm needs the
        # input's raw product (g_ih), which run_direction hands over only where this kernel runs
        lib = _kernel_for(math, gi, g_hh, w_hr, g_ih)
        # an LSTM's whole loop runs in C (csrc/loops.h), its products by the compiled gemm, unless
        # settings.kernels "steps" asks for the Python loop over the same kernels; backward follows forward's choice
        ctx.loop = lib is not None and c0 is not None and lib.loops and product.compiled is not None
        inputs = (w_hh, b_hh, g_hh, a_h, a_c, valid, h_mask, w_hr, g_ih, b_in)
        if lib is not None and c0 is None:  # GRU
            H_all, norms = _gru_kernel_forward(lib, math, product, gi, h0, b_hh, g_hh, a_h, h_mask, order)
            return _Recurrence._finish(ctx, lib, math, reverse, num_gates, H_all, None, valid, inputs, norms)
        if lib is not None:
            H_all, c_all, norms = _kernel_forward(lib, math, product, gi, h0, c0, g_hh, a_h, a_c, h_mask, reverse,
                                                  g_ih, b_in, ctx.loop)
            return _Recurrence._finish(ctx, lib, math, reverse, num_gates, H_all, c_all, valid, inputs, norms)
        if g_ih is not None:
            raise RuntimeError("the LSTM kernel was switched off between run_direction and the engine's forward")
        hs, cs = [h0], [c0]
        z_raw, z_norm, means, rstds = [], [], [], []  # layer norm of h W_hh^T, per step
        for s, t in enumerate(order):
            h = hs[-1]
            h_in = h * h_mask if h_mask is not None else h
            if g_hh is not None:
                z = product(h_in).view(B, num_gates, -1)
                zn, mean, rstd = torch.native_layer_norm(z, (z.shape[-1],), None, None, _EPS)
                zn = zn.view(B, G)
                for keep, value in ((z_raw, z), (z_norm, zn), (means, mean), (rstds, rstd)):
                    keep.append(value)
                if math.additive:
                    pre, gh = torch.addcmul(gi[t], zn, g_hh), None
                else:
                    pre, gh = gi[t], (torch.addcmul(b_hh, zn, g_hh) if b_hh is not None else zn * g_hh)
            elif math.additive:
                pre, gh = product(h_in, add=gi[t]), None
            else:
                pre, gh = gi[t], product(h_in, add=b_hh)
            new_h, new_c = math.step(s, pre, gh, (h, cs[-1]) if c0 is not None else h)
            if project is not None:
                new_h = project(new_h)
            if a_h is not None:
                new_h = torch.lerp(new_h, h, a_h[t])
            if a_c is not None and new_c is not None:
                new_c = torch.lerp(new_c, cs[-1], a_c[t])
            hs.append(new_h)
            cs.append(new_c)
        H_all = torch.stack(hs)  # (T + 1, B, P) in processing order
        c_all = torch.stack(cs) if c0 is not None else None
        return _Recurrence._finish(ctx, None, math, reverse, num_gates, H_all, c_all, valid, inputs,
                                   [*z_raw, *z_norm, *means, *rstds])

    @staticmethod
    def _finish(ctx, lib, math, reverse, num_gates, H_all, c_all, valid, inputs, norms):
        """forward's outputs from every step's h (H_all) and c (c_all), both (T + 1, B, .) in processing order;
        saves what backward reads: inputs, H_all, c_all, the layer norms' values (norms: per step z, LN(z), mean
        and 1 / std, in four runs of T, for the torch path; for a kernel, what its forward returned) and the
        cell's own."""
        # out, h and c are new tensors, never views of what backward reads
        out = H_all[1:].flip(0) if reverse else H_all[1:].clone()
        if valid is not None:
            out = out * valid
        c_last = c_all[-1].clone() if c_all is not None else H_all.new_empty(0)
        ctx.lib, ctx.math, ctx.reverse, ctx.num_gates = lib, math, reverse, num_gates
        ctx.norms = len(norms)
        # everything backward reads goes through save_for_backward, so autograd frees it once backward has run
        ctx.save_for_backward(*inputs, H_all, c_all, *norms, *math.stash())
        return out, H_all[-1].clone(), c_last

    @staticmethod
    @once_differentiable  # the backward is hand-written: a second derivative through it is an error, not zero
    def backward(ctx, d_out, d_hT, d_cT):
        # contiguous as forward saved them (a no-op then): a saved-tensor hook may hand them back in other layouts,
        # and the steps below and the kernels index them as forward laid them out
        saved = [t if t is None else t.contiguous() for t in ctx.saved_tensors]
        w_hh, b_hh, g_hh, a_h, a_c, valid, h_mask, w_hr, g_ih, b_in, H_all, c_all = saved[:12]
        norms = saved[12:12 + ctx.norms]
        math, reverse = ctx.math, ctx.reverse
        math.unstash(list(saved[12 + ctx.norms:]))
        T, B, P = d_out.shape  # P: h's size (an LSTM's projection size, else H)
        G = w_hh.shape[0]
        H = G // ctx.num_gates
        d_out = d_out * valid if valid is not None else d_out
        if reverse:  # everything below runs in processing order
            d_out = d_out.flip(0)
            a_h = a_h.flip(0) if a_h is not None else None
            a_c = a_c.flip(0) if a_c is not None else None
        has_c = c_all is not None
        cell_out = d_proj = project_t = None
        if w_hr is not None:
            cell_out = math.cell_outputs()  # (T, B, H), for W_hr's gradient
            d_proj = d_out.new_empty(T, B, P)  # gradient of every step's projected h
            project_t = _Product(w_hr, transposed=True)  # dh (B, P) -> dh W_hr (B, H)
        dh = d_hT if d_hT is not None else torch.zeros_like(H_all[0])
        dc = d_cT if has_c and d_cT is not None and d_cT.numel() else (torch.zeros_like(c_all[0]) if has_c else None)
        # the gradient of every step's gh (after layer norm), in processing order; the LSTM kernel with layer norm
        # needs it only within a step (it sums the bias's gradient itself, and returns x W_ih^T's)
        lstm_ln_kernel = ctx.lib is not None and has_c and g_hh is not None
        d_gh = d_out.new_empty(T, B, G) if not lstm_ln_kernel else None
        # ... and of h W_hh^T before it: with layer norm, read only here (by d_w's product below)
        d_z = d_out.new_empty(T, B, G) if g_hh is not None else d_gh
        d_g = torch.zeros_like(g_hh) if g_hh is not None else None  # summed step by step: no (T, B, G) copies
        product_t = _Product(w_hh, transposed=True)  # dz -> dz W_hh
        d_gi = d_g_ih = d_b_in = None  # d_gi: set here where a kernel computes it, else from math below
        if ctx.lib is not None:
            ctx.lib.set_threads(torch.get_num_threads())
        if ctx.lib is not None and not has_c:  # GRU
            dh, d_gi = _gru_kernel_backward(ctx.lib, math, product_t, d_out, dh, g_hh, norms, a_h, h_mask, H_all,
                                            d_gh, d_z, d_g)
        elif ctx.lib is not None:  # with layer norm, d_gi is that of x W_ih^T, which the kernel normalised
            dh, dc, d_gi, d_g_ih, d_b_in = _kernel_backward(ctx.lib, math, product_t, d_out, dh, dc, g_hh, norms, a_h,
                                                            a_c, h_mask, c_all, d_gh, d_z, d_g, g_ih, b_in, reverse,
                                                            ctx.loop)
        else:
            dh, dc = _torch_backward(math, product_t, project_t, d_out, dh, dc, g_hh,
                                     norms, ctx.norms, a_h, a_c, h_mask, H_all, c_all, d_gh, d_z, d_g, d_proj)
        # the weight gradients of all steps: one product over T * B rows
        h_in = H_all[:-1] * h_mask if h_mask is not None else H_all[:-1]
        d_w = matmul.weight_grad(d_z.reshape(T * B, G), h_in.reshape(T * B, P)) if ctx.needs_input_grad[5] else None
        d_w_hr = None
        if w_hr is not None and ctx.needs_input_grad[14]:
            d_w_hr = matmul.weight_grad(d_proj.reshape(T * B, P), cell_out.reshape(T * B, H))
        d_b = d_gh.sum((0, 1)) if b_hh is not None and ctx.needs_input_grad[6] else None
        if d_gi is None:
            d_gi = math.input_grad() if not math.additive else d_gh
        if reverse:
            d_gi = d_gi.flip(0)
        d_gain, d_shift = math.extra_grads()
        math.release()
        return (None, None, d_gi, dh, dc, d_w, d_b, d_g, d_gain, d_shift, None, None, None, None, d_w_hr, d_g_ih,
                d_b_in)


def _torch_backward(math, product_t, project_t, d_out: Tensor, dh: Tensor, dc: Tensor | None, g_hh: Tensor | None,
                    norms, count: int, a_h: Tensor | None, a_c: Tensor | None, h_mask: Tensor | None, H_all: Tensor,
                    c_all: Tensor | None, d_gh: Tensor, d_z: Tensor, d_g: Tensor | None, d_proj: Tensor | None):
    """_Recurrence's backward over all steps as PyTorch operations, everything in processing order: writes every
    step's gradient of gh into d_gh, of h W_hh^T into d_z (the same tensor without layer norm) and, with a
    projection (project_t), of the projected h into d_proj; sums g_hh's into d_g. Returns the gradients of h0 and
    c0 (None without c). norms: per step z, LN(z), mean and 1 / std, in four runs of count // 4."""
    T, B, G = d_gh.shape
    H = G // math.num_gates
    n = count // 4  # steps with layer norm
    z_raw, z_norm, means, rstds = (norms[k * n:(k + 1) * n] for k in range(4))
    has_c = c_all is not None
    math.prepare(c_all[:-1] if has_c else H_all[:-1])
    for s in range(T - 1, -1, -1):
        dh = dh + d_out[s]
        if a_h is not None:  # lerp(new, old, a): a share of the gradient goes straight to the old state
            dh_keep = dh * a_h[s]
            dh = dh - dh_keep
        if has_c and a_c is not None:
            dc_keep = dc * a_c[s]
            dc = dc - dc_keep
        if project_t is not None:
            d_proj[s] = dh
            dh = project_t(dh)
        dh_direct, dc_prev = math.step_back(s, dh, dc, d_gh[s])
        if g_hh is not None:
            d_g.add_((d_gh[s] * z_norm[s]).sum(0))
            dzn = (d_gh[s] * g_hh).view(B, math.num_gates, H)
            d_z[s] = _ln_backward(dzn, z_raw[s], (H,), means[s], rstds[s], None, None,
                                  (True, False, False))[0].view(B, G)
        dh_prev = product_t(d_z[s])
        if h_mask is not None:
            dh_prev = dh_prev * h_mask
        if dh_direct is not None:
            dh_prev = dh_prev + dh_direct
        if a_h is not None:
            dh_prev = dh_prev + dh_keep
        dh = dh_prev
        if has_c:
            dc = dc_prev + dc_keep if a_c is not None else dc_prev
    return dh, dc


def _kernel_for(math, gi: Tensor, g_hh: Tensor | None, w_hr: Tensor | None, g_ih: Tensor | None = None):
    """The compiled step kernels (kernels.steps()) where they run this direction, else None: an LSTM without
    projection or a GRU, with or without layer norm, in float32 or float64 on CPU. A layer-normalised LSTM's
    kernel normalises the input's product itself: it runs only where run_direction handed that over raw (g_ih)."""
    if gi.device.type != "cpu" or w_hr is not None:
        return None
    lstm = isinstance(math, _LSTMMath) and (g_hh is None or g_ih is not None)
    lib = kernels.steps(gi.dtype) if lstm or isinstance(math, _GRUMath) else None
    if lib is not None:
        lib.set_threads(torch.get_num_threads())  # a step's rows are shared between torch's threads
    return lib


def _carry_pointer(a: Tensor | None):
    """A carry factor (T, B, P) or (T, B, 1), maybe broadcast, as (address of step 0 in bytes, bytes per step,
    row stride, column stride) for the C kernel, which reads column strides 0 (one value per row) and 1 and any
    non-negative step and row strides (_kernel_layout makes sure of that). (None, 0, 0, 0) for no carry."""
    if a is None:
        return None, 0, 0, 0
    # a size-1 dimension is broadcast: stride 0, whatever torch records for it
    return (a.data_ptr(), a.stride(0) * a.element_size() if a.shape[0] > 1 else 0,
            a.stride(1) if a.shape[1] > 1 else 0, a.stride(2) if a.shape[2] > 1 else 0)


def _kernel_layout(t: Tensor | None, like: Tensor, carry: bool = False) -> Tensor | None:
    """t as the C kernel reads it: like's dtype, and contiguous (a carry factor: any layout _carry_pointer can
    describe). A copy only where t is laid out otherwise: saved-tensor hooks, for one, may change strides."""
    if t is None:
        return None
    if t.dtype != like.dtype:
        raise TypeError(f"the step kernel got a {t.dtype} tensor in a {like.dtype} recurrence")
    if carry:
        return t if t.shape[2] == 1 or t.stride(2) in (0, 1) else t.contiguous()
    return t.contiguous()


def _at(tensor: Tensor | None, s: int):
    """The address of tensor[s] for a contiguous tensor, None for None: a step's view, without making one."""
    return None if tensor is None else tensor.data_ptr() + s * tensor.stride(0) * tensor.element_size()


class _Steps:
    """Step addresses of contiguous (T, ...) tensors, for the kernel loops: _Steps(a, b)(s) is [_at(a, s),
    _at(b, s)], 0 (NULL to C) for None, with no call on the tensors per step (_at's three calls per tensor cost
    as much as a small step's gate math)."""

    def __init__(self, *tensors: Tensor | None) -> None:
        self.bases = [(0, 0) if t is None else (t.data_ptr(), t.stride(0) * t.element_size()) for t in tensors]

    def __call__(self, s: int) -> list[int]:
        return [base + s * step for base, step in self.bases]


def _first_input(H_all: Tensor, h_mask: Tensor | None, like: Tensor):
    """(the first product's input, the mask as the kernels read it, two buffers the kernels write the next steps'
    inputs into, in turn): h0, or with recurrent dropout h0 * mask."""
    if h_mask is None:
        return H_all[0], None, [None, None]
    h_mask = _kernel_layout(h_mask.expand_as(H_all[0]), like)
    return H_all[0] * h_mask, h_mask, [torch.empty_like(H_all[0]) for _ in range(2)]


def _previous_dh(product_t, d_z: Tensor, direct: Tensor | None, h_mask: Tensor | None) -> Tensor:
    """The previous h's gradient: through the product (d_z W_hh, times the recurrent dropout mask), plus the part
    the kernel passed on directly (a carry's share, a GRU's z; None where there is none)."""
    if h_mask is None:
        return product_t(d_z, add=direct)
    if direct is not None:
        return torch.addcmul(direct, product_t(d_z), h_mask)
    return product_t(d_z).mul_(h_mask)


def _kernel_forward(lib, math, product, gi: Tensor, h0: Tensor, c0: Tensor, g_hh: Tensor | None,
                    a_h: Tensor | None, a_c: Tensor | None, h_mask: Tensor | None, reverse: bool,
                    g_ih: Tensor | None = None, b_in: Tensor | None = None, loop: bool = False):
    """The LSTM recurrence with the compiled step: per step one product (gi[t] added in it unless layer norm comes
    between) and one call that does the layer norms (of gi[t] = x W_ih^T with g_ih and b_in, of h W_hh^T and of
    c'), the gates, c, tanh(c), h, zoneout or padding and the next product's dropped-out input. With `loop` the
    whole direction is one call (csrc/loops.h), its products by the compiled gemm (`product.compiled`), else a
    Python loop over `product` and the step. Writes every step's gates and tanh(c') into math's buffers; returns
    H_all, c_all (T + 1, B, H) in processing order, and what the layer norms' backward reads (an empty list
    without): gi itself (in time order: backward normalises it again), then, in processing order, its blocks'
    means and 1 / std, LN(z) and its 1 / std, LN(c') and its 1 / std."""
    T, B, G = gi.shape
    H = G // 4
    gi = gi.contiguous()
    a_h, a_c = _kernel_layout(a_h, gi, carry=True), _kernel_layout(a_c, gi, carry=True)
    H_all, c_all = gi.new_empty(T + 1, B, H), gi.new_empty(T + 1, B, H)
    H_all[0], c_all[0] = h0, c0
    (ah, ah_step, ah_sb, ah_sj), (ac, ac_step, ac_sb, ac_sj) = _carry_pointer(a_h), _carry_pointer(a_c)
    norms = []
    if g_hh is not None:  # x W_ih^T itself, its blocks' mean and 1 / std; LN(z) and its; LN(c') and its 1 / std
        norms = [gi, gi.new_empty(T, B, 4), gi.new_empty(T, B, 4), gi.new_empty(T, B, G), gi.new_empty(T, B, 4),
                 gi.new_empty(T, B, H), gi.new_empty(T, B)]
        gain_tensors = [_kernel_layout(t, gi) for t in (g_ih, b_in, g_hh, *math.norm_c)]  # held while C reads
        gains = [_at(x, 0) for x in gain_tensors]
    if loop:
        size = gi.element_size()  # the loops take step strides in values
        carries = (ah, ah_step // size, ah_sb, ah_sj, ac, ac_step // size, ac_sb, ac_sj)
        mask = _kernel_layout(h_mask.expand_as(H_all[0]), gi) if h_mask is not None else None
        spare = gi.new_empty(2, B, H) if mask is not None else None  # the products' dropped-out inputs, in turn
        step_room = gi.new_empty(B, G)  # a step's pre, or z = h W_hh^T with layer norm
        pointers = [_at(x, 0) for x in (mask, step_room, spare, math.act)]
        w = product.compiled.buffer.data_ptr()  # W_hh^T packed
        if g_hh is None:
            lib.lstm_forward_loop(T, B, H, reverse, gi.data_ptr(), w, *carries, *pointers, math.tc.data_ptr(),
                                  c_all.data_ptr(), H_all.data_ptr())
        else:
            lib.lstm_ln_forward_loop(T, B, H, reverse, gi.data_ptr(), w, *gains,
                                     _EPS, *carries, *pointers, *[_at(x, 0) for x in norms[1:5]], math.tc.data_ptr(),
                                     *[_at(x, 0) for x in norms[5:]], c_all.data_ptr(), H_all.data_ptr())
        return H_all, c_all, norms
    order = range(T - 1, -1, -1) if reverse else range(T)
    h_in, h_mask, spare = _first_input(H_all, h_mask, gi)
    states, saved = _Steps(c_all, H_all), _Steps(math.act, math.tc)  # step s reads states(s), writes states(s + 1)
    mask = _at(h_mask, 0)
    if g_hh is not None:
        xw, kept = _Steps(gi), _Steps(*norms[1:])
    for s, t in enumerate(order):
        h_next = spare[s % 2]
        carries = (ah and ah + t * ah_step, ah_sb, ah_sj, ac and ac + t * ac_step, ac_sb, ac_sj)
        act, tc = saved(s)
        if g_hh is None:
            pre = product(h_in, add=gi[t])
            lib.lstm_forward(B, H, pre.data_ptr(), *states(s), *carries, mask, act, tc, *states(s + 1),
                             _at(h_next, 0))
        else:
            z = product(h_in)
            mx, rx, zn, rz, cn, rc = kept(s)
            lib.lstm_ln_forward(B, H, z.data_ptr(), *xw(t), *gains, _EPS, *states(s), *carries, mask, act, mx, rx,
                                zn, rz, tc, cn, rc, *states(s + 1), _at(h_next, 0))
        h_in = h_next if h_next is not None else H_all[s + 1]
    return H_all, c_all, norms


def _kernel_backward(lib, math, product_t, d_out: Tensor, dh: Tensor, dc: Tensor, g_hh: Tensor | None, norms,
                     a_h: Tensor | None, a_c: Tensor | None, h_mask: Tensor | None, c_all: Tensor,
                     d_gh: Tensor | None, d_z: Tensor, d_g: Tensor | None, g_ih: Tensor | None = None,
                     b_in: Tensor | None = None, reverse: bool = False, loop: bool = False):
    """_kernel_forward's backward over all steps (everything in processing order but the x W_ih^T that layer norm
    saved, which is in time order: reverse says how to read it): writes every step's gradient of h W_hh^T into d_z
    (T, B, G) and, without layer norm, that of pre into d_gh, the same tensor (with it, d_gh is None: that gradient
    lives a step); sums the gains' gradients into d_g and math's. Returns the gradients of h0 and c0 and, with
    layer norm, those of x W_ih^T (T, B, G, processing order), g_ih and b_in (else None). With `loop` (as forward
    had it) the loop is one call into C; else a Python loop. Either way its products are product_t's."""
    T, B, G = d_z.shape
    H = G // 4
    # what forward saved arrives contiguous (backward made sure); autograd's gradients may not be
    d_out = _kernel_layout(d_out, d_z)
    if h_mask is not None:
        h_mask = h_mask.expand_as(dh)
    # the kernel updates dh and dc in place: copies, never autograd's tensors
    dh, dc = dh.clone(memory_format=torch.contiguous_format), dc.clone(memory_format=torch.contiguous_format)
    keep_h, keep_c, row_room = torch.empty_like(dh), torch.empty_like(dc), torch.empty_like(dc)
    (ah, ah_step, ah_sb, ah_sj), (ac, ac_step, ac_sb, ac_sj) = _carry_pointer(a_h), _carry_pointer(a_c)
    d_xw = d_g_ih = d_b_in = None
    if g_hh is not None:
        gain_tensors = [g_ih, g_hh, _kernel_layout(math.norm_c[0], d_z)]  # the last is forward's, not saved;
        gains = [x.data_ptr() for x in gain_tensors]  # the tensors held while C reads them
        math.d_gain, math.d_shift = torch.zeros_like(math.norm_c[0]), torch.zeros_like(math.norm_c[1])
        d_xw, d_g_ih = torch.empty_like(d_z), torch.zeros_like(g_ih)
        d_b_in = torch.zeros_like(b_in) if b_in is not None else None
        sums = [_at(x, 0) for x in (d_g_ih, d_g, d_b_in, math.d_gain, math.d_shift)]
        d_pre, xn = d_z.new_empty(B, G), d_z.new_empty(B, G)  # scratch: a step's gradient of pre, and LN(xw)
        xw, kept = _Steps(norms[0]), _Steps(*norms[1:])
        ln_scratch = row_room.data_ptr(), xn.data_ptr()
    # forward's choice, unless the compiled gemm has gone since (settings.kernels "off" set between the passes): then the
    # Python loop over the same step kernels, its products torch's
    if loop and product_t.compiled is not None:
        size = d_z.element_size()
        carries = (ah, ah_step // size, ah_sb, ah_sj, ac, ac_step // size, ac_sb, ac_sj)
        mask = _kernel_layout(h_mask, d_z)
        w = product_t.compiled.buffer.data_ptr()  # W_hh packed
        tmp = torch.empty_like(dh) if mask is not None else None  # the product's part before the mask
        states = [x.data_ptr() for x in (d_out, dh, dc)]
        keeps = [_at(x, 0) for x in (keep_h, keep_c)]
        if g_hh is None:
            lib.lstm_backward_loop(T, B, H, w, math.act.data_ptr(), math.tc.data_ptr(), c_all.data_ptr(),
                                   *carries, _at(mask, 0), *states, d_z.data_ptr(), *keeps,
                                   _at(tmp, 0))
        else:
            lib.lstm_ln_backward_loop(T, B, H, reverse, w, math.act.data_ptr(),
                                      math.tc.data_ptr(), *[x.data_ptr() for x in norms], *gains, c_all.data_ptr(),
                                      *carries,
                                      _at(mask, 0), *states, d_pre.data_ptr(), d_xw.data_ptr(), d_z.data_ptr(), *sums,
                                      *keeps, *ln_scratch, _at(tmp, 0))
        return dh, dc, d_xw, d_g_ih, d_b_in
    saved, grads, dc_at = _Steps(math.act, math.tc, c_all), _Steps(d_out, d_gh, d_xw, d_z), dc.data_ptr()
    keeps = keep_h.data_ptr(), keep_c.data_ptr()
    for s in range(T - 1, -1, -1):
        # dh: in, the new h's gradient from later steps; out, its share kept by zoneout (to h_prev directly)
        carries = (ah and ah + s * ah_step, ah_sb, ah_sj, ac and ac + s * ac_step, ac_sb, ac_sj)
        act, tc, c_prev = saved(s)
        go, d_pre_s, d_xw_s, d_z_s = grads(s)
        if g_hh is None:
            lib.lstm_backward(B, H, act, tc, c_prev, *carries, go, dh.data_ptr(), dc_at, d_pre_s, *keeps)
        else:
            lib.lstm_ln_backward(B, H, act, tc, *xw(T - 1 - s if reverse else s), *kept(s), *gains, c_prev,
                                 *carries, go, dh.data_ptr(), dc_at, d_pre.data_ptr(), d_xw_s, d_z_s, *sums,
                                 *keeps, *ln_scratch)
        dh = _previous_dh(product_t, d_z[s], dh if a_h is not None else None, h_mask)
    return dh, dc, d_xw, d_g_ih, d_b_in


def _gru_kernel_forward(lib, math, product, gi: Tensor, h0: Tensor, b_hh: Tensor | None, g_hh: Tensor | None,
                        a_h: Tensor | None, h_mask: Tensor | None, order) -> tuple[Tensor, list[Tensor]]:
    """The GRU recurrence with the compiled step: per step one product (h_in W_hh^T, + b_hh unless layer norm
    comes between) and one call for the layer norm, the gates, h, zoneout or padding and the next product's
    dropped-out input. Keeps r, z, n and gh's n block of every step in math (its torch path's stash); returns
    H_all (T + 1, B, H) in processing order, and with layer norm LN(z) (T, B, G) and its 1 / std (T, B, 3)."""
    T, B, G = gi.shape
    H = G // 3
    gi, a_h = gi.contiguous(), _kernel_layout(a_h, gi, carry=True)
    H_all = gi.new_empty(T + 1, B, H)
    H_all[0] = h0
    math.rz, math.n, math.ghn = gi.new_empty(T, B, 2 * H), gi.new_empty(T, B, H), gi.new_empty(T, B, H)
    norms = [gi.new_empty(T, B, G), gi.new_empty(T, B, 3)] if g_hh is not None else []
    g_hh, b_hh = _kernel_layout(g_hh, gi), _kernel_layout(b_hh, gi)
    ah, ah_step, ah_sb, ah_sj = _carry_pointer(a_h)
    h_in, h_mask, spare = _first_input(H_all, h_mask, gi)
    inputs, hs, saved, kept = _Steps(gi), _Steps(H_all), _Steps(math.rz, math.n, math.ghn), _Steps(*norms)
    mask, gains = _at(h_mask, 0), (_at(g_hh, 0), _at(b_hh, 0))
    for s, t in enumerate(order):
        h_next = spare[s % 2]
        carry = (ah and ah + t * ah_step, ah_sb, ah_sj)
        if g_hh is None:
            gh = product(h_in, add=b_hh)
            lib.gru_forward(B, H, *inputs(t), gh.data_ptr(), *hs(s), *carry, mask, *saved(s), *hs(s + 1),
                            _at(h_next, 0))
        else:
            z = product(h_in)  # overwritten with gh = LN(z) g_hh + b_hh
            lib.gru_ln_forward(B, H, *inputs(t), z.data_ptr(), *gains, _EPS, *hs(s), *carry, mask, *saved(s),
                               *kept(s), *hs(s + 1), _at(h_next, 0))
        h_in = h_next if h_next is not None else H_all[s + 1]
    return H_all, norms


def _gru_kernel_backward(lib, math, product_t, d_out: Tensor, dh: Tensor, g_hh: Tensor | None, norms,
                         a_h: Tensor | None, h_mask: Tensor | None, H_all: Tensor, d_gh: Tensor, d_z: Tensor,
                         d_g: Tensor | None) -> tuple[Tensor, Tensor]:
    """_gru_kernel_forward's backward over all steps, in processing order: writes every step's gradient of gh into
    d_gh and of h W_hh^T into d_z (the same tensor without layer norm), both (T, B, G), and sums g_hh's into d_g;
    returns the gradients of h0 and of gi (T, B, G, processing order)."""
    d_out = _kernel_layout(d_out, d_gh)  # the rest was saved, and arrives contiguous (backward made sure)
    if h_mask is not None:
        h_mask = h_mask.expand_as(dh)
    T, B, G = d_gh.shape
    H = G // 3
    d_gi = torch.empty_like(d_gh)
    dh = dh.clone(memory_format=torch.contiguous_format)  # the kernel updates dh in place
    keep_h = torch.empty_like(dh)
    ah, ah_step, ah_sb, ah_sj = _carry_pointer(a_h)
    saved, kept, hs = _Steps(math.rz, math.n, math.ghn), _Steps(*norms), _Steps(H_all)
    go, grads, d_zs, keep = _Steps(d_out), _Steps(d_gi, d_gh), _Steps(d_z), keep_h.data_ptr()
    gain, d_gain = _at(g_hh, 0), _at(d_g, 0)
    for s in range(T - 1, -1, -1):
        # dh: in, the new h's gradient from later steps; out, the part that goes to h_prev directly (z, zoneout)
        carry = (ah and ah + s * ah_step, ah_sb, ah_sj)
        if g_hh is None:
            lib.gru_backward(B, H, *saved(s), *hs(s), *carry, *go(s), dh.data_ptr(), *grads(s), keep)
        else:
            lib.gru_ln_backward(B, H, *saved(s), *kept(s), gain, *hs(s), *carry, *go(s), dh.data_ptr(), *grads(s),
                                *d_zs(s), d_gain, keep)
        dh = _previous_dh(product_t, d_z[s], dh, h_mask)
    return dh, d_gi


def run_direction(cell: RecurrentCell, x: Tensor, state: State, mask: Tensor | None, reverse: bool,
                  options) -> tuple[Tensor, State]:
    """recurrence.run_direction's contract and results, through the engine, `options` the pass's recurrence.Pass
    (its masks drawn the same way, from the same generator). Under autocast the recurrence runs in the input
    projection's precision, and the final state comes back in the precision of the state passed in: a state
    carried from window to window is not rounded to bfloat16 or float16 between them."""
    steps, batch = x.shape[0], x.shape[1]
    size_h, size_c = cell.output_size, cell.hidden_size  # h is P wide in a projected LSTM, c always H
    lstm = isinstance(cell, LSTMCell)
    math_class, extra = _math_for(cell)
    make_math = functools.partial(_make_math, math_class, cell.hidden_size, extra)
    # (T, B, G), its backward autograd's: one product. A cell that reads gi + gh takes b_hh here, inside the product
    bias = cell.bias_ih + cell.hidden_bias() if math_class.additive and cell.bias else None
    g_ih = None
    if lstm and cell.layer_norm and not cell.proj_size:
        # the LSTM kernel normalises x W_ih^T itself, step by step, in the pass it makes anyway
        gi = matmul.linear(x, cell.weight_ih)
        if x.device.type == "cpu" and kernels.steps(gi.dtype) is not None:
            g_ih = cell.norm_ih.flatten()
        else:
            gi = cell._normalised(gi, cell.norm_ih, bias)
    else:
        gi = cell.project_input(x, bias, linear=matmul.linear)
    dtype = gi.dtype  # under autocast the projection's precision; the recurrence follows it
    # zoneout's keep factors (1 keeps the old value), drawn as the reference loop's masks
    zoneout = options.zoneout
    keep_h, keep_c = zoneout.factors(x, (size_h, size_c), options.training, options.generator, dtype)

    valid = mask.to(dtype) if mask is not None else None  # (T, B, 1): 1 at valid steps, 0 at padding

    def carry(rate: float, keep: Tensor | None, size: int) -> Tensor | None:
        # a = 1 - valid * (1 - keep): 1 keeps the previous value (padding, or zoned out), 0 takes the cell's
        if rate == 0 and valid is None:
            return None
        kept = keep if keep is not None else torch.tensor(rate, dtype=dtype, device=x.device)
        if valid is None:
            return kept.expand(steps, batch, size) if kept.dim() == 0 else kept
        return 1 - valid * (1 - kept)

    zh, zc, h_mask = zoneout.h, zoneout.c, options.h_mask
    h0, c0 = (state[0], state[1]) if lstm else (state, None)
    cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
    w_hh = cell.weight_hh if options.weight_hh is None else options.weight_hh
    g_hh = cell.norm_hh.flatten() if cell.layer_norm else None
    ln_c = (cell.norm_c.weight, cell.norm_c.bias) if lstm and cell.layer_norm else (None, None)
    with torch.autocast(x.device.type, enabled=False):
        out, h, c = _Recurrence.apply(
            make_math, reverse, gi, cast(h0), cast(c0), cast(w_hh), None if math_class.additive else cast(cell.hidden_bias()),
            cast(g_hh), cast(ln_c[0]), cast(ln_c[1]), carry(zh, keep_h, size_h),
            carry(zc, keep_c, size_c) if lstm else None, valid, cast(h_mask),
            cast(cell.weight_hr) if lstm and cell.proj_size else None, cast(g_ih),
            cast(bias) if g_ih is not None else None)
    h = h.to(h0.dtype)
    return out, ((h, c.to(c0.dtype)) if lstm else h)


def _make_math(math_class, hidden: int, extra: dict, norm_c):
    return math_class(hidden, norm_c, **extra)
