#!/usr/bin/env bash
# The whole path at 100,000 items, from nothing to an evaluation, each step timed:
#   bash scripts/bench_path.sh        # EPOCHS=n sets the cosine schedule's length (default 10)
# synth the catalogue, train SASRec (the sampled softmax its size picks) to the end of its
# schedule, build the item indexes (texts and model space), and evaluate popularity, SASRec and
# the agent on 200 test users (eval/configs/synth-100k.toml). It starts from scratch: the
# catalogue, the run and the evaluation are made again. Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
data=data/synth-100k run=runs/synth-100k-sasrec out=runs/bench/path-100k
toolrec=.venv/bin/toolrec
rm -rf "$data" "$run" runs/eval/synth-100k "$out"
mkdir -p "$out"
timed() { /usr/bin/time -f '{"wall_s": %e, "peak_rss_kb": %M}' -o "$out/$1.time.json" "${@:2}"; }
started=$(date +%s)
timed synth $toolrec data synth --shape 100k --out "$data" > "$out/synth.log"
timed train $toolrec train --dataset "$data" --out "$run" --epochs "${EPOCHS:-10}" > "$out/train.log" 2>&1
timed index $toolrec index build --run "$run" > "$out/index.json" 2> "$out/index.log"
timed eval $toolrec eval run eval/configs/synth-100k.toml > "$out/eval.log" 2>&1
echo "{\"total_s\": $(($(date +%s) - started))}" > "$out/total.json"
cat "$out"/*.time.json "$out/total.json"
