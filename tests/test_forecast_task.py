"""Forecasting end to end (tasks/forecast.py, ForecasterRun, `stackrnn forecast` and `stackrnn eval`): a noisy
sine with a trend is forecast better than seasonal naive; eval prints the model's metrics beside every
baseline's; forecasts as CSV and fan charts; a series alone and among others; resume; and bad input as one line
with exit status 2 and nothing written. Tiny runs, one thread, seconds each; M4 Hourly and the airline series
where ../shared/data holds them."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import stackrnn
from stackrnn.cli import main
from stackrnn.data.calendar import CALENDAR_FEATURES
from stackrnn.forecasting import metrics
from stackrnn.forecasting.baselines import available_baselines
from stackrnn.run import RunDir
from stackrnn.train import build_config

from .conftest import SHARED, fails_in_one_line as _fails, resume_after_kill_in_step_13

DAYS, H = 150, 14  # daily series: a season of 7 days, a horizon of two seasons (the default), context 21
TINY = ["--task", "forecast", "--hidden-size", "16", "--num-layers", "1", "--mlp-size", "16", "--embedding-size", "4",
        "--batch-size", "32", "--windows-per-epoch", "320", "--lr", "0.01", "--eval-samples", "50", "--no-progress",
        "--seed", "0"]  # 10 steps an epoch


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: fastest on one thread (the figures asserted are its)


def sines(days: int = DAYS, seed: int = 0) -> dict[str, np.ndarray]:
    """Three noisy weekly sines on rising trends, of different levels, amplitudes and phases."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    return {f"s{k}": level + trend * t + amp * np.sin(2 * np.pi * t / 7 + k) + rng.normal(0, amp / 10, days)
            for k, (level, trend, amp) in enumerate([(50, 0.3, 10), (120, 0.5, 25), (20, 0.1, 4)])}


