"""Training curves from run directories: PNG files comparing several runs; and a translation's attention map.

Reads only metrics.jsonl (and the config's name for the legend), so it works on finished, stopped and running
runs alike. matplotlib is an optional extra: pip install 'stackrnn[plot]'.
"""

from __future__ import annotations

from pathlib import Path

from .errors import InputError
from .run import METRICS, RunDir

#: (file name, metric key, y-axis label, log scale)
FIGURES = [
    ("loss.png", "loss", "cross-entropy (nats per token; classifiers: per text)", False),
    ("perplexity.png", "perplexity", "perplexity (log scale)", True),
    ("accuracy.png", "accuracy", "accuracy (fraction of texts classified right)", False),
    ("bleu.png", "bleu", "BLEU (corpus, greedy search, 0-100)", False),
    ("lr.png", "lr", "learning rate", False),
    ("grad_norm.png", "grad_norm", "gradient norm (L2, before clipping)", True),
]


def _series(records: list[dict], split: str, key: str) -> tuple[list[int], list[float]]:
    # (a value that is not a number, in a damaged line, is passed over as a missing one is)
    points = [(r["step"], r[key]) for r in records if r.get("split") == split and _number(r.get(key))]
    return [p[0] for p in points], [p[1] for p in points]


def _number(x) -> bool:
    return isinstance(x, (int, float))


def _grad_record(r: dict) -> bool:
    """Whether `r` is a gradient record as train.grad_every writes it: layer_grad_norm a list of numbers (or
    None), step_grad_norm a list of such lists; a damaged one is passed over."""
    norms = lambda xs: isinstance(xs, list) and all(x is None or _number(x) for x in xs)  # noqa: E731
    steps = r.get("step_grad_norm")
    return (r.get("split") == "grad" and norms(r.get("layer_grad_norm")) and isinstance(steps, list)
            and all(norms(xs) for xs in steps))


def check_matplotlib() -> None:
    """Fail early, with the install line, where matplotlib is missing."""
    _pyplot()


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("plots need matplotlib: pip install 'stackrnn[plot]' (or pip install matplotlib)") from None
    return plt


def plot_runs(runs: list[str | Path], out: str | Path) -> list[Path]:
    """Write one PNG per metric into `out`, every run a colour, training solid and validation dashed."""
    plt = _pyplot()
    loaded = []
    for path in runs:
        run = RunDir.open(path, need=(METRICS,))
        records = run.read_metrics()
        if not records:
            raise InputError(f"{run / METRICS} holds no metrics yet: train the run first")
        loaded.append((Path(path).resolve(), records))
    names = [p.name for p, _ in loaded]
    # the folder name, or parent/name where two runs share a folder name
    loaded = [(p.name if names.count(p.name) == 1 else f"{p.parent.name}/{p.name}", r) for p, r in loaded]
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create the output folder {out} ({e.strerror}): choose another --out") from None

    written = []
    for filename, key, ylabel, log in FIGURES:
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
        drawn = False
        for i, (name, records) in enumerate(loaded):
            colour = f"C{i % 10}"
            for split, style in (("train", "-"), ("valid", "--")):
                steps, values = _series(records, split, key)
                if steps:
                    ax.plot(steps, values, style, color=colour, marker="o" if len(steps) < 30 else None,
                            markersize=3, label=f"{name} ({'training' if split == 'train' else 'validation'})")
                    drawn = True
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xlabel("training step (optimizer updates)")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.set_title(f"{ylabel.split(' (')[0]} by step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / filename)
        plt.close(fig)
        written.append(out / filename)
    grads = [(name, [r for r in records if _grad_record(r)]) for name, records in loaded]
    grads = [(name, records) for name, records in grads if records]
    if grads:
        written.append(_plot_grad_layers(plt, grads, out / "grad_layers.png"))
        written.append(_plot_grad_steps(plt, grads, out / "grad_steps.png"))
    return written


# gradient diagnostics (train.grad_every, inspect/gradients.py): layers are colours from the bottom (dark) to the
# top (light) of the stack, runs line styles
_RUN_STYLES = ("-", "--", ":", "-.")


def _layer_colour(plt, layer: int, layers: int):
    return plt.get_cmap("viridis")(0.85 * layer / max(1, layers - 1))


def _finish_grad_figure(fig, ax, title: str, xlabel: str, path: Path) -> Path:
    ax.set_xlabel(xlabel)
    ax.set_ylabel("gradient norm (L2, log scale)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    return path


def _plot_grad_layers(plt, grads: list[tuple[str, list[dict]]], path: Path) -> Path:
    """The gradient norm reaching each layer (over the whole window) by training step: one line per run and layer."""
    lines = []
    for i, (name, records) in enumerate(grads):
        layers = len(records[-1]["layer_grad_norm"])
        for layer in range(layers):
            points = [(r["step"], r["layer_grad_norm"][layer]) for r in records
                      if layer < len(r["layer_grad_norm"]) and r["layer_grad_norm"][layer] is not None]
            lines.append((i, layer, layers, f"{name}: layer {layer + 1}", points))
    return _plot_grad_lines(plt, lines, 30, "gradient reaching each layer, by step (1 = bottom layer)",
                            "training step (optimizer updates)", path)


def _plot_grad_steps(plt, grads: list[tuple[str, list[dict]]], path: Path) -> Path:
    """For each run's latest gradient record, the norm at each step of the window: one line per run and layer."""
    lines = []
    for i, (name, records) in enumerate(grads):
        last = records[-1]
        layers = len(last["step_grad_norm"])
        for layer, norms in enumerate(last["step_grad_norm"]):
            points = [(t + 1, v) for t, v in enumerate(norms) if v is not None]
            lines.append((i, layer, layers, f"{name} (step {last['step']}): layer {layer + 1}", points))
    return _plot_grad_lines(plt, lines, 40, "gradient at each step of the window (1 = bottom layer)",
                            "step in the window (1 = first, oldest)", path)


def _plot_grad_lines(plt, lines: list[tuple[int, int, int, str, list]], marked_below: int, title: str, xlabel: str,
                     path: Path) -> Path:
    """One line per (run index, layer, layers in that run, label, points): the run its line style, the layer its
    colour; markers on lines of fewer than `marked_below` points."""
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    try:
        for run, layer, layers, label, points in lines:
            ax.plot([p[0] for p in points], [p[1] for p in points], _RUN_STYLES[run % len(_RUN_STYLES)],
                    color=_layer_colour(plt, layer, layers), marker="o" if len(points) < marked_below else None,
                    markersize=3, label=label)
        return _finish_grad_figure(fig, ax, title, xlabel, path)
    finally:
        plt.close(fig)


def plot_attention(weights, source: list[str], target: list[str], path: str | Path, title: str | None = None) -> Path:
    """A heat map of attention weights (T, S): one row per target word (and <eos>), one column per source word,
    darker where the decoder attended more; each row sums to 1. Written as PNG to `path`."""
    plt = _pyplot()
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"{path}: the attention map is written as PNG; give a file name ending in .png")
    rows, cols = len(target), len(source)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * cols + 2.0), max(3.0, 0.45 * rows + 1.5)), dpi=110)
    image = ax.imshow(weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(cols), source, rotation=45, ha="right")
    ax.set_yticks(range(rows), target)
    ax.set_xlabel("source words")
    ax.set_ylabel("target words (decoder steps)")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="attention weight")
    return _save(plt, fig, path)


