#!/usr/bin/env bash
# Set up stackrnn in ./.venv: torch (the CPU build of 2.13.0, unless the venv already has a torch, such as a
# GPU user's CUDA build), then stackrnn itself with its test, plot, export, serve, forecast and speech extras. Safe to
# run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check --quiet)

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # A CPU wheel of torch 2.13.0 that pip can already see (a local wheel folder) is used as it is; otherwise
  # it comes from PyTorch's CPU index (about 200 MB, instead of several GB for the CUDA build).
  if "${PIP[@]}" install --no-index --no-deps "torch==2.13.0+cpu" 2>/dev/null; then
    "${PIP[@]}" install "torch==2.13.0+cpu"  # its dependencies, from the usual index
  else
    "${PIP[@]}" install "torch==2.13.0" --index-url "${STACKRNN_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
  fi
fi
"${PIP[@]}" install -e ".[test,plot,tensorboard,translate,export,serve,forecast,speech]"
echo "stackrnn is set up in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
