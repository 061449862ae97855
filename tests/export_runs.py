"""Tiny runs of every task, and their exports, made once per test session on first use (the `export_runs` fixture
of conftest.py), for tests/test_export.py and tests/test_runtime.py. Each run trains one step: parity is about
the graph, not the weights."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

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


class Runs:
    """`run(name)`: the run directory of "lm", "mixed", "classify" or "translate"; `exported(name, format)`: the
    ExportResult of its export (the folder in .out)."""

    def __init__(self, root: Path) -> None:
        self.root, self._runs, self._exports = root, {}, {}

    def run(self, name: str) -> Path:
        if name not in self._runs:
            out = self.root / name
            getattr(self, f"_{name}")(out)
            self._runs[name] = out
        return self._runs[name]

    def exported(self, name: str, format: str):
        if format == "onnx":
            for module in ("onnx", "onnxscript", "onnxruntime"):
                pytest.importorskip(module)
        if (name, format) not in self._exports:
            from stackrnn.export import export

            self._exports[name, format] = export(self.run(name), format, self.root / f"{name}-{format}")
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
