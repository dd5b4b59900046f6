#!/usr/bin/env bash
# Repeat the timing-sensitive tests (marker `timing`, listed in tests/conftest.py) RUNS times while a CPU
# burner keeps one core busy, as a loaded CI machine would. Every run must pass: a test that waits on real
# time may wait longer on a slow machine, it must never fail there.
#
#   scripts/test-stress.sh [RUNS] [extra pytest args...]     (make test-stress STRESS_RUNS=20)
#
# Writes one line per run and a summary to out/stress/summary.txt; exits 1 if any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-20}"
shift || true
PY="${PYTHON:-.venv/bin/python}"
OUT=out/stress
mkdir -p "$OUT"
: >"$OUT/summary.txt"

"$PY" -c 'while True: pass' &
BURNER=$!
trap 'kill "$BURNER" 2>/dev/null' EXIT
echo "test-stress: CPU burner pid $BURNER on $(nproc) cores; $RUNS runs of pytest -m timing" | tee -a "$OUT/summary.txt"

failed=0
for i in $(seq 1 "$RUNS"); do
    start=$(date +%s)
    if "$PY" -m pytest -q -m timing -p no:cacheprovider "$@" >"$OUT/run-$i.log" 2>&1; then
        verdict=passed
    else
        verdict=FAILED
        failed=$((failed + 1))
    fi
    line="run $i/$RUNS: $verdict in $(( $(date +%s) - start )) s: $(tail -n 1 "$OUT/run-$i.log")"
    echo "$line" | tee -a "$OUT/summary.txt"
done
echo "test-stress: $((RUNS - failed)) of $RUNS runs passed" | tee -a "$OUT/summary.txt"
[ "$failed" -eq 0 ]
