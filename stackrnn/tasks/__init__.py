"""The kinds of training run: each a `Task` (see base.py) that the one training loop in train.py drives."""

from __future__ import annotations

from ..errors import InputError
from .base import Step, Task

TASK_NAMES = ("lm", "classify", "translate", "forecast", "speech")


def task_class(name: str) -> type[Task]:
    """The Task class of `name` (imported on demand: a language-model run needs none of the others' code)."""
    if name == "lm":
        from .lm import LMTask

        return LMTask
    if name == "classify":
        from .classify import ClassifyTask

        return ClassifyTask
    if name == "translate":
        from .translate import TranslateTask

        return TranslateTask
    if name == "forecast":
        from .forecast import ForecastTask

        return ForecastTask
    if name == "speech":
        from .speech import SpeechTask

        return SpeechTask
    raise InputError(f"task: expected one of {', '.join(TASK_NAMES)}, got {name!r}")


def a_run_of(name: str) -> str:
    """How messages name a run of task `name`: "a language-model run", not "a 'lm' run"."""
    return f"a {task_class(name).label} run"


__all__ = ["Task", "Step", "task_class", "a_run_of", "TASK_NAMES"]
