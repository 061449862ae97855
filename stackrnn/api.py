"""stackrnn from Python: train a run with `fit`, load one with `load`, and use it in a line.

    run = stackrnn.fit("examples/timemachine.toml", max_minutes=2)      # or fit(data="my.txt", hidden_size=512)
    run = stackrnn.load("runs/timemachine-20261206-101500")
    run.generate("The time ", length=100, seed=0)                         # language models
    run.predict(["I like food"])                                           # classifiers
    run.translate(["je suis content ."], beam=5)                           # translators
    run.transcribe(["a.wav", "b.mfc"], beam=8)                             # speech recognisers
    run.evaluate("test")                                                   # what `stackrnn eval` prints

`load` returns the predictor of the run's task: `LanguageModelRun`, `ClassifierRun` or `TranslatorRun`, each a
`Run` (`.model` the torch module in eval mode, `.config` the run's config, `.path`, `.evaluate(split)`,
`.metrics` and `.summary()`). The command line's generate, predict, translate and eval commands call these same
methods, so Python and the CLI give the same results for the same run and seed.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Sequence

import torch
from torch import nn

from .config import check_value, get_path, leaves, options, read_toml, set_path, to_dict
from .errors import InputError, did_you_mean, plural
from .generate import generate
from .inspect import gradients as _gradients  # noqa: F401 (registers train.grad_every's instrument)
from .instruments import Instrument
from .run import BEST, LAST, RunDir
from .summary import Summary, summary as summarize_model
from .tasks import Task, a_run_of
from .train import RunConfig, TrainResult, build_config, choose_device, default_out, open_run, sections, train

WEIGHTS = {"best": BEST, "last": LAST}


class Run:
    """A trained run, loaded for use. Made by `load` (or returned by `fit`); use the subclass of its task.

    Attributes:
        path: the run directory.
        config: the run's whole config (`.model`, `.data`, `.train` sections and `.task`).
        model: the torch module, in eval mode, on `device`.
        task: the run's Task (vocabulary and data handling), for what the methods here do not cover.
        result: what training reported (steps, losses, why it stopped) when the run came from `fit`, else None.
    """

    kind: ClassVar[str]

    def __init__(self, path: Path, config: RunConfig, task: Task, model: nn.Module, device: torch.device) -> None:
        self.path, self.config, self.task, self.model, self.device = path, config, task, model, device
        self.result: TrainResult | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def evaluate(self, split: str = "valid", *, data: str | Path | None = None, **options: Any) -> dict:
        """The figures `stackrnn eval RUN --split SPLIT --json` prints, as a dict. Classifiers and translators
        take `data=PATH` to score a file instead of a split; translators also `beam`, `max_length`,
        `length_penalty` and `examples` (how many translations to return beside their references)."""
        if split not in ("valid", "test"):
            raise InputError(f"split: expected valid or test, got {split!r}")
        if data is not None:
            options["data_path"] = str(data)
        return self.task.evaluate_split(self.model, split, device=self.device, **options)

    @property
    def metrics(self) -> list[dict]:
        """Every record of metrics.jsonl (training and validation figures by step)."""
        return RunDir(self.path).read_metrics()

    def summary(self) -> Summary:
        """The Keras-style table of the run's model (print it)."""
        shape, kwargs = self.task.summary_input()
        return summarize_model(self.model, shape, **kwargs)


class LanguageModelRun(Run):
    kind = "lm"

    @property
    def tokenizer(self):
        return self.task.tokenizer

    def generate(self, prefix: str | Sequence[str], length: int = 200, *, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int | None = None) -> str | list[str]:
        """Continue `prefix` by `length` tokens: the prefix and its continuation. A list of prefixes runs as one
        batch and gives a list. temperature 0 is greedy; the same seed gives the same text."""
        prefixes = _texts(prefix, "prefix")
        texts = generate(self.model, self.tokenizer, prefixes, length, temperature=temperature, top_k=top_k,
                         top_p=top_p, seed=seed)
        return texts[0] if isinstance(prefix, str) else texts


class ClassifierRun(Run):
    kind = "classify"

    @property
    def labels(self) -> list[str]:
        return self.task.labels

    def predict(self, texts: str | Sequence[str]) -> dict | list[dict]:
        """Each text's most probable label and the probability of every label, as
        {"text", "label", "probabilities": {label: p}}; one dict for one text, a list for a list (one batch)."""
        predictions = self.task.predict(self.model, _texts(texts, "texts"), device=self.device)
        return predictions[0] if isinstance(texts, str) else predictions


