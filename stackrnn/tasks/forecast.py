"""Time-series forecasting as a task of the training loop: many series -> random training windows drawn from
all of them -> one Forecaster (models/forecaster.py), judged by the M4 competition's own metrics beside its
baselines (naive, seasonal naive, Naive2; Theta and ETS where statsmodels is installed).

Every series is cut the same way (H the horizon):

    |---------------- training part ----------------|-- valid (H) --|-- test (H) --|
                                                                    ^ the test file's values instead, when given

Training windows are drawn from the training part only; validation forecasts the H values after it from all
that comes before, and the test split the H values after that (or a test file's, M4's Hourly-test.csv) from the
whole series. `stackrnn forecast` forecasts the future after the whole series (or, with split="test", the test
values, to draw them beside the forecast).

Dimension key: B series or windows, L past steps the model reads (context + largest lag), H horizon, F time
features, Q quantiles, N sample paths.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ..config import option
from ..data.batching import Replayable, epoch_seed
from ..data.calendar import SEASONALITY, calendar_features, check_freq, date_range, phase_features
from ..data.pipeline import absolute
from ..data.series import SERIES_FORMATS, SeriesSet, read_series, read_wide_test, series_format
from ..errors import InputError, plural
from ..forecasting import metrics
from ..forecasting.baselines import available_baselines, forecast_all
from ..models.forecaster import DISTRIBUTIONS, Forecaster, ForecasterConfig
from ..run import RunDir
from .base import Batches, Step, Task

SERIES = "series.json"
#: a week, in hours: the second season of hourly data (M4's winner and DeepAR both use it)
_WEEK_HOURS = 168
#: eval scores ETS by default up to this many series (M4 Hourly's 414 fits take minutes; pass baselines to force it)
_ETS_SERIES = 100


@dataclass
class ForecastDataConfig:
    """[data] of a forecasting run: the series, their frequency, the horizon and the windows the model reads."""

    data: str | None = option(None, "the series: a long CSV (series id, timestamp, value, covariates), a wide CSV as M4 "
                              "ships it (an id column, then the values), or one series (timestamp, value)")
    test_data: str | None = option(None, "the values after each series (M4's Hourly-test.csv); default: the last "
                                   "horizon values of each series are the test split")
    format: str = option("auto", "file format; auto: a first column V1 is wide, two columns a single series, else long",
                         choices=SERIES_FORMATS)
    id_column: str | None = option(None, "long format: the column of series ids (default: series)")
    time_column: str | None = option(None, "long and single formats: the column of timestamps (default: timestamp; a "
                                     "single series' first column)")
    value_column: str | None = option(None, "long and single formats: the column of values (default: value; a single "
                                      "series' second column)")
    covariates: list = option([], "long format: columns of covariates known in the future, fed at every step", cli=False)
    freq: str | None = option(None, "H, D, W, M, Q or Y; default: inferred from the timestamps (give it for a file "
                              "without any, such as M4's)")
    seasonality: int = option(0, "season length m, for MASE, the seasonal baselines and the default lags; 0: from "
                              "the frequency (H 24, D 7, W 52, M 12, Q 4, Y 1)", within="[0, inf)")
    horizon: int = option(0, "steps to forecast (M4 Hourly: 48); 0: two seasons", within="[0, inf)")
    context_length: int = option(0, "steps the model reads before the forecast origin; 0: the larger of the horizon "
                                 "and three seasons", within="[0, inf)")
    lags: list | None = option(None, "lags of the value fed at every step (1 is the previous value); default: 1, the "
                               "season, and for hourly data also a week (168)", cli=False)
    batch_size: int = option(64, "training windows per batch", within="[1, inf)")
    windows_per_epoch: int = option(12800, "random training windows drawn from all series per epoch", within="[1, inf)")
    eval_samples: int = option(100, "sample paths per series when a distribution head forecasts for evaluation",
                               within="[1, inf)")

    def validate(self) -> None:
        check_freq(self.freq, "data.freq")
        if self.lags is not None and (not self.lags or not all(isinstance(x, int) and not isinstance(x, bool)
                                                               and x >= 1 for x in self.lags)):
            raise InputError(f"data.lags: expected a list of whole numbers >= 1, e.g. [1, 24, 168], got {self.lags!r}")
        if not all(isinstance(c, str) for c in self.covariates):
            raise InputError(f"data.covariates: expected a list of column names, got {self.covariates!r}")


@dataclass
class Shape:
    """What the run's model is fitted to, saved in series.json so a loaded run needs no data to be rebuilt."""

    ids: list[str]
    freq: str | None
    season: int
    horizon: int
    context: int
    lags: list[int]
    timestamps: bool  # whether time features are calendar features (else positions in the season)
    covariates: list[str]

    @property
    def time_features(self) -> int:
        return time_feature_count(self.freq, self.season, self.timestamps) + len(self.covariates)


