"""The compiled step kernels (stackrnn/kernels.py, stackrnn/csrc/): built and cached once, the
same results as the engine's PyTorch path and the reference loop, gradcheck through them in float64, and a clean
fallback where they cannot be had. Skipped where this machine has no C compiler."""

import functools
import os
import subprocess
import sys
import warnings

import pytest
import torch

from stackrnn import GRU, LSTM, RNN, StackedRNN, kernels, settings
from stackrnn.engine import _LSTMMath, _make_math, _Recurrence

from .conftest import stack_gradcheck

pytestmark = pytest.mark.skipif(kernels._compiler() is None, reason="no C compiler here")


@pytest.fixture(autouse=True)
def built():
    """Skips where a compiler is there but cannot build the kernels (no C library headers, say): the engine
    then runs its torch path, which test_engine covers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if kernels.steps() is None:
            pytest.skip(f"the C kernels could not be built here with {kernels._compiler()}")


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty kernel cache folder and no library loaded in this process yet."""
    monkeypatch.setenv("STACKRNN_KERNEL_CACHE", str(tmp_path / "kernels"))
    monkeypatch.setattr(kernels, "_loaded", {})
    return tmp_path / "kernels"


@pytest.fixture
def runs(monkeypatch):
    """Every command kernels.py runs from now on (compiles, `cc --version`, trial runs), in order."""
    commands = []
    real_run = subprocess.run
    monkeypatch.setattr(kernels.subprocess, "run", lambda cmd, **kw: commands.append(cmd) or real_run(cmd, **kw))
    return commands


@pytest.fixture
def counted(monkeypatch):
    """Counts the steps the compiled kernels run, forward and backward (a time loop in C counts its T steps), and
    the loops' calls: proof that a test ran the compiled path, and which."""
    calls = {"forward": 0, "backward": 0, "loops": 0}
    real = kernels.steps

    class Counting:  # forward and backward steps of every cell, with or without layer norm, and the LSTM's loops
        def __init__(self, steps):
            for name in ("forward", "backward"):
                for prefix in ("lstm_", "lstm_ln_", "gru_", "gru_ln_"):
                    setattr(self, prefix + name, self._counted(name, getattr(steps, prefix + name)))
                for prefix in ("lstm_", "lstm_ln_"):
                    loop = prefix + name + "_loop"
                    setattr(self, loop, self._counted(name, getattr(steps, loop), loop=True))
            self.set_threads, self.kernel_team, self.loops = steps.set_threads, steps.kernel_team, steps.loops
            self.loop_chunks = steps.loop_chunks
            for name in ("pack_b", "gemm_packed", "packed_size", "tile_space", "drop_connect"):  # not steps
                setattr(self, name, getattr(steps, name))

        @staticmethod
        def _counted(name, function, loop=False):
            def call(*args):
                calls[name] += args[0] if loop else 1  # a loop's first argument: its steps
                calls["loops"] += loop
                function(*args)
            return call

    monkeypatch.setattr(kernels, "steps", lambda dtype=torch.float32: real(dtype) and Counting(real(dtype)))
    return calls


def _run(stack, x, lengths, state=None):
    """Output, final states and the gradients of a fixed weighted sum of them w.r.t. x, the initial state and every
    parameter; the loss is out.sum() plus weighted states, so the output's gradient is a broadcast (stride 0)
    tensor, as autograd hands it over in practice."""
    x = x.detach().clone().requires_grad_(True)
    tensors = lambda s: s if isinstance(s, tuple) else (s,)  # noqa: E731  an LSTM's (h, c), a GRU's h
    leaf = lambda t: t.detach().clone().requires_grad_(True)  # noqa: E731
    state = [tuple(map(leaf, s)) if isinstance(s, tuple) else leaf(s) for s in state] if state else None
    leaves = [x] + [t for s in state or [] for t in tensors(s)]
    out, final = stack(x, state, lengths=lengths, generator=torch.Generator().manual_seed(3))
    flat = [out] + [t for s in final for t in tensors(s)]
    weights = torch.Generator().manual_seed(4)
    loss = out.sum() + sum((t * torch.randn(t.shape, generator=weights, dtype=t.dtype)).sum() for t in flat[1:])
    return flat, torch.autograd.grad(loss, [*leaves, *stack.parameters()])


