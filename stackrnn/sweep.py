"""Grid sweeps: train one run per combination of config values, each under the same budget, then tabulate and
plot the validation figure against a swept value (depth, say) and against wall time.

    stackrnn sweep examples/timemachine.toml --grid model.num_layers=1,2,4,8 --grid model.residual=false,true \
        --budget-minutes 3 --set data.data=../shared/data/timemachine/timemachine.txt --out runs/depth

The runs go one after another into OUT/runs/NAME, each an ordinary run directory (resumable, evaluable,
plottable), so nothing a sweep measures is special to it. A same time budget is the fair comparison of
architectures that differ in cost per step: a deeper stack takes fewer steps in the same minutes. Runs share the
machine with nothing else of the sweep's; run a sweep alone for the times to mean something.

OUT/sweep.json and OUT/sweep.md hold the table (one row per run: the grid values, parameters, steps, seconds,
the best validation figure); OUT/metric_by_<key>.png and OUT/metric_by_time.png the plots.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

from .config import check_value, options, parse_flag_value, read_toml, set_path
from .errors import InputError, did_you_mean
from .files import atomic_write_text
from .run import RunDir
from .tasks import a_run_of

#: what each task's table reports (the figure, and whether lower is better)
FIGURE = {"lm": ("perplexity", True), "classify": ("accuracy", False), "translate": ("bleu", False)}


@dataclass
class Assignment:
    """One `section.key=value[,value...]` of the command line, parsed and checked against the task's config."""

    section: str
    key: str  # as given: an option's name (num_layers) or its path in the section (stack.num_layers)
    values: list
    path: tuple[str, ...] = ()  # where it goes in the section's table: ("stack", "num_layers")

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"


def parse_assignment(text: str, task: str, *, several: bool) -> Assignment:
    """'model.num_layers=1,2,4' -> Assignment('model', 'num_layers', [1, 2, 4]) for `task`'s config classes."""
    from .train import sections

    flag = "--grid" if several else "--set"
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise InputError(f"{flag} {text!r}: expected SECTION.KEY=VALUE{',VALUE...' if several else ''}, "
                         "e.g. model.num_layers=1,2,4")
    target, raw = text.split("=", 1)
    section, key = target.split(".", 1)
    known = sections(task)
    if section not in known:
        raise InputError(f"{flag} {text!r}: unknown section [{section}]; use model, data or train")
    by_name = {o.name: o for o in options(known[section])}
    by_path = {".".join(o.path): o for o in by_name.values()}
    o = by_name.get(key) or by_path.get(key)
    if o is None:
        raise InputError(f"{flag} {text!r}: [{section}] has no key {key!r}{did_you_mean(key, by_name)} for "
                         f"{a_run_of(task)} (stackrnn train --task {task} --help lists them)")
    parts = raw.split(",") if several else [raw]
    if any(not p.strip() for p in parts):
        raise InputError(f"{flag} {text!r}: an empty value; give values separated by commas")
    values = [check_value(o.owner, o.path[-1], parse_flag_value(o.owner, o.path[-1], p.strip()), section, label=target)
              for p in parts]
    if several and len(set(map(repr, values))) != len(values):
        raise InputError(f"--grid {text!r}: a value is repeated")
    return Assignment(section, key, values, o.path)


