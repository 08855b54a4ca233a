#!/usr/bin/env bash
# Load benchmark of kitnn_serve (docs/performance.md): CLIENTS concurrent keep-alive
# clients x REQUESTS each post the 50 committed own digits (PNG, MNIST-style
# preprocessing) to a server on 127.0.0.1, RUNS times; every answer is checked against the
# server's answer for that image alone (tests/serve/load.py), and each run prints
# requests/s and the p50/p99 latency. The client is Python on the same machine: on a
# 2-core machine it competes with the server for the cores, so these are figures for
# this setup, not the server's ceiling.
#   benchmarks/serve_load.sh [BUILD_DIR] [CLIENTS] [REQUESTS] [RUNS] [MODEL]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build} clients=${2:-8} requests=${3:-200} runs=${4:-3}
model=${5:-$root/tests/data/serve_lenet5.kitnn}
[[ -x "$build/examples/kitnn_serve" ]] ||
  { echo "serve_load: $build/examples/kitnn_serve not built (cmake --build $build --target kitnn_serve mnist_apply)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "serve_load: $(basename "$model"), $clients clients x $requests requests, $runs runs, $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
for r in $(seq 1 "$runs"); do
  python3 "$root/tests/serve/load.py" "$build/examples" "$model" "$root/tests/data/own_digits" "$work/run$r" \
    --clients "$clients" --requests "$requests" --json "$work/r$r.json" | grep 'requests/s' || {
      echo "serve_load: run $r failed (see $work/run$r)" >&2; trap - EXIT; exit 1; }
done
python3 - "$work" "$runs" <<'PY'
import json, statistics, sys
work, runs = sys.argv[1], int(sys.argv[2])
rs = [json.load(open(f"{work}/r{r}.json")) for r in range(1, runs + 1)]
med = lambda k: statistics.median(x[k] for x in rs)
print(f"serve_load: median of {runs}: {med('requests_per_s'):.0f} requests/s, "
      f"p50 {med('p50_ms'):.1f} ms, p99 {med('p99_ms'):.1f} ms")
PY