CASES = {
    "zoneout": dict(zoneout=0.3),
    "zoneout pair": dict(zoneout=(0.2, 0.4)),
    "recurrent dropout": dict(recurrent_dropout=0.3),
    "all, bidirectional": dict(zoneout=(0.1, 0.3), recurrent_dropout=0.25, bidirectional=True),
    "zoneout and weight drop": dict(zoneout=0.2, weight_drop=0.3),
    "layer norm": dict(layer_norm=True),
    "layer norm, all, bidirectional": dict(layer_norm=True, zoneout=(0.1, 0.3), recurrent_dropout=0.25,
                                           bidirectional=True),
}


# LSTM and GRU with every option
KERNEL_CASES = [pytest.param(make, option, id=f"{make.__name__.lower()}-{option}") for make in (LSTM, GRU)
                for option in CASES]


@pytest.mark.parametrize("make, option", KERNEL_CASES)
@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_the_kernels_equal_the_torch_path_and_the_loop_in_float32(make, option, padded, training, counted,
                                                                  monkeypatch):
    """Eval mode carries by the rate (a broadcast factor), padding by (B, 1) factors, zoneout by (T, B, H) masks:
    every stride the kernels read. Initial states are given and get gradients. A layer-normalised LSTM is too
    badly conditioned for a 1e-5 comparison of two float32 computations (see test_engine): there each path's
    relative error from float64 is compared instead."""
    torch.manual_seed(0)
    specs = [make(16, **CASES[option]), make(24, **CASES[option])]
    fast = StackedRNN(5, layers=specs).train(training)
    loop = StackedRNN(5, layers=specs, fused=False).train(training)
    loop.load_state_dict(fast.state_dict())
    x = torch.randn(9, 4, 5)
    lengths = torch.tensor([9, 4, 6, 1]) if padded else None
    dirs = 2 if CASES[option].get("bidirectional") else 1
    state = [(torch.randn(dirs, 4, n), torch.randn(dirs, 4, n)) if make is LSTM else torch.randn(dirs, 4, n)
             for n in (16, 24)]

    out_k, grads_k = _run(fast, x, lengths, state)
    assert counted["forward"] == 9 * 2 * dirs and counted["backward"] == 9 * 2 * dirs
    monkeypatch.setattr(settings, "kernels", "off")
    out_t, grads_t = _run(fast, x, lengths, state)
    assert counted["forward"] == 9 * 2 * dirs  # the torch path this time
    out_l, grads_l = _run(loop, x, lengths, state)
    if not CASES[option].get("layer_norm"):
        for a, b, c in zip([*out_k, *grads_k], [*out_t, *grads_t], [*out_l, *grads_l]):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)
        return
    exact = StackedRNN(5, layers=specs, fused=False).double().train(training)
    exact.load_state_dict(fast.state_dict())
    double = lambda s: tuple(t.double() for t in s) if isinstance(s, tuple) else s.double()  # noqa: E731
    out_x, grads_x = _run(exact, x.double(), lengths, [double(s) for s in state])

    def error(tensors):  # the largest relative error, in norm, of any output or gradient
        return max(((a.double() - b).norm() / b.norm().clamp(min=1e-12)).item()
                   for a, b in zip(tensors, [*out_x, *grads_x]))

    kernel_error, torch_error = error([*out_k, *grads_k]), error([*out_t, *grads_t])
    assert kernel_error <= max(1e-5, 4 * torch_error), (kernel_error, torch_error)


@pytest.mark.parametrize("make", [LSTM, GRU], ids=["lstm", "gru"])
def test_layer_norm_kernels_equal_the_torch_path_in_float64_both_directions_and_padded(make, counted,
                                                                                       monkeypatch):
    """Where float32 layer norm is too badly conditioned for a tight comparison, float64 is not: the kernel and
    the engine's torch path agree to 1e-10, reverse direction (which reads the saved x W_ih^T back to front) and
    padding included."""
    torch.manual_seed(5)
    specs = [make(12, layer_norm=True, zoneout=(0.1, 0.2), bidirectional=True), make(8, layer_norm=True)]
    stack = StackedRNN(5, layers=specs).double().train()
    x, lengths = torch.randn(7, 4, 5, dtype=torch.float64), torch.tensor([7, 3, 5, 1])
    out_k, grads_k = _run(stack, x, lengths)
    assert counted["backward"] > 0
    monkeypatch.setattr(settings, "kernels", "off")
    out_t, grads_t = _run(stack, x, lengths)
    for a, b in zip([*out_k, *grads_k], [*out_t, *grads_t]):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("make, option", [
    pytest.param(make, option, id=f"{make.__name__.lower()}-{option}") for make in (LSTM, GRU)
    for option in ("zoneout pair", "layer norm, all, bidirectional")])
