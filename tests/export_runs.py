"""Tiny runs of every task, and their exports, made once per test session on first use (the `export_runs` fixture
of conftest.py), for tests/test_export.py and tests/test_runtime.py. Each run trains one step: parity is about
the graph, not the weights."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

import stackrnn

TEXT = "the time traveller was expounding a recondite matter to us. his grey eyes shone and twinkled.\n" * 30
WORDS = "the a movie film plot was is very long short dull bright".split()
LEXICON = {"the": "le", "red": "rouge", "cat": "chat", "dog": "chien", "sees": "voit"}
LM = dict(max_steps=1, embedding_size=8, batch_size=4, num_steps=8, progress=False, seed=0, sample_prefix="")
#: a stack torch.nn cannot express: layer norm, zoneout (eval: its expectation), a projection, forget_bias, a
#: GRU between LSTMs, a residual connection
MIXED = [{"cell": "lstm", "hidden_size": 12, "layer_norm": True, "forget_bias": 1.0},
         {"cell": "gru", "hidden_size": 10, "zoneout": 0.2},
         {"cell": "lstm", "hidden_size": 10, "zoneout": [0.1, 0.3], "proj_size": 6}]


#: forecasting runs: (head, data file, options). The quantile head reads a long CSV with timestamps (calendar
#: features) and weighs its loss in MASE's units; the Student-t head an M4-style wide CSV without any (season
#: positions); the Gaussian head has no series embedding (its graphs still take the ids); the negative binomial
#: head reads counts
FORECASTS = {"quantile": ("daily.csv", {"weighting": "seasonal"}), "student_t": ("wide.csv", {"freq": "D"}),
             "gaussian": ("daily.csv", {"embedding_size": 0}), "negative_binomial": ("counts.csv", {})}
FORECAST = dict(hidden_size=8, num_layers=2, mlp_size=8, embedding_size=4, batch_size=8, windows_per_epoch=16,
                max_steps=2, progress=False, seed=0, eval_samples=20)
DAYS = 100  # daily series: season 7, horizon 14, context 21, lags 1 and 7: 28 past values


def forecast_values(kind: str) -> dict[str, np.ndarray]:
    """Three weekly series of different levels: noisy values, or counts."""
    rng, t = np.random.default_rng(0), np.arange(DAYS)
    if kind == "counts":
        return {f"c{k}": rng.poisson(5 * (k + 1) * (1 + 0.5 * np.sin(2 * np.pi * t / 7 + k))).astype(float)
                for k in range(3)}
    return {f"s{k}": 50 * (k + 1) + 10 * np.sin(2 * np.pi * t / 7 + k) + rng.normal(0, 1, DAYS) for k in range(3)}


def write_forecast_data(folder: Path, name: str) -> Path:
    """daily.csv and counts.csv (long: series, timestamp, value, from 2020-01-01) or wide.csv (M4's: V1, V2, ...)."""
    path = folder / name
    if not path.exists():
        values = forecast_values("counts" if name == "counts.csv" else "values")
        if name == "wide.csv":
            lines = [",".join(f"V{i + 1}" for i in range(DAYS + 1))]
            lines += [",".join([sid, *(f"{x:.4f}" for x in v)]) for sid, v in values.items()]
        else:
            first = np.datetime64("2020-01-01")
            lines = ["series,timestamp,value"] + [f"{sid},{first + i},{x:.4f}" for sid, v in values.items()
                                                  for i, x in enumerate(v)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Runs:
    """`run(name)`: the run directory of "lm", "mixed", "classify", "translate" or a forecasting run
    "forecast_HEAD" (FORECASTS); `exported(name, format)`: the ExportResult of its export (the folder in .out)."""

    def __init__(self, root: Path) -> None:
        self.root, self._runs, self._exports = root, {}, {}

    def run(self, name: str) -> Path:
        if name not in self._runs:
            out = self.root / name
            if name.startswith("forecast_"):
                self._forecast(name.removeprefix("forecast_"), out)
            else:
                getattr(self, f"_{name}")(out)
            self._runs[name] = out
        return self._runs[name]

    def exported(self, name: str, format: str):
        if format == "onnx":
            for module in ("onnx", "onnxscript", "onnxruntime"):
                pytest.importorskip(module)
        if (name, format) not in self._exports:
            from stackrnn.export import export

            run = self.run(name)
            with one_thread():
                self._exports[name, format] = export(run, format, self.root / f"{name}-{format}")
        return self._exports[name, format]

    def _lm(self, out: Path) -> None:
        stackrnn.fit(data=self._text(), out=out, hidden_size=16, num_layers=2, **LM)

    def _mixed(self, out: Path) -> None:
        stackrnn.fit(data=self._text(), out=out, layers=MIXED, residual=3, **LM)

    def _text(self) -> Path:
        path = self.root / "text.txt"
        path.write_text(TEXT, encoding="utf-8")
        return path

    def _classify(self, out: Path) -> None:
        folder, rng = self.root / "labelled", random.Random(0)
        folder.mkdir(exist_ok=True)
        for split, n in (("train", 40), ("dev", 10)):
            rows = [f"{' '.join(rng.choice(WORDS) for _ in range(rng.randint(2, 7)))}{' great' if i % 2 else ''}\t"
                    f"{'pos' if i % 2 else 'neg'}\n" for i in range(n)]
            (folder / f"{split}.tsv").write_text("text\tlabel\n" + "".join(rows), encoding="utf-8")
        stackrnn.fit(task="classify", data=folder, out=out, max_steps=1, embedding_size=8, hidden_size=8, num_layers=2,
                     bidirectional=True, pooling="attention", batch_size=8, progress=False, seed=1)

    def _translate(self, out: Path) -> None:
        rng, lines = random.Random(0), []
        for _ in range(60):
            words = [rng.choice(list(LEXICON)) for _ in range(rng.randint(2, 5))]
            lines.append(f"{' '.join(words).capitalize()}.\t{' '.join(LEXICON[w] for w in words).capitalize()} .")
        path = self.root / "parallel.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        stackrnn.fit({"task": "translate",
                      "model": {"embedding_size": 8, "encoder_hidden_size": 8, "decoder_hidden_size": 12, "dropout": 0.0},
                      "data": {"data": str(path), "batch_size": 16, "valid_fraction": 0.1},
                      "train": {"max_steps": 1, "progress": False, "seed": 1}}, out=out)

    def _forecast(self, head: str, out: Path) -> None:
        data, options = FORECASTS[head]
        with one_thread():
            stackrnn.fit(task="forecast", data=write_forecast_data(self.root, data), out=out, head=head,
                         **{**FORECAST, **options})


class one_thread:
    """torch on one thread inside (tiny models are ten times faster so on this busy 2-core machine)."""

    def __enter__(self):
        self.before = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)
