"""The kinds of training run: each a `Task` (see base.py) that the one training loop in train.py drives."""

from __future__ import annotations

import importlib

from ..errors import InputError
from .base import Step, Task

#: each task's name (as config.toml's `task = ...` and --task write it) -> how messages name its runs, and its
#: module and Task class, imported on demand: a language-model run needs none of the others' code, and a message
#: that names another task's runs imports nothing
_TASKS = {"lm": ("language-model", "lm.LMTask"), "classify": ("classification", "classify.ClassifyTask"),
          "translate": ("translation", "translate.TranslateTask"), "forecast": ("forecasting", "forecast.ForecastTask"),
          "speech": ("speech recognition", "speech.SpeechTask")}
TASK_NAMES = tuple(_TASKS)


def _row(name: str) -> tuple[str, str]:
    if name not in _TASKS:
        raise InputError(f"task: expected one of {', '.join(TASK_NAMES)}, got {name!r}")
    return _TASKS[name]


def task_class(name: str) -> type[Task]:
    """The Task class of `name`."""
    module, cls = _row(name)[1].split(".")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def a_run_of(name: str) -> str:
    """How messages name a run of task `name`: "a language-model run", not "a 'lm' run"."""
    return f"a {_row(name)[0]} run"


__all__ = ["Task", "Step", "task_class", "a_run_of", "TASK_NAMES"]
