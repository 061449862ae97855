"""What each `stackrnn` command does, as library functions: one options dataclass and one function per command.

The options are config dataclasses like the [model], [data] and [train] ones (config.option: a default and a
one-line help), so the command line (cli.py) generates every flag, its help and its default from them, in one
place; a command is `COMMAND(options) -> exit status`, printing what the command prints. From Python the same
work is `stackrnn.fit` / `stackrnn.load` (api.py), which these functions call.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .api import WEIGHTS, load, run_config
from .config import check_value, option
from .errors import InputError, plural
from .serve.limits import Limits
from .tasks import TASK_NAMES, a_run_of


@dataclass
class RunOptions:
    """What every command that reads a trained run takes."""

    run: str = option(None, "a run directory written by stackrnn train", positional=True, required=True, metavar="RUN")
    weights: str = option("best", "best-by-validation or last checkpoint", choices=("best", "last"))
    json: bool = option(False, "print the result as JSON")


@dataclass
class TextOptions:
    """A text to read through a model: given, or from a file."""

    text: str | None = option(None, "the text to read")
    text_file: str | None = option(None, "read the text from FILE instead", metavar="FILE")
    encoding: str = option("utf-8", "the text encoding of the file")


# -- train and summary: a config, with every config field as an option ---------------------------------------
@dataclass
class TrainOptions:
    """Train a language model, a text classifier, a translator, a forecaster or a speech recogniser into a run directory.

    Train a model (--task classify for a text classifier, --task translate for sequence to sequence, --task
    forecast for time series, --task speech for speech recognition with CTC). Options override --config, which
    overrides the defaults.
    """

    config: str | None = option(None, "a TOML file with [model], [data] and [train] tables (see examples/)",
                                metavar="FILE.toml")
    out: str | None = option(None, "the new run directory (default: runs/NAME-DATE-TIME); never overwritten", metavar="RUN")
    resume: str | None = option(None, "continue the run in RUN from its last checkpoint", metavar="RUN")
    nproc: int | None = option(None, "train data-parallel in N processes on this machine (torchrun with "
                               "DistributedDataParallel; gloo on CPU, NCCL on GPU); each takes 1/N of every batch",
                               metavar="N", within="[1, inf)")
    # set by the command line: the config options given ({section: {field: value}}), the task, the argv
    overrides: dict = field(default_factory=dict, metadata={"cli": False})
    task: str | None = field(default=None, metadata={"cli": False})
    argv: list = field(default_factory=list, metadata={"cli": False})


def train(opts: TrainOptions) -> int:
    from . import distributed
    from .train import preflight, train as train_run

    launching = (opts.nproc or 1) > 1 and not distributed.launched()
    if launching and not opts.resume and not opts.out:
        raise InputError("--nproc: name the run directory with --out, so that every process trains into the same one")
    if opts.resume and (opts.config or opts.out):
        raise InputError("--resume RUN continues a run with its own config: leave out --config and --out")
    cfg, out = run_config(opts.config, opts.overrides, task=opts.task, resume=opts.resume, out=opts.out)
    if launching:
        distributed.check_launch(cfg.train.device, opts.nproc)
        preflight(cfg, out, resume=bool(opts.resume), world_size=opts.nproc)  # bad input: one line here, not N
        return distributed.launch(opts.nproc, _without_nproc(opts.argv))
    try:
        result = train_run(cfg, out, resume=bool(opts.resume))
    finally:
        distributed.shutdown()
    if distributed.launched() and int(os.environ.get("RANK", "0")) != 0:
        distributed.exit_worker(0)  # rank 0 reports for all
    print(result_line(result, cfg.task))
    print(f"run directory: {result.run}")
    if result.sample:
        print(f"--- sample ---\n{result.sample}")
    if distributed.launched():
        distributed.exit_worker(0)
    return 0


def result_line(result, task: str) -> str:
    """'finished after 374 steps, 1 epoch, 26s; train perplexity ...': how a training run ended."""
    from .tasks.lm import perplexity

    parts = [f"{result.stopped} after {plural(result.step, 'step')}, {plural(result.epoch, 'epoch')}, {result.seconds:.0f}s"]
    if task == "lm":
        parts += [f"{what} perplexity {perplexity(loss):.3f}" for what, loss in
                  (("train", result.train_loss), ("best valid", result.best_valid_loss)) if loss is not None]
    else:
        if result.train_loss is not None:
            parts.append(f"train loss {result.train_loss:.4f}")
        if result.best_valid is not None:
            parts.append("best valid " + " ".join(f"{k} {v:.4f}" for k, v in result.best_valid.items()))
    return "; ".join(parts)


def _without_nproc(argv: list[str]) -> list[str]:
    """The command line minus --nproc N (or --nproc=N): what each torchrun process runs."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