def write_long(path: Path, series: dict[str, np.ndarray], start: str = "2020-01-01") -> Path:
    """A long CSV: series, timestamp (daily from `start`), value."""
    first = np.datetime64(start)
    lines = ["series,timestamp,value"] + [f"{sid},{first + i},{x:.4f}" for sid, v in series.items()
                                          for i, x in enumerate(v)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def sine_file(tmp_path_factory) -> Path:
    return write_long(tmp_path_factory.mktemp("series") / "sines.csv", sines())


@pytest.fixture(scope="module")
def quantile_run(tmp_path_factory, sine_file, one_thread) -> Path:
    """MQ-RNN's quantile head, 60 steps (about 2 seconds)."""
    out = tmp_path_factory.mktemp("runs") / "quantile"
    assert main(["train", "--data", str(sine_file), "--out", str(out), "--head", "quantile", "--epochs", "6", *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def student_t_run(tmp_path_factory, sine_file, one_thread) -> Path:
    """DeepAR's Student-t head, sampled into paths: 150 steps (about 3 seconds)."""
    out = tmp_path_factory.mktemp("runs") / "student_t"
    assert main(["train", "--data", str(sine_file), "--out", str(out), "--epochs", "15", *TINY]) == 0
    return out


def test_train_and_forecast_have_help(capsys):
    for argv in (["train", "--task", "forecast", "--help"], ["forecast", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--head" in out and "80% and 95%" in out and "--horizon" in out


# -- learning and evaluation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["quantile", "student_t"])
def test_a_noisy_sine_with_a_trend_is_forecast_better_than_seasonal_naive(head, request):
    """Seasonal naive repeats the last week, so it falls behind the trend; the model (seeded, so the figures are
    the same at every run) learns the trend: quantile 0.78, Student-t 1.00 against seasonal naive's 1.41 MASE."""
    run = stackrnn.load(request.getfixturevalue(f"{head}_run"))
    scores = run.evaluate("test", baselines=("naive2", "seasonal_naive"))
    assert scores["series"] == 3 and scores["horizon"] == H
    snaive = scores["baselines"]["seasonal_naive"]
    assert scores["mase"] < 0.9 * snaive["mase"] and scores["smape"] < snaive["smape"], (scores["mase"], snaive["mase"])


def test_eval_prints_smape_mase_and_owa_for_the_model_and_every_baseline(quantile_run, capsys):
    capsys.readouterr()
    assert main(["eval", str(quantile_run), "--split", "test", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores["baselines"]) == {"naive", "seasonal_naive", "naive2", *available_baselines()}
    for name, figures in [("model", scores), *scores["baselines"].items()]:
        for key in ("smape", "mase", "owa", "mae", "rmse"):
            assert math.isfinite(figures[key]), (name, key)
    assert scores["baselines"]["naive2"]["owa"] == pytest.approx(1.0)  # OWA is relative to Naive2
    assert {"quantile_loss", "coverage_80", "coverage_95"} <= set(scores)  # the quantile head: no paths, no CRPS
    assert main(["eval", str(quantile_run), "--split", "test"]) == 0  # the table: the model above each baseline
    table = capsys.readouterr().out
    assert all(name in table for name in ("model", "seasonal_naive", "naive2", "sMAPE", "MASE", "OWA"))


def test_the_test_split_is_the_last_horizon_and_forecasts_agree_with_eval(student_t_run, sine_file):
    run = stackrnn.load(student_t_run)
    forecasts = run.forecast(split="test", samples=50)  # the run's eval_samples: the same paths as eval's
    values = sines()
    for f in forecasts:
        assert np.allclose(f["actual"], values[f["series"]][-H:], atol=1e-4)
        assert len(f["history"]) == DAYS - H and f["timestamps"][0] == str(np.datetime64("2020-01-01") + DAYS - H)
    scores = metrics.score_all([f["history"] for f in forecasts], [f["actual"] for f in forecasts],
                               [f["median"] for f in forecasts], 7)
    assert scores["mase"] == pytest.approx(run.evaluate("test", baselines=("naive2",))["mase"], rel=1e-6)
    assert "crps" in run.evaluate("valid", baselines=("naive2",))  # sampled paths give a CRPS estimate


def test_a_series_gets_the_same_forecast_alone_and_among_others(student_t_run):
    run = stackrnn.load(student_t_run)
    together = run.forecast(samples=40)
    for i, sid in enumerate(run.series):
        alone = run.forecast(sid, samples=40)
        assert alone["series"] == together[i]["series"] == sid
        np.testing.assert_allclose(alone["median"], together[i]["median"], rtol=1e-5)
        for level, values in alone["quantiles"].items():
            np.testing.assert_allclose(values, together[i]["quantiles"][level], rtol=1e-5)


def test_training_windows_never_see_the_held_out_steps(tmp_path):
    """Every training window lies in the training part: the valid and test steps (here 1e6) are never read."""
    values = sines()
    for v in values.values():
        v[-2 * H:] = 1e6
    cfg = build_config({"task": "forecast", "data": {"data": str(write_long(tmp_path / "s.csv", values)),
                                                     "batch_size": 16, "windows_per_epoch": 320}}, {})
    task = cfg.make_task()
    task.prepare(None)
    seen = 0
    for batch in task.batches(0):
        assert batch.past.shape == (16, task.model_past) and batch.actual.shape == (16, H)
        assert batch.past.max() < 1e5 and batch.actual.max() < 1e5
        seen += len(batch.rows)
    assert seen == 320
    window, _ = task.split("valid")
    assert (window.actual == 1e6).all() and window.past.max() < 1e5


def test_missing_values_and_gaps_are_masked_in_training_and_scoring(tmp_path, capsys):
    """Empty cells and steps missing from the timestamps are NaN, never filled: training, eval and forecasts stay
    finite, and a missing actual value is missing (null) in the forecasts, not a number."""
    values = sines()
    values["s0"][[3, 40, 41, DAYS - 20, DAYS - 5]] = math.nan  # in the training part, valid and test
    f = write_long(tmp_path / "gaps.csv", values)
    lines = [line.replace(",nan", ",") for line in f.read_text().splitlines() if not line.startswith("s2,2020-02-1")]
    f.write_text("\n".join(lines) + "\n")  # s0: empty cells; s2: ten days without a row
    out = tmp_path / "run"
    assert main(["train", "--data", str(f), "--out", str(out), "--max-steps", "10", *TINY]) == 0
    assert all(math.isfinite(r["loss"]) for r in RunDir(out).read_metrics())
    capsys.readouterr()
    assert main(["eval", str(out), "--split", "test", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert all(math.isfinite(scores[k]) for k in ("smape", "mase", "owa", "crps"))
    assert main(["forecast", str(out), "--split", "test", "--json", "--samples", "20"]) == 0
    forecasts = {f["series"]: f for f in json.loads(capsys.readouterr().out)}
    assert forecasts["s0"]["actual"][H - 5] is None and None not in forecasts["s1"]["actual"]
    assert all(math.isfinite(x) for f in forecasts.values() for x in f["median"])
    history = stackrnn.load(out).forecast("s2", split="test", samples=20)["history"]
    assert np.isnan(history[40:50]).all() and not np.isnan(history[:40]).any()  # 2020-02-10 .. 19: the gap


# -- forecasting from the command line ------------------------------------------------------------------------
def test_forecast_writes_a_csv_and_fan_charts(quantile_run, tmp_path, capsys):
    plotting = _has_matplotlib()
    out = tmp_path / "f.csv"
    assert main(["forecast", str(quantile_run), "--out", str(out),
                 *(["--plot", str(tmp_path / "plots")] if plotting else [])]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["series", "step", "timestamp", "median", "mean", "q0.025", "q0.1", "q0.5", "q0.9", "q0.975",
                             "actual"]
    assert len(rows) == 3 * H and [(r["series"], r["step"]) for r in rows[:2]] == [("s0", "1"), ("s0", "2")]
    assert {r["series"] for r in rows} == {"s0", "s1", "s2"} and rows[-1]["step"] == str(H)
    assert rows[0]["timestamp"].startswith(str(np.datetime64("2020-01-01") + DAYS))  # the day after the data
    for r in rows:
        q = [float(r[k]) for k in ("q0.025", "q0.1", "q0.5", "q0.9", "q0.975")]
        assert q == sorted(q) and float(r["median"]) == q[2] and r["actual"] == ""
    if plotting:
        charts = sorted((tmp_path / "plots").iterdir())
        assert [p.name for p in charts] == ["s0.png", "s1.png", "s2.png"]
        assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in charts)


def test_forecast_picks_series_and_horizon_and_gives_actuals_for_the_test_split(quantile_run, capsys):
    capsys.readouterr()
    assert main(["forecast", str(quantile_run), "--series", "s2", "--series", "s0", "--horizon", "5", "--split", "test",
                 "--json"]) == 0
    forecasts = json.loads(capsys.readouterr().out)
    assert [f["series"] for f in forecasts] == ["s2", "s0"]
    values = sines()
    for f in forecasts:
        assert len(f["median"]) == len(f["timestamps"]) == 5 and set(f["quantiles"]) == {"0.025", "0.1", "0.5", "0.9", "0.975"}
        assert np.allclose(f["actual"], values[f["series"]][DAYS - H:DAYS - H + 5], atol=1e-4)
    assert main(["forecast", str(quantile_run), "--series", "s1"]) == 0  # CSV on stdout
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + H and all(line.startswith("s1,") for line in lines[1:])


# -- resume ---------------------------------------------------------------------------------------------------
def test_a_run_killed_between_checkpoints_resumes_to_the_uninterrupted_run(tmp_path, sine_file, monkeypatch):
    """Killed in step 13 (mid-epoch, dropout on, evaluated with sampled paths every epoch, the last checkpoint at
    step 10) and resumed == run to the end without a stop: the same weights and metrics, to the last digit."""
    from stackrnn.tasks.forecast import ForecastTask

    flags = ["train", "--data", str(sine_file), *TINY, "--num-layers", "2", "--dropout", "0.2", "--epochs", "3",
             "--save-every", "5", "--log-every", "5"]
    resume_after_kill_in_step_13(ForecastTask, flags, tmp_path, monkeypatch, rate="windows_per_s")


# -- bad input ------------------------------------------------------------------------------------------------
GOOD = "series,timestamp,value\n" + "".join(f"a,2020-01-{d:02d},{d}\n" for d in range(1, 6))


@pytest.mark.parametrize("content, match", [
    (GOOD + "a,2020-01-06,lots\n", "line 7 (series 'a'): value 'lots' is not a number"),
    (GOOD + "a,2020-01-06,inf\n", "is infinite"),
    (GOOD + "a,2020-01-04,6\n", "comes before"),  # unsorted
    (GOOD + "a,2020-01-05,6\n", "timestamp 2020-01-05T00:00:00 is also on line 6"),  # duplicate
    (GOOD + "a,2020-01-06,6,7\n", "line 7 has 4 fields"),
    (GOOD, "every series in"),  # 5 values: every series is shorter than a window and the held-out steps
    ("V1,V2,V3,V4\nH1,1,2,3\nH2,4,x,6\n", "line 3 (series 'H2'): column 3 'x' is not a number"),  # M4's wide layout
    ("V1,V2,V3\nH1,1,2\nH1,3,4\n", "the id is also on line 2"),
])
def test_bad_training_data_is_one_line_and_writes_nothing(tmp_path, capsys, content, match):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    line = _fails(capsys, ["train", "--data", str(f), "--out", str(tmp_path / "run"), "--freq", "D", *TINY], match)
    assert str(f) in line
    assert not (tmp_path / "run").exists()


def test_every_series_too_short_names_the_need(tmp_path, capsys):
    f = write_long(tmp_path / "short.csv", {k: v[:60] for k, v in sines().items()})
    line = _fails(capsys, ["train", "--data", str(f), "--out", str(tmp_path / "run"), *TINY], "every series")
    assert "70 observed values" in line and "the longest 60" in line  # context 21 + lag 7 + 3 horizons of 14
    assert not (tmp_path / "run").exists()


def test_monitoring_mase_or_owa_with_a_constant_history_is_refused_before_training(tmp_path, capsys):
    """A series whose history never changes makes MASE's scale 0, so the validation MASE is inf and OWA nan at
    every evaluation: monitored, they would keep the first weights and decay the rate each time."""
    f = write_long(tmp_path / "flat.csv", {**sines(), "flat": np.full(DAYS, 5.0)})
    for figure in ("mase", "owa"):
        line = _fails(capsys, ["train", "--data", str(f), "--out", str(tmp_path / "run"), "--monitor", figure, *TINY],
                      f"train.monitor: {figure} is not finite on this validation data")
        assert "1 series (first 'flat') has a history that never changes" in line and "smape or loss" in line
        assert not (tmp_path / "run").exists()
    assert main(["train", "--data", str(f), "--out", str(tmp_path / "run"), "--monitor", "smape", "--max-steps", "2",
                 *TINY]) == 0


def test_series_too_short_are_skipped_with_a_counted_warning(tmp_path, capsys):
    values = {**sines(), "short1": np.arange(30.0), "short2": np.arange(69.0)}
    f = write_long(tmp_path / "some.csv", values)
    capsys.readouterr()
    assert main(["train", "--data", str(f), "--out", str(tmp_path / "run"), "--max-steps", "2", *TINY]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warned) == 1 and "skipped 2 series of 5" in warned[0] and str(f) in warned[0], warned
    assert json.loads((tmp_path / "run" / "series.json").read_text())["ids"] == ["s0", "s1", "s2"]


def test_bad_forecast_options_are_one_line_and_write_nothing(quantile_run, tmp_path, capsys):
    out, plots = tmp_path / "f.csv", tmp_path / "plots"
    writes = ["--out", str(out), *(["--plot", str(plots)] if _has_matplotlib() else [])]
    run = str(quantile_run)
    _fails(capsys, ["forecast", run, "--horizon", str(H + 1), *writes], f"trained to forecast {H} steps")
    _fails(capsys, ["forecast", run, "--horizon", "0", *writes], "give 1 to 14")
    line = _fails(capsys, ["forecast", run, "--series", "s1", "--series", "NOPE", *writes], "unknown series id 'NOPE'")
    assert "s0, s1, s2" in line
    _fails(capsys, ["forecast", run, "--samples", "0", *writes], "samples: expected an integer >= 1, got 0")
    _fails(capsys, ["eval", run, "--samples", "0"], "--samples: expected an integer >= 1, got 0")
    _fails(capsys, ["eval", run, "--beam", "2"], "--beam: for translation runs; this is a forecasting run")
    _fails(capsys, ["forecast", run, "--out", str(tmp_path)], "is a folder")
    assert not out.exists() and not plots.exists()


def test_runs_of_other_tasks_are_refused(quantile_run, tmp_path, text_file, capsys):
    lm = tmp_path / "lm"
    assert main(["train", "--data", str(text_file), "--out", str(lm), "--max-steps", "1", "--hidden-size", "8",
                 "--num-layers", "1", "--no-progress"]) == 0
    _fails(capsys, ["forecast", str(lm), "--out", str(tmp_path / "f.csv")], "is a language-model run, not a forecasting run")
    assert not (tmp_path / "f.csv").exists()
    _fails(capsys, ["predict", str(quantile_run), "some text"], "is a forecasting run, not a classification run")
    _fails(capsys, ["eval", str(lm), "--samples", "5"], "--samples: for forecasting runs")


def _has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


# -- the shared data ------------------------------------------------------------------------------------------
def _task(data: dict, model: dict | None = None):
    cfg = build_config({"task": "forecast", "data": data, "model": model or {}}, {})
    task = cfg.make_task()
    task.prepare(None)
    return task


@pytest.mark.skipif(not (SHARED / "m4").is_dir(), reason="../shared/data/m4 is absent")
def test_m4_hourly_is_read_with_its_test_file_and_the_untrained_model_is_seasonal_naive():
    """M4 Hourly through the task: 414 series, the test file as the test split, M4's published seasonal naive
    and Naive2 figures, and the untrained quantile head (baseline seasonal) scoring exactly as seasonal naive."""
    task = _task({"data": str(SHARED / "m4" / "Hourly-train.csv"), "test_data": str(SHARED / "m4" / "Hourly-test.csv"),
                  "freq": "H", "horizon": 48, "batch_size": 8},
                 {"head": "quantile", "stack": {"hidden_size": 8, "num_layers": 1}, "mlp_size": 8})
    s = task.shape
    assert len(s.ids) == 414 and (s.season, s.horizon, s.context, s.lags) == (24, 48, 72, [1, 24, 168])
    assert all(len(t) == 48 for t in task.test_values) and not s.timestamps
    torch.manual_seed(0)
    model = task.build_model()
    batch = next(iter(task.batches(0)))
    assert torch.isfinite(task.step(model, batch, None, torch.device("cpu")).loss)
    scores = task.evaluate_split(model.eval(), "test", baselines=("naive2", "seasonal_naive"))
    snaive, naive2 = scores["baselines"]["seasonal_naive"], scores["baselines"]["naive2"]
    assert scores["series"] == 414
    assert (round(snaive["smape"], 3), round(snaive["mase"], 3)) == (13.912, 1.193)
    assert snaive["owa"] == pytest.approx(0.627, abs=1e-3)  # 0.62750 unrounded (see test_forecast_metrics.py)
    assert (round(naive2["smape"], 3), round(naive2["mase"], 3)) == (18.383, 2.395)
    assert scores["smape"] == pytest.approx(snaive["smape"], abs=1e-3) and scores["mase"] == pytest.approx(snaive["mase"], abs=1e-4)


@pytest.mark.skipif(not (SHARED / "airline_passengers").is_dir(), reason="../shared/data/airline_passengers is absent")
def test_the_airline_series_is_read_monthly_with_its_last_24_months_held_out():
    path = SHARED / "airline_passengers" / "airline-passengers.csv"
    task = _task({"data": str(path), "horizon": 24})
    s = task.shape
    assert s.ids == ["airline-passengers"] and (s.freq, s.season, s.horizon, s.timestamps) == ("M", 12, 24, True)
    rows = list(csv.reader(path.open(newline="")))[1:]
    assert len(task.full[0]) == len(rows) == 144 and len(task.train[0]) == 144 - 48
    window, history = task.split("test")
    assert window.actual[0].tolist() == [float(r[1]) for r in rows[-24:]] and len(history[0]) == 120
    assert rows[-24][0] == "1959-01"


def test_covariates_known_in_the_future_are_fed_and_needed_for_the_horizon(tmp_path, capsys):
    """A long file's covariate column is a time feature of every step; rows that carry only a covariate (the
    future's) let the model forecast past the last value, and without them forecasting says what is missing."""
    series = sines()
    first = np.datetime64("2020-01-01")
    rows = ["series,timestamp,value,promo"]
    for sid, v in series.items():
        rows += [f"{sid},{first + i},{x:.4f},{i % 5 == 0:d}" for i, x in enumerate(v)]
        rows += [f"{sid},{first + len(v) + i},,{i % 2}" for i in range(H)]  # the horizon's covariates, no values
    data = tmp_path / "promo.csv"
    data.write_text("\n".join(rows) + "\n")
    out, config = tmp_path / "run", tmp_path / "promo.toml"
    config.write_text('task = "forecast"\n[data]\ncovariates = ["promo"]\n')
    assert main(["train", "--config", str(config), "--data", str(data), "--out", str(out), "--epochs", "1", *TINY]) == 0
    run = stackrnn.load(out)
    assert run.task.shape.covariates == ["promo"]
    assert run.model.time_features == len(CALENDAR_FEATURES["D"]) + 1  # the daily calendar, and the covariate
    ahead = run.forecast("s0")
    assert ahead["timestamps"][0] == str(first + DAYS) and np.isfinite(ahead["median"]).all()
    assert len(run.task.full[0]) == DAYS  # the covariate-only rows are the future, not missing values
    capsys.readouterr()
    data.write_text("\n".join(r for r in rows if not r.split(",")[2] == "" or r.startswith("series")) + "\n")
    stale = stackrnn.load(out)
    with pytest.raises(stackrnn.errors.InputError, match="covariates"):
        stale.forecast("s0")
