#!/usr/bin/env bash
# mnist_train --resume, end to end: a run killed (SIGKILL) in the middle of training
# and resumed from its OUT/last.kitnn ends with a best model byte-identical to that of
# an uninterrupted run with the same settings and threads (the library-level test
# is tests/test_training.cpp; this one covers the program's flag handling).
#   resume_program.sh BIN_DIR WORK_DIR [SEED]      (needs KITNN_MNIST_DIR)
# The kill is keyed to the log, not to a clock: fit() writes last.kitnn at the end of
# every epoch, before it prints the next "Epoch k/3" line, so the kill comes a seeded
# random 0-400 ms after "Epoch 2/3" appears: after epoch 1's checkpoint, before the
# last epoch ends. The test fails unless the second run really resumed, after epoch 1
# or 2 (a run that had finished, or a kill before any checkpoint, is a failure).
set -euo pipefail
bin=$1 work=$2 seed=${3:-1}
rm -rf "$work" && mkdir -p "$work"
args=(--model best --limit 1500 --epochs 3 --threads 1 --data "$KITNN_MNIST_DIR" --progress plain)

"$bin/mnist_train" "${args[@]}" --out "$work/full" > "$work/full.log"

RANDOM=$seed
delay_ms=$((RANDOM % 400))
"$bin/mnist_train" "${args[@]}" --out "$work/part" > "$work/part1.log" 2>&1 &
pid=$!
# Wait (at most 120 s) for the second epoch to start; the run must still be going.
for ((i = 0; i < 6000; i++)); do
  grep -q '^Epoch 2/3' "$work/part1.log" && break
  kill -0 "$pid" 2> /dev/null || break
  sleep 0.02
done
if ! grep -q '^Epoch 2/3' "$work/part1.log"; then
  kill -9 "$pid" 2> /dev/null || true
  echo "FAIL: the run never reached epoch 2"; cat "$work/part1.log"; exit 1
fi
sleep "$(printf '0.%03d' "$delay_ms")"
kill -9 "$pid" 2> /dev/null || true
wait "$pid" 2> /dev/null || true
echo "killed ${delay_ms} ms after 'Epoch 2/3': $(grep -c '^Epoch' "$work/part1.log") epoch(s) started"
if grep -q 'best model: epoch' "$work/part1.log"; then
  echo "FAIL: the run had finished before the kill (the test needs a longer run)"; exit 1
fi
[[ -f "$work/part/last.kitnn" ]] || { echo "FAIL: no last.kitnn after epoch 1"; exit 1; }
"$bin/mnist_train" --resume "$work/part/last.kitnn" --threads 1 --data "$KITNN_MNIST_DIR" \
  --out "$work/part" --progress plain > "$work/part2.log"
if ! grep -Eq '^Resuming from .* after epoch [12]$' "$work/part2.log"; then
  echo "FAIL: the second run did not resume after epoch 1 or 2:"; head -20 "$work/part2.log"; exit 1
fi
grep '^Resuming' "$work/part2.log"
# It trained the remaining epochs only: "Epoch 3/3" and nothing before the resume point.
grep -q '^Epoch 3/3' "$work/part2.log" || { echo "FAIL: the resumed run did not train epoch 3"; exit 1; }
if grep -q '^Epoch 1/3' "$work/part2.log"; then echo "FAIL: the resumed run trained epoch 1 again"; exit 1; fi

# Flags that would change the run are refused.
if "$bin/mnist_train" --resume "$work/part/last.kitnn" --lr 0.1 --data "$KITNN_MNIST_DIR" \
     --out "$work/part" > "$work/refused.log" 2>&1; then
  echo "FAIL: --resume accepted --lr"; exit 1
fi
grep -q "cannot be changed" "$work/refused.log" || { echo "FAIL: no clear error for --lr"; cat "$work/refused.log"; exit 1; }
# A best-model file is not a training checkpoint.
if "$bin/mnist_train" --resume "$work/part/best.kitnn" --data "$KITNN_MNIST_DIR" \
     --out "$work/x" > "$work/notckpt.log" 2>&1; then
  echo "FAIL: --resume accepted best.kitnn"; exit 1
fi
grep -q "not a training checkpoint" "$work/notckpt.log" || { echo "FAIL: unclear error"; cat "$work/notckpt.log"; exit 1; }

if cmp "$work/full/best.kitnn" "$work/part/best.kitnn"; then
  echo "PASS: the resumed run's best model is byte-identical to the uninterrupted one"
  grep "test accuracy" "$work/full.log" "$work/part2.log"
else
  echo "FAIL: the resumed run differs"; tail -5 "$work/full.log" "$work/part2.log"; exit 1
fi