def _short(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def run_name(combo: list[tuple[Assignment, object]]) -> str:
    """A run's folder name from its grid values: 'num_layers=4,residual=true'."""
    return ",".join(f"{a.key}={_short(v)}" for a, v in combo)


def sweep(config: str | None, grid: list[str], out: str | Path, *, fixed: list[str] = (), task: str | None = None,
          budget_minutes: float | None = None, progress: bool = False) -> dict:
    """Train every combination of the `grid` values (strings 'section.key=v1,v2') on top of `config` and the
    `fixed` assignments ('section.key=value'), each for at most `budget_minutes` of training; then write the
    table and plots into `out`. Returns the table as written to sweep.json."""
    from .plot import check_matplotlib
    from .train import build_config, preflight, train

    tables = read_toml(config) if config else {}
    task = task or tables.get("task", "lm")
    if task not in FIGURE:
        raise InputError(f"task: expected one of {', '.join(FIGURE)}, got {task!r}")
    if not grid:
        raise InputError("give at least one --grid SECTION.KEY=V1,V2,... to sweep over")
    if budget_minutes is not None and not budget_minutes > 0:
        raise InputError(f"--budget-minutes: expected a number > 0, got {budget_minutes}")
    axes = [parse_assignment(g, task, several=True) for g in grid]
    sets = [parse_assignment(s, task, several=False) for s in fixed]
    names = [a.name for a in axes + sets]
    if budget_minutes is not None and "train.max_minutes" in names:
        raise InputError("--budget-minutes sets train.max_minutes for every run: leave train.max_minutes out of "
                         "--grid and --set, or leave out --budget-minutes")
    if len(set(names)) != len(names):
        raise InputError(f"{sorted(n for n in names if names.count(n) > 1)[0]} is given twice: sweep or set each key once")
    out = Path(out)
    RunDir.check_new(out)
    check_matplotlib()  # the plots come last: a missing extra must not wait for every run to end
    combos = [list(zip(axes, values)) for values in itertools.product(*(a.values for a in axes))]
    # every config is built and preflighted (its data read and checked) before the first run starts: a bad
    # combination fails at once, not after the runs before it have trained
    configs = []
    for combo in combos:
        overrides: dict[str, dict] = {}
        for a, v in [*((s, s.values[0]) for s in sets), *combo]:
            set_path(overrides.setdefault(a.section, {}), a.path, v)
        if budget_minutes is not None:
            overrides.setdefault("train", {})["max_minutes"] = budget_minutes
        overrides.setdefault("train", {}).setdefault("progress", progress)
        try:
            cfg = build_config(config, overrides, task)
            preflight(cfg, out / "runs" / run_name(combo), resume=False)
        except InputError as e:
            raise InputError(f"run {run_name(combo)}: {e}") from None
        configs.append(cfg)
    figure, lower = FIGURE[task]
    rows = []
    for combo, cfg in zip(combos, configs):
        name = run_name(combo)
        print(f"sweep: run {len(rows) + 1} of {len(combos)}: {name}", flush=True)
        result = train(cfg, out / "runs" / name, progress=progress)
        best = result.best_valid or {}
        value = best.get(figure)
        if figure == "perplexity" and best.get("loss") is not None:
            value = math.exp(min(best["loss"], 50))
        rows.append({**{a.name: _short(v) if isinstance(v, bool) else v for a, v in combo},
                     "run": f"runs/{name}", "parameters": sum(p.numel() for p in result.model.parameters()),
                     "steps": result.step, "epochs": result.epoch, "seconds": round(result.seconds, 1),
                     "stopped": result.stopped, f"best_valid_{figure}": value})
        if result.stopped == "interrupted":  # Ctrl-C ends the sweep, not just the run it falls in
            print(f"sweep: interrupted in run {len(rows)} of {len(combos)}; the table holds the runs so far", flush=True)
            break
    table = {"task": task, "config": config, "grid": {a.name: a.values for a in axes},
             "fixed": {s.name: s.values[0] for s in sets}, "budget_minutes": budget_minutes,
             "figure": figure, "lower_is_better": lower, "runs": rows}
    atomic_write_text(out / "sweep.json", json.dumps(table, indent=1))
    atomic_write_text(out / "sweep.md", markdown_table(table))
    plot_sweep(table, out)
    return table


def markdown_table(table: dict) -> str:
    keys = list(table["grid"])
    figure = f"best_valid_{table['figure']}"
    head = [*keys, "parameters", "steps", "seconds", "stopped by", f"best valid {table['figure']}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table["runs"]:
        value = "—" if r[figure] is None else f"{r[figure]:.3f}" if table["figure"] != "bleu" else f"{r[figure]:.2f}"
        lines.append("| " + " | ".join([*(str(r[k]) for k in keys), f"{r['parameters']:,}", str(r["steps"]),
                                        f"{r['seconds']:.0f}", r["stopped"], value]) + " |")
    return "\n".join(lines) + "\n"


def plot_sweep(table: dict, out: Path) -> list[Path]:
    """The validation figure against the first numeric grid key (one line per combination of the other keys),
    and each run's validation curve against wall time."""
    from .plot import _pyplot

    plt = _pyplot()
    figure, rows = table["figure"], table["runs"]
    label = f"best validation {figure}"
    written = []
    keys = list(table["grid"])
    numeric = [k for k in keys if all(isinstance(r[k], (int, float)) and not isinstance(r[k], bool) for r in rows)]
    if numeric:
        x_key = numeric[0]
        others = [k for k in keys if k != x_key]
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        groups: dict[tuple, list[dict]] = {}
        for r in rows:
            groups.setdefault(tuple(r[k] for k in others), []).append(r)
        for group, members in groups.items():
            members = [m for m in members if m[f"best_valid_{figure}"] is not None]
            members.sort(key=lambda m: m[x_key])
            name = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(others, group)) or "runs"
            ax.plot([m[x_key] for m in members], [m[f"best_valid_{figure}"] for m in members], "o-", label=name)
        ax.set_xlabel(x_key)
        if all(r[x_key] > 0 for r in rows):
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({r[x_key] for r in rows}), [str(v) for v in sorted({r[x_key] for r in rows})])
        ax.set_ylabel(label)
        budget = f", {table['budget_minutes']:g} min each" if table.get("budget_minutes") else ""
        ax.set_title(f"best validation {figure} by {x_key}{budget}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"metric_by_{x_key.split('.')[-1]}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    lowest = math.inf
    for r in rows:
        records = RunDir(out / r["run"]).read_metrics()
        points = [(m["time"] / 60, _figure_of(m, figure)) for m in records if m.get("split") == "valid" and m.get("time") is not None]
        points = [p for p in points if p[1] is not None]
        if points:
            ax.plot(*zip(*points), "o-", markersize=3, label=r["run"].split("/", 1)[1])
            lowest = min(lowest, *(p[1] for p in points))
    ax.set_xlabel("wall time of training (minutes)")
    ax.set_ylabel(f"validation {figure}")
    if figure == "perplexity" and math.isfinite(lowest):  # a slow start's first evaluations would flatten the rest
        ax.set_ylim(top=min(ax.get_ylim()[1], 3 * lowest))
    ax.set_title(f"validation {figure} against training time")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "metric_by_time.png"
    fig.savefig(path)
    plt.close(fig)
    written.append(path)
    return written


def _figure_of(record: dict, figure: str):
    if figure == "perplexity":
        return None if record.get("loss") is None else math.exp(min(record["loss"], 50))
    return record.get(figure)
