"""An activation page for a trained language model: what each unit of each layer does on a text you choose.

Karpathy, Johnson and Fei-Fei (2015, "Visualizing and Understanding Recurrent Networks") found interpretable
cells in character LSTMs by colouring a text with one cell's activation: one turns on inside quotes, one
counts the position in the line, one tracks bracket depth. Looking at hundreds of units by eye is slow, so
here every unit's activation is correlated with the text features of stackrnn.inspect.features and the units
are listed by their best |Pearson r|: the units that track something simple come first, named by the feature
and the sign. The same paper's gate statistics (how often a gate is below 0.1 or above 0.9, "left" and
"right" saturated) tell whether a layer's gates act as switches.

`inspect_run` reads the text once through the model (batch 1) and writes into a new folder:

    index.html               the text coloured by a chosen unit, layer by layer (one self-contained file)
    layer{l}_activations.png heat map of the top-ranked units of layer l over the steps
    gate_saturation.png      per layer and gate, the fractions below 0.1 and above 0.9 (gated cells only)
    summary.json             the saturation and the top units of each layer, as returned

Layers are numbered from 1 at the bottom. A unit is one (state, direction, index): h, and for an LSTM also
its cell state c, of the forward (and reverse) direction.

Dimension key: T tokens, B batch (1), K directions, H hidden units, N gates, U units of a layer (K x states x
H), F features.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..files import atomic_write, atomic_write_text
from ..layers import LayerTrace
from ..run import BEST
from .features import text_features
from .page_template import render_page

#: below and above these a gate value counts as saturated (Karpathy et al. 2015)
LOW, HIGH = 0.1, 0.9
DIRECTIONS = ("forward", "reverse")


@dataclass
class Unit:
    """One unit of a layer and the text feature it correlates with most (None where no feature varies)."""

    layer: int  # 1 is the bottom layer
    state: str  # "h", or "c" for an LSTM's cell state
    direction: str  # "forward" or "reverse"
    unit: int  # index in 0..H-1
    feature: str | None
    r: float  # Pearson correlation with that feature, in [-1, 1]

    @property
    def name(self) -> str:
        return f"unit {self.unit} ({self.state}{', reverse' if self.direction == 'reverse' else ''})"

    @property
    def label(self) -> str:
        """e.g. "unit 17 (h) — inside_quotes r=+0.83"."""
        return f"{self.name} — " + (f"{self.feature} r={self.r:+.2f}" if self.feature else "no feature varies")


@dataclass
class LayerReport:
    """What inspect_run found in one layer."""

    layer: int
    cell: str
    hidden_size: int
    directions: int
    saturation: dict[str, dict[str, float]]  # gate name -> {"below_0.1": fraction, "above_0.9": fraction}
    top_units: list[Unit]  # most interpretable first


@dataclass
class InspectResult:
    """What inspect_run wrote (files, in writing order, summary.json last) and found (layers, bottom first)."""

    out: Path
    files: list[Path]
    tokens: int  # tokens read (after any truncation)
    truncated: bool  # whether the text was cut to max_tokens
    layers: list[LayerReport] = field(default_factory=list)

    def to_dict(self) -> dict:
        """What summary.json holds."""
        return {"out": str(self.out), "files": [p.name for p in self.files], "tokens": self.tokens,
                "truncated": self.truncated,
                "layers": [{**asdict(layer), "top_units": [asdict(u) for u in layer.top_units]} for layer in self.layers]}


# ---------------------------------------------------------------------------------------------- statistics
def correlations(acts: np.ndarray, features: dict[str, list[float]]) -> np.ndarray:
    """Pearson r of each unit's activations acts (T, U) with each feature (F lists of T): (U, F). A constant
    unit or feature (no variance over the text) correlates 0 with everything."""
    x = acts - acts.mean(axis=0)  # (T, U)
    y = np.array([features[name] for name in features], dtype=np.float64).T  # (T, F)
    y = y - y.mean(axis=0)
    norms = np.sqrt((x * x).sum(axis=0))[:, None] * np.sqrt((y * y).sum(axis=0))[None, :]  # (U, F)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (x.T @ y) / norms
    return np.clip(np.nan_to_num(np.where(norms > 1e-12, r, 0.0)), -1.0, 1.0)


def layer_units(trace: LayerTrace) -> tuple[list[tuple[str, str, int]], np.ndarray]:
    """A layer's units as (state, direction, index), and their activations (T, U) for batch item 0."""
    states = [("h", trace.h)] + ([("c", trace.c)] if trace.c is not None else [])
    keys, columns = [], []
    for name, values in states:  # (T, B, K, H)
        for k in range(values.shape[2]):
            for j in range(values.shape[3]):
                keys.append((name, DIRECTIONS[k], j))
            columns.append(values[:, 0, k].double().cpu().numpy())  # (T, H)
    return keys, np.concatenate(columns, axis=1)


