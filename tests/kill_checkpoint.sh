#!/usr/bin/env bash
# Kill test: a training process killed at any moment (SIGKILL: no handler, no
# cleanup) leaves every checkpoint either absent (killed before the first save) or
# complete — the previous one or the new one, never a torn file.
#
#   kill_checkpoint.sh BIN_DIR PNG WORK_DIR [KILLS] [SEED]
#     BIN_DIR   folder with mnist_train and mnist_apply
#     PNG       any digit image, to check that a checkpoint loads and predicts
#     KILLS     number of kills (default 10), SEED for the kill times (default 1)
#
# Data: a small synthetic MNIST (500 training and 100 test images, 28x28, label i % 10,
# a bright band whose position is the label, plus noise), written as raw IDX files by
# perl (part of every Debian system) from a fixed seed: the test needs no download.
# Training: mnist_train --val-split 0 (so the best-model checkpoint follows the training
# loss and is rewritten almost every epoch, a few per second) for an unbounded number
# of epochs; every run starts in the same OUT folder, so a run overwrites the previous
# run's files, and each kill can land before, during or after a write.
# After each kill, every *.kitnn in OUT must load completely and classify the PNG
# (mnist_apply exits 1 with "checksum mismatch"/"truncated" on a torn file), and the
# only temporary files ("*.tmp.<pid>", written by io/atomic_file.hpp before the rename)
# may be the ones of killed runs, at most one per run (the write in flight when it died).
# The kill times (ms after start) are drawn from SEED and printed, so a failure replays.
set -uo pipefail
bin=$1 png=$2 work=$3 kills=${4:-10} seed=${5:-1}
for p in mnist_train mnist_apply; do
  [[ -x "$bin/$p" ]] || { echo "kill_checkpoint: $bin/$p not found" >&2; exit 1; }
done
[[ -f "$png" ]] || { echo "kill_checkpoint: $png not found" >&2; exit 1; }
command -v perl > /dev/null || { echo "kill_checkpoint: needs perl" >&2; exit 1; }
rm -rf "$work" && mkdir -p "$work/data" "$work/out"

# Synthetic MNIST (500 training, 100 test images; tests/synthetic_mnist.sh, shared with
# the MPI tests): no download needed.
"$(dirname "$0")/synthetic_mnist.sh" "$work/data" 500 ||
  { echo "kill_checkpoint: could not write the synthetic data" >&2; exit 1; }

fails=0
bad() { echo "FAIL - $*"; fails=$((fails + 1)); }
killed_pids=()
saw_checkpoint=0 saw_tmp=0
RANDOM=$seed
start_all=$(date +%s)
for k in $(seq 1 "$kills"); do
  # First kill early (often before the first save), the others 0.1 to 2.5 s in.
  if [[ $k -eq 1 ]]; then delay_ms=$((RANDOM % 150)); else delay_ms=$((100 + (RANDOM * 32768 + RANDOM) % 2400)); fi
  "$bin/mnist_train" --data "$work/data" --out "$work/out" --epochs 100000 --batch 50 \
      --val-split 0 --threads 1 --seed "$k" --progress plain > "$work/train_$k.log" 2>&1 &
  pid=$!
  sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
  if ! kill -0 "$pid" 2>/dev/null; then
    bad "kill $k: mnist_train exited before the kill (see $work/train_$k.log)"
    wait "$pid"
    continue
  fi
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null
  killed_pids+=("$pid")
  saves=$(grep -c 'saving model to' "$work/train_$k.log")

  # Every checkpoint present loads in full and predicts.
  checked=()
  for f in "$work/out"/*.kitnn; do
    [[ -e "$f" ]] || continue
    if "$bin/mnist_apply" --model "$f" "$png" > "$work/apply_$k.log" 2>&1 &&
       grep -q '(probability' "$work/apply_$k.log"; then
      checked+=("$(basename "$f") ok")
      saw_checkpoint=1
    else
      bad "kill $k: $(basename "$f") does not load: $(head -c 300 "$work/apply_$k.log")"
      cp "$f" "$work/broken_${k}_$(basename "$f")"
    fi
  done

  # Temporary files: only from killed runs, at most one per run.
  tmps=()
  for t in "$work/out"/*.tmp.*; do [[ -e "$t" ]] && tmps+=("$(basename "$t")"); done
  for p in "${killed_pids[@]}"; do
    n=0
    for t in "${tmps[@]}"; do [[ "${t##*.tmp.}" == "$p" ]] && n=$((n + 1)); done
    [[ $n -le 1 ]] || bad "kill $k: $n temporary files of run pid $p (at most 1 may be in flight)"
  done
  for t in "${tmps[@]}"; do
    owner=${t##*.tmp.} known=0
    for p in "${killed_pids[@]}"; do [[ "$owner" == "$p" ]] && known=1; done
    [[ $known -eq 1 ]] || bad "kill $k: temporary file $t is not from a killed run"
  done
  [[ $(printf '%s\n' "${tmps[@]}" | grep -c "\.tmp\.$pid\$") -gt 0 ]] && saw_tmp=1

  printf 'kill %2d at %4d ms (pid %s, %s saves logged): %s; temporary files: %s\n' \
    "$k" "$delay_ms" "$pid" "$saves" "${checked[*]:-no checkpoint yet}" "${tmps[*]:-none}"
done

[[ $saw_checkpoint -eq 1 ]] || bad "no kill happened after a checkpoint was written: nothing was checked"
echo "kill_checkpoint: $kills kills in $(( $(date +%s) - start_all )) s (seed $seed)$([[ $saw_tmp -eq 1 ]] && echo ', at least one during a write')"
if [[ $fails -eq 0 ]]; then
  echo "kill_checkpoint: all checkpoints complete after every kill"
  exit 0
fi
echo "kill_checkpoint: $fails failure(s); files in $work"
exit 1
