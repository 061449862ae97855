"""SST-2 test accuracy of the example classifiers, as mean ± sd over seeds: the figures in the README.

    .venv/bin/python examples/sst2_seeds.py --data ../shared/data/sst2_sentences [--seeds 0 1 2] [--out runs/sst2]

Each (config, seed) is one `stackrnn train` then `stackrnn eval RUN --split test --json`, run one after the
other (they share the CPU cores; running them side by side would make every one slower). Prints one line per
run as it finishes, then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = ["examples/sst2-bilstm.toml", "examples/sst2-lstm2.toml", "examples/keras-sentiment.toml"]
STACKRNN = [sys.executable, "-m", "stackrnn.cli"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="local SST-2 folder (stsa.binary.train/dev/test); default: download (--dataset sst2)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--out", default="runs/sst2-seeds", help="parent folder of the run directories (must not hold them yet)")
    args = parser.parse_args()
    source = ["--data", args.data] if args.data else []
    results: dict[str, list[tuple[float, float]]] = {}
    for config in args.configs:
        for seed in args.seeds:
            run = Path(args.out) / f"{Path(config).stem}-seed{seed}"
            start = time.monotonic()
            subprocess.run([*STACKRNN, "train", "--config", config, *source, "--seed", str(seed), "--out", str(run),
                            "--no-progress"], check=True, stdout=subprocess.DEVNULL)
            minutes = (time.monotonic() - start) / 60
            out = subprocess.run([*STACKRNN, "eval", str(run), "--split", "test", "--json"], check=True,
                                 capture_output=True, text=True).stdout
            accuracy = json.loads(out)["accuracy"]
            results.setdefault(config, []).append((accuracy, minutes))
            print(f"{config} seed {seed}: test accuracy {accuracy:.4f}, {minutes:.1f} min", flush=True)
    print("\n| config | test accuracy (mean ± sd) | per seed | minutes of training (longest run) |")
    print("|---|---|---|---|")
    for config, rows in results.items():
        accs = [a for a, _ in rows]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"| {config} | {statistics.mean(accs):.4f} ± {sd:.4f} | {', '.join(f'{a:.4f}' for a in accs)} | "
              f"{max(m for _, m in rows):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
