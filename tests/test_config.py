"""config.py: options' intervals (`within`), checked where a file, a flag or Python sets a field."""

from __future__ import annotations

import math

import pytest

from stackrnn.cli import make_parser
from stackrnn.config import Interval, check_bounds, from_dict, options, set_path
from stackrnn.errors import InputError
from stackrnn.models.stack_config import StackConfig
from stackrnn.serve.limits import Limits, check_limits
from stackrnn.tasks import TASK_NAMES
from stackrnn.train import sections


@pytest.mark.parametrize("text, inside, outside, shown", [
    ("[1, inf)", [1, 2, 10**9], [0, -1, 0.5], ">= 1"),
    ("(0, inf)", [1e-9, 3.5], [0, -2.0], "> 0"),
    ("[0, 1)", [0, 0.5, 0.999], [1, 1.5, -0.1], "in [0, 1)"),
    ("(0, 1]", [1, 0.25], [0, 1.01], "in (0, 1]"),
    ("[0, 65535]", [0, 65535], [65536, -1], "in [0, 65535]"),
    ("[0.5, 2.5)", [0.5, 2], [2.5, 0.4], "in [0.5, 2.5)"),
])
def test_intervals_read_as_written(text, inside, outside, shown):
    interval = Interval.parse(text)
    assert all(x in interval for x in inside) and not any(x in interval for x in outside)
    assert str(interval) == shown


@pytest.mark.parametrize("text", ["1, 2", "[1; 2]", "[a, 2)", "{0, 1}", ""])
def test_a_malformed_interval_fails_where_it_is_declared(text):
    with pytest.raises(ValueError, match="within: expected an interval"):
        Interval.parse(text)


def _outside(interval: Interval, integer: bool) -> float:
    """The nearest value of the field's type just outside `interval`, below it where it has a floor."""
    step = 1 if integer else 1e-6
    if not math.isinf(interval.low):
        return interval.low if interval.low_open else interval.low - step
    return interval.high if interval.high_open else interval.high + step


def _bounded() -> list:
    return [pytest.param(section, cls, o, id=f"{task}-{section}.{'.'.join(o.path)}")
            for task in TASK_NAMES for section, cls in sections(task).items()
            for o in options(cls) if o.field.metadata.get("within")]


@pytest.mark.parametrize("section, cls, o", _bounded())
def test_every_bounded_option_takes_its_default_and_refuses_the_nearest_value_outside(section, cls, o):
    interval = o.field.metadata["within"]
    assert o.default is None or isinstance(o.default, list) or o.default in interval
    integer = "int" in str(o.type) and "float" not in str(o.type)
    bad = _outside(interval, integer)
    table: dict = {}
    set_path(table, o.path, int(bad) if integer else float(bad))
    where = f"{section}.{'.'.join(o.path)}"
    kind = "an integer" if integer else "a number"
    with pytest.raises(InputError, match=rf"^{where}: expected {kind} {_escaped(interval)}, got "):
        from_dict(cls, table, section)


def _escaped(interval: Interval) -> str:
    return str(interval).replace("[", r"\[").replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")


def test_help_shows_the_interval_before_the_default():
    train = make_parser("lm")._subparsers._group_actions[0].choices["train"]
    helps = {a.dest: " ".join((a.help or "").split()) for a in train._actions}
    assert helps["model:dropout"].endswith("(in [0, 1); default: 0.0)")
    assert helps["train:lr"].endswith("(> 0; default: 0.002)")
    assert helps["train:max_steps"].endswith("(>= 1)")  # no default to state: None


def test_none_and_non_numbers_are_not_the_interval_s_business():
    assert from_dict(StackConfig, {"zoneout": [0.1, 0.2]}, "model.stack").zoneout == [0.1, 0.2]
    assert from_dict(sections("lm")["train"], {"max_steps": None}, "train").max_steps is None


def test_a_config_built_in_python_is_checked_by_its_user():
    with pytest.raises(InputError, match=r"^model\.stack\.num_layers: expected an integer >= 1, got 0$"):
        StackConfig(num_layers=0).specs()
    with pytest.raises(InputError, match=r"^x\.dropout: expected a number in \[0, 1\), got 1\.0$"):
        check_bounds(StackConfig(dropout=1.0), "x")
    check_bounds(StackConfig(), "x")


def test_server_limits_built_in_python_name_their_flag():
    with pytest.raises(InputError, match=r"^--max-batch: expected an integer >= 1, got 0$"):
        check_limits(Limits(max_batch=0))
    with pytest.raises(InputError, match=r"^--request-timeout: expected a number > 0, got -1$"):
        check_limits(Limits(request_timeout=-1))
    with pytest.raises(InputError, match=r"^--max-queue: expected an integer, got '8'"):
        check_limits(Limits(max_queue="8"))
    check_limits(Limits())