def time_feature_count(freq: str | None, season: int, timestamps: bool) -> int:
    """F without covariates: the calendar features of `freq`, or one position per season (a day and a week for
    hourly data)."""
    if timestamps:
        return calendar_features(np.datetime64("2000-01-01T00:00:00"), freq, 1).shape[1]
    return len(_periods(freq, season))


def _periods(freq: str | None, season: int) -> list[int]:
    return [p for p in (season, _WEEK_HOURS if freq == "H" else 0) if p > 1]


@dataclass
class Window:
    """Forecast problems, one per row: each series' past (L values before the origin), the actual values after it
    (when known), and its time features (L + H, F)."""

    rows: list[int]  # the series' positions in the run's list of series (their embedding ids)
    past: np.ndarray  # (B, L)
    time: np.ndarray  # (B, L + H, F)
    actual: np.ndarray | None  # (B, H)

    def tensors(self, device) -> tuple[torch.Tensor, ...]:
        t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
        return t(self.past), t(self.time), torch.as_tensor(self.rows, device=device)


class Windows(Replayable):
    """One epoch of random training windows: each batch draws series uniformly and an origin uniformly within
    each series' training part, as a function of (seed, epoch, batch) only, so an epoch replays exactly."""

    def __init__(self, task: ForecastTask, seed: int, batches: int) -> None:
        self.task, self.seed, self.count = task, seed, batches

    def __len__(self) -> int:
        return self.count

    def _from(self, start: int) -> Iterator[Window]:
        task = self.task
        L, H, size = task.model_past, task.shape.horizon, task.cfg.data.batch_size
        for b in range(start, self.count):
            rng = np.random.default_rng([self.seed, b])
            rows = rng.integers(0, len(task.train), size)
            ends = [int(rng.integers(L + H, len(task.train[r]) + 1)) for r in rows]  # the window's last value + 1
            yield task.window(rows.tolist(), [e - H for e in ends], task.train, actual=True)


