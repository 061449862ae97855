"""stackrnn.runtime: a folder written by `stackrnn export --format onnx`, run with onnxruntime and numpy alone.

    from stackrnn import runtime
    lm = runtime.load("exported/")                 # the task's class: LanguageModel, Classifier or Translator
    lm.generate("The time ", length=100, temperature=0)
    runtime.load("sentiment/").predict(["I like food"])
    runtime.load("fr-en/").translate(["je suis content ."])
    runtime.load("sales/").forecast([values_a, values_b], ["a", "b"], samples=200)   # forecasters

For deployment where torch is too big: this module imports no torch (nor does `import stackrnn.runtime`), only
numpy, onnxruntime and the project's tokenizers (and, for forecasters, its calendar features, numpy alone). The results are the PyTorch run's for the same inputs: the same
text from greedy generation, the same labels and probabilities (within the export's parity tolerance), the same
greedy translations. Sampling with temperature draws from numpy's generator, so a seed gives the same text every
time here, but not the text `stackrnn generate --seed` gives (torch's generator draws other numbers). Likewise a
forecaster's quantile head gives the PyTorch run's quantiles, while a distribution head's paths are drawn here
by numpy (each series from its own seeded stream): other paths than PyTorch's, from the same distributions.

Dimension key: T time, B batch, S source steps, V vocabulary.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .data.parallel import prepare_sentence, words
from .data.tokenizers import Tokenizer
from .errors import InputError
from .search import GreedyOutputs, length_limits

MANIFEST = "export.json"


def load(path: str | Path, *, providers: Sequence[str] = ("CPUExecutionProvider",)) -> Exported:
    """The exported model in the folder `path`, as its task's class; `providers`: onnxruntime's execution providers."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path} has no {MANIFEST}: give a folder written by stackrnn export --format onnx") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{path / MANIFEST} cannot be read ({e}): export the run again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "stackrnn.export" or manifest.get("version") != 1:
        raise InputError(f"{path / MANIFEST} is not a stackrnn export of version 1: export the run again")
    if manifest.get("exported_as") != "onnx":
        raise InputError(f"{path} holds a {manifest.get('exported_as')} export; the runtime runs onnx ones: "
                         "stackrnn export RUN --format onnx --out DIR")
    return TASKS[manifest["task"]](path, manifest, list(providers))


