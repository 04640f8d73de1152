#!/usr/bin/env bash
# The flake check: the whole suite, 3 times in a row, on a fresh clone of this repository's
# HEAD, while another process keeps one core fully busy. Any failure stops it (exit 1).
#   bash scripts/flake-check.sh [RUNS]     (default 3; prints each run's time)
# The first run goes through .ci/run (installs everything, as CI does); later runs reuse it.
set -euo pipefail
runs="${1:-3}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
clone="$(mktemp -d)"
git clone -q "$repo" "$clone"
echo "flake check: fresh clone of $(git -C "$repo" rev-parse --short HEAD) in $clone"

# One core kept busy for the whole check, as a loaded CI machine would be.
python3 -c 'while True: pass' &
spinner=$!
trap 'kill "$spinner" 2>/dev/null || true' EXIT

cd "$clone"
for run in $(seq 1 "$runs"); do
  started=$(date +%s)
  if [ "$run" -eq 1 ]; then
    bash .ci/run >"$clone/run-$run.log" 2>&1 || status=$?
  else
    make test >"$clone/run-$run.log" 2>&1 || status=$?
  fi
  seconds=$(( $(date +%s) - started ))
  summary=$(grep -E '^=+ .*(passed|failed|error).* =+$' "$clone/run-$run.log" | tail -1 || true)
  echo "run $run/$runs: ${seconds} s  ${summary}"
  if [ "${status:-0}" -ne 0 ]; then
    echo "flake check FAILED on run $run; log: $clone/run-$run.log"
    grep -E '^(FAILED|ERROR) ' "$clone/run-$run.log" || tail -40 "$clone/run-$run.log"
    exit 1
  fi
done
echo "flake check passed: $runs green runs with one core busy"