def test_rows_shared_between_threads_give_one_threads_results_and_the_same_every_run(make, option, two_threads,
                                                                                   counted):
    """9 rows of 512 units: enough work for two threads (steps.c's MIN_UNITS_PER_THREAD), split unevenly. Only
    the order in which the gains' gradients are summed differs from one thread's; two runs on two threads agree
    to the bit."""
    torch.manual_seed(2)
    stack = StackedRNN(6, layers=[make(512, **CASES[option])]).train()
    x, lengths = torch.randn(4, 9, 6), torch.tensor([4, 1, 3, 4, 2, 4, 4, 3, 1])
    steps = kernels.steps(torch.float32)
    assert steps.set_threads(2) == 2
    shared, again = _run(stack, x, lengths), _run(stack, x, lengths)
    if CASES[option].get("layer_norm"):  # its backward records the team it ran on
        assert steps.kernel_team() == 2
    torch.set_num_threads(1)
    alone = _run(stack, x, lengths)
    assert counted["forward"] > 0 and counted["backward"] > 0
    for a, b, c in zip([*shared[0], *shared[1]], [*again[0], *again[1]], [*alone[0], *alone[1]]):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)


LOOP_CASES = ["zoneout pair", "recurrent dropout", "all, bidirectional", "layer norm",
              "layer norm, all, bidirectional"]


