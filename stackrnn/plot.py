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
    points = [(r["step"], r[key]) for r in records if r.get("split") == split and r.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


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
    return written


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
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    except OSError as e:
        raise InputError(f"cannot write {path} ({e.strerror}): choose another path") from None
    finally:
        plt.close(fig)
    return path
