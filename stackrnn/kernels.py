"""Compiled kernels for the engine (stackrnn/csrc/), built on first use.

What is left per step once the products are done is pointwise gate math, which PyTorch runs as about ten
separate kernels, each a pass over the step's tensors. `csrc/steps.c` does an LSTM or GRU step's forward or
backward in one pass, its rows shared between torch's threads with OpenMP; `csrc/gemm.h` is the engine's matrix
product (stackrnn/matmul.py), and `csrc/loops.h` an LSTM's whole time loop around the steps and their products;
`csrc/drop.h` is weight drop's pass over W_hh (regularizers.drop_weight). It is plain C (with GCC's vector
extensions, which clang has too) with no headers beyond the C library's (and omp.h): it compiles in about three
seconds with the system's C compiler, once per machine (an OpenMP build is first tried in a separate interpreter
beside torch, a few seconds more); the shared library is cached in `kernel_dir()` under a name that hashes the sources, the compiler, the
CPU, torch and the flags, and is loaded with ctypes. Where OpenMP is not to be had, it is built single-threaded.
A build that fails for good (the compiler rejects its flags, the OpenMP trial fails, it will not load) leaves a
`.failed` marker with the reason, and later processes skip it until the marker is deleted; a killed compiler, a
trial that could not run and the last, plainest build are never marked.

Where there is no C compiler (or settings.kernels is "off", or the build fails), `steps()` returns None and the engine
runs the same math as PyTorch operations: the results agree to float rounding, only slower. The step kernels take
contiguous float32 or float64 CPU tensors, the product any strides; the engine and matmul.py check the type and
device before they use them.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import torch

from . import settings

_SOURCE = Path(__file__).with_name("csrc") / "steps.c"
_HEADERS = [_SOURCE.with_name(name)  # the headers steps.c includes
            for name in ("common.h", "lstm.h", "gru.h", "gemm.h", "loops.h", "drop.h")]
_FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared"]
_LOG = logging.getLogger(__name__)
_lock = threading.Lock()
_SUFFIX = {torch.float32: "_f32", torch.float64: "_f64"}
_loaded: dict[str, object] = {}  # "steps" -> {dtype: Steps}, or None once the library could not be had

_P, _I, _L, _N = ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_int64  # _N: a whole weight's sizes
_CARRIES = [_P, _L, _L, _P, _L, _L]  # a_h, its row and column strides; a_c, its strides
_STEP_CARRIES = [_P, _L, _L, _L, _P, _L, _L, _L]  # the same with a step stride after each pointer (loops.h)


def _signatures(real) -> dict[str, list]:
    """The argument types of each kernel (csrc/lstm.h and gru.h document them), for a C type `real` of eps."""
    return {
        # B, H, pre, c_prev, h_prev, carries, h_mask, act, tc, c_out, h_out, h_in
        "lstm_forward_step": [_I, _I, _P, _P, _P, *_CARRIES, _P, _P, _P, _P, _P, _P],
        # B, H, act, tc, c_prev, carries, d_out, dh, dc, d_pre, keep_h, keep_c
        "lstm_backward_step": [_I, _I, _P, _P, _P, *_CARRIES, _P, _P, _P, _P, _P, _P],
        # B, H, z, xw, g_ih, bias, g_hh, gain_c, shift_c, eps, c_prev, h_prev, carries, h_mask, act, mx, rx, zn, rz,
        # tc, cn, rc, c_out, h_out, h_in
        "lstm_ln_forward_step": [_I, _I, *[_P] * 7, real, _P, _P, *_CARRIES, *[_P] * 12],
        # B, H, act, tc, xw, mx, rx, zn, rz, cn, rc, g_ih, g_hh, gain_c, c_prev, carries, d_out, dh, dc, d_pre, d_xw,
        # d_z, d_g_ih, d_g_hh, d_bias, d_gain_c, d_shift_c, keep_h, keep_c, scratch, xn
        "lstm_ln_backward_step": [_I, _I, *[_P] * 13, *_CARRIES, *[_P] * 15],
        # B, H, gi, gh, h_prev, a_h and its strides, h_mask, rz, n, ghn, h_out, h_in
        "gru_forward_step": [_I, _I, _P, _P, _P, *_CARRIES[:3], *[_P] * 6],
        # B, H, rz, n, ghn, h_prev, a_h and its strides, d_out, dh, d_gi, d_gh, keep_h
        "gru_backward_step": [_I, _I, *[_P] * 4, *_CARRIES[:3], *[_P] * 5],
        # B, H, gi, z, g_hh, b_hh, eps, h_prev, a_h and its strides, h_mask, rz, n, ghn, zn, rzs, h_out, h_in
        "gru_ln_forward_step": [_I, _I, _P, _P, _P, _P, real, _P, *_CARRIES[:3], *[_P] * 8],
        # B, H, rz, n, ghn, zn, rzs, g_hh, h_prev, a_h and its strides, d_out, dh, d_gi, d_gh, d_z, d_g_hh, keep_h
        "gru_ln_backward_step": [_I, _I, *[_P] * 7, *_CARRIES[:3], *[_P] * 7],
        # K, N, b, its strides, packed (csrc/gemm.h)
        "pack_b": [_N, _N, _P, _N, _N, _P],
        # M, N, K, a, its strides, packed b, add, its row stride, y, its strides, tiles
        "gemm_packed": [_N, _N, _N, _P, _N, _N, _P, _P, _N, _P, _N, _N, _P],
        # T, B, H, reverse, gi, packed w_hh, carries, h_mask, pre, spare, act, tc, c_all, h_all (csrc/loops.h)
        "lstm_forward_loop": [_I, _I, _I, _I, _P, _P, *_STEP_CARRIES, *[_P] * 7],
        # T, B, H, packed w_hh, act, tc, c_all, carries, h_mask, d_out, dh, dc, d_z, keep_h, keep_c, tmp
        "lstm_backward_loop": [_I, _I, _I, _P, _P, _P, _P, *_STEP_CARRIES, *[_P] * 8],
        # T, B, H, reverse, xw, packed w_hh, g_ih, bias, g_hh, gain_c, shift_c, eps, carries, h_mask, z, spare, act,
        # mx, rx, zn, rz, tc, cn, rc, c_all, h_all
        "lstm_ln_forward_loop": [_I, _I, _I, _I, *[_P] * 7, real, *_STEP_CARRIES, *[_P] * 13],
        # T, B, H, reverse, packed w_hh, act, tc, xw, mx, rx, zn, rz, cn, rc, g_ih, g_hh, gain_c, c_all, carries,
        # h_mask, d_out, dh, dc, d_pre, d_xw, d_z, d_g_ih, d_g_hh, d_bias, d_gain_c, d_shift_c, keep_h, keep_c,
        # scratch, xn, tmp
        "lstm_ln_backward_loop": [_I, _I, _I, _I, *[_P] * 14, *_STEP_CARRIES, *[_P] * 17],
        # n, bits, threshold, words, scale, in, out (csrc/drop.h)
        "drop_connect": [_N, _I, _I, _P, real, _P, _P],
    }


# gemm.h's room for its packed forms, in values: packed_size(K, N), tile_space(M, K, sak) (restype int64)
_SIZES = {"packed_size": [_N, _N], "tile_space": [_N, _N, _N]}


def kernel_dir() -> Path:
    """Where built kernels are kept: $STACKRNN_KERNEL_CACHE, else the `kernels` folder of stackrnn's cache
    ($STACKRNN_CACHE, else ~/.cache/stackrnn)."""
    if os.environ.get("STACKRNN_KERNEL_CACHE"):
        return Path(os.environ["STACKRNN_KERNEL_CACHE"]).expanduser()
    return Path(os.environ.get("STACKRNN_CACHE", "~/.cache/stackrnn")).expanduser() / "kernels"


def enabled() -> bool:
    """False when settings.kernels is "off" (STACKRNN_KERNELS=0): the engine then runs its PyTorch path."""
    return settings.kernels != "off"


def _compiler() -> str | None:
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"].split()[0]) and os.environ["CC"]
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return name
    return None


def _version(cc: str) -> str:
    try:
        return subprocess.run([*cc.split(), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu() -> str:
    """What -march=native builds for: the CPU's model and instruction-set flags (Linux's /proc/cpuinfo), so that
    a cache folder shared by unlike machines (a network home, a copied container) never hands one a library with
    instructions it lacks. Elsewhere the processor's name and the host's."""
    try:
        lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        return " ".join([platform.machine(), platform.processor(), platform.node()])
    wanted = ("model name", "flags", "features", "cpu part", "cpu implementer")
    seen = {line.split(":")[0].strip().lower(): line for line in lines if ":" in line}
    return " ".join([platform.machine(), *(seen[k] for k in wanted if k in seen)])


# -march=native: the library is built where it runs. -fopenmp: a step's rows shared between threads (steps.c)
_FLAG_SETS = (["-fopenmp", "-march=native"], ["-fopenmp"], ["-march=native"], [])


def _candidates(cc: str, source: Path, state: dict):
    """The shared libraries for `source`, best first, each from the cache or compiled now: with OpenMP and
    -march=native, then without each in turn. A flag set that failed here for good before (its `.failed` marker
    beside where the library would be, with the reason) is skipped, and its marker listed in state["failed"]:
    deleting the marker tries it again."""
    # the key: the sources, the compiler, the CPU and the torch beside which an OpenMP build was tried (the same
    # for every set of flags below), and the flags
    fixed = [*(path.read_bytes() for path in [source, *_HEADERS]), cc.encode(), _version(cc).encode(), _cpu().encode(),
             torch.__version__.encode(), str(Path(torch.__file__).parent).encode()]
    for extra in _FLAG_SETS:
        flags = [*_FLAGS, *extra]
        key = hashlib.sha256(b"\0".join([*fixed, " ".join(flags).encode()])).hexdigest()[:16]
        target = kernel_dir() / f"{source.stem}-{key}{'.dll' if sys.platform == 'win32' else '.so'}"
        if _failed(target).exists():
            _LOG.info("skipping %s: it failed before (see %s; delete it to try again)", target.name, _failed(target))
            state["failed"].append(_failed(target))
            continue
        if "-fopenmp" in extra and not target.exists() and not state["trial"]:
            continue  # an OpenMP build is kept only after a trial run, which cannot run here
        if target.exists() or _compile(cc, flags, source, target, state, last=not extra):
            yield target


def _failed(target: Path) -> Path:
    return target.with_name(target.name + ".failed")


def _mark_failed(target: Path, reason: str, state: dict) -> None:
    """Records that this build failed for good, and why, so that later processes skip it (a marker beside the
    library's place; deleting it tries again)."""
    _LOG.info("%s: %s", target.name, reason)
    state["failed"].append(_failed(target))
    try:
        _failed(target).write_text(reason + "\n")
    except OSError:
        pass


# Run in a fresh interpreter on an OpenMP build before it is kept (argv[1]: the library): torch's threads and the
# library's in one process, as the engine runs them, on a step big enough for two threads, checked against torch.
# Two LLVM OpenMP runtimes in one process (clang's libomp beside the one torch brought, say) abort it at the first
# parallel region, where no exception in this process could catch it. The line after torch's import tells a
# failing library from an interpreter that could not run the trial at all.
_TRIAL = """
import ctypes, sys
import torch
print("torch imported", flush=True)
torch.set_num_threads(2)
lib = ctypes.CDLL(sys.argv[1])
P, I, L = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
step = lib.lstm_forward_step_f32
step.argtypes = [I, I, P, P, P, P, L, L, P, L, L, P, P, P, P, P, P]
lib.set_threads.argtypes = [I]
lib.set_threads(2)
B, H = 8, 512
pre, c, h = torch.randn(B, 4 * H), torch.randn(B, H), torch.randn(B, H)
out = [torch.empty(B, 4 * H), torch.empty(B, H), torch.empty(B, H), torch.empty(B, H)]
a = torch.randn(256, 256)
for _ in range(3):  # torch's parallel regions before and after the library's
    a = torch.tanh(a @ a)
    step(B, H, pre.data_ptr(), c.data_ptr(), h.data_ptr(), None, 0, 0, None, 0, 0, None,
         *(t.data_ptr() for t in out), None)
i, f, g, o = pre.view(B, 4, H).unbind(1)
want = torch.sigmoid(o) * torch.tanh(torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g))
sys.exit(0 if torch.allclose(out[3], want, atol=1e-5) else 1)
"""


# the signals of a library that crashed its trial, not of one stopped from outside
_CRASHES = {getattr(signal, name) for name in ("SIGABRT", "SIGSEGV", "SIGBUS", "SIGILL") if hasattr(signal, name)}


def _trial(library: str) -> str | None:
    """'' where the OpenMP build ran beside torch's threads in a fresh interpreter; the reason where the library
    failed there (an error, an abort, a wrong result); None where the trial itself could not run (no interpreter,
    no torch in it, a timeout, a signal from outside)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    try:
        run = subprocess.run([sys.executable, "-W", "ignore", "-c", _TRIAL, library], capture_output=True,
                             text=True, timeout=120, env=env)
    except (OSError, subprocess.SubprocessError) as error:
        _LOG.info("the OpenMP build's trial run could not run: %s", error)
        return None
    crashed = run.returncode < 0 and -run.returncode in _CRASHES
    if "torch imported" not in run.stdout or (run.returncode < 0 and not crashed):
        _LOG.info("the OpenMP build's trial run could not run (exit status %s): %s", run.returncode,
                  run.stderr.strip()[-2000:])
        return None
    if run.returncode == 0:
        return ""
    return f"it failed its trial run beside torch (exit status {run.returncode}): {run.stderr.strip()[-2000:]}"


def _compile(cc: str, flags: list[str], source: Path, target: Path, state: dict, last: bool) -> bool:
    target.parent.mkdir(parents=True, exist_ok=True)
    # built under a temporary name and renamed: another process building the same library at the same time never
    # loads a half-written file
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}-", suffix=target.suffix)
    os.close(fd)
    try:
        done = subprocess.run([*cc.split(), *flags, str(source), "-o", partial, "-lm"], capture_output=True,
                              text=True, timeout=120)
        if done.returncode != 0:
            reason = f"{cc} {' '.join(flags)} exited with status {done.returncode}: {done.stderr.strip()}"
            if done.returncode > 0 and not last:  # not for a killed compiler, nor for the last resort
                _mark_failed(target, reason, state)
            else:
                _LOG.info("%s: %s", target.name, reason)
            return False
        if "-fopenmp" in flags:
            verdict = _trial(partial)
            if verdict is None:  # neither kept nor marked, and no second OpenMP build in this process
                state["trial"] = False
                return False
            if verdict:
                _mark_failed(target, verdict, state)
                return False
        os.chmod(partial, 0o755)  # mkstemp's 0600 would keep a shared cache's other users from loading it
        os.replace(partial, target)
        return True
    except (OSError, subprocess.SubprocessError) as error:  # not marked: a timeout, say, may pass
        _LOG.info("building %s with %s failed: %s", source.name, cc, error)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return False


def _load():
    cc = _compiler()
    if cc is None:
        _LOG.info("no C compiler found (set CC): the engine runs its steps as PyTorch operations")
        return None
    lib, error = None, None
    state = {"trial": bool(sys.executable), "failed": []}
    try:
        for path in _candidates(cc, _SOURCE, state):
            try:
                lib = ctypes.CDLL(str(path))
                break
            except OSError as failure:  # say, an OpenMP build whose runtime library has gone: try the next
                error = failure
                _mark_failed(path, f"loading it failed: {failure}", state)
    except Exception as failure:  # an unwritable cache folder, say: never worse than the torch path
        error = failure
    if lib is None:
        what = f"build or load its step kernels ({error})" if error else f"compile {_SOURCE.name} with {cc}"
        markers = state["failed"]
        why = (f" Why is written in {markers[0].parent}/*.failed; delete those files to try again." if markers
               else "")
        warnings.warn(f"stackrnn could not {what}; the engine's steps and weight drop run as PyTorch operations, "
                      f"which is slower.{why} Set STACKRNN_KERNELS=0 (or stackrnn.settings.kernels = 'off') to skip "
                      f"the attempt.", RuntimeWarning, stacklevel=3)
        return None
    for suffix, real in (("_f32", ctypes.c_float), ("_f64", ctypes.c_double)):
        for name, args in _signatures(real).items():
            function = getattr(lib, name + suffix)
            function.argtypes, function.restype = args, None
        for name, args in _SIZES.items():
            function = getattr(lib, name + suffix)
            function.argtypes, function.restype = args, _N
    lib.set_threads.argtypes, lib.set_threads.restype = [ctypes.c_int], ctypes.c_int
    lib.kernel_team.argtypes, lib.kernel_team.restype = [], ctypes.c_int
    lib.loop_chunks.argtypes, lib.loop_chunks.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return lib


class Steps:
    """The kernels for one floating type, as functions: the steps lstm_forward, lstm_backward, lstm_ln_forward,
    lstm_ln_backward, gru_forward, gru_backward, gru_ln_forward, gru_ln_backward (csrc/lstm.h and gru.h document
    their arguments); the matrix product's pack_b, gemm_packed, packed_size and tile_space (csrc/gemm.h, for
    stackrnn/matmul.py); the LSTM's time loops lstm_forward_loop, lstm_backward_loop, lstm_ln_forward_loop and
    lstm_ln_backward_loop (csrc/loops.h), and `loops`, whether the engine runs them (False under
    settings.kernels "steps": it loops over the steps in Python); set_threads(n), the most threads a step or product
    may share its work between from now on (n >= 1; it returns the count, 0 in a build without OpenMP, where one
    thread runs them); kernel_team(), the number of threads the last layer norm's backward step ran on;
    loop_chunks(B, H), how many chunks of rows the time loops would give their threads now (1: step by step); and
    drop_connect, weight drop's pass over a whole weight (csrc/drop.h)."""

    def __init__(self, lib, dtype: torch.dtype) -> None:
        suffix = _SUFFIX[dtype]
        for name in [*_signatures(ctypes.c_float), *_SIZES]:
            setattr(self, name.removesuffix("_step"), getattr(lib, name + suffix))
        self.set_threads, self.kernel_team, self.loop_chunks = lib.set_threads, lib.kernel_team, lib.loop_chunks

    @property
    def loops(self) -> bool:
        """Whether the engine runs the LSTM's time loops in C (not under settings.kernels "steps")."""
        return settings.kernels != "steps"


def steps(dtype: torch.dtype = torch.float32) -> Steps | None:
    """The kernels for float32 or float64, or None where they cannot be had (another dtype, no compiler,
    settings.kernels "off"). Built at most once per process, loaded from the cache after that. settings.kernels
    "steps" keeps the kernels but not the LSTM's time loops (for comparison: the engine then loops in Python)."""
    if not enabled() or dtype not in _SUFFIX:
        return None
    if "steps" not in _loaded:
        with _lock:
            if "steps" not in _loaded:
                lib = _load()
                _loaded["steps"] = lib and {t: Steps(lib, t) for t in _SUFFIX}
    return _loaded["steps"] and _loaded["steps"][dtype]
