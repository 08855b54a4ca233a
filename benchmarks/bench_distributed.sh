#!/usr/bin/env bash
# Distributed training throughput on one machine (docs/distributed.md): for each model,
# kitnn_bench_train as one process with 1 thread, one process with 2 threads, and
# `mpirun -np 2` with 1 thread per rank; images/s of the whole job in the last epoch.
# Then the per-step gradient reduction of every zoo model over shared memory and TCP.
#   benchmarks/bench_distributed.sh BUILD_DIR MNIST_DIR [LIMIT] [EPOCHS] [MODELS]
set -euo pipefail
build=$1 data=$2 limit=${3:-3000} epochs=${4:-2} models=${5:-"keck lenet5 kerascnn best"}
mpirun=(mpirun --allow-run-as-root --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
bench=$build/benchmarks/kitnn_bench_train
ips() { "$@" --data "$data" --limit "$limit" --epochs "$epochs" --json | tail -1 |
        sed 's/.*"images_per_s": \([0-9.]*\).*/\1/'; }
echo "| model | 1 process, 1 thread | 1 process, 2 threads | mpirun -np 2, 1 thread each | np2 / 1 thread | np2 / 2 threads |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for m in $models; do
  a=$(ips "$bench" --model "$m" --threads 1 --distributed off)
  b=$(ips "$bench" --model "$m" --threads 2 --distributed off)
  c=$(ips "${mpirun[@]}" -np 2 "$bench" --model "$m" --threads 1)
  printf '| %s | %s | %s | %s | %.2fx | %.2fx |\n' "$m" "$a" "$b" "$c" \
    "$(echo "$c / $a" | bc -l)" "$(echo "$c / $b" | bc -l)"
done
echo
echo "shared memory (btl vader):"
"${mpirun[@]}" -np 2 "$build/benchmarks/kitnn_bench_allreduce"
echo "TCP on loopback (--mca btl self,tcp):"
"${mpirun[@]}" -np 2 --mca btl self,tcp "$build/benchmarks/kitnn_bench_allreduce"
