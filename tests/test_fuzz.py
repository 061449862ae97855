"""Fuzzing with Hypothesis (strategies and targets in fuzz_strategies.py): whatever malformed input a config
file, a command line, a data file or a run directory holds, the library loads it or raises its InputError with
one line (status 2 from the command line), never another exception. A few hundred cases here, derandomized so
CI is deterministic; scripts/fuzz.py runs 10,000. Below them, plain regression tests for each input the fuzzing
found that ended in another exception."""

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz_strategies import TARGETS, check_one

#: cases per target: a few hundred in all, the slow targets (tiny runs copied per case) fewer
EXAMPLES = {"corpus": 40, "labelled": 60, "parallel": 40, "vocab": 30, "vectors": 30, "config": 40, "run": 25, "cli": 50}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_malformed_input_ends_in_input_error(name):
    target = TARGETS[name]

    @settings(max_examples=EXAMPLES.get(name, 30), deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(target.strategy)
    def check(example):
        check_one(target, example)  # "ok", "input error" or "skipped"; anything else fails the test

    check()