class TranslatorRun(Run):
    kind = "translate"

    def translate(self, texts: str | Sequence[str], *, beam: int = 5, max_length: int | None = None,
                  length_penalty: float = 0.6) -> str | list[str]:
        """Each sentence's translation, by beam search (greedy with beam=1); one string for one sentence, a list
        for a list. Source words the vocabulary lacks are read as <unk>, with a warning naming them."""
        results = self.translate_details(texts, beam=beam, max_length=max_length, length_penalty=length_penalty)
        translations = [r["translation"] for r in results]
        return translations[0] if isinstance(texts, str) else translations

    def translate_details(self, texts: str | Sequence[str], *, beam: int = 5, max_length: int | None = None,
                          length_penalty: float = 0.6) -> list[dict]:
        """As `translate`, each as {"source", "translation", "unknown": [source words read as <unk>]}."""
        results = self.task.translate(self.model, _texts(texts, "texts"), beam=beam, max_length=max_length,
                                      length_penalty=length_penalty, device=self.device)
        unknown = sorted({w for r in results for w in r["unknown"]})
        if unknown:
            warnings.warn(f"{plural(len(unknown), 'source word')} not in the run's vocabulary and read as <unk>: "
                          f"{', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}", stacklevel=3)
        return results

    def check_attention(self, target: str | None = None) -> None:
        """An InputError now if `draw_attention` could not draw (no matplotlib, no attention, an empty target)."""
        from .plot import check_matplotlib

        check_matplotlib()
        self.task.check_attention(self.model)
        if target is not None:
            self.task.prepare_input([target])

    def draw_attention(self, source: str, path: str | Path, *, target: str | None = None, translation: str | None = None,
                       max_length: int | None = None) -> Path:
        """A PNG heat map at `path` of the attention of each target word over the words of `source`: for
        `target`, else for the model's `translation` (its <eos> row only if it ended before the length limit,
        else the decoder never produced one), else for its greedy translation."""
        from .decode import length_limits
        from .plot import plot_attention

        if target is not None:
            ended = True
        else:
            target = translation if translation is not None else self.translate(source, beam=1, max_length=max_length)
            (prepared,) = self.task.prepare_input([source])
            limit = length_limits(torch.tensor([len(self.task.source_tokenizer.encode(prepared))]), max_length)[0]
            ended = len(target.split()) < limit
        weights, source_words, target_words = self.task.attention_map(self.model, source, target, ended=ended)
        return plot_attention(weights.numpy(), source_words, target_words, path,
                              title=f"{self.path}: attention ({self.model.attention_kind})")


class ForecasterRun(Run):
    kind = "forecast"

    @property
    def series(self) -> list[str]:
        """The ids of the series the run was trained on."""
        return self.task.shape.ids

    def forecast(self, series: str | Sequence[str] | None = None, *, horizon: int | None = None, samples: int = 100,
                 split: str | None = None) -> dict | list[dict]:
        """Forecast `series` (default: every series of the run's data) `horizon` steps (default: the trained
        horizon) after the end of the data, or with split="test" the run's test steps (returned as "actual").
        Each forecast is {"series", "history", "timestamps", "median", "mean", "quantiles": {level: values},
        "actual"}; one dict for one id, a list otherwise. Sample paths come from each series' own seed, so a
        series' forecast is the same alone and among others."""
        if split not in (None, "valid", "test"):
            raise InputError(f"split: expected valid, test or None (the future), got {split!r}")
        if samples < 1:
            raise InputError(f"samples: expected an integer >= 1, got {samples}")
        ids = None if series is None else _texts(series, "series")
        results = self.task.forecast(self.model, ids, horizon=horizon, samples=samples, split=split, device=self.device)
        return results[0] if isinstance(series, str) else results

    def plot(self, forecasts: dict | Sequence[dict], folder: str | Path) -> list[Path]:
        """Fan charts (PNG, one per series) of `forecasts` into `folder`: the history's end, the median, the 80%
        and 95% bands and the actual values where known."""
        from .plot import check_matplotlib, plot_forecast

        check_matplotlib()
        forecasts = [forecasts] if isinstance(forecasts, dict) else list(forecasts)
        return [plot_forecast(f, Path(folder) / f"{_file_name(f['series'])}.png", title=f"{self.path.name}: {f['series']}")
                for f in forecasts]


