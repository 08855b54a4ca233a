#!/usr/bin/env bash
# mnist_train --resume, end to end: a run killed (SIGKILL) at a random moment and
# resumed from its OUT/last.kitnn ends with a best model byte-identical to that of
# an uninterrupted run with the same settings and threads (the library-level test
# is tests/test_training.cpp; this one covers the program's flag handling).
#   resume_program.sh BIN_DIR WORK_DIR [SEED]      (needs KITNN_MNIST_DIR)
# Wherever the kill lands (during epoch 1, 2 or 3, or after the end), resuming must
# give the same weights, so the test does not depend on timing.
set -euo pipefail
bin=$1 work=$2 seed=${3:-1}
rm -rf "$work" && mkdir -p "$work"
args=(--model best --limit 1500 --epochs 3 --threads 1 --data "$KITNN_MNIST_DIR" --progress plain)

"$bin/mnist_train" "${args[@]}" --out "$work/full" > "$work/full.log"

RANDOM=$seed
delay_ms=$((2500 + RANDOM % 5000))  # loading MNIST takes ~2 s
"$bin/mnist_train" "${args[@]}" --out "$work/part" > "$work/part1.log" &
pid=$!
sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
kill -9 "$pid" 2> /dev/null || true
wait "$pid" 2> /dev/null || true
echo "killed after ${delay_ms} ms: $(grep -c '^Epoch' "$work/part1.log") epoch(s) started"
if [[ ! -f "$work/part/last.kitnn" ]]; then
  echo "killed before the first checkpoint: starting again (nothing to resume)"
  "$bin/mnist_train" "${args[@]}" --out "$work/part" > "$work/part2.log"
else
  "$bin/mnist_train" --resume "$work/part/last.kitnn" --threads 1 --data "$KITNN_MNIST_DIR" \
    --out "$work/part" --progress plain > "$work/part2.log"
  grep -E "Resuming|nothing to do" "$work/part2.log"
fi

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
