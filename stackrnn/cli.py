"""The command line: a table of subcommands, each an options dataclass and a library function (commands.py).
Nothing imports this module.

Every flag, its help and its default come from dataclass fields in one place (`add_option`): a command's options
(commands.py), and for train and summary every [model], [data] and [train] field of the run's task (--hidden-size
512, --no-progress); options override the config file, which overrides the defaults. The task comes from --task,
else the config file's `task = ...`, else it is "lm"; `stackrnn train --task classify --help` lists the
classifier's options. Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, NamedTuple

from . import __version__, commands
from .config import allowed_types, check_value, option_named, options, parse_flag_value, read_toml, set_path
from .errors import InputError, did_you_mean
from .tasks import TASK_NAMES, a_run_of
from .train import sections


class Command(NamedTuple):
    """A subcommand: its options dataclass (whose docstring gives the command's one-line help, then its
    description), the library function that runs it, and whether it also takes every config field of the task."""

    options: type
    run: Callable[[Any], int]
    config_options: bool = False

    @property
    def help(self) -> str:
        first = self.options.__doc__.split("\n\n")[0].strip().rstrip(".")
        return first[0].lower() + first[1:]  # (argparse lists commands in lower case)

    @property
    def description(self) -> str:
        return " ".join(" ".join(self.options.__doc__.split("\n\n")[1:]).split())


COMMANDS = {
    "train": Command(commands.TrainOptions, commands.train, config_options=True),
    "generate": Command(commands.GenerateOptions, commands.generate),
    "eval": Command(commands.EvalOptions, commands.evaluate),
    "translate": Command(commands.TranslateOptions, commands.translate),
    "predict": Command(commands.PredictOptions, commands.predict),
    "forecast": Command(commands.ForecastOptions, commands.forecast),
    "transcribe": Command(commands.TranscribeOptions, commands.transcribe),
    "plot": Command(commands.PlotOptions, commands.plot),
    "inspect": Command(commands.InspectOptions, commands.inspect),
    "probe": Command(commands.ProbeOptions, commands.probe),
    "sweep": Command(commands.SweepOptions, commands.sweep),
    "summary": Command(commands.SummaryOptions, commands.summary, config_options=True),
    "export": Command(commands.ExportOptions, commands.export),
    "serve": Command(commands.ServeOptions, commands.serve),
}


def one_line(text: object) -> str:
    """A message on one line: a line break that a file name or an argument brought into it is shown as \\n."""
    return str(text).replace("\r", "\\r").replace("\n", "\\n")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: 'stackrnn train: error: ...' and exit status 2, no usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def add_option(group, o, dest: str) -> None:
    """The argument of one dataclass field (config.Option `o`), its help ending with its default."""
    meta, kinds = o.field.metadata, allowed_types(o.type)[0]
    help_text, notes = meta["help"], [str(meta["within"])] if meta.get("within") else []
    if "default:" not in help_text and o.default not in (None, []) and not meta.get("required"):
        notes.append(f"default: {o.default}")  # (some say their default in words: "default: torch's init")
    help_text += f" ({'; '.join(notes)})" if notes else ""
    help_text = help_text.replace("%", "%%")  # argparse formats help with %: "80% intervals" is text, not a format
    if meta.get("positional"):
        nargs = ("+" if meta.get("required") else "*") if list in kinds else None if meta.get("required") else "?"
        # (a '*' positional is always set: texts after the options join it, see parse)
        group.add_argument(dest, nargs=nargs, metavar=meta.get("metavar"), default=o.default, help=help_text)
        return
    flag, common = "--" + o.name.replace("_", "-"), {"dest": dest, "default": argparse.SUPPRESS, "help": help_text}
    if kinds == (bool,):
        group.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
    elif bool in kinds:  # a switch that may also take a value (residual: on, off, or from layer k)
        group.add_argument(flag, nargs="?", const=True, metavar="K", **common)
        group.add_argument("--no-" + flag[2:], dest=dest, action="store_const", const=False, default=argparse.SUPPRESS,
                           help=f"the same as {flag} false")
    else:
        choices = meta.get("choices")
        metavar = meta.get("metavar") or ("{" + ",".join(choices) + "}" if choices else o.name.upper())
        group.add_argument(flag, action="append" if list in kinds else "store", required=meta.get("required", False),
                           metavar=metavar, **common)


def add_config_options(parser: argparse.ArgumentParser, task: str) -> None:
    """One option per config field of `task`, grouped by section; absent options stay absent (they override
    nothing). The --task option itself picks which fields these are (see `peek_task`)."""
    parser.add_argument("--task", choices=TASK_NAMES, default=argparse.SUPPRESS,
                        help="what to train: " + ", ".join(f"{name} for {a_run_of(name)}" for name in TASK_NAMES)
                             + "; default: lm, or the config file's `task = ...`")
    parser.set_defaults(options_task=task)  # whose options these are, whether or not --task was given
    for section, cls in sections(task).items():
        group = parser.add_argument_group(f"[{section}] options (override the config file)")
        for o in options(cls):
            if o.field.metadata.get("cli", True):
                add_option(group, o, f"{section}:{o.name}")


def value_of(o, value: Any, where: str, label: str) -> Any:
    """A parsed argument as the field's value: text converted to its type, then checked like a file's value."""
    if isinstance(value, str):
        value = parse_flag_value(o.owner, o.path[-1], value)
    return check_value(o.owner, o.path[-1], value, where, label=label)


def overrides_from(args: argparse.Namespace) -> dict[str, dict]:
    """The config options given on the command line, as {section: {field: value}} (nested tables for nested
    configs: {"model": {"stack": {"hidden_size": 512}}}), typed and checked."""
    known = sections(getattr(args, "options_task", "lm"))
    tables: dict[str, dict] = {s: {} for s in known}
    for key, value in vars(args).items():
        if ":" in key:
            section, name = key.split(":", 1)
            o = option_named(known[section], name, section)
            set_path(tables[section], o.path, value_of(o, value, section, f"--{name.replace('_', '-')}"))
    return tables


def options_from(args: argparse.Namespace, cls: type) -> Any:
    """The command's options dataclass from the parsed arguments (absent ones keep their defaults)."""
    given = {o.name: value_of(o, getattr(args, o.name), "", f"--{o.name.replace('_', '-')}")
             for o in options(cls) if o.field.metadata.get("cli", True) and hasattr(args, o.name)}
    opts = cls(**given)
    if hasattr(opts, "overrides"):  # train and summary: the config options, and the task they belong to
        opts.overrides, opts.task = overrides_from(args), getattr(args, "task", None)
    if hasattr(opts, "argv"):
        opts.argv = args.argv
    return opts