class SpeechRun(Run):
    kind = "speech"

    @property
    def symbols(self) -> list[str]:
        """The symbols the run writes transcripts in (CTC's blank aside)."""
        return self.task.tokens.symbols

    def transcribe(self, paths: str | Path | Sequence[str | Path], *, beam: int = 1,
                   stream: float | None = None) -> dict | list[dict]:
        """Transcribe audio (.wav) or feature (.mfc, .npy) files: each {"path", "transcript", "tokens"}, with
        best path (beam 1, the default) every token's time and probability, else prefix beam search of width
        `beam` (tokens None); one dict for one path, a list otherwise. A file is transcribed the same alone and
        among others. With `stream` (milliseconds), a unidirectional run reads each file in chunks of about
        that long, carrying its state, with the same result as the whole file at once."""
        single = isinstance(paths, (str, Path))
        files = [str(paths)] if single else [str(p) for p in paths]
        if not files:
            raise InputError("paths: give at least one audio or feature file to transcribe")
        results = self.task.transcribe(self.model, files, beam=beam, stream=stream, device=self.device)
        return results[0] if single else results

    def draw_layers(self, path: str | Path, image: str | Path) -> Path:
        """A PNG heat map at `image` of every layer's outputs over the frames of the audio or feature file
        `path`, with the CTC posteriors on top (needs matplotlib)."""
        from .ctc import best_path
        from .plot import check_matplotlib, plot_speech_layers

        check_matplotlib()
        layers, log_probs, seconds = self.task.layer_outputs(self.model, str(path), device=self.device)
        transcript = self.task.tokens.decode(best_path(log_probs)[0])
        return plot_speech_layers([x.numpy() for x in layers], log_probs.numpy(), self.symbols, image, seconds,
                                  title=f"{Path(path).name}: {transcript!r}")