@pytest.mark.parametrize("option", LOOP_CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_the_time_loops_in_c_equal_the_python_loop_over_the_same_steps(option, dtype, counted, monkeypatch):
    """The LSTM's whole direction in one call into C (csrc/loops.h) against the engine's Python loop over the same
    step kernels and products: padded, both directions, with the first product's dropped-out input, the carries
    read at each step's time, and the saved x W_ih^T read back to front in the reverse direction."""
    torch.manual_seed(10)
    stack = StackedRNN(5, layers=[LSTM(12, **CASES[option]), LSTM(7, **CASES[option])]).to(dtype).train()
    x, lengths = torch.randn(8, 3, 5, dtype=dtype), torch.tensor([8, 5, 2])
    dirs = 2 if CASES[option].get("bidirectional") else 1
    in_c = _run(stack, x, lengths)
    assert counted["loops"] == 2 * 2 * dirs and counted["forward"] == counted["backward"] == 8 * 2 * dirs
    monkeypatch.setattr(settings, "kernels", "steps")
    monkeypatch.setattr(kernels, "_loaded", {})  # loaded again (from the cache), without the loops
    in_python = _run(stack, x, lengths)
    assert counted["loops"] == 2 * 2 * dirs and counted["forward"] == 8 * 2 * dirs * 2  # steps from Python now
    # float32 layer norm is badly conditioned (see the first test): the products' rounding differs by more there
    tolerance = 1e-10 if dtype == torch.float64 else 1e-4 if CASES[option].get("layer_norm") else 1e-5
    for a, b in zip([*in_c[0], *in_c[1]], [*in_python[0], *in_python[1]]):
        torch.testing.assert_close(a, b, atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("option", ["zoneout pair", "layer norm, all, bidirectional"])
def test_the_time_loops_share_products_and_rows_between_threads(option, two_threads, counted):
    """17 rows of 256 units: each product's panels and each step's rows shared between two threads (gemm.h's
    gemm_threads, steps.c's threads_for). The results equal one thread's; two runs on two threads agree to the
    bit (the gains' sums are kept per chunk of rows over all steps, and added in chunk order)."""
    torch.manual_seed(11)
    stack = StackedRNN(6, layers=[LSTM(256, **CASES[option])]).train()
    x, lengths = torch.randn(3, 17, 6), torch.tensor([3, 1, 2] * 5 + [3, 3])
    shared, again = _run(stack, x, lengths), _run(stack, x, lengths)
    if CASES[option].get("layer_norm"):
        assert kernels.steps(torch.float32).kernel_team() == 2
    torch.set_num_threads(1)
    alone = _run(stack, x, lengths)
    assert counted["loops"] > 0
    for a, b, c in zip([*shared[0], *shared[1]], [*again[0], *again[1]], [*alone[0], *alone[1]]):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("option", ["zoneout pair", "recurrent dropout", "layer norm, all, bidirectional"])
def test_a_chunk_of_rows_per_thread_through_all_steps_equals_the_loop_step_by_step(option, two_threads, counted,
                                                                                 monkeypatch):
    """17 rows of 256 units on two threads: each thread runs its own chunk of rows (8 and 9) through every step
    (steps.c's loop_chunks), its products alone. Asked for three threads, of which a step of this size uses two,
    the loop goes step by step, sharing each product's panels and each step's rows. Bit for bit the same: every
    product's sums and every row's work, the gains' sums included, are the same either way. The big products by
    gemm.h too (on Intel they go to MKL by default, whose sums depend on the thread count)."""
    monkeypatch.setattr(settings, "matmul", "compiled")
    torch.manual_seed(12)
    stack = StackedRNN(6, layers=[LSTM(256, **CASES[option])]).train()
    x, lengths = torch.randn(4, 17, 6), torch.tensor([4, 1, 2, 3] * 4 + [4])
    steps = kernels.steps(torch.float32)
    assert steps.set_threads(2) == 2 and steps.loop_chunks(17, 256) == 2
    chunked = _run(stack, x, lengths)
    torch.set_num_threads(3)
    assert steps.set_threads(3) == 3 and steps.loop_chunks(17, 256) == 1
    step_by_step = _run(stack, x, lengths)
    assert counted["loops"] > 0
    for a, b in zip([*chunked[0], *chunked[1]], [*step_by_step[0], *step_by_step[1]]):
        assert torch.equal(a, b)


def test_loops_go_step_by_step_where_a_chunk_would_be_under_a_register_tile_or_a_thread_idle(two_threads):
    steps = kernels.steps(torch.float32)
    steps.set_threads(2)
    assert steps.loop_chunks(32, 256) == 2
    assert steps.loop_chunks(6, 1024) == 1  # work for two threads, but chunks of 3 rows: under every target's tile
    assert steps.loop_chunks(32, 32) == 1  # 1024 units: one thread's share (MIN_UNITS_PER_THREAD)
    steps.set_threads(4)
    assert steps.loop_chunks(32, 128) == 1  # two threads' work where four may run: step by step, none idle


# One layer-norm LSTM backward step on fixed inputs through ctypes, asking for two threads; prints the team it got
# and a hash of every output. torch's own products play no part, so only the kernel's summation order could differ.
_ONE_STEP = """
import ctypes, hashlib, torch
from stackrnn import kernels
steps = kernels.steps(torch.float32)
steps.set_threads(2)
B, H = 9, 512
g = torch.Generator().manual_seed(7)
inputs = [torch.rand(s, generator=g) for s in [(B, 4 * H), (B, H), (B, 4 * H), (B, 4), (B, 4), (B, 4 * H), (B, 4),
                                             (B, H), (B,), (4 * H,), (4 * H,), (H,), (B, H), (B, H)]]
outputs = [torch.rand(s, generator=g) for s in [(B, H), (B, H), (B, 4 * H), (B, 4 * H), (B, 4 * H), (4 * H,),
                                              (4 * H,), (4 * H,), (H,), (H,), (B, H), (B, H), (B, H), (B, 4 * H)]]
ptr = lambda ts: [t.data_ptr() for t in ts]
steps.lstm_ln_backward(B, H, *ptr(inputs[:13]), None, 0, 0, None, 0, 0, inputs[13].data_ptr(), *ptr(outputs))
print(steps.kernel_team(), hashlib.sha256(b"".join(t.numpy().tobytes() for t in outputs)).hexdigest())
"""


def test_the_gradient_sums_do_not_depend_on_the_team_the_runtime_gives(two_threads, tmp_path):
    """Two threads asked for, a team of two or (OMP_THREAD_LIMIT=1) of one: the same bits, because the rows are
    summed in chunks of the count asked for, not of the team."""
    def run(**env):
        done = subprocess.run([sys.executable, "-c", _ONE_STEP], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "STACKRNN_KERNEL_CACHE": kernels.kernel_dir().as_posix(), **env})
        assert done.returncode == 0, done.stderr
        team, digest = done.stdout.split()
        return int(team), digest

    kernels.steps(torch.float32)  # built once here, so that both runs load it
    (team_two, shared), (team_one, alone) = run(), run(OMP_THREAD_LIMIT="1")
    assert (team_two, team_one) == (2, 1)
    assert shared == alone


GRADCHECKS = {"zoneout, recurrent dropout": dict(zoneout=(0.3, 0.2), recurrent_dropout=0.3),
              "bidirectional": dict(bidirectional=True, zoneout=0.25),
              "layer norm and all": dict(layer_norm=True, zoneout=(0.2, 0.1), recurrent_dropout=0.2),
              "layer norm, bidirectional": dict(layer_norm=True, bidirectional=True)}


@pytest.mark.parametrize("make, options", [
    pytest.param(make, options, id=f"{make.__name__.lower()}-{name}") for make in (LSTM, GRU)
    for name, options in GRADCHECKS.items()])
def test_gradcheck_through_the_kernels_in_float64(make, options, counted):
    """The float64 build of the same C code: gradcheck checks the hand-written backward formulas that float32
    training runs, with padding and residual connections around them."""
    torch.manual_seed(1)
    stack = StackedRNN(4, layers=[make(3, **options), make(4, **options)], residual=True).double().train()
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    assert stack_gradcheck(stack, x, torch.tensor([5, 2, 4]))
    assert counted["forward"] > 0 and counted["backward"] > 0


def test_activations_match_torch_over_the_whole_float32_range_and_nan_and_inf_pass_through():
    """Our float exp against torch's sigmoid and tanh from -100 to 100 (where they saturate exactly), and the
    values no polynomial should change: NaN stays NaN, +-inf give the limits."""
    steps = kernels.steps(torch.float32)
    B, H = 3, 4000
    pre = torch.linspace(-100, 100, B * 4 * H).reshape(B, 4 * H)
    pre[0, :4] = torch.tensor([float("nan"), float("inf"), float("-inf"), 0.0])
    c_prev, h_prev = torch.zeros(B, H), torch.zeros(B, H)
    act, tc, c, h = torch.empty(B, 4 * H), torch.empty(B, H), torch.empty(B, H), torch.empty(B, H)
    steps.lstm_forward(B, H, pre.data_ptr(), c_prev.data_ptr(), h_prev.data_ptr(), None, 0, 0, None, 0, 0, None,
                  act.data_ptr(), tc.data_ptr(), c.data_ptr(), h.data_ptr(), None)
    i, f, g, o = pre.split(H, dim=1)
    want = torch.cat([i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()], dim=1)
    torch.testing.assert_close(act, want, atol=3e-7, rtol=2e-6, equal_nan=True)
    assert torch.isnan(act[0, 0]) and act[0, 1] == 1 and act[0, 2] == 0 and act[0, 3] == 0.5
    torch.testing.assert_close(tc, (want[:, :H] * want[:, 2 * H:3 * H]).tanh(), atol=3e-7, rtol=2e-6,
                               equal_nan=True)
    assert torch.isnan(h[0, 0])  # NaN is not clamped away


def test_the_library_is_built_once_and_then_loaded_from_the_cache(fresh, runs, monkeypatch):
    assert kernels.steps() is not None
    built = list(fresh.iterdir())
    assert len(built) == 1 and built[0].suffix in (".so", ".dll")
    runs.clear()
    monkeypatch.setattr(kernels, "_loaded", {})
    assert kernels.steps() is not None
    assert not [cmd for cmd in runs if "-o" in cmd]  # only `cc --version`, for the cache key
    assert list(fresh.iterdir()) == built


def test_another_process_uses_the_cached_library(fresh):
    kernels.steps()
    before = {p: p.stat().st_mtime_ns for p in fresh.iterdir()}
    code = "from stackrnn import kernels; import sys; sys.exit(0 if kernels.steps() is not None else 1)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert {p: p.stat().st_mtime_ns for p in fresh.iterdir()} == before


def test_without_a_compiler_the_engine_runs_its_torch_path(fresh, monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert kernels.steps() is None
    x = torch.randn(4, 2, 3)
    specs = [LSTM(5, zoneout=0.2)]
    stack = StackedRNN(3, layers=specs).train()
    loop = StackedRNN(3, layers=specs, fused=False).train()
    loop.load_state_dict(stack.state_dict())
    got = stack(x, generator=torch.Generator().manual_seed(0))[0]
    want = loop(x, generator=torch.Generator().manual_seed(0))[0]
    torch.testing.assert_close(got, want)
    assert not fresh.exists() or not list(fresh.iterdir())


def test_a_compiler_that_fails_gives_one_warning_and_the_torch_path(fresh, runs, monkeypatch):
    monkeypatch.setenv("CC", "false")  # exists, and fails on any source
    with pytest.warns(RuntimeWarning, match="could not compile steps.c"):
        assert kernels.steps() is None
    assert kernels.steps() is None  # no second attempt, no second warning in this process
    # no library and no partial one left behind: a marker for each flag set but the last, plainest one (never
    # given up for good), so that later processes try only that, and the warning says where the reasons are
    markers = list(fresh.iterdir())
    assert len(markers) == 3 and all(p.name.endswith(".so.failed") for p in markers)
    assert not list(fresh.glob(".*"))
    monkeypatch.setattr(kernels, "_loaded", {})
    runs.clear()
    with pytest.warns(RuntimeWarning, match=r"could not compile steps.c.*\.failed; delete those files"):
        assert kernels.steps() is None
    assert len([cmd for cmd in runs if "-o" in cmd]) == 1


def test_a_compiler_without_openmp_builds_the_kernels_single_threaded_once(fresh, tmp_path, monkeypatch):
    """A compiler that rejects -fopenmp (clang without libomp, say): the build without it is loaded with no
    warning, runs every row on one thread, and a second process compiles nothing."""
    real_cc, log = kernels._compiler(), tmp_path / "calls"
    wrapper = tmp_path / "cc-without-openmp"
    wrapper.write_text(f"""#!/bin/sh
echo "$@" >> {log}
for arg in "$@"; do [ "$arg" = -fopenmp ] && {{ echo "unsupported option -fopenmp" >&2; exit 1; }}; done
exec {real_cc} "$@"
""")
    wrapper.chmod(0o755)
    monkeypatch.setenv("CC", str(wrapper))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        steps = kernels.steps(torch.float32)
    assert steps is not None and steps.set_threads(2) == 0
    compiles = [line.split() for line in log.read_text().splitlines() if "-o" in line.split()]
    assert len(compiles) >= 3 and all("-fopenmp" in c for c in compiles[:2])  # both OpenMP flag sets fail
    assert "-fopenmp" not in compiles[-1]
    code = "from stackrnn import kernels; import sys; sys.exit(0 if kernels.steps() is not None else 1)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert [line.split() for line in log.read_text().splitlines() if "-o" in line.split()] == compiles


@pytest.mark.parametrize("verdict", ["fails", "cannot run"])
def test_an_openmp_build_is_kept_only_after_its_trial_run(verdict, fresh, runs, monkeypatch):
    """A trial that fails beside torch (a runtime clash would abort it) marks both OpenMP builds for good; one that
    cannot run at all (no torch in the interpreter, say) marks nothing and is not tried a second time in this
    process. Either way the kernels load single-threaded, with no warning."""
    trial = "print('torch imported'); raise SystemExit(1)" if verdict == "fails" else "raise SystemExit(1)"
    monkeypatch.setattr(kernels, "_TRIAL", trial)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        steps = kernels.steps(torch.float32)
    assert steps is not None and steps.set_threads(2) == 0
    trials = [cmd for cmd in runs if trial in cmd]
    markers = sorted(p.name for p in fresh.glob("*.failed"))
    if verdict == "fails":
        assert len(trials) == 2 and len(markers) == 2
    else:
        assert len(trials) == 1 and not markers


def test_a_build_that_will_not_load_gives_way_to_the_next(fresh, monkeypatch):
    """An OpenMP build whose runtime cannot be found, say: the next build in line (without OpenMP) is loaded, with
    no warning; a warning only where none loads."""
    real_candidates = kernels._candidates
    broken = fresh / "broken.so"

    def candidates(cc, source, state):
        fresh.mkdir(parents=True, exist_ok=True)
        broken.write_bytes(b"not a shared library")
        yield broken
        yield from real_candidates(cc, source, state)

    monkeypatch.setattr(kernels, "_candidates", candidates)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kernels.steps() is not None
    assert (fresh / "broken.so.failed").exists()  # with the reason, for the user; the library is not deleted
    monkeypatch.setattr(kernels, "_loaded", {})
    monkeypatch.setattr(kernels, "_candidates", lambda cc, source, state: iter([broken]))
    with pytest.warns(RuntimeWarning, match="could not build or load its step kernels .*broken.so"):
        assert kernels.steps() is None


def test_stackrnn_kernels_0_switches_them_off(monkeypatch):
    monkeypatch.setattr(settings, "kernels", "off")
    assert kernels.steps() is None
    monkeypatch.setattr(settings, "kernels", "auto")
    assert kernels.steps() is not None


def test_other_cell_types_and_options_stay_on_the_torch_path(counted):
    """RNN cells, projections, and bfloat16 have no kernel: they run the torch path."""
    x = torch.randn(4, 2, 3)
    for specs in ([RNN(5, layer_norm=True)], [RNN(5, zoneout=0.2)], [LSTM(5, proj_size=3, zoneout=0.1)]):
        StackedRNN(3, layers=specs).train()(x)[0].sum().backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        StackedRNN(3, layers=[LSTM(5, zoneout=0.2)]).train()(x)[0].float().sum().backward()
    assert counted == {"forward": 0, "backward": 0, "loops": 0}


def test_the_cell_state_tanh_is_accurate_to_a_few_ulp_near_zero_too():
    """tanh(c') in relative terms, small |c'| included (where 2 sigmoid(2x) - 1 would lose digits): with i = 0 and
    f = 1 exactly (gate inputs -+100), c' is the given c and tc = tanh(c)."""
    steps = kernels.steps(torch.float32)
    B, H = 2, 3000
    c_prev = torch.cat([torch.linspace(-20, 20, H), torch.logspace(-8, 0, H) * torch.tensor([1.0, -1.0]).repeat(H // 2)])
    c_prev = c_prev.reshape(B, H)
    pre = torch.zeros(B, 4 * H)
    pre[:, :H], pre[:, H:2 * H] = -100, 100
    act, tc, c, h = torch.empty(B, 4 * H), torch.empty(B, H), torch.empty(B, H), torch.empty(B, H)
    steps.lstm_forward(B, H, pre.data_ptr(), c_prev.data_ptr(), torch.zeros(B, H).data_ptr(), None, 0, 0, None, 0, 0,
                  None, act.data_ptr(), tc.data_ptr(), c.data_ptr(), h.data_ptr(), None)
    assert torch.equal(c, c_prev)
    want = torch.tanh(c_prev.double())
    assert ((tc.double() - want).abs() / want.abs().clamp(min=1e-30)).max() < 3e-7


@pytest.mark.parametrize("option", ["zoneout", "all, bidirectional"])
@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "torch path"])
def test_saved_tensors_handed_back_in_another_layout_give_the_same_gradients(option, kernel, monkeypatch):
    """A saved-tensor hook may return equal values with other strides (here: column-major); backward must not
    read them by forward's layout. (Not with layer norm: torch's own LayerNorm backward, which the input side
    uses, gives wrong gradients under this hook.)"""
    if not kernel:
        monkeypatch.setattr(settings, "kernels", "off")
    torch.manual_seed(6)
    stack = StackedRNN(5, layers=[LSTM(12, **CASES[option]), LSTM(8, **CASES[option])]).train()
    x = torch.randn(7, 3, 5)
    plain = _run(stack, x, torch.tensor([7, 5, 2]))
    relaid = lambda t: t.transpose(0, 1).contiguous().transpose(0, 1) if t.dim() >= 2 else t  # noqa: E731
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, relaid):
        hooked = _run(stack, x, torch.tensor([7, 5, 2]))
    for a, b in zip([*plain[0], *plain[1]], [*hooked[0], *hooked[1]]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_a_strided_carry_factor_is_read_as_its_values(counted, monkeypatch):
    """The kernels read a carry factor's columns at stride 0 or 1; one laid out otherwise is copied first."""

    torch.manual_seed(7)
    T, B, H = 4, 3, 5
    gi = torch.randn(T, B, 4 * H, dtype=torch.float64)
    h0, c0 = torch.randn(B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    w = torch.randn(4 * H, H, dtype=torch.float64)
    a = torch.rand(T, B, 2 * H, dtype=torch.float64)[..., ::2]  # column stride 2
    make = functools.partial(_make_math, _LSTMMath, H, {})

    def run():
        return _Recurrence.apply(make, False, gi, h0, c0, w, None, None, None, None, a, a, None, None, None)

    with_kernel = run()
    assert counted["forward"] == T
    monkeypatch.setattr(settings, "kernels", "off")
    without = run()
    for p, q in zip(with_kernel, without):
        torch.testing.assert_close(p, q)


@pytest.mark.parametrize("make", [LSTM, GRU], ids=["lstm", "gru"])
def test_a_padded_sequence_ends_in_exactly_its_last_valid_state(make, counted):
    """Padding carries the state unchanged (factor 1): the final state of a short sequence is its output at its
    last valid step, bit for bit, as torch.lerp gives on the torch path."""
    torch.manual_seed(8)
    stack = StackedRNN(5, layers=[make(7, zoneout=0.2)]).eval()
    x, lengths = torch.randn(6, 3, 5), torch.tensor([6, 3, 1])
    with torch.no_grad():
        out, state = stack(x, lengths=lengths)
    h = state[0][0] if make is LSTM else state[0]
    for b, n in enumerate(lengths.tolist()):
        assert torch.equal(h[0, b], out[n - 1, b])
    assert counted["forward"] == 6


def test_a_gru_without_biases_and_under_a_layout_changing_hook(counted, monkeypatch):
    """No b_hh to add in the product; saved tensors handed back column-major; both against the torch path."""
    torch.manual_seed(9)
    stack = StackedRNN(5, layers=[GRU(9, bias=False, zoneout=0.2, recurrent_dropout=0.3), GRU(6, zoneout=0.1)])
    x = torch.randn(7, 3, 5)
    relaid = lambda t: t.transpose(0, 1).contiguous().transpose(0, 1) if t.dim() >= 2 else t  # noqa: E731
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, relaid):
        fast = _run(stack.train(), x, torch.tensor([7, 5, 2]))
    assert counted["forward"] > 0
    monkeypatch.setattr(settings, "kernels", "off")
    slow = _run(stack.train(), x, torch.tensor([7, 5, 2]))
    for a, b in zip([*fast[0], *fast[1]], [*slow[0], *slow[1]]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_kernels_switched_off_between_forward_and_backward(counted, monkeypatch):
    """Forward ran the C time loop; backward finds no compiled gemm (STACKRNN_KERNELS=0 set in between) and runs
    the Python loop over the same step kernels, with torch's products: the same gradients."""
    torch.manual_seed(12)
    stack = StackedRNN(5, layers=[LSTM(8, zoneout=0.1), LSTM(6, layer_norm=True)]).train()
    x = torch.randn(6, 3, 5)
    xr = x.clone().requires_grad_(True)
    out, _ = stack(xr, generator=torch.Generator().manual_seed(3))
    assert counted["loops"] == 2  # both forward passes in C
    monkeypatch.setattr(settings, "kernels", "off")
    got = torch.autograd.grad(out.sum(), [xr, *stack.parameters()])
    monkeypatch.setattr(settings, "kernels", "auto")
    plain = torch.autograd.grad(stack(x.clone().requires_grad_(True), generator=torch.Generator().manual_seed(3))[0]
                                .sum(), list(stack.parameters()))
    for g, p in zip(got[1:], plain):
        torch.testing.assert_close(g, p, atol=1e-5, rtol=1e-5)