@dataclass
class SummaryOptions:
    """Print a table of a run's or a config's model: layers, output shapes, parameters.

    Print each layer of a trained run's model (or of the model a config describes), its output shape and
    parameter count.
    """

    run: str | None = option(None, "a run directory written by stackrnn train (default: describe the model of "
                             "--config and the options instead)", positional=True, metavar="RUN")
    config: str | None = option(None, "a TOML config (see examples/); default: the built-in defaults", metavar="FILE.toml")
    vocab_size: int | None = option(None, "vocabulary size to assume instead of reading the data (classifiers: with 2 "
                                    "classes)", within="[1, inf)")
    overrides: dict = field(default_factory=dict, metadata={"cli": False})
    task: str | None = field(default=None, metadata={"cli": False})


def summary(opts: SummaryOptions) -> int:
    from .summary import summary as table
    from .train import build_config

    if opts.run is not None:
        given = ["--config"] * bool(opts.config) + ["--vocab-size"] * (opts.vocab_size is not None) + [
            f"--{name.replace('_', '-')}" for values in opts.overrides.values() for name in _names(values)]
        if given:
            raise InputError(f"{' '.join(given)}: a run's model is described by its own config; give RUN alone, "
                             "or leave out RUN to describe a config")
        print(load(opts.run).summary())
        return 0
    cfg = build_config(opts.config, opts.overrides, opts.task)
    model, shape, kwargs = cfg.make_task().summary_model(opts.vocab_size)
    print(table(model, shape, **kwargs))
    return 0


def _names(values: dict) -> list[str]:
    return [n for k, v in values.items() for n in (_names(v) if isinstance(v, dict) else [k])]


# -- using a run ----------------------------------------------------------------------------------------------
@dataclass
class GenerateOptions(RunOptions):
    """Generate text from a trained run.

    Continue one or more prefixes with text sampled from a trained language model.
    """

    prefix: list = option([], "text to continue; repeat for several (run as one batch)", required=True)
    length: int = option(200, "tokens to generate per prefix")
    temperature: float = option(1.0, "divide the logits by this; lower is more conservative, 0 is greedy")
    top_k: int = option(0, "sample only from the K most likely tokens; 0 keeps all")
    top_p: float = option(1.0, "sample from the smallest set of tokens whose probability reaches P")
    greedy: bool = option(False, "always take the most likely token (same as --temperature 0)")
    seed: int | None = option(None, "seed for sampling; the same seed gives the same text")


def generate(opts: GenerateOptions) -> int:
    from .generate import check_sampling

    temperature = 0.0 if opts.greedy else opts.temperature
    check_sampling(opts.length, temperature, opts.top_k, opts.top_p)  # before the (slower) load
    texts = load(opts.run, weights=opts.weights, task="lm").generate(
        opts.prefix, opts.length, temperature=temperature, top_k=opts.top_k, top_p=opts.top_p, seed=opts.seed)
    if opts.json:
        print(json.dumps([{"prefix": p, "text": t} for p, t in zip(opts.prefix, texts)], ensure_ascii=False))
    elif len(texts) == 1:
        print(texts[0])
    else:  # samples may hold blank lines themselves: a line naming each prefix tells them apart
        for prefix, text in zip(opts.prefix, texts):
            print(f"--- prefix {prefix!r} ---\n{text}")
    return 0


