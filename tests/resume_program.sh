#!/usr/bin/env bash
# mnist_train --resume, end to end: a run killed (SIGKILL) in the middle of training
# and resumed from its last.kitnn ends with a best model byte-identical to that of
# an uninterrupted run with the same settings and threads (the library-level test
# is tests/test_training.cpp; this one covers the program's flag handling).
#   resume_program.sh BIN_DIR WORK_DIR [SEED]      (needs KITNN_MNIST_DIR)
# Two runs: one network (--ensemble 1), and an ensemble of two (--ensemble 2) killed
# while its second member trains and resumed from OUT/member-2/last.kitnn: the resumed
# run must not train member 1 again, and its averaged model must equal the
# uninterrupted run's, byte for byte.
# The kill is keyed to the log, not to a clock: fit() writes last.kitnn at the end of
# every epoch, before it prints the next "Epoch k/3" line, so the kill comes a seeded
# random 0-400 ms after "Epoch 2/3" appears (the member's): after epoch 1's checkpoint,
# before the last epoch ends. The test fails unless the second run really resumed,
# after epoch 1 or 2 (a run that had finished, or a kill before any checkpoint, is a
# failure).
set -euo pipefail
bin=$1 work=$2 seed=${3:-1}
rm -rf "$work" && mkdir -p "$work"
RANDOM=$seed

# scenario NAME ENSEMBLE: train, kill, resume, compare.
scenario() {
  local name=$1 ensemble=$2
  local w="$work/$name"
  mkdir -p "$w"
  local args=(--model best --ensemble "$ensemble" --limit 1500 --epochs 3 --threads 1
              --data "$KITNN_MNIST_DIR" --progress plain)
  # The checkpoint of the run that gets killed: the last member's.
  local ckpt="$w/part/last.kitnn"
  ((ensemble > 1)) && ckpt="$w/part/member-$ensemble/last.kitnn"

  "$bin/mnist_train" "${args[@]}" --out "$w/full" > "$w/full.log"

  local delay_ms=$((RANDOM % 400))
  "$bin/mnist_train" "${args[@]}" --out "$w/part" > "$w/part1.log" 2>&1 &
  local pid=$!
  # Wait (at most 120 s) for the last member's second epoch to start; the run must still be going.
  local i
  for ((i = 0; i < 6000; i++)); do
    (($(grep -c '^Epoch 2/3' "$w/part1.log") >= ensemble)) && break
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.02
  done
  if (($(grep -c '^Epoch 2/3' "$w/part1.log") < ensemble)); then
    kill -9 "$pid" 2> /dev/null || true
    echo "FAIL ($name): the run never reached the last member's epoch 2"; cat "$w/part1.log"; exit 1
  fi
  sleep "$(printf '0.%03d' "$delay_ms")"
  kill -9 "$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
  echo "$name: killed ${delay_ms} ms after 'Epoch 2/3': $(grep -c '^Epoch' "$w/part1.log") epoch(s) started"
  if grep -q '^best model:' "$w/part1.log"; then
    echo "FAIL ($name): the run had finished before the kill (the test needs a longer run)"; exit 1
  fi
  [[ -f "$ckpt" ]] || { echo "FAIL ($name): no $ckpt after epoch 1"; exit 1; }
  "$bin/mnist_train" --resume "$ckpt" --threads 1 --data "$KITNN_MNIST_DIR" \
    --out "$w/part" --progress plain > "$w/part2.log"
  if ! grep -Eq '^Resuming from .* after epoch [12]$' "$w/part2.log"; then
    echo "FAIL ($name): the second run did not resume after epoch 1 or 2:"; head -20 "$w/part2.log"; exit 1
  fi
  grep '^Resuming' "$w/part2.log"
  # It trained the remaining epochs only: "Epoch 3/3" and nothing before the resume
  # point, and no member before the resumed one.
  grep -q '^Epoch 3/3' "$w/part2.log" || { echo "FAIL ($name): the resumed run did not train epoch 3"; exit 1; }
  if grep -q '^Epoch 1/3' "$w/part2.log"; then echo "FAIL ($name): the resumed run trained an epoch 1 again"; exit 1; fi
  if ((ensemble > 1)); then
    [[ $(grep -c '^member [0-9]*: ' "$w/part2.log") == "$ensemble" ]] ||
      { echo "FAIL ($name): the resumed run did not test every member"; cat "$w/part2.log"; exit 1; }
    cmp "$w/full/member-1/best.kitnn" "$w/part/member-1/best.kitnn" ||
      { echo "FAIL ($name): member 1 differs"; exit 1; }
  fi

  # Flags that would change the run are refused.
  if "$bin/mnist_train" --resume "$ckpt" --lr 0.1 --data "$KITNN_MNIST_DIR" \
       --out "$w/part" > "$w/refused.log" 2>&1; then
    echo "FAIL ($name): --resume accepted --lr"; exit 1
  fi
  grep -q "cannot be changed" "$w/refused.log" || { echo "FAIL ($name): no clear error for --lr"; cat "$w/refused.log"; exit 1; }
  # A best-model file is not a training checkpoint.
  if "$bin/mnist_train" --resume "$w/part/best.kitnn" --data "$KITNN_MNIST_DIR" \
       --out "$w/x" > "$w/notckpt.log" 2>&1; then
    echo "FAIL ($name): --resume accepted best.kitnn"; exit 1
  fi
  grep -q "not a training checkpoint" "$w/notckpt.log" || { echo "FAIL ($name): unclear error"; cat "$w/notckpt.log"; exit 1; }

  if cmp "$w/full/best.kitnn" "$w/part/best.kitnn"; then
    echo "PASS ($name): the resumed run's best model is byte-identical to the uninterrupted one"
    grep "test accuracy" "$w/full.log" "$w/part2.log"
  else
    echo "FAIL ($name): the resumed run differs"; tail -n 5 "$w/full.log" "$w/part2.log"; exit 1
  fi
}

scenario single 1
scenario ensemble 2

# A member resumed into another --out, where the members before it are missing.
if "$bin/mnist_train" --resume "$work/ensemble/part/member-2/last.kitnn" --threads 1 \
     --data "$KITNN_MNIST_DIR" --out "$work/elsewhere" > "$work/missing.log" 2>&1; then
  echo "FAIL: resumed member 2 without member 1"; exit 1
fi
grep -q "member-1/best.kitnn: ensemble member 1 of the interrupted run is missing" "$work/missing.log" ||
  { echo "FAIL: unclear error for a missing member"; cat "$work/missing.log"; exit 1; }
echo "PASS: a member resumed without the members before it is refused, naming the file"
