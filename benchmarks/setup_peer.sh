#!/usr/bin/env bash
# The peers' own environment, benchmarks/.venv-deepar (gitignored): the CPU build of torch 2.13.0 (as
# scripts/setup.sh installs it), GluonTS with its PyTorch extra (DeepAR, Lightning) and stackrnn itself, editable,
# for its data readers and the M4 metrics. The project's .venv never sees GluonTS. Safe to run again.
#
#   benchmarks/setup_peer.sh && benchmarks/.venv-deepar/bin/python benchmarks/peer_deepar.py --help
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=benchmarks/.venv-deepar
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  # as scripts/setup.sh: a CPU wheel of torch 2.13.0 that pip can already see (a local wheel folder), else
  # PyTorch's CPU index
  if "${PIP[@]}" install --no-index --no-deps "torch==2.13.0+cpu" 2>/dev/null; then
    "${PIP[@]}" install "torch==2.13.0+cpu"  # its dependencies, from the usual index
  else
    "${PIP[@]}" install "torch==2.13.0" --index-url "${STACKRNN_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
  fi
fi
# GluonTS pins its own ranges of lightning and pydantic; naming the installed torch keeps its CPU build
TORCH=$("$VENV/bin/python" -c "import torch; print(torch.__version__)" 2>/dev/null)
"${PIP[@]}" install "gluonts[torch]" "torch==$TORCH"
"${PIP[@]}" install -e .
"$VENV/bin/python" -c 'import gluonts, lightning, torch; print(f"peer environment in '"$VENV"': gluonts {gluonts.__version__}, lightning {lightning.__version__}, torch {torch.__version__}")'
