#!/usr/bin/env bash
# The bench tables in README.md ("Compute accounting and benchmarks"):
# dense vs routed, presets default and seed, forward and train, on the
# prototype's grid (batch 2,8,16 x seq 20..1024). Writes Markdown, JSON and
# a PNG per run under experiments/results/.
#
#   experiments/bench_tables.sh            # all four runs
#   REPEATS=9 experiments/bench_tables.sh  # more repeats on a noisy machine
#   RUNS="default:forward seed:train" experiments/bench_tables.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=experiments/results
mkdir -p "$out"
repeats="${REPEATS:-5}"
for run in ${RUNS:-default:forward default:train seed:forward seed:train}; do
  preset="${run%%:*}" mode="${run##*:}"
  name="${preset}_${mode}"
  echo "== python -m sdt_jax.bench --preset $preset --mode $mode --repeats $repeats" >&2
  python -m sdt_jax.bench --preset "$preset" --mode "$mode" \
      --repeats "$repeats" --json "$out/$name.json" --plot "$out/$name.png" \
      > "$out/$name.md"
done
