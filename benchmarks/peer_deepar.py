"""Peer: GluonTS's DeepAR (its PyTorch version) beside stackrnn's forecaster on M4 Hourly, same data, same
training time, scored by the same code (stackrnn.forecasting.metrics: M4's sMAPE, MASE and OWA against Naive2).

GluonTS lives in the benchmark's own environment, never in the project's:

    benchmarks/setup_peer.sh                                     # once: benchmarks/.venv-deepar (gitignored)
    benchmarks/.venv-deepar/bin/python benchmarks/peer_deepar.py --minutes 30
    benchmarks/.venv-deepar/bin/python benchmarks/peer_deepar.py --minutes 0.5 --series 20   # a smoke run

One after the other, never at the same time:
  1. stackrnn: `stackrnn train --config examples/m4-hourly.toml --max-minutes M` (a subprocess; without the
     example, the built-in sizes below), then `stackrnn eval RUN --split test --json`;
  2. DeepAR: gluonts.torch.model.deepar.DeepAREstimator with the same context length, layers, hidden size and
     batch size, trained for the same M minutes (Lightning's max_time) with epochs of as many batches as
     stackrnn's; its other settings (lags, time features, learning rate, dropout) are GluonTS's own defaults
     (--lags gives it stackrnn's instead). It forecasts the 48 test steps of every series with 100 paths, the
     median is the point forecast (as stackrnn's).
Then one table: model, training minutes (wall clock), sMAPE, MASE, OWA, beside Naive2 and seasonal naive on the
same series. M4 Hourly has no timestamps: DeepAR gets an arbitrary start (2000-01-01 00:00) for its calendar
features, which then count hours of the series, as stackrnn's position-in-season features do.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
from stackrnn.data.series import read_series, read_wide_test  # noqa: E402
from stackrnn.forecasting import metrics  # noqa: E402
from stackrnn.forecasting.baselines import forecast_all  # noqa: E402
from stackrnn.train import build_config  # noqa: E402

M4 = ROOT.parent / "shared" / "data" / "m4"
EXAMPLE = ROOT / "examples" / "m4-hourly.toml"
#: the sizes when examples/m4-hourly.toml does not exist (yet); bench_forecast.py's too
FALLBACK = """task = "forecast"
[model.stack]
cell = "lstm"
hidden_size = 64
num_layers = 2
[data]
freq = "H"
horizon = 48
context_length = 168
lags = [1, 24, 168]
batch_size = 64
"""
HORIZON, SEASON = 48, 24


def subset(src: Path, dst: Path, n: int | None) -> Path:
    """The wide CSV `src` with only its first n series (all with None), written to `dst`."""
    lines = src.read_text().splitlines(keepends=True)
    dst.write_text("".join(lines if n is None else lines[:n + 1]))
    return dst


def run_stackrnn(config: Path, train: Path, test: Path, minutes: float, out: Path, threads: int | None) -> dict:
    """Train with the stackrnn CLI for `minutes`, then score the test split: the eval JSON and the wall minutes."""
    # this checkout's stackrnn, whichever the environment installed
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
               **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    cli = [sys.executable, "-c", "import sys; from stackrnn.cli import main; sys.exit(main())"]
    t0 = time.monotonic()
    subprocess.run([*cli, "train", "--config", str(config), "--data", str(train), "--test-data", str(test),
                    "--max-minutes", str(minutes), "--out", str(out), "--no-progress",
                    *(["--threads", str(threads)] if threads else [])], check=True, env=env)
    wall = (time.monotonic() - t0) / 60
    result = subprocess.run([*cli, "eval", str(out), "--split", "test", "--json"], check=True, env=env,
                            capture_output=True, text=True)
    return {"minutes": wall, **json.loads(result.stdout.strip().splitlines()[-1])}


def run_deepar(cfg, histories: list[np.ndarray], minutes: float, lags: list[int] | None, seed: int,
               threads: int | None, folder: Path) -> tuple[list[np.ndarray], float, float]:
    """DeepAR trained for `minutes` on the histories (its checkpoints in `folder`); its median forecasts, training
    minutes and forecasting seconds."""
    import lightning.pytorch as pl
    import pandas as pd
    import torch
    from gluonts.dataset.common import ListDataset
    from gluonts.time_feature import get_lags_for_frequency
    from gluonts.torch.model.deepar import DeepAREstimator

    # GluonTS 0.17 indexes with a list (its util.py), which torch 2.13 warns about at every batch
    warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing")
    used = lags or get_lags_for_frequency("h")
    print(f"DeepAR: lags {'given' if lags else 'GluonTS default'} ({len(used)}: {', '.join(map(str, used))})", flush=True)

    if threads:
        torch.set_num_threads(threads)
    pl.seed_everything(seed, workers=True)
    start = pd.Period("2000-01-01 00:00", freq="h")
    data = ListDataset([{"target": h.astype(np.float32), "start": start, "item_id": str(i), "feat_static_cat": [i]}
                        for i, h in enumerate(histories)], freq="h")
    stack, d = cfg.model.stack, cfg.data
    estimator = DeepAREstimator(
        freq="h", prediction_length=HORIZON, context_length=d.context_length or 3 * SEASON,
        num_layers=stack.num_layers, hidden_size=stack.hidden_size, batch_size=d.batch_size,
        num_batches_per_epoch=max(1, d.windows_per_epoch // d.batch_size),
        num_feat_static_cat=1, cardinality=[len(histories)], lags_seq=lags, num_parallel_samples=100,
        trainer_kwargs={"max_time": timedelta(minutes=minutes), "max_epochs": 100_000, "accelerator": "cpu",
                        "enable_progress_bar": False, "logger": False, "enable_model_summary": False,
                        "default_root_dir": str(folder)})
    t0 = time.monotonic()
    predictor = estimator.train(data)
    trained = (time.monotonic() - t0) / 60
    t0 = time.monotonic()
    forecasts = [f.quantile(0.5) for f in predictor.predict(data)]
    return forecasts, trained, time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="training minutes of each model (default 30)")
    p.add_argument("--series", type=int, help="only the first N series of M4 Hourly (a smoke run); default all 414")
    p.add_argument("--data", type=Path, default=M4, help="the folder of Hourly-train.csv and Hourly-test.csv")
    p.add_argument("--lags", type=int, nargs="+", help="DeepAR's lags (default: GluonTS's own for hourly data)")
    p.add_argument("--threads", type=int, help="torch threads of both models (default: the config's train.threads, "
                   "else torch's choice)")
    p.add_argument("--seed", type=int, default=0, help="DeepAR's seed (stackrnn's is its config's)")
    p.add_argument("--out", type=Path, help="keep stackrnn's run here (default: a temporary folder)")
    p.add_argument("--skip-stackrnn", action="store_true", help="only DeepAR and the baselines")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the table as JSON")
    args = p.parse_args(argv)
    try:
        import gluonts
    except ImportError:
        p.error("GluonTS is not installed here: run benchmarks/setup_peer.sh, then benchmarks/.venv-deepar/bin/python "
                "benchmarks/peer_deepar.py")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = subset(args.data / "Hourly-train.csv", tmp / "train.csv", args.series)
        test = subset(args.data / "Hourly-test.csv", tmp / "test.csv", args.series)
        config = EXAMPLE if EXAMPLE.exists() else tmp / "m4-hourly.toml"
        if not EXAMPLE.exists():
            config.write_text(FALLBACK)
        cfg = build_config(str(config), {})
        args.threads = args.threads or getattr(cfg.train, "threads", 0) or None
        series = read_series(train, "wide", freq="H")
        histories, actuals = list(series.values), read_wide_test(series, test)
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
        import torch
        print(f"M4 Hourly, {len(histories)} series, horizon {HORIZON} | {args.minutes:g} training minutes each | config "
              f"{config.relative_to(ROOT) if config == EXAMPLE else 'built-in (no examples/m4-hourly.toml)'} | gluonts "
              f"{gluonts.__version__}, torch {torch.__version__}, threads {args.threads or torch.get_num_threads()} | "
              f"load avg {load}", flush=True)

        rows = []
        if not args.skip_stackrnn:
            ours = run_stackrnn(config, train, test, args.minutes, args.out or tmp / "run", args.threads)
            rows.append(("stackrnn Forecaster", ours["minutes"], ours))
        forecasts, trained, predicting = run_deepar(cfg, histories, args.minutes, args.lags, args.seed, args.threads,
                                                    tmp / "deepar")
        deepar = metrics.score_all(histories, actuals, forecasts, SEASON)
        rows.append((f"GluonTS DeepAR (forecast {predicting:.0f} s)", trained, deepar))
        baselines = {name: metrics.score_all(histories, actuals, forecast_all(name, histories, HORIZON, SEASON), SEASON)
                     for name in ("naive2", "seasonal_naive")}
        if not args.skip_stackrnn:  # the same code on the same series: stackrnn eval's Naive2 is this one
            assert np.isclose(ours["baselines"]["naive2"]["smape"], baselines["naive2"]["smape"]), \
                (ours["baselines"]["naive2"], baselines["naive2"])
        rows += [("Naive2", None, baselines["naive2"]), ("seasonal naive", None, baselines["seasonal_naive"])]

    table = []
    print(f"\n{'model':<40} {'train min':>9} {'sMAPE':>8} {'MASE':>7} {'OWA':>7}")
    for name, minutes, scores in rows:
        owa = metrics.owa(scores, baselines["naive2"])
        table.append({"model": name, "train_minutes": minutes, "smape": scores["smape"], "mase": scores["mase"], "owa": owa})
        shown = "-" if minutes is None else f"{minutes:.1f}"
        print(f"{name:<40} {shown:>9} {scores['smape']:8.3f} {scores['mase']:7.3f} {owa:7.3f}")
    print("stackrnn's minutes are its `train` command's wall clock (the closing evaluation and checkpoint included); "
          "DeepAR's its estimator.train call. OWA is against Naive2 on these series.")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
