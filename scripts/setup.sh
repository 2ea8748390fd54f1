#!/usr/bin/env bash
# Creates .venv in the repo root and installs the project into it. Idempotent: it reinstalls
# only when pyproject.toml changed. torch==2.13.0 goes first so that no CUDA build is pulled in.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/toolrec-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet torch==2.13.0
  # llama-cpp-python compiles from source (6-10 minutes on 2 cores; pip caches the wheel);
  # GGML_NATIVE=OFF keeps the build portable across x86-64 machines.
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" .venv/bin/python -m pip install --quiet -e ".[dev,local]"
  echo "$wanted" > "$stamp"
fi
