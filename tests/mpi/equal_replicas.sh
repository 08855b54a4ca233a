#!/usr/bin/env bash
# mpirun -np N mnist_train ends with the weights of ONE process with --replicas N, bit for
# bit (same seed, global batch, one thread per part): the same parts of every batch, the
# same dropout masks, the gradients summed in the same order (train/data_parallel.hpp).
#   equal_replicas.sh BIN_DIR WORK_DIR
#   keck      -np 2 over shared memory             vs --replicas 2
#   kerascnn  -np 2 over TCP on loopback (btl tcp) vs --replicas 2
#   keck      -np 3 (uneven parts: 100 = 33+33+34) vs --replicas 3
#   best      (BatchNorm, synchronised) -np 2      vs --replicas 2: bit for bit, and vs ONE
#             part (no split): close, within a stated float tolerance
set -uo pipefail
bin=$1 work=$2
source "$(dirname "$0")/common.sh"
rm -rf "$work" && mkdir -p "$work"
synthetic "$work/data" 600
run() {  # run NAME [mpirun args --] mnist_train args...
  local name=$1; shift
  "$@" --data "$work/data" --out "$work/$name" --threads 1 --progress plain --seed 3 > "$work/$name.log" 2>&1 ||
    { tail -20 "$work/$name.log"; fail "$name exited with $?"; }
}
same() {  # same A B: best.kitnn bit for bit
  "$compare" "$work/$1/best.kitnn" "$work/$2/best.kitnn" 0 ||
    fail "$1 and $2 differ"
  echo "ok: $1 = $2 bit for bit"
}
t0=$(date +%s)
run keck_r2 "$bin/mnist_train" --model keck --epochs 2 --replicas 2
run keck_np2 "${MPIRUN[@]}" -np 2 "$bin/mnist_train" --model keck --epochs 2
grep -q "batches split across 2 MPI ranks" "$work/keck_np2.log" || fail "no mention of the 2 ranks"
[[ $(grep -c "^Epoch 1/2" "$work/keck_np2.log") -eq 1 ]] || fail "more than rank 0 printed"
same keck_r2 keck_np2

kargs=(--model kerascnn --epochs 2 --limit 300)
run kcnn_r2 "$bin/mnist_train" "${kargs[@]}" --replicas 2
run kcnn_np2tcp "${MPIRUN[@]}" --mca btl self,tcp -np 2 "$bin/mnist_train" "${kargs[@]}"
same kcnn_r2 kcnn_np2tcp

run keck_r3 "$bin/mnist_train" --model keck --epochs 2 --replicas 3
run keck_np3 "${MPIRUN[@]}" -np 3 "$bin/mnist_train" --model keck --epochs 2
same keck_r3 keck_np3

bargs=(--model best --epochs 1 --limit 300)
run best_r1 "$bin/mnist_train" "${bargs[@]}" --replicas 1
run best_r2 "$bin/mnist_train" "${bargs[@]}" --replicas 2
run best_np2 "${MPIRUN[@]}" -np 2 "$bin/mnist_train" "${bargs[@]}"
same best_r2 best_np2
# Against one part (no split): the same masks and statistics, other summation orders
# only. Tolerance: Adam moves a weight by up to about lr (0.002 for best) per step even
# for a gradient that differs only by rounding, so after 3 steps 3 lr = 6e-3 relative to
# max(1, |w|); measured: 8.4e-4. (In double the match is tight: tests/test_distributed.cpp.)
"$compare" "$work/best_r1/best.kitnn" "$work/best_np2/best.kitnn" 6e-3 ||
  fail "best: -np 2 is not within 6e-3 of one process"
echo "ok: best -np 2 within 6e-3 of one process (synchronised BatchNorm)"
echo "PASS in $(( $(date +%s) - t0 )) s"
