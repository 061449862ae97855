"""Typed configs: dataclasses owned by the module they configure, read from and written to TOML.

Each config field is declared with `option(default, help, choices=..., within=...)`; the help becomes the command
line's --help text, and the type annotation, the choices and the interval are checked when a file or a flag sets
the field, here and nowhere else. A wrong key, type or value is an InputError naming the key (or the flag), what
was expected and what came. A config's own `validate()` keeps only what one field cannot say alone (tie_weights
needs an embedding); what depends on the task or its data is the task's (train.monitor: Task.monitored).

A run's config has three sections, each a dataclass: [model] and [data], the task's (its `sections`,
tasks/base.py), and [train] (optim.TrainConfig).
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, NamedTuple

import tomli_w

from .errors import InputError, did_you_mean

MISSING = dataclasses.MISSING

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class Interval(NamedTuple):
    """The numbers a field allows, written as in mathematics: "[1, inf)", "[0, 1)", "(0, 1]"."""

    low: float
    high: float
    low_open: bool
    high_open: bool

    @classmethod
    def parse(cls, text: str) -> Interval:
        match = re.fullmatch(r"([\[(])\s*(-inf|[-\d.e]+)\s*,\s*(inf|[-\d.e]+)\s*([\])])", text)
        if match is None:
            raise ValueError(f"within: expected an interval such as '[0, 1)', got {text!r}")
        left, low, high, right = match.groups()
        return cls(float(low), float(high), left == "(", right == ")")

    def __contains__(self, x: float) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def __str__(self) -> str:
        def number(x: float) -> str:
            return str(int(x)) if x.is_integer() else str(x)

        if math.isinf(self.high):  # the common case reads as a comparison: ">= 1", "> 0"
            return f"{'>' if self.low_open else '>='} {number(self.low)}"
        return f"in {'(' if self.low_open else '['}{number(self.low)}, {number(self.high)}{')' if self.high_open else ']'}"


def option(default: Any, help: str, choices: tuple[str, ...] | None = None, cli: bool = True, *,
           within: str | None = None, positional: bool = False, required: bool = False, metavar: str | None = None,
           saved: Any = MISSING) -> Any:
    """A config field with its one-line help, the allowed values for a string, and whether it is a CLI flag; for
    a command's options (commands.py) also whether it is a positional argument, required, and its metavar.

    within: the interval a number must lie in, "[1, inf)" or "[0, 1)"; None and non-numbers (a zoneout pair) are
    not its business. It is checked with the type, and --help shows it.

    saved: for an option added after runs were saved without it, whose default is not how those runs behaved:
    the value a saved run lacking the key gets (see `fill_saved`), so old runs load and resume unchanged while
    new ones get the better default."""
    metadata = {"help": help, "choices": choices, "cli": cli, "positional": positional, "required": required,
                "metavar": metavar, "saved": saved, "within": within and Interval.parse(within)}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def nested(cls, help: str, prefix: str = "", hidden: tuple[str, ...] = (), flows: tuple[str, ...] = (),
           **defaults: Any) -> Any:
    """A config field holding another config dataclass, read and written as a sub-table ([model.stack]).

    Its fields are command-line options too, named `prefix` + field (--hidden-size for "", --encoder-hidden-size
    for "encoder_"), except those in `hidden` (a language model's stack has no --bidirectional). `defaults` are
    this owner's own defaults (a classifier's stack is 128 wide). `flows` names owner fields that the sub-table
    takes as its default (a translation model's dropout is its stacks' unless they set their own)."""
    metadata = {"help": help, "choices": None, "cli": True, "nested": cls, "prefix": prefix, "hidden": hidden,
                "flows": flows}
    return dataclasses.field(default_factory=lambda: cls(**defaults), metadata=metadata)


class Option(NamedTuple):
    """A leaf field of a config, with its command-line name: `name` (hidden_size, encoder_hidden_size) and
    `path` within its section (("stack", "hidden_size")); `owner` is the dataclass that declares it."""

    name: str
    path: tuple[str, ...]
    owner: type
    field: dataclasses.Field
    type: Any
    default: Any


def options(cls, instance: Any = None, prefix: str = "", path: tuple[str, ...] = ()) -> list[Option]:
    """Every leaf field of config class `cls`, nested ones included, each with its command-line name and the
    default it has in its owner (`instance`, default `cls()`): the one place that names options."""
    instance = cls() if instance is None else instance
    found = []
    for f, tp in fields(cls):
        sub = f.metadata.get("nested")
        if sub is None:
            found.append(Option(prefix + f.name, (*path, f.name), cls, f, tp, getattr(instance, f.name)))
            continue
        inner = options(sub, getattr(instance, f.name), prefix + f.metadata["prefix"], (*path, f.name))
        found += [o for o in inner if o.path[-1] not in f.metadata["hidden"]]
    return found


def option_named(cls, name: str, where: str) -> Option:
    """The option `name` (a command-line name such as hidden_size) of config class `cls`, or an InputError."""
    known = {o.name: o for o in options(cls)}
    if name not in known:
        raise InputError(f"{where}: unknown key {name!r}{did_you_mean(name, known)}")
    return known[name]


def from_options(cls, where: str = "model", **values: Any) -> Any:
    """Config class `cls` from values named as its command-line options, checked and validated as a file's are:
    from_options(ModelConfig, hidden_size=512, embedding_size=64), from_options(Seq2SeqConfig,
    encoder_num_layers=2)."""
    table: dict = {}
    for name, value in values.items():
        set_path(table, option_named(cls, name, where).path, value)
    return from_dict(cls, table, where)


def set_path(table: dict, path: tuple[str, ...], value: Any) -> None:
    """table[path[0]][path[1]]... = value, making the sub-tables on the way."""
    for key in path[:-1]:
        table = table.setdefault(key, {})
    table[path[-1]] = value


def get_path(cfg: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        cfg = getattr(cfg, key)
    return cfg


def leaves(tables: dict, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path, value) of every value in nested `tables` that is not itself a table."""
    return [pair for key, value in tables.items()
            for pair in (leaves(value, (*path, key)) if isinstance(value, dict) else [((*path, key), value)])]