@dataclass
class SearchOptions:
    """Beam search's settings, for translators (and --beam for speech recognisers)."""

    beam: int | None = option(None, "translators and speech recognisers: beam size; 1 is greedy search (best path for "
                              "speech) (default: 1 in eval, 5 in translate)", within="[1, inf)")
    length_penalty: float | None = option(None, "translators: GNMT's length penalty alpha; 0 compares plain "
                                          "log-probabilities, which favours short translations (default: 0.6)",
                                          within="[0, inf)")
    max_length: int | None = option(None, "translators: most words per translation (default: 2 x source words + 10)",
                                    within="[1, inf)")

    def search(self, beam: int) -> dict:
        """The settings with the defaults filled in (`beam`: this command's); each was checked as its flag was read."""
        return {"beam": beam if self.beam is None else self.beam, "max_length": self.max_length,
                "length_penalty": 0.6 if self.length_penalty is None else self.length_penalty}


@dataclass
class EvalOptions(RunOptions, SearchOptions):
    """Evaluate a trained run on its validation or test split.

    Score a trained run. Language models: loss, perplexity and (character models) bits per character.
    Classifiers: accuracy, precision, recall and F1 per class, macro F1 and the confusion matrix. Translators:
    BLEU, exact match and loss, with example translations. Speech recognisers: word and character error rates,
    sequence accuracy and CTC loss, with example transcripts.
    """

    split: str = option("valid", "which held-out split", choices=("valid", "test"))
    data: str | None = option(None, "classifiers and translators: score this file instead of a split", metavar="FILE")
    format: str | None = option(None, "classifiers: the format of --data (default: as the run's training data)")
    text_column: str | None = option(None, "classifiers: the text column or key of --data (default: as the run's)")
    label_column: str | None = option(None, "classifiers: the label column or key of --data (default: as the run's)")
    encoding: str | None = option(None, "classifiers and translators: the text encoding of --data (default: as the run's)")
    examples: int = option(10, "translators and speech recognisers: translations or transcripts to show beside their "
                           "references", within="[0, inf)")
    samples: int | None = option(None, "forecasters: sample paths per series (default: the run's data.eval_samples)",
                                 within="[1, inf)")


#: eval's options that only some tasks read, and whose they are
_EVAL_ONLY = {"translate": ("format", "text_column", "label_column"),
              **{task: ("data", "format", "text_column", "label_column", "encoding") for task in ("lm", "forecast", "speech")}}


def evaluate(opts: EvalOptions) -> int:
    from .evaluate import format_classification, format_forecast, format_metrics, format_speech, format_translation

    searching = [f"--{n.replace('_', '-')}" for n in ("beam", "max_length", "length_penalty") if getattr(opts, n) is not None]
    search = opts.search(beam=1)
    run = load(opts.run, weights=opts.weights)
    task, data = run.config.task, run.config.data
    if task == "speech":  # a speech run searches with --beam alone
        searching = [s for s in searching if s != "--beam"]
    if searching and task != "translate":
        raise InputError(f"{' '.join(searching)}: for translation runs; this is {a_run_of(task)}")
    given = [f"--{n.replace('_', '-')}" for n in _EVAL_ONLY.get(task, ()) if getattr(opts, n)]
    if given:
        raise InputError(f"{' '.join(given)}: for classification runs; " + (
            "a translation run reads --data as source<TAB>target lines" if task == "translate"
            else f"{a_run_of(task)} is scored on its own splits"))
    if opts.samples is not None and task != "forecast":
        raise InputError(f"--samples: for forecasting runs; this is {a_run_of(task)}")
    for name in ("format", "text_column", "label_column", "encoding"):  # how to read --data, if not as the run did
        if getattr(opts, name) is not None:
            setattr(data, name, check_value(type(data), name, getattr(opts, name), "data", f"--{name.replace('_', '-')}"))
    if task == "translate":
        metrics = run.evaluate(opts.split, data=opts.data, examples=opts.examples, **search)
    elif task == "forecast":
        metrics = run.evaluate(opts.split, samples=opts.samples)
    elif task == "speech":
        metrics = run.evaluate(opts.split, beam=search["beam"], examples=opts.examples)
    else:
        metrics = run.evaluate(opts.split, **({} if task == "lm" else {"data": opts.data}))
    formats = {"translate": format_translation, "classify": format_classification, "forecast": format_forecast,
               "speech": format_speech}
    print(json.dumps(metrics) if opts.json else formats.get(task, format_metrics)(metrics))
    return 0