def plot_speech_layers(layers: list, log_probs, symbols: list[str], path: str | Path, seconds: list[float],
                       title: str | None = None) -> Path:
    """Heat maps of a speech model reading one file: each layer's outputs (units x frames, bottom layer at the
    bottom; a pyramid layer has half the frames of the one below, drawn over the same time axis), and on top the
    CTC posteriors of every symbol and the blank over the output frames. `seconds`: each map's frame length."""
    import numpy as np

    plt = _pyplot()
    path = Path(path)
    panels = len(layers) + 1
    fig, axes = plt.subplots(panels, 1, figsize=(9.0, 1.6 * panels + 1.0), dpi=110, squeeze=False)
    rows = [("CTC posteriors", np.exp(np.asarray(log_probs)).T, ["_", *symbols], seconds[-1], "Greys")]
    rows += [(f"layer {i + 1}", np.asarray(out).T, None, sec, "RdBu_r")
             for i, (out, sec) in reversed(list(enumerate(zip(layers, seconds))))]
    for ax, (name, values, labels, sec, cmap) in zip(axes[:, 0], rows):
        limit = 1.0 if labels else float(np.abs(values).max()) or 1.0
        ax.imshow(values, cmap=cmap, vmin=0.0 if labels else -limit, vmax=limit, aspect="auto", interpolation="nearest",
                  extent=(0, values.shape[1] * sec, values.shape[0], 0))
        ax.set_ylabel(name, fontsize=8)
        if labels and len(labels) <= 40:
            ax.set_yticks([k + 0.5 for k in range(len(labels))], labels, fontsize=6)
        elif not labels:
            ax.set_yticks([])
    axes[-1, 0].set_xlabel("seconds")
    if title:
        axes[0, 0].set_title(title, fontsize=9)
    return _save(plt, fig, path)


def plot_forecast(forecast: dict, path: str | Path, title: str | None = None, history: int = 0) -> Path:
    """A fan chart of one series' forecast (as ForecasterRun.forecast returns it), as PNG at `path`: the last
    `history` values before it (default: four horizons), the median, the 80% and 95% bands (the quantiles 0.1/0.9
    and 0.025/0.975, where the run forecasts them) and the actual values where known."""
    import numpy as np

    plt = _pyplot()
    path = Path(path)
    median = np.asarray(forecast["median"])
    H = len(median)
    past = np.asarray(forecast["history"])[-(history or 4 * H):]
    x_past, x_future = np.arange(-len(past), 0), np.arange(H)
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=110)
    ax.plot(x_past, past, color="black", lw=1, label="history")
    q = forecast["quantiles"]
    for lo, hi, alpha, name in ((0.025, 0.975, 0.18, "95%"), (0.1, 0.9, 0.32, "80%")):
        if lo in q and hi in q:
            ax.fill_between(x_future, q[lo], q[hi], color="tab:blue", alpha=alpha, lw=0, label=f"{name} interval")
    ax.plot(x_future, median, color="tab:blue", lw=1.5, label="median forecast")
    if forecast.get("actual") is not None:
        ax.plot(x_future, forecast["actual"], color="tab:red", lw=1, label="actual")
    ax.axvline(-0.5, color="grey", lw=0.6, ls=":")
    stamps = forecast.get("timestamps")
    ax.set_xlabel("steps from the forecast origin" + (f" (step 0: {stamps[0]})" if stamps else ""))
    ax.legend(fontsize=7, loc="upper left", ncol=5, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(plt, fig, path)


def _save(plt, fig, path: Path) -> Path:
    """Lay out and write the figure as PNG at `path` (making its folder), then close it; a path that cannot be
    written is an InputError."""
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    except OSError as e:
        raise InputError(f"cannot write {path} ({e.strerror}): choose another path") from None
    finally:
        plt.close(fig)
    return path