class ForecastTask(Task):
    sections = {"model": ForecasterConfig, "data": ForecastDataConfig}
    unit = "windows"
    files = (SERIES,)

    # -- data -------------------------------------------------------------------------------------------------
    def read(self) -> tuple[SeriesSet, list[np.ndarray] | None]:
        """The series of the config's data file, and the test file's values of each (None without one)."""
        d = self.cfg.data
        if d.data is None:
            raise InputError("forecasting needs series: pass --data FILE (a long, wide (M4) or single-series CSV)")
        format = series_format(d.data) if d.format == "auto" else d.format
        columns = {"long": ("id_column", "time_column", "value_column"), "single": ("time_column", "value_column")}
        options = {name: getattr(d, name) for name in columns.get(format, ()) if getattr(d, name) is not None}
        if d.covariates:
            options["covariates"] = tuple(d.covariates)
        data = read_series(d.data, format, freq=d.freq, **options)
        if d.test_data is None:
            return data, None
        if format == "wide":
            return data, read_wide_test(data, d.test_data)
        test = read_series(d.test_data, format, freq=data.freq, **options)
        return data, [test.values[test.index(i)] for i in data.ids]

    def prepare(self, run: RunDir | None) -> None:
        d = self.cfg.data
        if run is None:
            for name in ("data", "test_data"):  # a run must find its data from any directory
                if getattr(d, name) is not None:
                    setattr(d, name, absolute(getattr(d, name)))
        else:
            self.load_vocab(run)
        self.load_data(fit=run is None)

    def load_data(self, fit: bool = False) -> None:
        """Read and cut the series; with `fit`, a new run's shape (horizon, context, lags) comes from them, else
        they are checked against the loaded run's."""
        data, test = self.read()
        if fit:
            self.shape = self._fit_shape(data)
        H, L = self.shape.horizon, self.model_past
        # the training part must hold one window (L + H); after it come valid, and test unless a file gives it
        needed = L + 2 * H + (H if test is None else 0)
        kept, dropped = data.drop_short(needed)
        self.skipped = {i: needed for i in set(data.ids) - set(kept.ids)}
        if dropped:
            warnings.warn(f"{data.source}: skipped {plural(dropped, 'series')} of {len(data)} shorter than the {needed} "
                          f"values that a training window (context {self.shape.context} + largest lag "
                          f"{max(self.shape.lags)} + horizon {H}) and the held-out steps need", stacklevel=2)
            if test is not None:
                test = [test[data.index(i)] for i in kept.ids]
        if fit:
            self.shape.ids = kept.ids
        else:  # the series in the run's order, so that a series' position is its row (its embedding id)
            unknown = [i for i in kept.ids if i not in set(self.shape.ids)]
            if unknown:
                raise InputError(f"{data.source}: series {unknown[0]!r} was not among the run's training series "
                                 f"({plural(len(unknown), 'series')} are not): use the data the run was trained on")
            if test is not None:
                test = [test[kept.index(i)] for i in self.shape.ids]
            kept = kept.subset(self.shape.ids)
        self.rows = {series_id: i for i, series_id in enumerate(self.shape.ids)}
        self.data, self.test_values = kept, test
        # each series with its test values (everything known), and its training part; steps after the last
        # observed value (a long file's rows that carry only covariates known in the future) are the future's
        known = [v[:_observed_end(v)] for v in kept.values]
        self.full = known if test is None else [np.concatenate([v, t]) for v, t in zip(known, test)]
        self.train = [v[:len(v) - 2 * H] for v in self.full]

    def _loaded(self) -> None:
        if not hasattr(self, "full"):  # a loaded run reads its series only when it evaluates or forecasts
            self.load_data()

    def _fit_shape(self, data: SeriesSet) -> Shape:
        d = self.cfg.data
        freq = d.freq or data.freq
        if freq is None and d.seasonality == 0:
            raise InputError(f"{data.source} has no timestamps, so its frequency is unknown: give --freq (H for M4 "
                             "Hourly) or --seasonality")
        season = d.seasonality or SEASONALITY[freq]
        horizon = d.horizon or 2 * season
        context = d.context_length or max(horizon, 3 * season)
        lags = sorted(set(d.lags or [1, season] + ([_WEEK_HOURS] if freq == "H" else [])))
        if context + max(lags) < season:  # the seasonal naive forecast (baseline, MASE's unit) reads a season back
            raise InputError(f"data.context_length: the model reads context_length + the largest lag = "
                             f"{context + max(lags)} past values, less than a season ({season}): give a longer "
                             f"context_length or a lag of {season}")
        return Shape([], freq, season, horizon, context, lags, data.starts is not None, list(data.covariate_names))

    @property
    def model_past(self) -> int:
        """L: the past values every forecast reads (context + largest lag)."""
        return self.shape.context + max(self.shape.lags)

    def save_vocab(self, run: RunDir) -> None:
        s = self.shape
        run.save_json(SERIES, {"ids": s.ids, "freq": s.freq, "seasonality": s.season, "horizon": s.horizon,
                               "context_length": s.context, "lags": s.lags, "timestamps": s.timestamps,
                               "covariates": s.covariates})

    def load_vocab(self, run: RunDir) -> None:
        raw = run.load_json(SERIES)
        try:
            self.shape = Shape(list(raw["ids"]), raw["freq"], int(raw["seasonality"]), int(raw["horizon"]),
                               int(raw["context_length"]), [int(x) for x in raw["lags"]], bool(raw["timestamps"]),
                               list(raw["covariates"]))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{run / SERIES} is corrupted (expected ids, freq, seasonality, horizon, context_length, "
                             "lags, timestamps and covariates): restore it or retrain") from None
        self.rows = {series_id: i for i, series_id in enumerate(self.shape.ids)}

    # -- windows ----------------------------------------------------------------------------------------------
    def features(self, row: int, first: int, n: int) -> np.ndarray:
        """(n, F) time features of steps first .. first + n - 1 of series `row` (covariates need the data)."""
        s = self.shape
        if s.timestamps:
            start = self.data.starts[self.data.index(s.ids[row])]
            cal = calendar_features(date_range(start, s.freq, first + 1)[-1], s.freq, n)
        else:
            cal = np.concatenate([phase_features(n, p, first) for p in _periods(s.freq, s.season)], 1) \
                if _periods(s.freq, s.season) else np.zeros((n, 0))
        if s.covariates:
            cov = self.data.covariates[self.data.index(s.ids[row])]
            if first + n > len(cov):
                raise InputError(f"series {s.ids[row]!r}: forecasting needs its covariates "
                                 f"({', '.join(s.covariates)}) for the horizon's steps, which the data lacks")
            cal = np.concatenate([cal, cov[first:first + n]], 1)
        return cal

    def window(self, rows: list[int], origins: list[int], values: list[np.ndarray], *, actual: bool) -> Window:
        """The forecast problems of series `rows` at `origins` (the index of each one's first forecast step) in
        `values` (per row of the run); with `actual`, the H values after each origin too."""
        L, H = self.model_past, self.shape.horizon
        past = np.stack([values[r][o - L:o] for r, o in zip(rows, origins)])
        time = np.stack([self.features(r, o - L, L + H) for r, o in zip(rows, origins)])
        act = np.stack([values[r][o:o + H] for r, o in zip(rows, origins)]) if actual else None
        return Window(rows, past, time, act)

    def split(self, split: str) -> tuple[Window, list[np.ndarray]]:
        """Every series' forecast problem of `split` (valid or test), and each one's history before the origin."""
        H = self.shape.horizon
        rows = list(range(len(self.full)))
        cut = {"valid": 2 * H, "test": H}[split]
        origins = [len(self.full[r]) - cut for r in rows]
        return self.window(rows, origins, self.full, actual=True), [self.full[r][:o] for r, o in zip(rows, origins)]

    # -- model and training -----------------------------------------------------------------------------------
    def build_model(self) -> Forecaster:
        s = self.shape
        return Forecaster.from_config(self.cfg.model, len(s.ids), context=s.context, horizon=s.horizon, lags=tuple(s.lags),
                                      time_features=s.time_features, season=s.season)

    def describe(self) -> str:
        s = self.shape
        return (f"{plural(len(self.train), 'series')}, horizon {s.horizon}, context {s.context}, lags "
                f"{', '.join(map(str, s.lags))}, {self.cfg.data.windows_per_epoch:,} windows an epoch")

    def batches(self, epoch: int) -> Batches:
        count = max(1, self.cfg.data.windows_per_epoch // self.cfg.data.batch_size)
        return Windows(self, epoch_seed(self.cfg.train.seed, epoch), count)

    def shard(self, batch: Window, world) -> Window:
        pick = slice(world.rank, None, world.size)
        return Window(batch.rows[pick], batch.past[pick], batch.time[pick], batch.actual[pick])

    def step(self, model: Forecaster, batch: Window, state: Any, device: torch.device) -> Step:
        past, time, rows = batch.tensors(device)
        loss = model.loss(past, time, rows, torch.as_tensor(batch.actual, dtype=torch.float32, device=device))
        return Step(loss, loss, len(batch.rows))

    def summary_model(self, vocab_size: int | None) -> tuple[nn.Module, tuple[int, ...], dict]:
        if vocab_size is None:
            self.prepare(None)
        else:
            data = self.cfg.data
            self.shape = Shape(["0"] * vocab_size, data.freq or "H", data.seasonality or 24, data.horizon or 48,
                               data.context_length or 72, data.lags or [1, 24], False, [])
        return self.build_model(), *self.summary_input()

    def summary_input(self) -> tuple[tuple[int, ...], dict]:
        B, L, H = self.cfg.data.batch_size, self.model_past, self.shape.horizon
        return (B, L), {"time": torch.zeros(B, L + H, self.shape.time_features), "series": torch.zeros(B, dtype=torch.long)}

    # -- evaluation -------------------------------------------------------------------------------------------
    monitors = ("loss", "owa", "smape", "mase")
    valid_figures = " sMAPE {smape:.3f} MASE {mase:.3f} OWA {owa:.3f}"

    def predict(self, model: Forecaster, window: Window, *, samples: int, device: torch.device | str = "cpu",
                horizon: int | None = None) -> dict[str, np.ndarray]:
        """The model's forecasts of `window`'s problems (see Forecaster.forecast), as numpy arrays; in batches, and
        each series' paths drawn from its own seed, so a series gets the same forecast alone or with others."""
        was_training = model.training
        model.eval()
        parts: list[dict] = []
        size = max(1, 4096 // (samples if model.head in DISTRIBUTIONS else 1))
        for i in range(0, len(window.rows), size):
            sub = Window(window.rows[i:i + size], window.past[i:i + size], window.time[i:i + size], None)
            past, time, rows = sub.tensors(device)
            if horizon is not None:
                time = time[:, :self.model_past + horizon]
            seeds = torch.tensor(sub.rows) + self.cfg.train.seed * 1_000_003
            out = model.forecast(past, time, rows, horizon, samples=samples, seeds=seeds)
            parts.append({k: v.float().cpu().numpy() for k, v in out.items()})
        model.train(was_training)
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    @torch.no_grad()
    def _loss(self, model: Forecaster, window: Window, device) -> float:
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for i in range(0, len(window.rows), 512):
            past, time, rows = Window(window.rows[i:i + 512], window.past[i:i + 512], window.time[i:i + 512], None).tensors(device)
            actual = torch.as_tensor(window.actual[i:i + 512], dtype=torch.float32, device=device)
            n = int((~torch.isnan(actual)).sum())
            total += model.loss(past, time, rows, actual).item() * n
            count += n
        model.train(was_training)
        return total / max(count, 1)

    def evaluate(self, model: Forecaster, device: torch.device) -> dict | None:
        window, history = self.split("valid")
        forecast = self.predict(model, window, samples=self.cfg.data.eval_samples, device=device)
        scores = metrics.score_all(history, list(window.actual), list(forecast["median"]), self.shape.season)
        naive2 = self._naive2_valid(history, window)
        return {"loss": self._loss(model, window, device), **scores, "owa": metrics.owa(scores, naive2)}

    def check_monitored(self, name: str) -> None:
        # MASE divides by the history's own seasonal-naive error, which a constant history makes 0: the dataset's
        # MASE is then inf and OWA nan at every evaluation (M4's definitions; smape and loss stay finite)
        if name not in ("mase", "owa"):
            return
        # (the validation origin's history is each series' training part: no window needs building)
        flat = [i for i, x in zip(self.shape.ids, self.train) if not metrics.mase_scale(x, self.shape.season) > 0]
        if flat:
            raise InputError(f"train.monitor: {name} is not finite on this validation data: {plural(len(flat), 'series')} "
                             f"(first {flat[0]!r}) {'has' if len(flat) == 1 else 'have'} a history that never changes, "
                             "which MASE cannot scale: monitor smape or loss")

    def _naive2_valid(self, history, window) -> dict:
        if getattr(self, "_naive2", None) is None:  # the same every evaluation: computed once
            self._naive2 = metrics.score_all(history, list(window.actual),
                                             forecast_all("naive2", history, self.shape.horizon, self.shape.season),
                                             self.shape.season)
        return self._naive2

    def closing_items(self) -> tuple[float, float]:
        # the evaluation forecasts every series: for a distribution head, eval_samples paths of H one-step calls,
        # about as much work as that many rows of a window's forward pass (of context + H steps, a third of a step)
        s, rows = self.shape, len(self.train)
        paths = self.cfg.data.eval_samples if self.cfg.model.head in DISTRIBUTIONS else 1
        return rows * paths * s.horizon / (3 * (s.context + s.horizon)) + rows / 3, 0.0

    def evaluate_split(self, model: Forecaster, split: str, *, device: torch.device | str = "cpu",
                       samples: int | None = None, baselines: tuple[str, ...] | None = None) -> dict:
        """`stackrnn eval`: the model's sMAPE, MASE, OWA (against Naive2 on the same series), MAE, RMSE, and its
        quantile loss, CRPS and interval coverage, beside every baseline's point figures."""
        self._loaded()
        window, history = self.split(split)
        s = self.shape
        forecast = self.predict(model, window, samples=samples or self.cfg.data.eval_samples, device=device)
        actual = list(window.actual)
        # ETS (damped Holt-Winters) fits each series for about a second: by default only for small sets
        names = baselines if baselines is not None else tuple(
            b for b in available_baselines() if b != "ets" or len(actual) <= _ETS_SERIES)
        if "naive2" not in names:
            names = ("naive2", *names)  # OWA's reference
        table = {}
        for name in names:
            table[name] = metrics.score_all(history, actual, forecast_all(name, history, s.horizon, s.season), s.season)
        model_scores = metrics.score_all(history, actual, list(forecast["median"]), s.season)
        for scores in (model_scores, *table.values()):
            scores["owa"] = metrics.owa(scores, table["naive2"])
        return {"split": split, "series": len(actual), "horizon": s.horizon, **model_scores,
                **self._probabilistic(forecast, window.actual), "baselines": table}

    def _probabilistic(self, forecast: dict[str, np.ndarray], actual: np.ndarray) -> dict:
        levels = list(self.cfg.model.quantiles)
        q = forecast["quantiles"]  # (B, H, Q)
        out = {"quantile_loss": float(np.nanmean([metrics.quantile_loss(y, qf.T, levels) for y, qf in zip(actual, q)]))}
        if "paths" in forecast:
            out["crps"] = float(np.nanmean([metrics.crps_from_samples(y, p) for y, p in zip(actual, forecast["paths"])]))
        for lo, hi, name in ((0.1, 0.9, "coverage_80"), (0.025, 0.975, "coverage_95")):
            if lo in levels and hi in levels:
                out[name] = metrics.coverage(actual.ravel(), q[..., levels.index(lo)].ravel(), q[..., levels.index(hi)].ravel())
        return out

    # -- forecasting ------------------------------------------------------------------------------------------
    def forecast(self, model: Forecaster, series: list[str] | None = None, *, horizon: int | None = None,
                 samples: int = 100, split: str | None = None, device: torch.device | str = "cpu") -> list[dict]:
        """Forecasts of `series` (default: all) after the end of their data, or of the `split`'s steps ("test":
        the held-out values, returned as "actual"). Each: {"series", "history" (values before the origin),
        "timestamps" (of the forecast steps, or None), "median", "mean", "quantiles": {level: values},
        "actual" (or None)}."""
        self._loaded()
        s = self.shape
        H = s.horizon if horizon is None else horizon
        if not 1 <= H <= s.horizon:
            raise InputError(f"--horizon {H}: the run was trained to forecast {s.horizon} steps; give 1 to {s.horizon}")
        ids = list(self.data.ids) if not series else list(dict.fromkeys(series))  # (each once, in the order given)
        for i in ids:
            if i in self.skipped:
                raise InputError(f"series {i!r} of {self.data.source} was skipped: it has fewer than the "
                                 f"{self.skipped[i]} values the run's window and held-out steps need")
        rows = [self.data.index(i) for i in ids]  # an unknown id: a clear error naming the data
        cut = {None: 0, "test": s.horizon, "valid": 2 * s.horizon}[split]
        origins = [len(self.full[r]) - cut for r in rows]
        padded = [np.concatenate([v, np.full(s.horizon, np.nan)]) for v in self.full]  # room for the future's steps
        window = self.window(rows, origins, padded, actual=False)
        out = self.predict(model, window, samples=samples, device=device, horizon=H)
        results = []
        for k, (i, r, o) in enumerate(zip(ids, rows, origins)):
            stamps = None
            if s.timestamps:
                start = self.data.starts[self.data.index(i)]
                # at the frequency's own precision: 2020-05-30 for daily data, 1961-01 for monthly
                unit = {"H": "m", "D": "D", "W": "D", "M": "M", "Q": "M", "Y": "Y"}[s.freq]
                stamps = [str(t) for t in np.datetime_as_string(date_range(start, s.freq, o + H)[o:], unit=unit)]
            results.append({"series": i, "history": self.full[r][:o], "timestamps": stamps,
                            "median": out["median"][k], "mean": out["mean"][k],
                            "quantiles": {lv: out["quantiles"][k][:, j] for j, lv in enumerate(self.cfg.model.quantiles)},
                            "actual": self.full[r][o:o + H] if split else None})
        return results


def _observed_end(values: np.ndarray) -> int:
    """The length of a series up to and with its last observed (non-NaN) value."""
    seen = np.flatnonzero(~np.isnan(values))
    return int(seen[-1]) + 1 if seen.size else 0