@dataclass
class TranslateOptions(RunOptions, SearchOptions):
    """Translate sentences with a trained translation run.

    Translate each sentence with beam search (greedy with --beam 1), one translation per line; optionally draw
    the attention map of one sentence as PNG.
    """

    texts: list = option([], "sentences to translate", positional=True, metavar="TEXT")
    file: str | None = option(None, "translate every non-blank line of FILE instead", metavar="FILE")
    encoding: str = option("utf-8", "the text encoding of --file")
    attention: str | None = option(None, "also draw the attention of each translated word over the source words as a "
                                   "PNG heat map (one sentence)", metavar="MAP.png")
    target: str | None = option(None, "with --attention: draw the attention for this translation instead of the "
                                "model's own (a given sentence pair)", metavar="TEXT")


def translate(opts: TranslateOptions) -> int:
    search = opts.search(beam=5)
    texts = _texts(opts, "sentences to translate")
    if opts.target is not None and opts.attention is None:
        raise InputError("--target is the translation whose attention --attention draws: give --attention MAP.png too")
    if opts.attention is not None and len(texts) != 1:
        raise InputError(f"--attention draws one sentence's map, but {len(texts)} sentences were given: give one")
    if opts.attention is not None and not opts.attention.lower().endswith(".png"):
        raise InputError(f"--attention {opts.attention}: the map is written as PNG; give a file name ending in .png")
    run = load(opts.run, weights=opts.weights, task="translate")
    if opts.attention is not None:  # whatever can stop the map stops the command before anything is printed
        run.check_attention(opts.target)
    results = run.translate_details(texts, **search)
    print(json.dumps(results, ensure_ascii=False) if opts.json else "\n".join(r["translation"] for r in results))
    if opts.attention is not None:
        drawn = run.draw_attention(texts[0], opts.attention, target=opts.target, translation=results[0]["translation"],
                                   max_length=search["max_length"])
        print(f"attention map: {drawn}", file=sys.stderr)
    return 0


@dataclass
class PredictOptions(RunOptions):
    """Classify texts with a trained classification run.

    Print each text's predicted label and the probability of every label.
    """

    texts: list = option([], "texts to classify", positional=True, metavar="TEXT")
    file: str | None = option(None, "classify every non-blank line of FILE instead", metavar="FILE")
    encoding: str = option("utf-8", "the text encoding of --file")


def predict(opts: PredictOptions) -> int:
    predictions = load(opts.run, weights=opts.weights, task="classify").predict(_texts(opts, "texts to classify"))
    if opts.json:
        print(json.dumps(predictions, ensure_ascii=False))
    for p in [] if opts.json else predictions:
        probs = "  ".join(f"{label} {prob:.3f}" for label, prob in p["probabilities"].items())
        print(f"{p['label']}\t{probs}\t{p['text']}")
    return 0