def rank_units(layer: int, keys: list[tuple[str, str, int]], acts: np.ndarray,
               features: dict[str, list[float]]) -> tuple[list[int], list[Unit]]:
    """The units of acts (T, U) most interpretable first: their indices into keys, and the Unit of each.
    Ranked by the best |r| over the features; ties in keys order (h before c, forward before reverse, by index)."""
    r = correlations(acts, features)  # (U, F)
    best = np.abs(r).argmax(axis=1)  # (U,)
    strength = np.abs(r[np.arange(len(keys)), best])
    order = sorted(range(len(keys)), key=lambda u: (-round(float(strength[u]), 12), u))
    names = list(features)
    units = []
    for u in order:
        state, direction, index = keys[u]
        value = float(r[u, best[u]])
        units.append(Unit(layer, state, direction, index, names[best[u]] if strength[u] > 0 else None, round(value, 4)))
    return order, units


def gate_saturation(trace: LayerTrace) -> dict[str, dict[str, float]]:
    """Per gate name, the fraction of its values (every step, batch item, direction and unit) below LOW and
    above HIGH; {} for a cell without gates."""
    if trace.gates is None:
        return {}
    t, b, k, nh = trace.gates.shape
    gates = trace.gates.reshape(t, b, k, len(trace.gate_names), nh // len(trace.gate_names))  # (T, B, K, N, H)
    out = {}
    for n, name in enumerate(trace.gate_names):
        g = gates[..., n, :]
        out[name] = {"below_0.1": round(float((g < LOW).float().mean()), 6),
                     "above_0.9": round(float((g > HIGH).float().mean()), 6)}
    return out


# ------------------------------------------------------------------------------------------------- the run
def format_inspection(result: InspectResult) -> str:
    """What `stackrnn inspect` prints: each layer's gate saturation and its top three units, and the page."""
    lines = []
    for layer in result.layers:
        gates = "  ".join(f"{g} {v['below_0.1']:.0%}<0.1 {v['above_0.9']:.0%}>0.9" for g, v in layer.saturation.items())
        lines.append(f"layer {layer.layer} ({layer.cell} {layer.hidden_size}{' x2' if layer.directions == 2 else ''})"
                     + (f"  gates: {gates}" if gates else ""))
        lines += [f"    {unit.label}" for unit in layer.top_units[:3]]
    lines.append(f"page: {result.out / 'index.html'} ({result.tokens} tokens{', cut' if result.truncated else ''})")
    return "\n".join(lines)


def inspect_run(run: str | Path, text: str, out: str | Path, *, weights: str = BEST, units: int = 32,
                max_tokens: int = 2000, plots: bool = True, device: str | torch.device = "cpu") -> InspectResult:
    """Read `text` through the language model of `run` and write the activation page, heat maps and summary
    into the new folder `out` (see the module docstring).

    Args:
        run: a language-model run directory.
        text: the text to read; every token must be in the run's vocabulary.
        out: a folder that does not exist yet, or is empty; never overwritten.
        weights: the checkpoint file of the run (model.safetensors, the best; or last.safetensors).
        units: how many of each layer's most interpretable units the page offers, the heat maps draw and the
            summary lists.
        max_tokens: a longer text is cut to its first max_tokens tokens (the page says so), keeping the page
            small: about 6 bytes per token and unit.
        plots: write the PNG files (needs matplotlib).
    """
    _check_arguments(text, units, max_tokens)
    out = Path(out)
    check_new_folder(out)
    if plots:
        from ..plot import check_matplotlib

        check_matplotlib()
    from ..train import open_run

    _, task, model = open_run(run, weights, device, task="lm")
    tokens, truncated = read_text(task.tokenizer, text, max_tokens)
    ids = torch.tensor([task.tokenizer.stoi[t] for t in tokens], device=device)[:, None]  # (T, 1)
    reports, shown_units = analyse(model, ids, tokens, units)

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create the output folder {out} ({e.strerror}): pick another --out folder") from None
    result = InspectResult(out, [], len(tokens), truncated, reports)
    notice = f"The text was cut to its first {max_tokens} tokens (the page holds at most that many)." if truncated else ""
    data = page_data(Path(run).resolve().name, task.tokenizer.level, tokens, reports, shown_units, notice)
    _write(result, "index.html", lambda p: atomic_write_text(p, render_page(data)))
    if plots:
        for report, acts in zip(reports, shown_units):
            _write(result, f"layer{report.layer}_activations.png", lambda p: _plot_activations(p, report, acts, tokens))
        if any(report.saturation for report in reports):
            _write(result, "gate_saturation.png", lambda p: _plot_saturation(p, reports))
    # last, so that it lists every file, itself included
    _write(result, "summary.json", lambda p: atomic_write_text(p, json.dumps(result.to_dict(), indent=1, ensure_ascii=False) + "\n"))
    return result


def read_text(tokenizer, text: str, max_tokens: int) -> tuple[list[str], bool]:
    """The tokens of `text` (at most max_tokens of them) and whether it was cut; tokens outside the vocabulary
    are refused rather than read as <unk>, which would colour a token the model never saw."""
    tokens = tokenizer.tokenize(text)
    if not tokens:
        raise InputError(f"--text {_short(text)}: is empty after tokenization: give at least one token")
    truncated = len(tokens) > max_tokens
    tokens = tokens[:max_tokens]
    unknown = sorted({t for t in tokens if t not in tokenizer.stoi})
    if unknown:
        shown = ", ".join(repr(t) for t in unknown[:10])
        raise InputError(f"--text: {len(unknown)} token(s) not in the model's vocabulary ({shown}): use only tokens seen in training")
    if truncated:
        warnings.warn(f"--text has more than {max_tokens} tokens: only the first {max_tokens} are read (raise --max-tokens to read more)")
    return tokens, truncated


def analyse(model, ids: torch.Tensor, tokens: list[str], units: int) -> tuple[list[LayerReport], list[np.ndarray]]:
    """Read ids (T, 1) through the language model once; per layer its report (gate saturation, the `units` most
    interpretable units) and those units' activations (units, T), most interpretable first."""
    with torch.no_grad():
        traces = model.states(ids)
    features = text_features(tokens)
    reports, shown_units = [], []
    for i, (trace, spec) in enumerate(zip(traces, model.rnn.specs)):
        keys, acts = layer_units(trace)  # (T, U)
        order, ranked = rank_units(i + 1, keys, acts, features)
        reports.append(LayerReport(i + 1, spec.cell, spec.hidden_size, trace.h.shape[2], gate_saturation(trace), ranked[:units]))
        shown_units.append(acts[:, order[:units]].T)  # (units, T)
    return reports, shown_units


def _check_arguments(text: str, units: int, max_tokens: int) -> None:
    if not isinstance(text, str) or not text:
        raise InputError("--text is empty: give the text to read through the model")
    for name, value in (("--units", units), ("--max-tokens", max_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name}: expected an integer >= 1, got {value!r}")


def check_new_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file, not a folder: pick a new --out folder")
    if out.is_dir() and any(out.iterdir()):
        raise InputError(f"--out {out}: the folder exists and is not empty, and is never overwritten: pick a new --out folder")


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _write(result: InspectResult, name: str, write) -> None:
    """write(path) for the file `name` of the output folder, listed in result.files (before it is written: a
    failure ends the run with InputError)."""
    path = result.out / name
    result.files.append(path)
    try:
        write(path)
    except OSError as e:
        raise InputError(f"cannot write {path} ({e.strerror}): pick another --out folder") from None


# -------------------------------------------------------------------------------------------------- output
def _display(tokens: list[str], level: str) -> list[str]:
    """How each token is drawn on the page: newlines visible (a return arrow) and kept as line breaks; words
    with the space after them."""
    if level == "char":
        return ["\u21b5\n" if t == "\n" else t for t in tokens]
    return ["\u21b5\n" if t == "<eos>" else t + ("" if nxt == "<eos>" else " ") for t, nxt in zip(tokens, tokens[1:] + [""])]


def _scale(values: np.ndarray) -> float:
    """Full colour at 1 for a bounded state (tanh: LSTM h, GRU, RNN); at the largest |value| beyond that (an
    LSTM's c, a ReLU RNN)."""
    return round(max(1.0, float(np.abs(values).max(initial=0.0))), 3)


def page_data(run: str, level: str, tokens: list[str], reports: list[LayerReport], shown_units: list[np.ndarray],
              notice: str = "") -> dict:
    """The JSON the page reads: tokens, how to draw them, and per layer its offered units with their
    activations rounded to 3 decimals (what keeps the page small)."""
    layers = []
    for report, acts in zip(reports, shown_units):
        name = f"layer {report.layer}"
        units = [{"name": u.name, "label": u.label, "feature": u.feature, "r": u.r, "scale": _scale(a),
                  "values": [round(float(v), 3) for v in a]} for u, a in zip(report.top_units, acts)]
        title = (f"{name}{' (bottom)' if report.layer == 1 else ''}{' (top)' if report.layer == len(reports) else ''}"
                 f" — {report.cell}, {report.hidden_size} units{' per direction' if report.directions == 2 else ''}")
        layers.append({"name": name, "title": title, "cell": report.cell, "saturation": report.saturation, "units": units})
    return {"run": run, "level": level, "n_tokens": len(tokens), "tokens": tokens, "shown": _display(tokens, level),
            "notice": notice, "layers": layers}


def _tick_label(token: str) -> str:
    return {"\n": "\u21b5", " ": "\u2423", "<eos>": "\u21b5"}.get(token, token)


def _plot_activations(path: Path, report: LayerReport, acts: np.ndarray, tokens: list[str]) -> None:
    """Heat map of acts (units, T): one row per unit, most interpretable first."""
    from ..plot import _pyplot

    plt = _pyplot()
    rows, steps = acts.shape
    # each row on the page's colour scale: h as it is, an unbounded state (an LSTM's c, often 10 or more) divided
    # by its largest |value|, which would otherwise wash out every h row
    scales = [_scale(a) for a in acts]
    fig, ax = plt.subplots(figsize=(min(16.0, 4.0 + 0.12 * steps), max(3.0, 0.22 * rows + 1.6)), dpi=110)
    image = ax.imshow(acts / np.array(scales)[:, None] if rows else acts, cmap="RdBu_r", vmin=-1, vmax=1,
                      aspect="auto", interpolation="nearest")
    ax.set_yticks(range(rows), [f"{u.unit} {u.state}{' rev' if u.direction == 'reverse' else ''}"
                                + (f" (\u00f7{s:.3g})" if s != 1 else "") for u, s in zip(report.top_units, scales)], fontsize=7)
    if steps <= 80:
        ax.set_xticks(range(steps), [_tick_label(t) for t in tokens], fontsize=7, rotation=90 if any(len(t) > 1 for t in tokens) else 0)
        ax.set_xlabel("step (the token read)")
    else:
        ax.set_xlabel("step (token index)")
    ax.set_ylabel("unit (state), most interpretable first")
    ax.set_title(f"layer {report.layer} ({report.cell}): the {rows} most interpretable units over {steps} steps", fontsize=10)
    fig.colorbar(image, ax=ax, label="activation (\u00f7 the scale a row names)")
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


def _plot_saturation(path: Path, reports: list[LayerReport]) -> None:
    """Stacked bars per layer and gate: the fraction below LOW at the bottom, the fraction above HIGH on it."""
    from ..plot import _pyplot

    plt = _pyplot()
    bars = [(f"layer {r.layer}\n{gate}", s) for r in reports for gate, s in r.saturation.items()]
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(bars) + 1.5), 4.2), dpi=110)
    x = range(len(bars))
    low = [s["below_0.1"] for _, s in bars]
    high = [s["above_0.9"] for _, s in bars]
    ax.bar(x, low, color="tab:blue", label=f"below {LOW} (closed)")
    ax.bar(x, high, bottom=low, color="tab:red", label=f"above {HIGH} (open)")
    ax.set_xticks(list(x), [name for name, _ in bars], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction of gate values")
    ax.set_xlabel("layer and gate")
    ax.set_title("gate saturation (Karpathy et al. 2015)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
