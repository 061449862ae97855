"""`stackrnn export`: a trained run as ONNX or torch.export files, checked against PyTorch before anything is kept.

    DIR/
      model.onnx | model.pt2          the graph (a translator's two: encoder.* and decoder.*, stepped per token; a
                                      forecaster's distribution head's two: encoder.* and step.*, stepped per
                                      horizon step, the sampling outside them)
      export.json                     what the graph needs beside it, as JSON: its inputs and outputs (names,
                                      shapes with their dynamic axes, dtypes), the vocabularies, label names,
                                      special ids, the run's config, and the parity check's figures

The graphs are graphs.py's: time is a scan, so batch and time stay dynamic; lengths are an input; a language
model's state is an input and an output. The parity check runs the written files (onnxruntime for ONNX,
torch.export.load for torch-export) and the PyTorch model (its own forward: the fused kernel where it can) on
sample inputs of several batch sizes and lengths, shorter and longer than the export example, with padding, a
random initial state, and, for a language model and a translator's decoder, several steps with the state carried
from one to the next; for a forecaster, batches of 1 to 5 series, compared in units of each series' scale, and
a distribution head's steps fed their own means against Forecaster.forward. The largest difference is printed;
above the tolerance the export fails and DIR is not written (the files are made in a temporary folder beside it
and renamed into place only after the check). A forecaster's past length (context + largest lag) and horizon are
the model's own, fixed in its graphs; batch is dynamic, and the context is read by a scan all the same.

Dimension key: T time, B batch, S source steps.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import __version__
from .api import Run, load
from .config import to_dict
from .errors import InputError
from .graphs import DISTRIBUTION_PARAMETERS, Graph, flatten, graphs_of, state_spec, unflatten, valid_steps
from .torch_private import scan

FORMATS = {"onnx": ".onnx", "torch-export": ".pt2"}
MANIFEST = "export.json"
MANIFEST_FORMAT, MANIFEST_VERSION = "stackrnn.export", 1
#: the example the graphs are traced with; the parity check runs shorter and longer inputs than this
EXAMPLE_STEPS, EXAMPLE_BATCH = 6, 3


class ParityError(InputError):
    """The exported graph's outputs differ from PyTorch's by more than the tolerance."""


@dataclass
class ExportResult:
    """What `export` wrote and measured: `checks` one {"check", "difference"} per compared output set."""

    out: Path
    format: str
    files: list[str]
    tolerance: float
    checks: list[dict] = field(default_factory=list)

    @property
    def largest(self) -> float:
        return max((c["difference"] for c in self.checks), default=0.0)

    def line(self) -> str:
        worst = max(self.checks, key=lambda c: c["difference"])
        return (f"exported to {self.out} ({self.format}: {', '.join(self.files)}); parity with PyTorch over "
                f"{len(self.checks)} checks: largest difference {self.largest:.3g} ({worst['check']}), "
                f"tolerance {self.tolerance:g}")


def export(run: str | Path | Run, format: str, out: str | Path, *, weights: str = "best",
           tolerance: float = 1e-4) -> ExportResult:
    """Export the run `run` (a directory or a loaded Run) as `format` ("onnx" or "torch-export") into the new
    folder `out`, after checking the written graphs against the PyTorch model; see the module docstring."""
    if format not in FORMATS:
        raise InputError(f"--format: expected one of {', '.join(FORMATS)}, got {format!r}")
    if not tolerance > 0:
        raise InputError(f"--tolerance: expected a number > 0, got {tolerance}")
    out = Path(out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        what = "a folder that is not empty" if out.is_dir() else "a file"
        raise InputError(f"--out {out} is {what}: give a new folder (an export never overwrites)")
    _check_exporter(format)
    loaded = run if isinstance(run, Run) else load(run, weights=weights)
    graphs = graphs_of(loaded.config.task, loaded.model)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        files = {name: _write(graph, format, work / f"{name}{FORMATS[format]}") for name, graph in graphs.items()}
        runner = Runner(format, {name: work / f for name, f in files.items()}, graphs)
        result = ExportResult(out, format, [*files.values(), MANIFEST], tolerance)
        result.checks = CHECKS[loaded.config.task](loaded, runner)
        if result.largest > tolerance:
            worst = max(result.checks, key=lambda c: c["difference"])
            raise ParityError(f"parity check failed: the {format} graph differs from PyTorch by {worst['difference']:.3g} "
                              f"({worst['check']}), above the tolerance {tolerance:g}; nothing was written")
        manifest = _manifest(loaded, format, graphs, files, result)
        (work / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        if out.exists():
            out.rmdir()  # (empty: checked above)
        work.rename(out)
    finally:
        if work.exists():
            shutil.rmtree(work)
    return result


def _check_exporter(format: str) -> None:
    if scan is None:
        raise InputError(f"export needs torch._higher_order_ops.scan (torch >= 2.6); this is torch {torch.__version__}")
    if format == "onnx":
        for module in ("onnx", "onnxscript", "onnxruntime"):
            try:
                __import__(module)
            except ImportError:
                raise InputError(f"--format onnx needs {module}: pip install 'stackrnn[export]'") from None


# -- writing ------------------------------------------------------------------------------------------------------
def example(graph: Graph) -> tuple[Tensor, ...]:
    """Inputs of the example sizes (T = S = EXAMPLE_STEPS, B = EXAMPLE_BATCH) for tracing the graph (or the
    graph's own `example()`, where it has one)."""
    if hasattr(graph, "example"):
        return graph.example()
    sizes = {"T": EXAMPLE_STEPS, "S": EXAMPLE_STEPS, "B": EXAMPLE_BATCH}
    tensors = []
    for spec in graph.inputs:
        shape = [sizes.get(d, d) for d in spec["shape"]]
        if spec["name"] == "lengths":
            tensors.append(torch.full(shape, EXAMPLE_STEPS, dtype=torch.long))
        elif spec["dtype"] == "int64":
            tensors.append(torch.ones(shape, dtype=torch.long))
        elif spec["dtype"] == "bool":
            tensors.append(torch.ones(shape, dtype=torch.bool))
        else:
            tensors.append(torch.zeros(shape))
    return tuple(tensors)


def dynamic_shapes(graph: Graph) -> tuple:
    """torch.export's dynamic_shapes for the graph's forward (named inputs, then *rest): every named axis of every
    input is dynamic."""
    dims = {name: torch.export.Dim(name, min=1) for name in ("T", "S", "B")}
    specs = [{i: dims[d] for i, d in enumerate(spec["shape"]) if isinstance(d, str)} for spec in graph.inputs]
    params = inspect.signature(graph.forward).parameters.values()
    named = sum(p.kind == p.POSITIONAL_OR_KEYWORD for p in params)
    rest = any(p.kind == p.VAR_POSITIONAL for p in params)
    return (*specs[:named], tuple(specs[named:])) if rest else tuple(specs)


def _write(graph: Graph, format: str, path: Path) -> str:
    """Trace `graph` and write it to `path`; the file's name."""
    args, shapes = example(graph), dynamic_shapes(graph)
    with _quiet():
        if format == "onnx":
            program = torch.onnx.export(graph, args, dynamic_shapes=shapes, dynamo=True, verbose=False,
                                        input_names=[i["name"] for i in graph.inputs],
                                        output_names=[o["name"] for o in graph.outputs])
            program.save(str(path))
        else:
            torch.export.save(torch.export.export(graph, args, dynamic_shapes=shapes), str(path))
    return path.name


@contextlib.contextmanager
def _quiet():
    """The exporters' progress lines and warnings (torchvision's ops missing, deprecations) kept off the console."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _manifest(run: Run, format: str, graphs: dict[str, Graph], files: dict[str, str], result: ExportResult) -> dict:
    cfg = run.config
    return {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "exported_as": format, "task": cfg.task,
        "stackrnn": __version__, "torch": torch.__version__,
        "graphs": {name: {"file": files[name], "inputs": g.inputs, "outputs": g.outputs} for name, g in graphs.items()},
        "preprocess": PREPROCESS[cfg.task](run),
        "config": {"task": cfg.task, **{s: to_dict(getattr(cfg, s)) for s in ("model", "data", "train")}},
        "parity": {"tolerance": result.tolerance, "largest": result.largest, "checks": result.checks},
    }


def _lm_preprocess(run) -> dict:
    return {"tokenizer": run.tokenizer.to_dict()}


def _classifier_preprocess(run) -> dict:
    return {"tokenizer": run.task.tokenizer.to_dict(), "labels": list(run.labels),
            "max_length": run.config.data.max_length}


def _translator_preprocess(run) -> dict:
    task, d = run.task, run.config.data
    return {"source_tokenizer": task.source_tokenizer.to_dict(), "target_tokenizer": task.target_tokenizer.to_dict(),
            "normalize": d.normalize, "lower": d.lower, **task.specials,
            "pad": task.target_tokenizer.stoi["<pad>"], "source_pad": task.source_tokenizer.stoi["<pad>"]}


def _forecaster_preprocess(run) -> dict:
    """What stackrnn.runtime needs to build a forecaster's inputs from a series' values: the series (their ids are
    the embedding's rows, their starts the calendar's origin), the frequency, season, horizon, context and lags,
    the kind of time features (calendar: CALENDAR_FEATURES[freq] of each step's timestamp; phase: the position in
    each period of `periods`, counted from the series' first value), the head and its quantile levels, and the
    per-series scaling (done inside the graphs)."""
    shape, model, m = run.task.shape, run.config.model, run.model
    starts = None
    if shape.timestamps:
        run.task._loaded()  # (the series' first timestamps: the calendar features count from them)
        data = run.task.data
        starts = {i: str(data.starts[data.index(i)]) for i in shape.ids}
    from .tasks.forecast import _periods

    return {"series": list(shape.ids), "freq": shape.freq, "season": shape.season, "horizon": shape.horizon,
            "context": shape.context, "lags": list(shape.lags), "past_length": m.past_length,
            "time_features": "calendar" if shape.timestamps else "phase", "time_feature_count": m.time_features,
            "periods": [] if shape.timestamps else _periods(shape.freq, shape.season), "starts": starts,
            "covariates": list(shape.covariates), "head": m.head, "quantiles": list(model.quantiles),
            "median_index": m.median_index, "scaling": m.scaling, "weighting": m.weighting, "baseline": m.baseline,
            "parameters": list(DISTRIBUTION_PARAMETERS.get(m.head, ())), "seed": run.config.train.seed}


PREPROCESS = {"lm": _lm_preprocess, "classify": _classifier_preprocess, "translate": _translator_preprocess,
              "forecast": _forecaster_preprocess}


# -- the parity check -----------------------------------------------------------------------------------------------
class Runner:
    """Runs the written graphs: `runner(name, *tensors)` -> their outputs as tensors."""

    def __init__(self, format: str, paths: dict[str, Path], graphs: dict[str, Graph]) -> None:
        self.graphs = graphs
        if format == "onnx":
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            sessions = {n: onnxruntime.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                        for n, p in paths.items()}
            self.run = lambda name, inputs: [torch.from_numpy(np.asarray(a)) for a in sessions[name].run(
                None, {i["name"]: t.numpy() for i, t in zip(graphs[name].inputs, inputs)})]
        else:
            with _quiet():
                modules = {n: torch.export.load(str(p)).module() for n, p in paths.items()}
            self.run = lambda name, inputs: list(modules[name](*inputs))

    def __call__(self, name: str, *inputs: Tensor) -> list[Tensor]:
        with torch.no_grad():
            return self.run(name, list(inputs))


def difference(got: list[Tensor], want: list[Tensor]) -> float:
    """The largest absolute difference between two lists of outputs (bool outputs must be equal: else inf)."""
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        g, w = g.detach().cpu(), w.detach().cpu()
        if g.shape != w.shape:
            return float("inf")
        if w.dtype == torch.bool:
            worst = max(worst, 0.0 if torch.equal(g.bool(), w) else float("inf"))
        elif w.numel():
            worst = max(worst, float((g.double() - w.double()).abs().max()))
    return worst


#: (T, B) of the sample inputs: one step alone, shorter and longer than the example (EXAMPLE_STEPS), batches of 1-4
SAMPLES = ((1, 1), (3, 2), (EXAMPLE_STEPS, EXAMPLE_BATCH), (2 * EXAMPLE_STEPS + 5, 4))


def sample_batch(steps: int, batch: int, vocab: int, pad: int | None, generator: torch.Generator,
                 low: int = 0) -> tuple[Tensor, Tensor]:
    """Random token ids (T, B) in [low, vocab), right-padded with `pad` (when not None) after random lengths
    (B,), the first sequence of full length."""
    tokens = torch.randint(low, vocab, (steps, batch), generator=generator)
    lengths = torch.randint(1, steps + 1, (batch,), generator=generator)
    lengths[0] = steps
    if pad is not None:
        tokens = tokens.masked_fill(~valid_steps(lengths, steps).squeeze(-1), pad)
    return tokens, lengths


def _random_state(stack, batch: int, generator: torch.Generator) -> list[Tensor]:
    return [0.5 * torch.randn(s["shape"][0], batch, s["shape"][2], generator=generator) for s in state_spec(stack)]


@torch.no_grad()
def check_lm(run, runner: Runner) -> list[dict]:
    model, g, checks = run.model.cpu().eval(), torch.Generator().manual_seed(0), []
    vocab = model.vocab_size
    for steps, batch in SAMPLES:
        tokens, lengths = sample_batch(steps, batch, vocab, 0, g)
        state = _random_state(model.rnn, batch, g)
        logits, _, new = model(tokens, state=unflatten(model.rnn, state), lengths=lengths)
        got = runner("model", tokens, lengths, *state)
        checks.append({"check": f"T={steps} B={batch} with lengths and a state", "difference":
                       difference(got, [logits, *flatten(new)])})
    # generation: a padded batch of prompts, then steps of one token, the state carried by each side
    tokens, lengths = sample_batch(EXAMPLE_STEPS + 2, 3, vocab, 0, g)
    want_state = got_state = flatten(model.rnn.zero_state(3))
    for step in range(4):
        logits, _, new = model(tokens, state=unflatten(model.rnn, want_state), lengths=lengths)
        want_state = flatten(new)
        got = runner("model", tokens, lengths, *got_state)
        got_state = got[1:]
        checks.append({"check": f"generation step {step} (T={tokens.shape[0]}, B=3, state carried)",
                       "difference": difference(got, [logits, *want_state])})
        tokens, lengths = logits[lengths - 1, torch.arange(3)].argmax(-1).unsqueeze(0), torch.ones(3, dtype=torch.long)
    return checks


@torch.no_grad()
def check_classifier(run, runner: Runner) -> list[dict]:
    model, g, checks = run.model.cpu().eval(), torch.Generator().manual_seed(0), []
    vocab = model.embedding.num_embeddings
    for steps, batch in SAMPLES:
        tokens, lengths = sample_batch(steps, batch, vocab, model.pad_id, g)
        logits, _ = model(tokens, lengths)
        got = runner("model", tokens, lengths)
        checks.append({"check": f"T={steps} B={batch} padded", "difference":
                       difference(got, [logits, model.probabilities(logits)])})
    return checks


@torch.no_grad()
def check_translator(run, runner: Runner) -> list[dict]:
    model, g, checks = run.model.cpu().eval(), torch.Generator().manual_seed(0), []
    pad = run.task.source_tokenizer.stoi["<pad>"]
    for steps, batch in SAMPLES:
        source, lengths = sample_batch(steps, batch, model.source_embedding.num_embeddings, pad, g)
        mem, state, feed = model.encode(source, lengths)
        want = [mem.memory, *([mem.keys] if mem.keys is not None and mem.keys is not mem.memory else []), mem.mask,
                *flatten(state), *([feed] if model.input_feed else [])]
        got = runner("encoder", source, lengths)
        checks.append({"check": f"encoder S={steps} B={batch} padded", "difference": difference(got, want)})
        carried = got
        for step in range(3):  # the decoder from each side's own encoding, its state carried step to step
            tokens = torch.randint(0, model.target_vocab, (batch,), generator=g)
            logits, state, feed, weights = model.step(tokens, mem, state, feed)
            out = runner("decoder", tokens, *carried)
            want = [logits, *flatten(state), *([feed] if model.input_feed else []),
                    *([weights] if weights is not None else [])]
            checks.append({"check": f"decoder step {step} S={steps} B={batch}", "difference": difference(out, want)})
            carried = _carry(runner.graphs["decoder"], carried, out)
    return checks


def _carry(decoder: Graph, inputs: list[Tensor], outputs: list[Tensor]) -> list[Tensor]:
    """The decoder step's inputs for the next step (without tokens): its new state and feed in place of the old."""
    names = [i["name"] for i in decoder.inputs[1:]]
    produced = {o["name"].removeprefix("new_"): t for o, t in zip(decoder.outputs, outputs)}
    return [produced.get(name, t) for name, t in zip(names, inputs)]


#: batch sizes of a forecaster's sample inputs: one series alone, fewer and more than the example's (3)
FORECAST_BATCHES = (1, 2, 3, 5)


def forecast_sample(model, batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Sample inputs of a forecaster: past (B, L) seasonal values at levels from 1 to 1,000 (counts for the
    negative binomial head), a few missing (NaN); time (B, L + H, F) features in [-0.5, 0.5]; series (B,) ids."""
    L, H, g = model.past_length, model.horizon, generator
    level = 10 ** (3 * torch.rand(batch, 1, generator=g))
    phase = 2 * torch.pi * torch.rand(batch, 1, generator=g)
    wave = 1 + 0.3 * torch.sin(2 * torch.pi * torch.arange(L) / max(model.season, 2) + phase)
    if model.head == "negative_binomial":
        past = torch.poisson(level * wave, generator=g)
    else:
        past = level * (wave + 0.1 * torch.randn(batch, L, generator=g))
    past[torch.rand(batch, L, generator=g) < 0.05] = float("nan")
    time = torch.rand(batch, L + H, model.time_features, generator=g) - 0.5
    rows = model.embedding.num_embeddings if model.embedding is not None else 1
    return past, time, torch.randint(0, rows, (batch,), generator=g)


def _scaled(got: Tensor, want: Tensor, scale: Tensor) -> float:
    """The largest difference of (B, ...) values in units of each series' scale (B, 1): series of any level are
    compared alike (a float32 value of 10^5 carries errors of 10^-2 in its own units)."""
    unit = scale.reshape(-1, *[1] * (want.dim() - 1))
    return difference([got / unit], [want / unit])


@torch.no_grad()
def check_forecaster(run, runner: Runner) -> list[dict]:
    """The quantile head's quantiles; a distribution head's context read (its outputs), and its H steps fed with
    their own means, each step's parameters and state, and the path they make against Forecaster.forward's
    deterministic path. Values on the series' scale are compared in units of each series' scale."""
    model, g, checks = run.model.cpu().eval(), torch.Generator().manual_seed(0), []
    L, H, C = model.past_length, model.horizon, model.context
    for batch in FORECAST_BATCHES:
        past, time, series = forecast_sample(model, batch, g)
        z, _, loc, scale, static = model._prepare(past, series)
        if model.head == "quantile":
            want = model.forecast(past, time, series)["quantiles"]
            checks.append({"check": f"quantiles B={batch} (in units of each series' scale)",
                           "difference": _scaled(runner("model", past, time, series)[0], want, scale)})
            continue
        _, state = model.rnn(model._inputs(z, time, static, L - C, L))
        got = runner("encoder", past, time[:, :L], series)
        checks.append({"check": f"encoder B={batch} (loc and scale in units of each series' scale)", "difference":
                       max(difference(got[:1] + got[3:], [z, static, *flatten(state)]),
                           _scaled(got[1], loc, scale), _scaled(got[2], scale, scale))})
        values, static_g, scale_g, carried = got[0], got[3], got[2], got[4:]
        buffer, mine = torch.cat([z, z.new_zeros(batch, H)], 1), torch.cat([values, values.new_zeros(batch, H)], 1)
        lags = torch.tensor(model.lags)
        worst, names = 0.0, DISTRIBUTION_PARAMETERS[model.head]
        for h in range(H):  # PyTorch as Forecaster.forward steps; the step graph from its own encoding and means
            out, state = model.rnn(model._inputs(buffer, time, static, L + h, L + h + 1), state)
            dist = model._distribution(model.out(out[:, 0])[:, None], loc, scale)
            mean = dist.mean[:, 0] / scale[:, 0] if model.head == "negative_binomial" else dist.mean[:, 0]
            buffer[:, L + h] = mean
            extra = [scale_g] if model.head == "negative_binomial" else []
            step = runner("step", mine[:, L + h - lags], time[:, L + h], static_g, *extra, *carried)
            params = [getattr(dist, {"mu": "loc", "sigma": "scale"}.get(n, n))[:, 0] for n in names]
            if model.head == "negative_binomial":  # a count's total_count may be large: relative to it
                params[0], step[0] = torch.ones_like(params[0]), step[0] / params[0]
            worst = max(worst, difference(step, [*params, mean, *flatten(state)]))
            mine[:, L + h] = step[len(names)]
            carried = step[len(names) + 1:]
        checks.append({"check": f"{H} steps B={batch} fed their own means (parameters and state)", "difference": worst})
        checks.append({"check": f"mean path B={batch} against Forecaster.forward (in units of each series' scale)",
                       "difference": _scaled(mine[:, L:] * scale_g + loc, model(past, time, series), scale)})
    return checks


CHECKS = {"lm": check_lm, "classify": check_classifier, "translate": check_translator, "forecast": check_forecaster}
