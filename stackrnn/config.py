"""Typed configs: dataclasses owned by the module they configure, read from and written to TOML.

Each config field is declared with `option(default, help, choices=...)`; the help becomes the command line's
--help text, and the type annotation is checked when a file or a flag sets the field. A wrong key or type is
an InputError naming the key, what was expected and what came.

A run's config has three sections, each a dataclass: [model] (models.lm.ModelConfig), [data]
(data.pipeline.DataConfig) and [train] (train.TrainConfig).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any

import tomli_w

from .errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def option(default: Any, help: str, choices: tuple[str, ...] | None = None, cli: bool = True) -> Any:
    """A config field with its one-line help, the allowed values for a string, and whether it is a CLI flag."""
    metadata = {"help": help, "choices": choices, "cli": cli}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def fields(cls) -> list[tuple[dataclasses.Field, Any]]:
    """(field, resolved type) for each field of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def _allowed(tp) -> tuple[tuple[type, ...], bool]:
    """The runtime types a value of annotation `tp` may have, and whether None is allowed."""
    args = typing.get_args(tp) if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union else (tp,)
    optional = type(None) in args
    kinds = tuple(typing.get_origin(a) or a for a in args if a is not type(None))
    return kinds, optional


def check_value(cls, name: str, value: Any, where: str, label: str | None = None) -> Any:
    """Check `value` for field `name` of `cls`; return it converted (an int where a float is wanted).
    Errors name the field as `label` (default: where.name)."""
    known = {f.name: (f, tp) for f, tp in fields(cls)}
    if name not in known:
        raise InputError(f"{where}: unknown key {name!r}; known keys: {', '.join(sorted(known))}")
    label = label or f"{where}.{name}"
    f, tp = known[name]
    kinds, optional = _allowed(tp)
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
    return float(value) if kinds == (float,) else value


def _type_name(kinds) -> str:
    return " or ".join({"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
                        "list": "a list", "dict": "a table"}.get(k.__name__, k.__name__) for k in kinds)


def from_dict(cls, data: dict, where: str):
    """Build config dataclass `cls` from a TOML table, checking every key and type."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a table of settings, got {data!r}")
    values = {k: check_value(cls, k, v, where) for k, v in data.items()}
    cfg = cls(**values)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def to_dict(cfg) -> dict:
    """A config dataclass as a TOML-ready table; None values are left out (TOML has no null: absent means None)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if v is not None}


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
    kinds, optional = _allowed(tp)
    if optional and text.lower() == "none":
        return None
    for k in kinds:
        try:
            if k is bool:
                if text.lower() in ("true", "1", "yes"):
                    return True
                if text.lower() in ("false", "0", "no"):
                    return False
                continue
            if k in (int, float, str):
                return k(text)
        except ValueError:
            continue
    raise InputError(f"--{name.replace('_', '-')}: expected {_type_name(kinds)}, got {text!r}")
