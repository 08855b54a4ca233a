#!/usr/bin/env bash
# Distributed training throughput on one machine (docs/distributed.md): for each model,
# kitnn_bench_train as one process with 1 thread, one process with 2 threads, and
# `mpirun -np 2` with 1 thread per rank; images/s of the whole job in the last epoch.
# Then the per-step gradient reduction of every zoo model over shared memory and TCP.
# ROUNDS > 1 repeats every row (models alternate within a round): on a VM whose speed
# drifts between minutes, read the median of the rounds. The last column is rank 0's
# milliseconds per step of the np2 run: forward+backward / reduction / update
# (kitnn_bench_train's step_*_ms).
#   benchmarks/bench_distributed.sh BUILD_DIR MNIST_DIR [LIMIT] [EPOCHS] [MODELS] [ROUNDS]
set -euo pipefail
build=$1 data=$2 limit=${3:-3000} epochs=${4:-2} models=${5:-"keck lenet5 kerascnn best"} rounds=${6:-1}
mpirun=(mpirun --allow-run-as-root --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
bench=$build/benchmarks/kitnn_bench_train
ips() { "$@" --data "$data" --limit "$limit" --epochs "$epochs" --json | tail -1 |
        sed 's/.*"images_per_s": \([0-9.]*\).*/\1/'; }
# images/s and the step phases of the last epoch: "IPS PARTS/REDUCE/UPDATE"
ips_phases() { "$@" --data "$data" --limit "$limit" --epochs "$epochs" --json | tail -1 |
        sed 's/.*"images_per_s": \([0-9.]*\).*"step_parts_ms": \([0-9.]*\), "step_reduce_ms": \([0-9.]*\), "step_update_ms": \([0-9.]*\).*/\1 \2\/\3\/\4/'; }
# The ceiling of any 2-process run on this machine: two independent 1-thread processes
# side by side, no communication at all (their images/s added). What np2 loses against
# it is the distribution's cost; what it loses against 2x one process is the machine's
# (two cores sharing caches, memory bandwidth and, on a VM, perhaps one physical core).
two_alone() {
  local t1 t2
  t1=$(mktemp) t2=$(mktemp)
  ips "$bench" --model "$1" --threads 1 --distributed off > "$t1" &
  ips "$bench" --model "$1" --threads 1 --distributed off > "$t2" &
  wait
  echo "$(cat "$t1") + $(cat "$t2")" | bc -l | xargs printf '%.0f'
  rm -f "$t1" "$t2"
}
echo "| model | 1 process, 1 thread | 1 process, 2 threads | 2 independent 1-thread processes (sum) | mpirun -np 2, 1 thread each | np2 / 1 thread | np2 / 2 threads | np2 / 2 independent | np2 step ms: parts / reduce / update |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for _ in $(seq 1 "$rounds"); do
  for m in $models; do
    a=$(ips "$bench" --model "$m" --threads 1 --distributed off)
    b=$(ips "$bench" --model "$m" --threads 2 --distributed off)
    i=$(two_alone "$m")
    read -r c phases < <(ips_phases "${mpirun[@]}" -np 2 "$bench" --model "$m" --threads 1)
    printf '| %s | %s | %s | %s | %s | %.2fx | %.2fx | %.2fx | %s |\n' "$m" "$a" "$b" "$i" "$c" \
      "$(echo "$c / $a" | bc -l)" "$(echo "$c / $b" | bc -l)" "$(echo "$c / $i" | bc -l)" "$phases"
  done
done
echo
echo "shared memory (btl vader):"
"${mpirun[@]}" -np 2 "$build/benchmarks/kitnn_bench_allreduce"
echo "TCP on loopback (--mca btl self,tcp):"
"${mpirun[@]}" -np 2 --mca btl self,tcp "$build/benchmarks/kitnn_bench_allreduce"