@dataclass
class TranscribeOptions(RunOptions):
    """Transcribe recordings with a trained speech recognition run.

    Transcribe each audio (.wav) or feature (.mfc, .npy) file, one transcript per line in the order given; with
    --json, each token's time (seconds) and probability too (best path).
    """

    files: list = option([], "audio or feature files to transcribe", positional=True, metavar="FILE")
    beam: int = option(1, "beam size of CTC prefix beam search; 1 is best path (greedy)", within="[1, inf)")
    stream: bool = option(False, "read each file in chunks, carrying the model's state, as audio arriving live "
                          "(unidirectional runs with global or no normalisation); the same transcript as the whole file")
    chunk_ms: float = option(320.0, "with --stream: the chunk length in milliseconds")


def transcribe(opts: TranscribeOptions) -> int:
    if not opts.files:
        raise InputError("give the audio or feature files to transcribe")
    results = load(opts.run, weights=opts.weights, task="speech").transcribe(
        opts.files, beam=opts.beam, stream=opts.chunk_ms if opts.stream else None)
    print(json.dumps(results, ensure_ascii=False) if opts.json else "\n".join(r["transcript"] for r in results))
    return 0


@dataclass
class ForecastOptions(RunOptions):
    """Forecast time series with a trained forecasting run.

    Forecast each series of the run's data (or those named with --series) after the end of its values: the
    median and every quantile per step, as CSV; optionally fan charts as PNG. With --split test, forecast the
    run's held-out test steps instead, beside their actual values.
    """

    series: list = option([], "forecast only this series (repeat for several); default: all", metavar="ID")
    horizon: int | None = option(None, "steps to forecast (default: the trained horizon, which is also the most)")
    samples: int = option(100, "sample paths per series (distribution heads); the quantiles come from them",
                          within="[1, inf)")
    split: str | None = option(None, "forecast the run's held-out split's steps, beside their actual values, instead "
                               "of the future", choices=("valid", "test"))
    out: str | None = option(None, "write the forecasts to this CSV file (default: print them)", metavar="FILE.csv")
    plot: str | None = option(None, "also draw a fan chart per series into this folder (PNG)", metavar="DIR")


def forecast(opts: ForecastOptions) -> int:
    from .files import atomic_write_text

    if opts.out is not None and Path(opts.out).is_dir():
        raise InputError(f"--out {opts.out} is a folder: give the CSV file to write")
    run = load(opts.run, weights=opts.weights, task="forecast")
    if opts.plot is not None:
        from .plot import check_matplotlib

        check_matplotlib()
    results = run.forecast(opts.series or None, horizon=opts.horizon, samples=opts.samples, split=opts.split)
    if opts.json:
        print(json.dumps([_listed(r) for r in results]))
    else:
        text = forecasts_csv(results)
        if opts.out is None:
            print(text, end="")
        else:
            atomic_write_text(Path(opts.out), text)
            print(f"{plural(len(results), 'forecast')} of {results[0]['median'].size} steps written to {opts.out}",
                  file=sys.stderr)
    if opts.plot is not None:
        drawn = run.plot(results, opts.plot)
        print(f"{plural(len(drawn), 'fan chart')} drawn in {opts.plot}", file=sys.stderr)
    return 0