def merge(base: dict, over: dict) -> dict:
    """`over` laid on `base`, sub-tables merged key by key (neither is changed)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def fields(cls) -> list[tuple[dataclasses.Field, Any]]:
    """(field, resolved type) for each field of a config dataclass, keyword-only ones (a base's, such as the layer
    options a StackConfig takes from LayerOptions) last, as the dataclass's __init__ orders them."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in sorted(dataclasses.fields(cls), key=lambda f: f.kw_only is True)]


def allowed_types(tp) -> tuple[tuple[type, ...], bool]:
    """The runtime types a value of annotation `tp` may have, and whether None is allowed."""
    args = typing.get_args(tp) if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union else (tp,)
    optional = type(None) in args
    kinds = tuple(typing.get_origin(a) or a for a in args if a is not type(None))
    return kinds, optional


def check_value(cls, name: str, value: Any, where: str, label: str | None = None) -> Any:
    """Check `value` for field `name` of `cls`; return it converted (an int where a float is wanted; a nested
    config from its table). Errors name the field as `label` (default: where.name)."""
    known = {f.name: (f, tp) for f, tp in fields(cls)}
    if name not in known:  # (the nearest may be a nested table's key: hidden_size, which [model] still takes)
        near = did_you_mean(name, [*known, *(o.name for o in options(cls))])
        raise InputError(f"{where}: unknown key {name!r}{near}; known keys: {', '.join(sorted(known))}")
    label = label or f"{where}.{name}"
    f, tp = known[name]
    if f.metadata.get("nested"):  # a sub-table over the owner's defaults; its owner checks it as a whole
        base = f.default_factory()
        if isinstance(value, type(base)):
            return value
        if not isinstance(value, dict):
            raise InputError(f"{label}: expected a table of settings ([{label}]), got {value!r}")
        return dataclasses.replace(base, **{k: check_value(type(base), k, v, label) for k, v in value.items()})
    kinds, optional = allowed_types(tp)
    if value is None:
        if optional:
            return None
        raise InputError(f"{label}: expected {_type_name(kinds)}, got nothing")
    ok = any(
        (k is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (k is int and isinstance(value, int) and not isinstance(value, bool))
        or (k not in (int, float) and isinstance(value, k))
        for k in kinds
    )
    if not ok:
        raise InputError(f"{label}: expected {_type_name(kinds)}, got {value!r} ({type(value).__name__})")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{label}: expected a finite number, got {value!r}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise InputError(f"{label}: expected one of {', '.join(choices)}, got {value!r}")
    check_within(f, kinds, value, label)
    return float(value) if kinds == (float,) else value


def check_within(f: dataclasses.Field, kinds: tuple[type, ...], value: Any, label: str) -> None:
    """An InputError when number `value` of field `f` (of runtime types `kinds`) lies outside the field's interval
    (see `option`)."""
    within = f.metadata.get("within")
    if within and isinstance(value, (int, float)) and not isinstance(value, bool) and value not in within:
        kind = "a number" if float in kinds else "an integer"
        raise InputError(f"{label}: expected {kind} {within}, got {value!r}")


def check_bounds(cfg: Any, where: str) -> None:
    """Every field of config `cfg` in its interval, for a config built in Python, which `check_value` has not seen
    (a nested config is not a number, and is left to its own check)."""
    for f, tp in fields(type(cfg)):
        check_within(f, allowed_types(tp)[0], getattr(cfg, f.name), f"{where}.{f.name}")


def _type_name(kinds) -> str:
    return " or ".join({"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
                        "list": "a list", "dict": "a table"}.get(k.__name__, k.__name__) for k in kinds)


def check_source(cfg: Any, datasets: tuple[str, ...] | None = None) -> None:
    """A [data] config names its data once: a named dataset (one of `datasets`, when given) or a local path."""
    if cfg.dataset is not None and cfg.data is not None:
        raise InputError("data: give either dataset or data (a local path), not both")
    if datasets is not None and cfg.dataset is not None and cfg.dataset not in datasets:
        raise InputError(f"data.dataset: unknown dataset {cfg.dataset!r}: use one of {', '.join(datasets)}, or pass a "
                         "file with --data")


def from_dict(cls, data: dict, where: str):
    """Build config dataclass `cls` from a TOML table, checking every key and type."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a table of settings, got {data!r}")
    # the owner's own keys before its sub-tables: a value that flows into them (a translation model's dropout) is
    # then named where it was set
    given = sorted(lift_flat_keys(cls, data, where).items(), key=lambda item: isinstance(item[1], dict))
    values = {k: check_value(cls, k, v, where) for k, v in given}
    cfg = cls(**values)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def fill_saved(cls, table: dict, where: str) -> dict:
    """A saved run's table of config class `cls` with each option declared with `saved=` that the table lacks set
    to that value: the run was saved before the option existed, and behaved as that value says. Nested tables
    likewise; the layout before nesting is lifted first. `table` is not changed."""
    out = lift_flat_keys(cls, table, where) if isinstance(table, dict) else table
    if not isinstance(out, dict):
        return out  # from_dict says what is wrong with it
    for f in dataclasses.fields(cls):
        sub = f.metadata.get("nested")
        if sub is not None and isinstance(out.get(f.name), dict):
            out[f.name] = fill_saved(sub, out[f.name], f"{where}.{f.name}")
        elif f.metadata.get("saved", MISSING) is not MISSING and f.name not in out:
            out[f.name] = f.metadata["saved"]
    return out


def lift_flat_keys(cls, data: dict, where: str) -> dict:
    """`data` with the keys of its nested tables moved into them: the layout before configs nested, where a
    stack's settings stood in the owner's table (hidden_size, encoder_hidden_size), still loads, as the config
    files and saved runs of that time do. An owner's `flows` field is copied into each nested table that does
    not set it. `data` is not changed."""
    own = {f.name for f in dataclasses.fields(cls)}
    out = dict(data)
    for f in dataclasses.fields(cls):
        sub = f.metadata.get("nested")
        if sub is None or not isinstance(out.get(f.name, {}), dict):
            continue
        table, prefix = dict(out.get(f.name, {})), f.metadata["prefix"]
        for g in dataclasses.fields(sub):
            old = prefix + g.name
            if old in out and old not in own:
                if g.name in table:
                    raise InputError(f"{where}: both {old} and {f.name}.{g.name} are given: keep {f.name}.{g.name}")
                table[g.name] = out.pop(old)
        for name in f.metadata["flows"]:
            if name in out and name not in table:
                table[name] = out[name]
        if table or f.name in out:
            out[f.name] = table
    return out


def to_dict(cfg) -> dict:
    """A config dataclass as a TOML-ready table (nested configs as sub-tables); None values are left out (TOML
    has no null: absent means None)."""
    def clean(table: dict) -> dict:
        return {k: clean(v) if isinstance(v, dict) else v for k, v in table.items() if v is not None}

    return clean(dataclasses.asdict(cfg))


def read_toml(path: str | Path) -> dict:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise InputError(f"config file {path} does not exist: pass the path of a TOML file (see examples/)") from None
    except IsADirectoryError:
        raise InputError(f"config file {path} is a directory: pass the path of a TOML file") from None
    except (ValueError, RecursionError) as e:
        # TOMLDecodeError and UnicodeDecodeError are ValueErrors, and so is an integer of more than 4,300 digits,
        # which Python refuses to convert; arrays nested thousands deep exhaust the parser's stack
        reason = "nested too deeply" if isinstance(e, RecursionError) else " ".join(str(e).split())
        raise InputError(f"config file {path} is not valid TOML ({reason}): fix the file") from None


def dumps_toml(tables: dict) -> str:
    return tomli_w.dumps(tables)


def parse_flag_value(cls, name: str, text: str) -> Any:
    """Turn a command-line string into a value for field `name` of `cls` (then checked like a file's value)."""
    f, tp = next((f, tp) for f, tp in fields(cls) if f.name == name)
    kinds, optional = allowed_types(tp)
    if optional and text.lower() == "none":
        return None
    for k in kinds:
        try:
            if k is bool:
                if text.lower() in ("true", "yes") or (text == "1" and int not in kinds):
                    return True
                if text.lower() in ("false", "no") or (text == "0" and int not in kinds):
                    return False
                continue  # (for a switch-or-number field such as residual, "1" is the number)
            if k in (int, float, str):
                return k(text)
        except ValueError:
            continue
    raise InputError(f"--{name.replace('_', '-')}: expected {_type_name(kinds)}, got {text!r}")