def peek_task(argv: list[str]) -> str:
    """The task of a train or summary command line, needed before its options can be defined: --task, else the
    config file's (or the resumed run's) `task`, else "lm"."""
    pre = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    for flag in ("--task", "--config", "--resume"):
        pre.add_argument(flag)
    try:
        known, _ = pre.parse_known_args(argv)
    except argparse.ArgumentError:  # such as --config without its value: the full parser says so, in one line
        return "lm"
    if known.task is not None:
        return known.task if known.task in TASK_NAMES else "lm"  # the full parser reports a bad --task
    for path in (known.config, known.resume and str(Path(known.resume) / "config.toml")):
        if path and Path(path).is_file():
            task = read_toml(path).get("task", "lm")
            if task not in TASK_NAMES:
                raise InputError(f"{path}: task: expected one of {', '.join(TASK_NAMES)}, got {task!r}")
            return task
    return "lm"


def make_parser(task: str = "lm") -> argparse.ArgumentParser:
    """The parser: one subcommand per row of COMMANDS; train and summary get the config options of `task`."""
    parser = Parser(prog="stackrnn", description="Deep (stacked) recurrent networks: train, generate, evaluate, inspect.")
    parser.add_argument("--version", action="version", version=f"stackrnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    parser.commands = sub.choices  # each command's parser, by name
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.description)
        for o in options(command.options):
            if o.field.metadata.get("cli", True):
                add_option(p, o, o.name)
        if command.config_options:
            add_config_options(p, task)
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line parsed, or SystemExit(2) with one line saying what is wrong."""
    task = peek_task(argv[1:]) if argv[:1] in (["train"], ["summary"]) else "lm"
    parser = make_parser(task)
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse fills a '*' positional once, at its first chance: in `translate RUN --beam 5 "a text"`, the
        # texts after the options come back unparsed. Texts they are; anything else is still an error.
        if hasattr(args, "texts") and not any(e.startswith("-") for e in extra):
            args.texts = [*args.texts, *extra]
        else:
            command = parser.commands[args.command]  # the error is the command's: 'stackrnn train: error: ...'
            flags = [s for action in command._actions for s in action.option_strings]
            mistyped = [e.split("=")[0] for e in extra if e.startswith("--")]
            command.error(f"unrecognized arguments: {' '.join(extra)}"
                          + (did_you_mean(mistyped[0], flags, str) if mistyped else ""))
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    name = argv[0] if argv else ""
    try:
        args = parse(argv)
        name = args.command
        # library warnings (such as a damaged checkpoint passed over) as one line each, like the errors
        warnings.showwarning = lambda message, *_, **__: print(f"stackrnn {name}: warning: {one_line(message)}", file=sys.stderr)
        command = COMMANDS[name]
        return command.run(options_from(args, command.options))
    except InputError as e:
        print(f"stackrnn {name}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only folder, a permission: the user's environment, not a bug
        where = f" ({one_line(e.filename)})" if getattr(e, "filename", None) else ""
        print(f"stackrnn {name}: error: {one_line(e.strerror or e)}{where}: check the path, its permissions and free space",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stackrnn {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
