#!/usr/bin/env bash
# End-to-end test of the exercise's programs, as a user runs them:
#   download_mnist.sh --from (verified copy; a second run is a no-op), mnist_export,
#   mnist_train for one epoch, mnist_apply on the 20 exported PNGs, and the error
#   paths (bad flags -> 2, unreadable image -> reported, others still classified,
#   wrong size refused unless --resize, corrupted model -> clear message).
# Usage: e2e_exercise.sh SOURCE_DIR BIN_DIR WORK_DIR   (needs KITNN_MNIST_DIR)
set -uo pipefail
src=$1 bin=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
fails=0
ok()   { echo "ok   - $*"; }
bad()  { echo "FAIL - $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

# 1. Data: a verified copy, then a no-op.
"$src/scripts/download_mnist.sh" --from "$KITNN_MNIST_DIR" --dir "$work/data" > "$work/dl1.log" 2>&1
check "download_mnist.sh --from copies and verifies" test $? -eq 0 -a "$(ls "$work/data"/*.gz | wc -l)" -eq 4
before=$(stat -c %Y "$work"/data/*.gz | md5sum)
"$src/scripts/download_mnist.sh" --from "$KITNN_MNIST_DIR" --dir "$work/data" > "$work/dl2.log" 2>&1
check "second download is a no-op (verified, not copied again)" \
  test "$(grep -c 'present, checksum OK' "$work/dl2.log")" -eq 4 -a "$(stat -c %Y "$work"/data/*.gz | md5sum)" = "$before"

# 2. Export the example digits.
"$bin/mnist_export" --data "$work/data" --out "$work/png" --count 20 > "$work/export.log" 2>&1
check "mnist_export writes 20 PNGs, a sheet and labels" \
  test "$(ls "$work/png"/example_input_*.png | wc -l)" -eq 20 -a -f "$work/png/example_inputs_sheet.png" -a -f "$work/png/example_labels.csv"

# 3. Train one epoch.
"$bin/mnist_train" --data "$work/data" --out "$work/run" --epochs 1 --threads 2 --progress plain > "$work/train.log" 2>&1
rc=$?
check "mnist_train exits 0" test $rc -eq 0
check "summary shows 11,022 parameters" grep -q "Total params: 11,022" "$work/train.log"
check "best.kitnn and history.csv written" test -s "$work/run/best.kitnn" -a "$(wc -l < "$work/run/history.csv")" -eq 2
acc=$(sed -n 's/^test accuracy: \([0-9.]*\) .*/\1/p' "$work/train.log")
check "test accuracy printed and >= 0.80 after one epoch (got ${acc:-none})" awk -v a="${acc:-0}" 'BEGIN{exit !(a >= 0.80)}'
check "no temporary files left behind" test -z "$(find "$work/run" -name '*.tmp.*')"

# 4. Apply to the 20 PNGs and compare with the labels.
files=()
for i in $(seq 0 19); do files+=("$work/png/example_input_$i.png"); done
"$bin/mnist_apply" --model "$work/run/best.kitnn" "${files[@]}" > "$work/apply.log" 2>&1
check "mnist_apply exits 0 on 20 good images" test $? -eq 0
check "one line per image" test "$(grep -c '^.*example_input_[0-9]*\.png: [0-9] (probability' "$work/apply.log")" -eq 20
right=0
while IFS=, read -r f label; do
  [[ $f == file ]] && continue
  pred=$(grep "/$f: " "$work/apply.log" | sed 's/.*: \([0-9]\) .*/\1/')
  [[ "$pred" == "$label" ]] && right=$((right + 1))
done < "$work/png/example_labels.csv"
check "at least 15 of 20 example digits right (got $right)" test $right -ge 15

# 5. Error paths.
"$bin/mnist_train" --no-such-flag > "$work/e1.log" 2>&1
check "unknown flag -> exit 2" test $? -eq 2
"$bin/mnist_train" --epochs zero > "$work/e2.log" 2>&1
check "bad value -> exit 2" test $? -eq 2
"$bin/mnist_apply" --model "$work/run/best.kitnn" "$work/missing.png" "${files[0]}" > "$work/e3.log" 2>&1
rc=$?
check "unreadable image -> exit 1, named, others still classified" \
  test $rc -eq 1 -a "$(grep -c 'missing.png' "$work/e3.log")" -ge 1 -a "$(grep -c 'example_input_0.png: ' "$work/e3.log")" -eq 1
"$bin/mnist_apply" --model "$work/run/best.kitnn" "$work/png/example_inputs_sheet.png" > "$work/e4.log" 2>&1
check "wrong image size refused, suggests --resize" test $? -eq 1 -a "$(grep -c -- '--resize' "$work/e4.log")" -ge 1
"$bin/mnist_apply" --resize --model "$work/run/best.kitnn" "$work/png/example_inputs_sheet.png" > "$work/e5.log" 2>&1
check "--resize accepts another size" test $? -eq 0
head -c 1000 "$work/run/best.kitnn" > "$work/truncated.kitnn"
"$bin/mnist_apply" --model "$work/truncated.kitnn" "${files[0]}" > "$work/e6.log" 2>&1
check "truncated model -> exit 1 with a clear message" test $? -eq 1 -a "$(grep -c -E 'truncated|checksum' "$work/e6.log")" -ge 1

echo "e2e_exercise: $fails failure(s); logs in $work"
[[ $fails -eq 0 ]]
