"""Fuzz every reader of user input (config files, the command line, the data loaders, run directories) with
Hypothesis: 10,000 generated inputs by default, shared among the targets of tests/fuzz_strategies.py.

    python scripts/fuzz.py                    # 10,000 inputs, every target
    python scripts/fuzz.py -n 500 --target cli --seed 1

Per target it prints how many inputs ran, how many loaded, how many raised the library's InputError (exit
status 2 from the command line), how many the harness skipped (a model too big to build in a fuzz case), and
how many raised anything else, with the first tracebacks. The exit status is 1 if anything else was raised.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from tests.fuzz_strategies import TARGETS, check_one  # noqa: E402


def fuzz(target, examples: int, random_seed: int, shown: int) -> dict:
    counts = {"cases": 0, "ok": 0, "input error": 0, "skipped": 0, "other": 0}
    failures: list[str] = []
    kinds: dict[str, int] = {}  # "ValueError at stackrnn/x.py:12" -> how many

    @seed(random_seed)
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(target.strategy)
    def one(example):
        if counts["cases"] >= examples:
            return
        counts["cases"] += 1
        try:
            counts[check_one(target, example)] += 1
        except Exception as e:  # noqa: BLE001 - counting them is the point
            counts["other"] += 1
            kind = f"{type(e).__name__} at {_where(e)}"
            kinds[kind] = kinds.get(kind, 0) + 1
            if kinds[kind] == 1 and len(failures) < shown:
                failures.append(f"input: {example!r:.2000}\n{traceback.format_exc()}")

    one()
    counts["failures"], counts["kinds"] = failures, kinds
    return counts


def _where(e: BaseException) -> str:
    """The innermost line of the library (else of the harness) that the exception passed through."""
    frames = traceback.extract_tb(e.__traceback__)
    ours = [f for f in frames if "/stackrnn/" in f.filename] or frames
    f = ours[-1]
    return f"{f.filename.split('/work/wt-fuzz/')[-1].split('site-packages/')[-1]}:{f.lineno}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--examples", type=int, default=10_000, help="inputs in all, shared by the targets' weights")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS), help="fuzz only these (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="Hypothesis's random seed (default: 0)")
    parser.add_argument("--show", type=int, default=3, help="tracebacks to print per target (default: 3)")
    args = parser.parse_args()
    targets = [TARGETS[name] for name in args.target or TARGETS]
    total_weight = sum(t.weight for t in targets)
    shares = [args.examples * t.weight // total_weight for t in targets]
    shares[0] += args.examples - sum(shares)
    print(f"{'target':<10}{'cases':>7}{'ok':>7}{'InputError':>12}{'skipped':>9}{'other':>7}{'seconds':>9}", flush=True)
    totals = {"cases": 0, "ok": 0, "input error": 0, "skipped": 0, "other": 0}
    failures, kinds = [], {}
    for target, share in zip(targets, shares):
        start = time.monotonic()
        counts = fuzz(target, share, args.seed, args.show)
        for key in totals:
            totals[key] += counts[key]
        failures += [(target.name, f) for f in counts["failures"]]
        kinds.update({f"{target.name}: {k}": n for k, n in counts["kinds"].items()})
        print(f"{target.name:<10}{counts['cases']:>7}{counts['ok']:>7}{counts['input error']:>12}{counts['skipped']:>9}"
              f"{counts['other']:>7}{time.monotonic() - start:>9.1f}", flush=True)
    print(f"{'total':<10}{totals['cases']:>7}{totals['ok']:>7}{totals['input error']:>12}{totals['skipped']:>9}{totals['other']:>7}")
    for name, text in failures:
        print(f"\n--- {name} ---\n{text}")
    if kinds:
        print("\nother exceptions by kind:")
        for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
            print(f"  {n:>6}  {kind}")
    print(f"\n{totals['cases']} fuzzed inputs: {totals['other']} exceptions other than InputError")
    return 1 if totals["other"] else 0


if __name__ == "__main__":
    sys.exit(main())
