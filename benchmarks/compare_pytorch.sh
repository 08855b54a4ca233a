#!/usr/bin/env bash
# compare_pytorch.sh — training throughput of kitnn vs the PyTorch peer, side by side.
#
#   benchmarks/compare_pytorch.sh [--data DIR] [--threads N] [--rounds R] [--models "a b"]
#                                 [--limit N] [--peer PATH] [--build DIR]
#                                 [--epochs E] [--omp-wait-policy active|passive]
#
# For each network, runs kitnn_bench_train and the peer (torch_mnist.py) alternately,
# R rounds, on the same data, batch (100) and thread count, E epochs each, and prints
# our images/s, PyTorch's (medians over rounds) and the ratio (median of the per-round
# ratios ours/peer). Both train on the first 80 % of the (limited) training images.
# Default limits keep the slow network short: kerascnn uses --limit 6000 (4,800 training
# images); keck and lenet5 use the full 48,000. --limit N overrides it for every model.
# --epochs E (default 2): both programs train E epochs per round. The headline ratio is
# that of the LAST epoch (warm); the first epoch's ratio (cold) is printed beside it. Why:
# on this project's VM the first read of freshly loaded training data costs kitnn about
# 5 us per image in epoch 1 only (docs/performance.md); the peer's epochs are all alike.
# --omp-wait-policy sets OMP_WAIT_POLICY for both programs (both use libgomp): on a
# machine shared with other jobs, spinning OpenMP threads (the default) slow both by
# 10x and more; "passive" makes idle threads sleep. Default: the environment as it is.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
data="${KITNN_MNIST_DIR:-}"
threads=2
rounds=3
epochs=2
models="keck lenet5 kerascnn"
limit_all=""
peer="$repo/../shared/peers/torch_mnist.py"
build="$repo/build"
python=/usr/bin/python3
omp_env=()

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
die() { echo "compare_pytorch.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --data) data="${2:?--data needs a directory}"; shift 2 ;;
    --threads) threads="${2:?}"; shift 2 ;;
    --rounds) rounds="${2:?}"; shift 2 ;;
    --epochs) epochs="${2:?}"; shift 2 ;;
    --models) models="${2:?}"; shift 2 ;;
    --limit) limit_all="${2:?}"; shift 2 ;;
    --peer) peer="${2:?}"; shift 2 ;;
    --build) build="${2:?}"; shift 2 ;;
    --omp-wait-policy)
      [[ "${2:-}" =~ ^(active|passive|ACTIVE|PASSIVE)$ ]] || die "--omp-wait-policy: active or passive"
      omp_env=(OMP_WAIT_POLICY="$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ -n "$data" ]] || die "no data: pass --data DIR or set KITNN_MNIST_DIR"
[[ -d "$data" ]] || die "--data: '$data' is not a directory"
[[ -f "$peer" ]] || die "PyTorch peer not found at '$peer' (use --peer PATH)"
[[ "$threads" =~ ^[1-9][0-9]*$ ]] || die "--threads must be a positive integer"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[[ "$epochs" =~ ^[1-9][0-9]*$ ]] || die "--epochs must be a positive integer"
[[ -z "$limit_all" || "$limit_all" =~ ^[0-9]+$ ]] || die "--limit must be a non-negative integer"

# PyTorch from Debian (the python3 on PATH may be another one without torch).
if ! "$python" -c 'import torch, numpy' 2>/dev/null; then
  if [[ $(id -u) -eq 0 ]]; then
    apt-get install -y python3-torch python3-numpy >&2
  else
    echo "compare_pytorch.sh: $python cannot import torch; install it with:" >&2
    echo "  sudo apt-get install -y python3-torch python3-numpy" >&2
    exit 1
  fi
fi

# Build the benchmark if needed (a no-op when it is up to date).
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release >&2
fi
cmake --build "$build" --target kitnn_bench_train -j "$(nproc)" >&2
bench="$build/benchmarks/kitnn_bench_train"

# images_per_s of the last (ips) or first (ips1) epoch's JSON line
ips() { sed -n 's/.*"images_per_s": \([0-9.]*\).*/\1/p' | tail -n 1; }
ips1() { sed -n 's/.*"images_per_s": \([0-9.]*\).*/\1/p' | head -n 1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

summary=()
for model in $models; do
  limit="$limit_all"
  if [[ -z "$limit" ]]; then
    case "$model" in kerascnn) limit=6000 ;; *) limit=0 ;; esac
  fi
  ours_all=() peer_all=() ratios=() ratios1=()
  for ((r = 1; r <= rounds; r++)); do
    ours_out=$(env "${omp_env[@]}" "$bench" --model "$model" --threads "$threads" --data "$data" \
                 --epochs "$epochs" --limit "$limit" --json)
    # The peer with OpenBLAS's tuning variables removed for this command only.
    peer_out=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "${omp_env[@]}" "$python" "$peer" --model "$model" \
                 --data "$data" --threads "$threads" --epochs "$epochs" --batch 100 \
                 --limit "$limit" --no-eval)
    o=$(ips <<<"$ours_out"); p=$(ips <<<"$peer_out")
    o1=$(ips1 <<<"$ours_out"); p1=$(ips1 <<<"$peer_out")
    [[ -n "$o" && -n "$p" ]] || die "could not read images_per_s (ours: '$ours_out', peer: '$peer_out')"
    ratio=$(awk -v o="$o" -v p="$p" 'BEGIN {printf "%.3f", o / p}')
    ratio1=$(awk -v o="$o1" -v p="$p1" 'BEGIN {printf "%.3f", o / p}')
    echo "$model round $r: last epoch kitnn $o img/s, pytorch $p img/s, ratio $ratio (epoch 1: $ratio1)" >&2
    sed 's/^/  kitnn:   /' <<<"$ours_out" >&2
    sed 's/^/  pytorch: /' <<<"$peer_out" >&2
    ours_all+=("$o"); peer_all+=("$p"); ratios+=("$ratio"); ratios1+=("$ratio1")
  done
  om=$(printf '%s\n' "${ours_all[@]}" | median)
  pm=$(printf '%s\n' "${peer_all[@]}" | median)
  rm_=$(printf '%s\n' "${ratios[@]}" | median)
  rm1=$(printf '%s\n' "${ratios1[@]}" | median)
  images=$(sed -n 's/.*"train_images": \([0-9]*\).*/\1/p' <<<"$ours_out" | tail -n 1)
  summary+=("$(printf '%-9s %8s %6s %12.1f %12.1f %8.2f %8.2f' "$model" "$limit" "$images" "$om" "$pm" "$rm_" "$rm1")")
done

echo
echo "kitnn vs PyTorch $("$python" -c 'import torch; print(torch.__version__)'), $threads thread(s), batch 100, $epochs epoch(s) per run, $rounds rounds alternating${omp_env:+, ${omp_env[*]}}"
printf '%-9s %8s %6s %12s %12s %8s %8s\n' model limit images "kitnn img/s" "torch img/s" ratio "epoch 1"
for line in "${summary[@]}"; do echo "$line"; done
echo "(img/s and ratio: epoch $epochs of each run; img/s: medians over rounds; ratio: median of the per-round"
echo " ratios kitnn/pytorch; 'epoch 1': the same for the first epoch; limit 0 = all 60,000 -> 48,000 trained)"