def forecasts_csv(results: list[dict]) -> str:
    """series, step, timestamp, median, mean, one column per quantile (q0.1, ...), actual: a row per series and step."""
    import csv
    import io

    levels = list(results[0]["quantiles"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["series", "step", "timestamp", "median", "mean", *(f"q{lv:g}" for lv in levels), "actual"])
    for r in results:
        for h in range(r["median"].size):
            actual = "" if r["actual"] is None else f"{r['actual'][h]:.6g}"
            writer.writerow([r["series"], h + 1, "" if r["timestamps"] is None else r["timestamps"][h],
                             f"{r['median'][h]:.6g}", f"{r['mean'][h]:.6g}",
                             *(f"{r['quantiles'][lv][h]:.6g}" for lv in levels), actual])
    return buffer.getvalue()


def _listed(forecast: dict) -> dict:
    """A forecast as JSON takes it: arrays as lists, quantile levels as strings, no history."""
    as_list = lambda a: None if a is None else [None if x != x else float(x) for x in a]  # noqa: E731  (NaN: null)
    return {"series": forecast["series"], "timestamps": forecast["timestamps"], "median": as_list(forecast["median"]),
            "mean": as_list(forecast["mean"]), "quantiles": {f"{k:g}": as_list(v) for k, v in forecast["quantiles"].items()},
            "actual": as_list(forecast["actual"])}


def _texts(opts, what: str) -> list[str]:
    """The texts given as arguments, or the lines of --file; exactly one of the two."""
    from .data.labelled import read_lines

    if bool(opts.texts) == bool(opts.file):
        raise InputError(f"give the {what} as arguments or with --file FILE (one per line), not both or neither")
    return opts.texts or read_lines(opts.file, encoding=opts.encoding)


# -- deploying ------------------------------------------------------------------------------------------------
@dataclass
class ExportOptions(RunOptions):
    """Export a trained run as ONNX or torch.export files, checked against PyTorch.

    Write the model's graph (time a dynamic loop, lengths and the recurrent state as inputs) and export.json (the
    vocabulary, labels and config it needs) into a new folder, after running the written graph and the PyTorch
    model on sample inputs of several lengths and batch sizes: the largest difference is printed, and above the
    tolerance nothing is written. A forecaster's quantile head is one graph; a distribution head's are its
    context read (encoder) and one step (step), the paths sampled outside them. stackrnn.runtime runs an ONNX
    folder with onnxruntime and numpy alone.
    """

    format: str = option(None, "onnx (onnxruntime) or torch-export (torch.export's .pt2)", required=True,
                         choices=("onnx", "torch-export"))
    out: str = option(None, "a new folder for the exported files", required=True, metavar="DIR")
    tolerance: float = option(1e-4, "the largest difference from PyTorch's outputs the parity check accepts")


def export(opts: ExportOptions) -> int:
    from .export import export as export_run

    result = export_run(opts.run, opts.format, opts.out, weights=opts.weights, tolerance=opts.tolerance)
    if opts.json:
        print(json.dumps({"out": str(result.out), "format": result.format, "files": result.files,
                          "tolerance": result.tolerance, "largest": result.largest, "checks": result.checks}))
    else:
        print(result.line())
    return 0


# -- looking inside -------------------------------------------------------------------------------------------
@dataclass
class InspectOptions(RunOptions, TextOptions):
    """Look inside a language model (or a speech recogniser): units, activations and gates, layer by layer.

    Read a text through a trained language model and write a self-contained HTML page (the text coloured by a
    chosen unit's activation, layer by layer, the units most correlated with simple features first), PNG heat
    maps and per-layer gate saturation. For a speech run, --audio FILE draws every layer's activations over the
    file's frames, with the CTC posteriors on top, as one PNG heat map.
    """

    out: str = option(None, "a new folder for index.html and the plots", required=True, metavar="DIR")
    units: int = option(32, "units per layer offered on the page and drawn")
    max_tokens: int = option(2000, "read at most this many tokens")
    audio: str | None = option(None, "speech runs: the audio or feature file whose frames each layer's activations "
                               "are drawn over (layers.png)", metavar="FILE")


def inspect(opts: InspectOptions) -> int:
    from .inspect.page import format_inspection, inspect_run

    if opts.audio is not None:
        return _inspect_speech(opts)

    result = inspect_run(opts.run, read_text(opts), opts.out, weights=load_weights(opts.weights), units=opts.units,
                         max_tokens=opts.max_tokens)
    print(json.dumps(result.to_dict(), default=str) if opts.json else format_inspection(result))
    return 0


def _inspect_speech(opts: InspectOptions) -> int:
    from .inspect.page import check_new_folder

    if opts.text is not None or opts.text_file is not None:
        raise InputError("--audio draws a speech run's layers over a recording; leave out --text and --text-file")
    out = Path(opts.out)
    check_new_folder(out)
    run = load(opts.run, weights=opts.weights, task="speech")
    drawn = run.draw_layers(opts.audio, out / "layers.png")
    print(json.dumps({"layers": str(drawn)}) if opts.json else f"layer activations: {drawn}")
    return 0


@dataclass
class ProbeOptions(RunOptions, TextOptions):
    """Fit linear probes from each layer's states to properties of a text.

    Freeze a trained language model, read a text through it once, and fit a linear classifier from each layer's
    states (the embedding as layer 0) to each property: character class, position in the word, bracket depth,
    the token N steps back (token_back_N). Held-out accuracy per layer goes to probes.json and probes.png.
    """

    out: str = option(None, "a new folder for probes.json and probes.png", required=True, metavar="DIR")
    nested: int | None = option(None, "read N characters of a synthetic nested-bracket language instead (for bracket "
                                "depth; the model must know its characters)", metavar="N")
    properties: str | None = option(None, "comma-separated properties (default: char_class, position_in_word, "
                                    "bracket_depth, token_back_1, token_back_3)", metavar="P1,P2")
    max_tokens: int = option(20_000, "read at most this many tokens")
    seed: int = option(0, "which blocks of the text are held out")


def probe(opts: ProbeOptions) -> int:
    from .inspect.probes import PROPERTIES, format_probes, nested_text, probe_run

    if opts.nested is not None and (opts.text is not None or opts.text_file is not None):
        raise InputError("give the text to read with --text TEXT or --text-file FILE or --nested N (one of them)")
    if opts.nested is not None and opts.nested < 1:
        raise InputError(f"--nested: expected a number of characters >= 1, got {opts.nested}")
    text = nested_text(opts.nested, seed=opts.seed) if opts.nested is not None else read_text(opts, " or --nested N")
    properties = [p.strip() for p in opts.properties.split(",")] if opts.properties else list(PROPERTIES)
    result = probe_run(opts.run, text, properties=properties, out=opts.out, max_tokens=opts.max_tokens,
                       seed=opts.seed, weights=load_weights(opts.weights))
    print(json.dumps(result, default=str) if opts.json else format_probes(result, opts.out))
    return 0


def load_weights(weights: str) -> str:
    return WEIGHTS[weights]


def read_text(opts: TextOptions, alternatives: str = "") -> str:
    """--text TEXT or --text-file FILE (read whole, newlines kept); exactly one."""
    if (opts.text is None) == (opts.text_file is None):
        raise InputError(f"give the text to read with --text TEXT or --text-file FILE{alternatives} (one of them)")
    if opts.text is not None:
        return opts.text
    path = Path(opts.text_file)
    try:
        return path.read_text(encoding=opts.encoding)
    except FileNotFoundError:
        raise InputError(f"--text-file {path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"--text-file {path} is a folder: give a text file") from None
    except UnicodeError:  # (a codec may refuse bytes with a bare UnicodeError, not UnicodeDecodeError)
        raise InputError(f"--text-file {path} is not {opts.encoding} text: pass its encoding with --encoding") from None
    except LookupError:
        raise InputError(f"--encoding {opts.encoding}: unknown encoding (e.g. utf-8, latin-1)") from None


@dataclass
class SweepOptions:
    """Train a grid of configs under one budget each; tabulate and plot the results.

    Train one run per combination of the --grid values (on top of CONFIG and the --set values), each for at most
    --budget-minutes, one after another; then write a table and plots of the best validation figure against the
    first numeric grid key and against wall time.
    """

    config: str | None = option(None, "a TOML config (see examples/); default: the built-in defaults", positional=True,
                                metavar="CONFIG")
    grid: list = option([], "values to sweep, e.g. model.num_layers=1,2,4,8; repeat for a grid (every combination)",
                        metavar="SECTION.KEY=V1,V2,...")
    set: list = option([], "a value for every run, e.g. data.data=PATH or train.epochs=100; repeatable",
                       metavar="SECTION.KEY=VALUE")
    budget_minutes: float | None = option(None, "train each run for at most M minutes (the same time budget for all); "
                                          "default: the config's epochs and limits", metavar="M")
    task: str | None = option(None, "the task, if the config file does not say (default: lm)", choices=TASK_NAMES)
    out: str = option(None, "a new folder for the sweep (never overwritten)", required=True, metavar="DIR")
    progress: bool = option(False, "show each run's progress bar")


def sweep(opts: SweepOptions) -> int:
    from .sweep import markdown_table, sweep as run_sweep

    table = run_sweep(opts.config, opts.grid, opts.out, fixed=opts.set, task=opts.task,
                      budget_minutes=opts.budget_minutes, progress=opts.progress)
    print(markdown_table(table), end="")
    print(f"sweep directory: {opts.out} (sweep.json, sweep.md, plots; each run in runs/)")
    return 0


@dataclass
class PlotOptions:
    """Draw training curves of one or more runs as PNG files.

    Plot loss, perplexity, learning rate and gradient norm against steps, comparing runs.
    """

    runs: list = option([], "run directories written by stackrnn train", positional=True, required=True, metavar="RUN")
    out: str = option(None, "folder for the PNG files (created if needed)", required=True, metavar="DIR")


def plot(opts: PlotOptions) -> int:
    from .plot import plot_runs

    for path in plot_runs(opts.runs, opts.out):
        print(path)
    return 0


# -- serving --------------------------------------------------------------------------------------------------

@dataclass
class ServeOptions(Limits):
    """Serve trained runs over HTTP: a JSON API with streaming, and a page at /.

    Serve language-model, classifier, translation and forecasting runs: POST /v1/runs/NAME/generate (server-sent
    events with "stream": true), /predict, /translate, /forecast, GET /health, /metrics and the OpenAPI docs at
    /docs; the page at / lets people generate, classify, translate and draw forecasts. A run is named by its directory's name. Requests that arrive
    together run as one forward pass. Needs the serve extra (pip install 'stackrnn[serve]').
    """

    runs: list = option([], "run directories written by stackrnn train", positional=True, required=True, metavar="RUN")
    host: str = option("127.0.0.1", "the address to listen on; 0.0.0.0 opens the server to other machines")
    port: int = option(8000, "the port to listen on (0: any free port, printed)", within="[0, 65535]")
    batching: bool = option(True, "run requests that arrive together as one batch (--no-batching: one at a time)")
    batch_window_ms: float = option(5.0, "how long an idle run waits for more requests to batch with the first",
                                    metavar="MS", within="[0, 1000]")
    weights: str = option("best", "best-by-validation or last checkpoint", choices=("best", "last"))
    device: str = option("cpu", "where the models run: cpu, cuda, cuda:N, mps or auto")
    threads: int = option(0, "CPU threads of each forward pass (torch.set_num_threads); 0 keeps torch's default (one "
                          "per core). Batching is the server's parallelism: 1 is often fastest for small models, and "
                          "far faster where other work shares the cores", within="[0, inf)")
    log_level: str = option("warning", "uvicorn's log level", choices=("critical", "error", "warning", "info", "debug"))


def serve(opts: ServeOptions) -> int:
    from .serve import check_installed, load_runs, serve as run_server

    check_installed()
    limits = Limits(**{name: getattr(opts, name) for name in Limits.__dataclass_fields__})  # (checked as flags)
    runs = load_runs(opts.runs, weights=opts.weights, device=opts.device)

    def ready(url: str) -> None:
        served = ", ".join(f"{name} ({run.kind})" for name, run in runs.items())
        print(f"serving {served} at {url} (the page; API docs at {url}docs); Ctrl-C stops", flush=True)
        if opts.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"warning: listening on {opts.host}: other machines can reach this server; it has no "
                  "authentication", file=sys.stderr, flush=True)

    run_server(runs, host=opts.host, port=opts.port, limits=limits, batching=opts.batching,
               window=opts.batch_window_ms / 1000, threads=opts.threads, log_level=opts.log_level, ready=ready)
    return 0
