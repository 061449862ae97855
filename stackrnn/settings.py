"""The engine's switches, in one place: `stackrnn.settings.kernels` and `stackrnn.settings.matmul`.

Users rarely need them: every choice computes the same results as the reference loop. They are read once, when
stackrnn is imported, from the environment variables that older releases read (STACKRNN_KERNELS,
STACKRNN_MATMUL), and can be changed from Python at any time, for a block with `settings.use(...)`:

    from stackrnn import settings
    settings.kernels = "off"                  # the engine without its C kernels, from now on
    with settings.use(matmul="torch"):        # torch.mm for the big products, in this block only
        ...

kernels: "auto" (default) the compiled C kernels where they can be built (the LSTM's whole time loop in C),
    "steps" the C step kernels in a Python time loop, "off" PyTorch operations only (STACKRNN_KERNELS=1|steps|0).
matmul: whose products the engine uses for its big products over all of a layer's rows: "auto" (default: torch.mm
    on Intel processors with MKL, else the compiled gemm), "compiled" or "torch" (STACKRNN_MATMUL); the
    recurrence's per-step products stay with the compiled gemm. See stackrnn/matmul.py.

For benchmarks that measure what a piece of the engine buys (benchmarks/bench_engine_pieces.py) there are two
more, not meant for users: gemm (False: no product at all by the compiled gemm, so no C time loop either) and pool
(False: scratch.reusable hands out fresh memory).
"""

from __future__ import annotations

import contextlib
import os
import sys
import types

KERNELS = ("auto", "steps", "off")
MATMUL = ("auto", "compiled", "torch")
_CHOICES = {"kernels": KERNELS, "matmul": MATMUL}
_FLAGS = ("gemm", "pool")


def from_environment(environ) -> dict[str, str]:
    """The switches as the environment gives them: STACKRNN_KERNELS (1, the default; steps; 0, false, no or off)
    and STACKRNN_MATMUL (auto, the default, also when empty; compiled; torch). An unknown STACKRNN_MATMUL is kept
    as given, so that importing stackrnn never fails for it, and refused where it is read (matmul.py)."""
    value = environ.get("STACKRNN_KERNELS", "").strip().lower()
    kernels = "off" if value in ("0", "false", "no", "off") else "steps" if value == "steps" else "auto"
    return {"kernels": kernels, "matmul": environ.get("STACKRNN_MATMUL", "").strip().lower() or "auto"}


class _Settings(types.ModuleType):
    """This module, whose switches check what they are given."""

    def __setattr__(self, name: str, value) -> None:
        if name in _CHOICES and value not in _CHOICES[name]:
            raise ValueError(f"stackrnn.settings.{name} is {value!r}: use one of {', '.join(_CHOICES[name])}")
        if name in _FLAGS and not isinstance(value, bool):
            raise ValueError(f"stackrnn.settings.{name}: expected True or False, got {value!r}")
        super().__setattr__(name, value)


@contextlib.contextmanager
def use(**changes):
    """Set switches for the block, and put the old values back after it (for tests and benchmarks)."""
    module = sys.modules[__name__]
    unknown = set(changes) - set(_CHOICES) - set(_FLAGS)
    if unknown:
        raise ValueError(f"stackrnn.settings has no {', '.join(sorted(unknown))}: use "
                         f"{', '.join([*_CHOICES, *_FLAGS])}")
    old = {name: getattr(module, name) for name in changes}
    try:
        for name, value in changes.items():
            setattr(module, name, value)
        yield
    finally:
        for name, value in old.items():
            setattr(module, name, value)


sys.modules[__name__].__class__ = _Settings

kernels: str = from_environment(os.environ)["kernels"]
matmul: str = from_environment(os.environ)["matmul"]
gemm: bool = True
pool: bool = True
