"""The one exception type for bad user input.

Anything a user can get wrong (an argument, a config key, a data file, a run directory, a checkpoint) raises
`InputError` with a single line that says what is wrong and how to fix it. The command line prints that line
and exits with status 2; library users can catch it as a ValueError.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable


class InputError(ValueError):
    """Bad user input. The message is one line: what is wrong, and how to fix it."""


#: nouns whose plural is not the noun + "s"
_PLURALS = {"series": "series"}


def plural(n: int, word: str) -> str:
    """'1 step', '2 steps', '2 series': a count and its noun."""
    return f"{n} {word if n == 1 else _PLURALS.get(word, word + 's')}"


def did_you_mean(word: str, known: Iterable[str], show: Callable[[str], str] = repr) -> str:
    """" (did you mean X?)" for the known name nearest a mistyped `word`, or "" when none is near."""
    near = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {show(near[0])}?)" if near else ""


def require(*modules: str, message: str) -> None:
    """Import each of `modules` (an optional extra's), or raise InputError(message): the one line that says which
    extra to install. Called before anything is trained or written, so a missing extra stops nothing midway."""
    for name in modules:
        try:
            __import__(name)  # the import statement's own hook, as `import name` would call it
        except ImportError:
            raise InputError(message) from None
