#!/usr/bin/env bash
# CTest "imagenet_peer": the two sides of benchmarks/compare_imagenet.sh build the same
# networks. For alexnet, vgg16 and inception_v4, kitnn_bench_imagenet and
# benchmarks/torch_imagenet.py (PyTorch) each run one forward pass and report their
# parameter counts, which must be equal (the script also asserts them against
# zoo_imagenet.hpp's); alexnet also runs one training step on both sides. Both refuse a
# bad flag or value with status 2. Skipped (77) without Debian's python3 with torch.
#   imagenet_peer.sh SOURCE_DIR KITNN_BENCH_IMAGENET
set -uo pipefail
src=$1 bench=$2
py=/usr/bin/python3
peer="$src/benchmarks/torch_imagenet.py"
if ! "$py" -c "import torch" 2>/dev/null; then
  echo "SKIPPED: /usr/bin/python3 with torch not found (scripts/install_dependencies.sh)"
  exit 77
fi
field() { sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p" | tail -n 1; }
fail=0
check() {  # MODEL BATCH MODE
  local args=(--model "$1" --batch "$2" --mode "$3" --repeats 1 --threads 1)
  local ours theirs
  ours=$("$bench" "${args[@]}") || { echo "FAIL: kitnn_bench_imagenet ${args[*]} exited $?"; fail=1; return; }
  theirs=$("$py" "$peer" "${args[@]}" 2>/dev/null) || { echo "FAIL: torch_imagenet.py ${args[*]} exited $?"; fail=1; return; }
  local p1 p2 t1 t2
  p1=$(field params <<<"$ours"); p2=$(field params <<<"$theirs")
  t1=$(field median_ms <<<"$ours"); t2=$(field median_ms <<<"$theirs")
  if [[ -z "$p1" || "$p1" != "$p2" ]]; then
    echo "FAIL: $1 parameters: kitnn '$p1', pytorch '$p2'"; fail=1; return
  fi
  if ! awk -v a="$t1" -v b="$t2" 'BEGIN { exit !(a > 0 && b > 0) }'; then
    echo "FAIL: $1 $3: times kitnn '$t1' ms, pytorch '$t2' ms"; fail=1; return
  fi
  echo "ok: $1 batch $2 $3: $p1 parameters on both sides (kitnn $t1 ms, pytorch $t2 ms, 1 thread)"
}
check alexnet 1 forward
check alexnet 2 train
check vgg16 1 forward
check inception_v4 1 forward
# An unknown model (compare_imagenet.sh: an unknown flag, it takes --models).
for prog in "$bench" "$py $peer" "$src/benchmarks/compare_imagenet.sh"; do
  $prog --model nonet >/dev/null 2>&1; rc=$?
  if [[ $rc -ne 2 ]]; then echo "FAIL: '$prog --model nonet' exited $rc, not 2"; fail=1; fi
done
exit $fail
