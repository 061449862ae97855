"""The one exception type for bad user input.

Anything a user can get wrong (an argument, a config key, a data file, a run directory, a checkpoint) raises
`InputError` with a single line that says what is wrong and how to fix it. The command line prints that line
and exits with status 2; library users can catch it as a ValueError.
"""


class InputError(ValueError):
    """Bad user input. The message is one line: what is wrong, and how to fix it."""