def _file_name(name: str) -> str:
    """A series id as a safe file name (ids come from user files)."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))[:100] or "series"


RUN_CLASSES: dict[str, type[Run]] = {cls.kind: cls for cls in (LanguageModelRun, ClassifierRun, TranslatorRun,
                                                                 ForecasterRun, SpeechRun)}


def load(path: str | Path, *, weights: str = "best", device: str | torch.device = "cpu", task: str | None = None) -> Run:
    """Load the run directory `path` for use: the predictor of its task, with the best-by-validation weights
    (`weights="last"` for the last checkpoint) on `device` ("cpu", "cuda", "auto", ...). With `task` ("lm",
    "classify", "translate"), a run of another task is refused with a clear message."""
    if weights not in WEIGHTS:
        raise InputError(f"weights: expected best or last, got {weights!r}")
    device = _device(device)
    config, kind, model = open_run(path, WEIGHTS[weights], device, task=task)
    return RUN_CLASSES[config.task](Path(path), config, kind, model, device)


def fit(config: str | Path | dict | RunConfig | None = None, data: str | Path | None = None,
        out: str | Path | None = None, *, task: str | None = None, resume: bool = False, progress: bool | None = None,
        callbacks: Iterable[Callable[[dict], None]] = (), instruments: Iterable[Instrument] = (),
        **overrides: Any) -> Run:
    """Train a run from Python, as `stackrnn train` does, and return it loaded (best weights, on the CPU).

    Args:
        config: a TOML file (see examples/), its tables as a dict ({"model": {...}, "train": {...}}), a RunConfig,
            or None for the defaults (a character LSTM on the embedded corpus).
        data: a local data file or folder (the config's data.data); a named corpus goes as dataset="...".
        out: the new run directory (default: runs/NAME-DATE-TIME), or with `resume` the run to continue.
        task: lm, classify or translate, when the config does not say.
        progress: show a progress bar (tqdm: a bar in a terminal, a widget in a notebook); None follows
            the config's train.progress.
        callbacks: functions called with every record written to metrics.jsonl (a dict with "step", "split" and
            the figures), for custom logging.
        instruments: objects that look inside the training steps and log what they see (see
            stackrnn.instruments; grad_every=N's gradient probe is one, added by the config).
        **overrides: any config field by name, as the command line's options: hidden_size=512, epochs=3,
            max_minutes=2, lr=1e-3 (each field belongs to one section; see `stackrnn train --help`).
    """
    if resume and (out is None or config is not None or data is not None):
        raise InputError("resume: name the run to continue with out=RUN, and leave out config and data")
    if data is not None:
        overrides = {**overrides, "data": str(data)}
    if resume:  # the keywords are checked against the run's own task
        task = task or RunConfig.of_run(RunDir.open(out, need=("config.toml",))).task
    cfg, out = run_config(config, _sectioned(overrides, task or _task_of(config)), task=task,
                          resume=out if resume else None, out=out)
    result = train(cfg, out, resume=resume, progress=progress, callbacks=tuple(callbacks),
                   instruments=tuple(instruments))
    run = load(result.run)
    run.result = result
    return run


#: what resuming a run may change: how much longer to train, and how it looks
RESUMABLE = {"train.epochs", "train.max_minutes", "train.max_steps", "train.progress", "train.sample_prefix",
             "train.sample_length", "train.device", "train.tensorboard", "train.threads"}


def run_config(config: str | Path | dict | RunConfig | None, overrides: dict[str, dict], *, task: str | None = None,
               resume: str | Path | None = None, out: str | Path | None = None) -> tuple[RunConfig, str | Path]:
    """The config a training run starts with, and its directory: `config` (a TOML file, its tables or a
    RunConfig; None for the defaults) under `overrides` ({section: {field: value}}), into `out` (default:
    runs/NAME-DATE-TIME). With `resume` RUN, that run's own config, of which the overrides may change only what
    RESUMABLE names; giving a value the run already has is no change (the same command line again works)."""
    if resume is None:
        cfg = _config(config, overrides, task)
        return cfg, out if out is not None else default_out(cfg)
    cfg = RunConfig.of_run(RunDir.open(resume, need=("config.toml",)))
    if task is not None and task != cfg.task:
        raise InputError(f"--resume keeps the run's task ({cfg.task}): leave out --task {task}")
    changed = {".".join(path): (path, v) for path, v in leaves(overrides) if not _same_value(get_path(cfg, path), v, path[0])}
    refused = sorted(set(changed) - RESUMABLE)
    if refused:
        raise InputError(f"--resume keeps the run's config; these options would change it: {', '.join(refused)}. "
                         f"Only {', '.join(sorted(RESUMABLE))} may change")
    for path, value in changed.values():
        setattr(get_path(cfg, path[:-1]), path[-1], value)
    cfg.train.validate()
    return cfg, resume


def _same_value(old, new, section: str) -> bool:
    """Whether an option's value is the run's: a run keeps its data paths absolute, so a relative one is compared
    as the absolute path it names."""
    from .data.pipeline import absolute

    return new == old or (section == "data" and isinstance(new, str) and isinstance(old, str) and absolute(new) == old)


def _task_of(config) -> str:
    """The task a config names (the default task without one), before its overrides can be checked."""
    if isinstance(config, RunConfig):
        return config.task
    tables = config if isinstance(config, dict) else read_toml(config) if config is not None else {}
    return tables.get("task", "lm")


def _device(device: str | torch.device) -> torch.device:
    if device == "auto":
        return choose_device(device)
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device: expected auto, cpu, cuda, cuda:N or mps, got {device!r}") from None


def _config(config, overrides: dict, task: str | None) -> RunConfig:
    """The config `fit` trains: `config` (a file, its tables or a RunConfig) under the overrides' tables."""
    if isinstance(config, RunConfig):
        config = {"task": config.task, **{s: to_dict(getattr(config, s)) for s in ("model", "data", "train")}}
    if isinstance(config, dict):
        tables, where = config, "config"
    else:
        tables, where = ({}, "options") if config is None else (read_toml(config), str(config))
    return build_config(tables, overrides, task, where=where)


def _sectioned(overrides: dict, task: str) -> dict[str, dict]:
    """Keyword overrides named as the command line's options ({"hidden_size": 512}) as checked tables of `task`'s
    config ({"model": {"stack": {"hidden_size": 512}}})."""
    owners = {o.name: (section, o) for section, cls in sections(task).items() for o in options(cls)}
    tables: dict[str, dict] = {}
    for name, value in overrides.items():
        if name not in owners:
            raise InputError(f"{name}: not a config field of {a_run_of(task)}{did_you_mean(name, owners, str)}; see "
                             f"`stackrnn train --task {task} --help`")
        section, o = owners[name]
        set_path(tables.setdefault(section, {}), o.path, check_value(o.owner, o.path[-1], value, section, label=name))
    return tables


def _texts(texts: str | Sequence[str], name: str) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise InputError(f"{name}: expected a string or a list of strings, got {type(texts).__name__}")
    if not texts:
        raise InputError(f"{name}: expected at least one text, got an empty list")
    return list(texts)


def summary(model: nn.Module | Run | str | Path, input_size: tuple[int, ...] | None = None, **kwargs: Any) -> Summary:
    """A Keras-style table of a model's layers: `summary(model, input_size, dtype=..., **forward_kwargs)` for any
    torch module (see stackrnn.summary.summary), or `summary(run)` for a trained run (a Run or its directory)."""
    if isinstance(model, (str, Path)):
        model = load(model)
    if isinstance(model, Run):
        if input_size is not None or kwargs:
            raise InputError("summary(run): a run's input shape comes from its config; give no input_size")
        return model.summary()
    if input_size is None:
        raise InputError("summary(model, input_size): give the input's shape, e.g. (T, B, D) for a StackedRNN")
    return summarize_model(model, input_size, **kwargs)
