"""The kinds of training run: each a `Task` (see base.py) that the one training loop in train.py drives."""

from __future__ import annotations

import importlib

from ..errors import InputError
from .base import Step, Task

#: each task's module and Task class, imported on demand: a language-model run needs none of the others' code
_CLASSES = {"lm": "lm.LMTask", "classify": "classify.ClassifyTask", "translate": "translate.TranslateTask",
            "forecast": "forecast.ForecastTask", "speech": "speech.SpeechTask"}
TASK_NAMES = tuple(_CLASSES)


def task_class(name: str) -> type[Task]:
    """The Task class of `name`."""
    if name not in _CLASSES:
        raise InputError(f"task: expected one of {', '.join(TASK_NAMES)}, got {name!r}")
    module, cls = _CLASSES[name].split(".")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def a_run_of(name: str) -> str:
    """How messages name a run of task `name`: "a language-model run", not "a 'lm' run"."""
    return f"a {task_class(name).label} run"


__all__ = ["Task", "Step", "task_class", "a_run_of", "TASK_NAMES"]