class Exported:
    """An exported model: its graphs as onnxruntime sessions and its manifest (export.json).

    Attributes: path, task, manifest (the JSON: graphs' inputs and outputs, preprocessing, the run's config).
    """

    task: str

    def __init__(self, path: Path, manifest: dict, providers: list[str]) -> None:
        import onnxruntime

        self.path, self.manifest = path, manifest
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self.sessions = {name: onnxruntime.InferenceSession(str(path / g["file"]), options, providers=providers)
                         for name, g in manifest["graphs"].items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def run(self, graph: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        """One call of a graph: its inputs by name -> its outputs by name."""
        names = [o["name"] for o in self.manifest["graphs"][graph]["outputs"]]
        return dict(zip(names, self.sessions[graph].run(names, inputs)))

    def specs(self, graph: str, kind: str, prefix: str) -> list[dict]:
        """The graph's inputs or outputs whose names start with `prefix`."""
        return [s for s in self.manifest["graphs"][graph][kind] if s["name"].startswith(prefix)]


def pad(sequences: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token id lists -> right-padded ids (T, B) int64 and lengths (B,) int64."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    ids = np.full((int(lengths.max()), len(sequences)), pad_id, dtype=np.int64)
    for b, s in enumerate(sequences):
        ids[: len(s), b] = s
    return ids, lengths


def _texts(texts: str | Sequence[str], name: str) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Sequence) or not texts or not all(isinstance(t, str) for t in texts):
        raise InputError(f"{name}: expected a string or a non-empty list of strings")
    return list(texts)


# -- language models ------------------------------------------------------------------------------------------------
class LanguageModel(Exported):
    """generate(prefix, ...) as LanguageModelRun.generate; forward(tokens, lengths, state) one call of the graph,
    the state carried by the caller (a dict of arrays, "state.0.h" ...) for step-by-step use."""

    task = "lm"

    def __init__(self, path: Path, manifest: dict, providers: list[str]) -> None:
        super().__init__(path, manifest, providers)
        self.tokenizer = Tokenizer.from_dict(manifest["preprocess"]["tokenizer"])

    def zero_state(self, batch: int) -> dict[str, np.ndarray]:
        """The all-zeros state of `batch` sequences: {"state.0.h": (K, B, P), ...}."""
        return {s["name"]: np.zeros([batch if d == "B" else d for d in s["shape"]], dtype=np.float32)
                for s in self.specs("model", "inputs", "state.")}

    def forward(self, tokens: np.ndarray, lengths: np.ndarray | None = None, state: dict | None = None
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """tokens (T, B) ids, lengths (B,) (default: all T), state (default: zeros) -> logits (T, B, V) and the
        state after each sequence's last valid step."""
        tokens = np.asarray(tokens, dtype=np.int64)
        steps, batch = tokens.shape
        lengths = np.full(batch, steps, dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
        out = self.run("model", tokens=tokens, lengths=lengths, **(state or self.zero_state(batch)))
        new = {name.removeprefix("new_"): value for name, value in out.items() if name.startswith("new_state.")}
        return out["logits"], new

    def generate(self, prefix: str | Sequence[str], length: int = 200, *, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int | None = None) -> str | list[str]:
        """Continue `prefix` (or each of a list, as one batch) by `length` tokens: the prefix and its continuation.
        temperature 0 is greedy: then the text is the PyTorch run's."""
        prefixes = _texts(prefix, "prefix")
        _check_sampling(length, temperature, top_k, top_p)
        ids = []
        for p in prefixes:
            unknown = self.tokenizer.unknown_tokens(p)
            if unknown:
                raise InputError(f"prefix {p!r}: {len(unknown)} token(s) not in the model's vocabulary "
                                 f"({', '.join(map(repr, unknown[:10]))}): use only tokens seen in training")
            ids.append(self.tokenizer.encode(p))
            if not ids[-1]:
                raise InputError(f"prefix {p!r}: is empty after tokenization: give at least one token")
        rng = np.random.default_rng(seed)
        tokens, lengths = pad(ids, 0)
        logits, state = self.forward(tokens, lengths)
        logits = logits[lengths - 1, np.arange(len(ids))]  # (B, V) after each prompt's last token
        new = []
        for t in range(length):
            chosen = sample(logits, temperature, top_k, top_p, rng)  # (B,)
            new.append(chosen)
            if t + 1 < length:
                out, state = self.forward(chosen[None, :], np.ones(len(ids), dtype=np.int64), state)
                logits = out[0]
        joiner = "" if self.tokenizer.level == "char" else " "
        texts = [p + joiner + self.tokenizer.decode([int(n[b]) for n in new]) for b, p in enumerate(prefixes)]
        return texts[0] if isinstance(prefix, str) else texts


def sample(logits: np.ndarray, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
           rng: np.random.Generator | None = None) -> np.ndarray:
    """One token per row of logits (B, V) -> (B,), as stackrnn.generate.sample draws (numpy's generator)."""
    if temperature == 0:
        return logits.argmax(axis=-1)
    logits = logits.astype(np.float64) / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = np.sort(logits, axis=-1)[:, -top_k][:, None]  # (B, 1)
        logits = np.where(logits < kth, -np.inf, logits)
    if top_p < 1.0:
        order = np.argsort(-logits, axis=-1, kind="stable")
        probs = _softmax(np.take_along_axis(logits, order, axis=-1))
        # drop a token when the tokens before it already reach top_p; the most likely token always stays
        drop_sorted = np.cumsum(probs, axis=-1) - probs >= top_p
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)
        logits = np.where(drop, -np.inf, logits)
    cdf = np.cumsum(_softmax(logits), axis=-1)  # (B, V)
    u = (rng or np.random.default_rng()).random((cdf.shape[0], 1)) * cdf[:, -1:]
    index = np.array([np.searchsorted(row, x, side="right") for row, x in zip(cdf, u[:, 0])])
    return np.minimum(index, cdf.shape[-1] - 1)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _check_sampling(length: int, temperature: float, top_k: int, top_p: float) -> None:
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise InputError(f"length: expected an integer >= 1, got {length!r}")
    if not all(math.isfinite(v) for v in (temperature, top_p)) or temperature < 0:
        raise InputError(f"temperature: expected a finite number >= 0 (0 is greedy), got {temperature}")
    if top_k < 0:
        raise InputError(f"top_k: expected an integer >= 0 (0 keeps every token), got {top_k}")
    if not 0 < top_p <= 1:
        raise InputError(f"top_p: expected a number in (0, 1], got {top_p}")


# -- classifiers ----------------------------------------------------------------------------------------------------
class Classifier(Exported):
    """predict(texts) as ClassifierRun.predict: {"text", "label", "probabilities": {label: p}} per text."""

    task = "classify"
    #: texts per call of the graph
    batch_size = 64

    def __init__(self, path: Path, manifest: dict, providers: list[str]) -> None:
        super().__init__(path, manifest, providers)
        pre = manifest["preprocess"]
        self.tokenizer, self.labels = Tokenizer.from_dict(pre["tokenizer"]), list(pre["labels"])
        self.max_length = pre.get("max_length")

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """(N, C) every label's probability for each text."""
        ids = [self.tokenizer.encode(t)[: self.max_length] or [self.tokenizer.unk_id] for t in texts]
        out = []
        for at in range(0, len(ids), self.batch_size):
            tokens, lengths = pad(ids[at: at + self.batch_size], self.tokenizer.pad_id)
            out.append(self.run("model", tokens=tokens, lengths=lengths)["probabilities"])
        return np.concatenate(out)

    def predict(self, texts: str | Sequence[str]) -> dict | list[dict]:
        batch = _texts(texts, "texts")
        for i, text in enumerate(batch):
            if not text.strip():
                raise InputError(f"text {i + 1} is empty: give some words to classify")
        probs = self.probabilities(batch)
        results = [{"text": t, "label": self.labels[int(p.argmax())],
                    "probabilities": {label: round(float(q), 6) for label, q in zip(self.labels, p)}}
                   for t, p in zip(batch, probs)]
        return results[0] if isinstance(texts, str) else results


# -- translators ----------------------------------------------------------------------------------------------------
class Translator(Exported):
    """translate(texts) by greedy search, as TranslatorRun.translate(texts, beam=1); translate_details also gives
    each translation's attention (a row per target word, a column per source word)."""

    task = "translate"
    batch_size = 64

    def __init__(self, path: Path, manifest: dict, providers: list[str]) -> None:
        super().__init__(path, manifest, providers)
        pre = manifest["preprocess"]
        self.source_tokenizer = Tokenizer.from_dict(pre["source_tokenizer"])
        self.target_tokenizer = Tokenizer.from_dict(pre["target_tokenizer"])
        self.normalize, self.lower = pre["normalize"], pre["lower"]
        self.bos, self.eos, self.pad, self.source_pad = pre["bos"], pre["eos"], pre["pad"], pre["source_pad"]

    def translate(self, texts: str | Sequence[str], *, max_length: int | None = None) -> str | list[str]:
        translations = [r["translation"] for r in self.translate_details(texts, max_length=max_length)]
        return translations[0] if isinstance(texts, str) else translations

    def translate_details(self, texts: str | Sequence[str], *, max_length: int | None = None) -> list[dict]:
        """Each as {"source", "translation", "unknown": [source words read as <unk>], "attention": [[...]]}."""
        batch = _texts(texts, "texts")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
            raise InputError(f"max_length: expected an integer >= 1, got {max_length!r}")
        prepared = [prepare_sentence(t, normalize=self.normalize, lower=self.lower) for t in batch]
        for i, p in enumerate(prepared):
            if not words(p):
                raise InputError(f"sentence {i + 1} is empty: give some words to translate")
        ids = [self.source_tokenizer.encode(p) for p in prepared]
        results = []
        for at in range(0, len(ids), self.batch_size):
            results += self._greedy(ids[at: at + self.batch_size], max_length)
        return [{"source": t, "translation": " ".join(self.target_tokenizer.itos[i] for i in hyp),
                 "unknown": self.source_tokenizer.unknown_tokens(p), "attention": attention}
                for t, p, (hyp, attention) in zip(batch, prepared, results)]

    def _greedy(self, ids: list[list[int]], max_length: int | None) -> list[tuple[list[int], list]]:
        """decode.greedy_search: encode once, then one decoder step per token; <pad> and <bos> never chosen."""
        source, lengths = pad(ids, self.source_pad)
        limits = length_limits(lengths, max_length)
        carried = self.run("encoder", source=source, lengths=lengths)
        batch = len(ids)
        tokens = np.full(batch, self.bos, dtype=np.int64)
        outputs = GreedyOutputs(limits)
        attention: list[list] = [[] for _ in range(batch)]
        for _ in range(max(limits)):
            step = self.run("decoder", tokens=tokens, **carried)
            logits = step["logits"].astype(np.float32)
            logits[:, [self.pad, self.bos]] = -np.inf
            tokens = logits.argmax(axis=-1).astype(np.int64)  # (B,)
            for name in carried:  # the new state and feed replace the old; the memory stays
                carried[name] = step.get(f"new_{name}", carried[name])
            for b in outputs.add(tokens.tolist(), self.eos):
                if "attention" in step:
                    attention[b].append(step["attention"][: lengths[b], b].astype(np.float64).round(6).tolist())
            if outputs.finished:
                break
        return list(zip(outputs.out, attention))


# -- forecasters ----------------------------------------------------------------------------------------------------
class Forecaster(Exported):
    """forecast(past, series, ...) as ForecasterRun.forecast, from values the caller gives: every series' past values
    (the last past_length of them are read) -> its median, mean and quantiles of the next `horizon` steps.
    point(...) is the deterministic forecast (Forecaster.forward's): the quantile head's median, or the path
    that feeds back each step's mean.

    The time features are built here as the training data's were (stackrnn.data.calendar): calendar features of
    each step's timestamp, counted from the series' first timestamp (its start in the training data, or `start`),
    or the position in each season, counted from the series' first value. Dimension key: B series, N sample paths,
    L past steps, H horizon, F time features, K lags, Q quantiles."""

    task = "forecast"

    def __init__(self, path: Path, manifest: dict, providers: list[str]) -> None:
        super().__init__(path, manifest, providers)
        pre = self.preprocess = manifest["preprocess"]
        self.series, self.freq, self.horizon = list(pre["series"]), pre["freq"], int(pre["horizon"])
        self.past_length, self.lags, self.head = int(pre["past_length"]), [int(x) for x in pre["lags"]], pre["head"]
        self.quantiles, self.seed = [float(q) for q in pre["quantiles"]], int(pre.get("seed", 0))
        self.rows = {s: i for i, s in enumerate(self.series)}

    # -- inputs ---------------------------------------------------------------------------------------------
    def _rows(self, series: list[str]) -> list[int]:
        unknown = [s for s in series if s not in self.rows]
        if unknown and self._has_embedding():
            raise InputError(f"series {unknown[0]!r} is not one the model was trained on (it knows "
                             f"{len(self.series)}: {', '.join(self.series[:5])}{' ...' if len(self.series) > 5 else ''})")
        return [self.rows.get(s, 0) for s in series]

    def _has_embedding(self) -> bool:
        return int(self.manifest["config"]["model"].get("embedding_size", 0)) > 0

    def features(self, series: str, first: int, n: int, start=None) -> np.ndarray:
        """(n, F) the time features of steps first .. first + n - 1 of `series` (step 0: its first value, at
        `start` or its first timestamp in the training data)."""
        from .data.calendar import calendar_features, date_range, phase_features

        pre = self.preprocess
        if pre["time_features"] == "calendar":
            if start is None:
                if series not in (pre["starts"] or {}):
                    raise InputError(f"series {series!r}: its features are calendar features, and the model does not "
                                     "know its first timestamp: give start=[...] (each series' first timestamp)")
                start = pre["starts"][series]
            stamp = np.datetime64(start, "s") if not isinstance(start, str) else _timestamp(start)
            return calendar_features(date_range(stamp, self.freq, first + 1)[-1], self.freq, n)
        offset = first + (int(start) if start is not None else 0)
        parts = [phase_features(n, p, offset) for p in pre["periods"]]
        return np.concatenate(parts, 1) if parts else np.zeros((n, 0))

    def inputs(self, past: Sequence, series: Sequence[str], horizon: int, start: Sequence | None = None,
               covariates: Sequence | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The graphs' inputs: past (B, L) float32 (the last L values of each), time (B, L + H, F) float32 (H the
        trained horizon: a shorter one is cut from the outputs), series (B,) int64."""
        L, H, pre = self.past_length, self.horizon, self.preprocess
        rows = np.array(self._rows(list(series)), dtype=np.int64)
        pasts, times = [], []
        for b, (values, name) in enumerate(zip(past, series)):
            values = np.asarray(values, dtype=np.float64)
            if values.ndim != 1 or len(values) < L:
                raise InputError(f"series {name!r}: expected at least {L} past values (context {pre['context']} + "
                                 f"largest lag {max(self.lags)}) as a list of numbers, got {values.shape}")
            first = len(values) - L
            feats = self.features(name, first, L + H, None if start is None else start[b])
            if pre["covariates"]:
                if covariates is None:
                    raise InputError(f"the model reads covariates ({', '.join(pre['covariates'])}): give covariates=[...] "
                                     "(each series' values and its horizon's, (len(past) + horizon, C))")
                cov = np.asarray(covariates[b], dtype=np.float64).reshape(-1, len(pre["covariates"]))
                if len(cov) < len(values) + H:
                    raise InputError(f"series {name!r}: covariates for {len(values) + H} steps (its past and the "
                                     f"{H} steps of the trained horizon) are needed, got {len(cov)}")
                feats = np.concatenate([feats, cov[first:first + L + H]], 1)
            pasts.append(values[-L:])
            times.append(feats)
        return np.stack(pasts).astype(np.float32), np.stack(times).astype(np.float32), rows

    def _arguments(self, past, series, horizon):
        if isinstance(series, str):
            past, series = [past], [series]
        series = list(series)
        if not series or len(past) != len(series) or not all(isinstance(s, str) for s in series):
            raise InputError(f"series: expected one id per past series ({len(past)}), got {series!r}")
        H = self.horizon if horizon is None else horizon
        if isinstance(H, bool) or not isinstance(H, int) or not 1 <= H <= self.horizon:
            raise InputError(f"horizon: the model was trained to forecast {self.horizon} steps; give 1 to "
                             f"{self.horizon}, got {horizon!r}")
        return past, series, H

    # -- forecasting ----------------------------------------------------------------------------------------
    def forecast(self, past, series, *, horizon: int | None = None, samples: int = 100, seed: int | None = None,
                 start: Sequence | None = None, covariates: Sequence | None = None) -> dict | list[dict]:
        """Forecast each series `horizon` steps (default: the trained horizon) after its `past` values.

        past: a series' values (a list or 1-D array; NaN where missing) and `series` its id, or a list of each.
        samples: sample paths per series (distribution heads). seed: each series' paths come from numpy's
        generator seeded by (seed, the series' row), so a series' forecast is the same alone and among others
        (default: the run's train.seed). start: each series' first timestamp (calendar features) or the step
        count of its first value (season positions), when the values do not begin where the training data did.
        Returns {"series", "median", "mean", "quantiles": {level: values}, "timestamps" (calendar features: of
        the forecast steps, else None), and a distribution head's "paths" (N, H)} per series (one dict for one
        id)."""
        single = isinstance(series, str)
        if single:
            start, covariates = (None if start is None else [start]), (None if covariates is None else [covariates])
        past, names, H = self._arguments(past, series, horizon)
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise InputError(f"samples: expected an integer >= 1, got {samples!r}")
        x, time, rows = self.inputs(past, names, H, start, covariates)
        if self.head == "quantile":
            q = self.run("model", past=x, time=time, series=rows)["quantiles"][:, :H].astype(np.float64)  # (B, H, Q)
            median = q[..., self.preprocess["median_index"]]
            out = {"quantiles": q, "median": median, "mean": median}
        else:
            paths = self._paths(x, time, H, samples, self.seed if seed is None else seed, rows, names)  # (B, N, H)
            out = {"quantiles": np.quantile(paths, self.quantiles, axis=1).transpose(1, 2, 0),
                   "median": np.quantile(paths, 0.5, axis=1), "mean": paths.mean(1), "paths": paths}
        results = []
        for b, name in enumerate(names):
            stamps = None
            if self.preprocess["time_features"] == "calendar":
                from .data.calendar import date_range

                first = (start[b] if start is not None else self.preprocess["starts"][name])
                stamp = np.datetime64(first, "s") if not isinstance(first, str) else _timestamp(first)
                n = len(past[b])  # (at the frequency's own precision, as ForecasterRun.forecast gives them)
                stamps = [str(t) for t in np.datetime_as_string(date_range(stamp, self.freq, n + H)[n:],
                                                                 unit=_STAMP_UNITS[self.freq])]
            results.append({"series": name, "median": out["median"][b], "mean": out["mean"][b], "timestamps": stamps,
                            "quantiles": {lv: out["quantiles"][b, :, j] for j, lv in enumerate(self.quantiles)},
                            **({"paths": out["paths"][b]} if "paths" in out else {})})
        return results[0] if single else results

    def point(self, past, series, *, horizon: int | None = None, start: Sequence | None = None,
              covariates: Sequence | None = None) -> np.ndarray:
        """(B, H) the deterministic forecast, as Forecaster.forward gives it: the quantile head's median, or a
        distribution head's path that feeds back the mean of each step's distribution."""
        if isinstance(series, str):
            start, covariates = (None if start is None else [start]), (None if covariates is None else [covariates])
        past, names, H = self._arguments(past, series, horizon)
        x, time, rows = self.inputs(past, names, H, start, covariates)
        if self.head == "quantile":
            q = self.run("model", past=x, time=time, series=rows)["quantiles"]
            return q[:, :H, self.preprocess["median_index"]].astype(np.float64)
        return self._steps(x, time, rows, H, repeat=1, draw=None)[:, 0]

    def _paths(self, x, time, H: int, N: int, seed: int, rows, names: list[str]) -> np.ndarray:
        """(B, N, H) sample paths: the context read once, then the B * N rows stepped together, each step's draw
        (numpy's, from each series' own generator, seeded by (seed, the CRC-32 of its id)) the next step's lag-1
        value."""
        import zlib

        generators = [np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))]) for name in names]
        return self._steps(x, time, rows, H, repeat=N, draw=lambda params: self._draw(params, generators, N))

    def _steps(self, x, time, rows, H: int, repeat: int, draw) -> np.ndarray:
        """(B, N, H) paths of the step graph from the encoder's state: each step's value is `draw(params)` (B * N,)
        in the scaled units, or with draw None the distribution's mean."""
        L, B = self.past_length, len(rows)
        enc = self.run("encoder", past=x, time=time[:, :L], series=rows)
        rep = lambda a, axis=0: np.repeat(a, repeat, axis=axis)  # noqa: E731  (a series' rows together)
        buffer = np.concatenate([rep(enc["values"]), np.zeros((B * repeat, H), np.float32)], 1)  # (B * N, L + H)
        static, scale, loc = rep(enc["static"]), rep(enc["scale"]), rep(enc["loc"])
        state = {s["name"]: rep(enc[s["name"]], 1) for s in self.specs("step", "inputs", "state.")}  # (K, B * N, P)
        extra = {"scale": scale} if self.head == "negative_binomial" else {}
        lags = np.array(self.lags)
        for h in range(H):
            out = self.run("step", lagged=buffer[:, L + h - lags], time=rep(time[:, L + h]), static=static, **extra,
                           **state)
            value = out["mean"] if draw is None else draw(out)
            if self.head == "negative_binomial" and draw is not None:
                value = value / scale[:, 0]
            buffer[:, L + h] = value
            state = {name.removeprefix("new_"): v for name, v in out.items() if name.startswith("new_state.")}
        return (buffer[:, L:].astype(np.float64) * scale + loc).reshape(B, repeat, H)

    def _draw(self, params: dict, generators: list, N: int) -> np.ndarray:
        """One draw per row (B * N,) from each row's distribution: Student-t, Gaussian (scaled values) or
        negative binomial (counts), each series' N rows from its own generator."""
        out = []
        for b, rng in enumerate(generators):
            rows = slice(b * N, (b + 1) * N)
            if self.head == "negative_binomial":
                n = params["total_count"][rows].astype(np.float64)
                p = np.clip(1 / (1 + np.exp(params["logits"][rows].astype(np.float64))), 1e-12, 1.0)
                out.append(rng.negative_binomial(n, p).astype(np.float64))  # numpy's p is torch's 1 - probs
            else:
                z = rng.standard_t(params["df"][rows].astype(np.float64)) if self.head == "student_t" \
                    else rng.standard_normal(N)
                out.append(params["mu"][rows] + params["sigma"][rows] * z)
        return np.concatenate(out).astype(np.float32)


#: the precision of a forecast's timestamps by frequency: 2020-05-30 for daily data, 1961-01 for monthly
_STAMP_UNITS = {"H": "m", "D": "D", "W": "D", "M": "M", "Q": "M", "Y": "Y"}


def _timestamp(text: str) -> np.datetime64:
    from .data.calendar import parse_timestamp

    stamp = parse_timestamp(text)
    if stamp is None:
        raise InputError(f"start: {text!r} is not a timestamp (give an ISO date such as 2020-01-31 or 2020-01-31 13:00)")
    return stamp


TASKS: dict[str, type[Exported]] = {cls.task: cls for cls in (LanguageModel, Classifier, Translator, Forecaster)}
