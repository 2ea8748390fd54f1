#!/usr/bin/env bash
# Every cost of one catalogue size, each step's JSON kept in runs/bench/scale-SHAPE/:
#   bash scripts/bench_scale.sh 100k      # or 1m; EPOCHS=n caps the training (default: its own)
# synth (if missing), train SASRec (the sampled softmax its size picks) and popularity, the item
# indexes (TEXT=0 leaves the text index out: a million texts take hours), bench tools on fresh
# inputs, every user's top-100 exactly (a sample) and through the index, one recommendation
# with no LLM from a cold start and warm. Run it on a quiet machine: the figures are timings.
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:?100k or 1m}
data=data/synth-$shape run=runs/synth-$shape-sasrec out=runs/bench/scale-$shape
mkdir -p "$out"
toolrec=.venv/bin/toolrec
timed() { /usr/bin/time -f '{"wall_s": %e, "peak_rss_kb": %M}' -o "$out/$1.time.json" "${@:2}"; }
[ -f "$data/synth.json" ] || timed synth $toolrec data synth --shape "$shape" --out "$data"
timed train $toolrec train --dataset "$data" --out "$run" ${EPOCHS:+--epochs $EPOCHS} > "$out/train.log"
timed popularity $toolrec train --dataset "$data" --model popularity --out "runs/synth-$shape-pop" > "$out/popularity.log"
if [ "${TEXT:-1}" = 1 ]; then timed index $toolrec index build --run "$run" > "$out/index.json"; fi
timed tools $toolrec bench tools --run "$run" --calls 500 --out "$out/tools.json" > /dev/null
timed score-ann $toolrec score --run "$run" --k 100 --ann --out "$out/topk-ann.parquet" > "$out/score-ann.json"
timed score-exact $toolrec score --run "$run" --k 100 --users 20000 --out "$out/topk-exact.parquet" > "$out/score-exact.json"
user=$(.venv/bin/python -c "import pyarrow.parquet as pq; print(pq.read_table('$run/data/users.parquet').column(0)[7])")
timed recommend-cold $toolrec recommend --run "$run" --user "$user" --llm none --json > "$out/recommend.json"
timed recommend-warm $toolrec bench agent --run "$run" --users 20 --llm none > "$out/agent.json"
echo "figures in $out"
