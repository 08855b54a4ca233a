#!/usr/bin/env bash
# End-to-end test of the exercise's programs, as a user runs them:
#   download_mnist.sh --from (verified copy; a second run is a no-op), mnist_export,
#   mnist_train for one epoch, mnist_apply on the 20 exported PNGs, and the error
#   paths (bad flags -> 2, unreadable image -> reported, others still classified,
#   with --raw a wrong size refused unless --resize, corrupted model -> clear message),
#   and the "own digits" features: MNIST-style preprocessing (the default), --raw,
#   --json, --save-preprocessed, --labels with the committed tests/data/own_digits set.
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
"$bin/mnist_apply" --raw --model "$work/run/best.kitnn" "$work/png/example_inputs_sheet.png" > "$work/e4.log" 2>&1
check "--raw: wrong image size refused, suggests --resize" test $? -eq 1 -a "$(grep -c -- '--resize' "$work/e4.log")" -ge 1
"$bin/mnist_apply" --raw --resize --model "$work/run/best.kitnn" "$work/png/example_inputs_sheet.png" > "$work/e5.log" 2>&1
check "--raw --resize accepts another size" test $? -eq 0
head -c 1000 "$work/run/best.kitnn" > "$work/truncated.kitnn"
"$bin/mnist_apply" --model "$work/truncated.kitnn" "${files[0]}" > "$work/e6.log" 2>&1
check "truncated model -> exit 1 with a clear message" test $? -eq 1 -a "$(grep -c -E 'truncated|checksum' "$work/e6.log")" -ge 1

# 6. Own digits: preprocessing like MNIST (the default), --raw, --json, --labels.
# MNIST digits are already in MNIST form: preprocessing must not change their predictions.
"$bin/mnist_apply" --raw --model "$work/run/best.kitnn" "${files[@]}" > "$work/raw20.log" 2>&1
same=$(paste -d' ' <(sed -n 's/.*: \([0-9]\) (prob.*/\1/p' "$work/apply.log") \
                   <(sed -n 's/.*: \([0-9]\) (prob.*/\1/p' "$work/raw20.log") | awk '$1 == $2' | wc -l)
check "preprocessed and --raw agree on at least 19 of the 20 MNIST examples (got $same)" test "$same" -ge 19
"$bin/mnist_apply" --model "$work/run/best.kitnn" --save-preprocessed "$work/pre" "${files[@]:0:3}" > "$work/pre.log" 2>&1
check "--save-preprocessed writes the 28x28 images the network saw" \
  test $? -eq 0 -a -f "$work/pre/example_input_0.png" -a -f "$work/pre/example_input_2.png"
"$bin/mnist_apply" --raw --model "$work/run/best.kitnn" "$work/pre/example_input_0.png" > "$work/pre_raw.log" 2>&1
check "a saved preprocessed image is 28x28 and gets the same prediction with --raw" \
  test $? -eq 0 -a "$(sed -n '1s/.*: \([0-9]\) .*/\1/p' "$work/pre.log")" = "$(sed -n '1s/.*: \([0-9]\) .*/\1/p' "$work/pre_raw.log")"
{ printf 'P5\n40 30\n255\n'; head -c 1200 /dev/zero | tr '\0' '\310'; } > "$work/blank.pgm"
"$bin/mnist_apply" --model "$work/run/best.kitnn" "$work/blank.pgm" "${files[0]}" > "$work/e7.log" 2>&1
check "blank image -> exit 1, named as blank, others still classified" \
  test $? -eq 1 -a "$(grep -c 'blank.pgm: blank image' "$work/e7.log")" -eq 1 -a "$(grep -c 'example_input_0.png: ' "$work/e7.log")" -eq 1
"$bin/mnist_apply" --json --top 3 --model "$work/run/best.kitnn" "${files[0]}" "$work/missing.png" > "$work/json.log" 2>&1
check "--json: one object per image, top list, errors as objects" \
  test "$(grep -c '^{"file": ".*example_input_0.png", "prediction": [0-9], "probability": [0-9.]*, "top": \[{"digit": [0-9], "probability": [0-9.]*}, {.*}, {.*}\]}$' "$work/json.log")" -eq 1 \
    -a "$(grep -c '^{"file": ".*missing.png", "error": ".*missing.png: cannot open.*"}$' "$work/json.log")" -eq 1
"$bin/mnist_apply" --model "$work/run/best.kitnn" --labels "$work/png/example_labels.csv" "$work/png" > "$work/labels20.log" 2>&1
check "--labels on the 20 examples: confusion matrix and accuracy line" \
  test $? -eq 0 -a "$(grep -c '^confusion matrix' "$work/labels20.log")" -eq 1 -a "$(grep -c -E '^accuracy: [01]\.[0-9]{4} \([0-9]+/20\)$' "$work/labels20.log")" -eq 1
own=$src/tests/data/own_digits
"$bin/mnist_apply" --model "$work/run/best.kitnn" --labels "$own/labels.csv" "$own" > "$work/own.log" 2>&1
own_acc=$(sed -n 's/^accuracy: \([0-9.]*\) .*/\1/p' "$work/own.log")
"$bin/mnist_apply" --raw --resize --model "$work/run/best.kitnn" --labels "$own/labels.csv" "$own" > "$work/own_raw.log" 2>&1
own_raw=$(sed -n 's/^accuracy: \([0-9.]*\) .*/\1/p' "$work/own_raw.log")
check "own digits (50 drawn/photographed digits): preprocessed accuracy >= 0.70 (got ${own_acc:-none})" \
  awk -v a="${own_acc:-0}" 'BEGIN{exit !(a >= 0.70)}'
check "own digits with --raw --resize do far worse (got ${own_raw:-none} vs ${own_acc:-none})" \
  awk -v a="${own_acc:-0}" -v r="${own_raw:-1}" 'BEGIN{exit !(r <= 0.5 && a - r >= 0.3)}'

echo "e2e_exercise: $fails failure(s); logs in $work"
[[ $fails -eq 0 ]]
