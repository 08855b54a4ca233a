#!/usr/bin/env bash
# compare_imagenet.sh — the ImageNet-sized networks, kitnn vs PyTorch, side by side.
#
#   benchmarks/compare_imagenet.sh [--models "vgg16 inception_v4 alexnet"] [--batches "1 8"]
#                                  [--train "vgg16"] [--train-batch 8] [--threads 2]
#                                  [--rounds 3] [--repeats 5] [--build DIR]
#
# For every model and batch size, runs kitnn_bench_imagenet (bench_imagenet.cpp) and
# torch_imagenet.py (this folder) alternately, R rounds, forward in inference mode on
# the same thread count; then a training step (Adam, batch --train-batch) of each model
# in --train ("" for none). Each run times the median of --repeats passes after a
# warm-up, in a fresh process. Printed per row: the medians over the rounds of the two
# programs' times, and the speed-up = the median of the per-round ratios PyTorch ms /
# kitnn ms (> 1: kitnn is faster). Same input sizes, layers and parameter counts (both
# programs check theirs); random weights and inputs, which do not change the timings.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
models="vgg16 inception_v4 alexnet"
batches="1 8"
train="vgg16"
train_batch=8
threads=2
rounds=3
repeats=5
build="$repo/build"
python=/usr/bin/python3

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
die() { echo "compare_imagenet.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --models) models="${2:?--models needs a list}"; shift 2 ;;
    --batches) batches="${2:?--batches needs a list}"; shift 2 ;;
    --train) train="${2-}"; shift 2 ;;
    --train-batch) train_batch="${2:?}"; shift 2 ;;
    --threads) threads="${2:?}"; shift 2 ;;
    --rounds) rounds="${2:?}"; shift 2 ;;
    --repeats) repeats="${2:?}"; shift 2 ;;
    --build) build="${2:?}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
for v in threads rounds repeats train_batch; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "--${v/_/-} must be a positive integer, got '${!v}'"
done
for b in $batches; do [[ "$b" =~ ^[1-9][0-9]*$ ]] || die "--batches: '$b' is not a positive integer"; done
for m in $models $train; do
  [[ "$m" =~ ^(alexnet|vgg16|inception_v4)$ ]] || die "unknown model '$m' (known: alexnet, vgg16, inception_v4)"
done

# PyTorch from Debian (the python3 on PATH may be another one without torch).
if ! "$python" -c 'import torch' 2>/dev/null; then
  if [[ $(id -u) -eq 0 ]]; then
    apt-get install -y python3-torch >&2
  else
    die "$python cannot import torch; install it with: sudo apt-get install -y python3-torch"
  fi
fi
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release >&2
fi
cmake --build "$build" --target kitnn_bench_imagenet -j "$(nproc)" >&2
bench="$build/benchmarks/kitnn_bench_imagenet"
peer="$here/torch_imagenet.py"

ms() { sed -n 's/.*"median_ms": *\([0-9.]*\).*/\1/p' | tail -n 1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

rows=()
for m in $models; do for b in $batches; do rows+=("$m $b forward"); done; done
for m in $train; do rows+=("$m $train_batch train"); done

summary=()
for row in "${rows[@]}"; do
  read -r model batch mode <<<"$row"
  ours_all=() peer_all=() ratios=()
  for ((r = 1; r <= rounds; r++)); do
    args=(--model "$model" --batch "$batch" --mode "$mode" --threads "$threads" --repeats "$repeats")
    ours_out=$("$bench" "${args[@]}")
    peer_out=$("$python" "$peer" "${args[@]}" 2>/dev/null)
    o=$(ms <<<"$ours_out"); p=$(ms <<<"$peer_out")
    [[ -n "$o" && -n "$p" ]] || die "could not read median_ms (kitnn: '$ours_out', pytorch: '$peer_out')"
    ratio=$(awk -v o="$o" -v p="$p" 'BEGIN {printf "%.3f", p / o}')
    echo "$model batch $batch $mode round $r: kitnn $o ms, pytorch $p ms, speed-up $ratio" >&2
    ours_all+=("$o"); peer_all+=("$p"); ratios+=("$ratio")
  done
  om=$(printf '%s\n' "${ours_all[@]}" | median)
  pm=$(printf '%s\n' "${peer_all[@]}" | median)
  rm_=$(printf '%s\n' "${ratios[@]}" | median)
  summary+=("$(printf '| %s | %s | %s | %.1f | %.1f | %.2fx |' "$model" "$batch" "$mode" "$om" "$pm" "$rm_")")
done

echo
echo "kitnn vs PyTorch $("$python" -c 'import torch; print(torch.__version__)'), $threads thread(s), float, median of $repeats passes per run, $rounds rounds alternating"
echo "| model | batch | pass | kitnn ms | PyTorch ms | speed-up |"
echo "| --- | ---: | --- | ---: | ---: | ---: |"
for line in "${summary[@]}"; do echo "$line"; done
echo "(ms: medians over the rounds; speed-up: median of the per-round ratios PyTorch ms / kitnn ms)"
