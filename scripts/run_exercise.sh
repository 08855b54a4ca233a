#!/usr/bin/env bash
# The MNIST exercise end to end, from a fresh machine:
#   1. install the dependencies, 2. build, 3. get MNIST (verified checksums),
#   4. export the first 20 test digits as example_input_*.png,
#   5. train the exercise network (11,022 parameters) for 10 epochs, keeping the
#      best model by validation loss, and report the test accuracy,
#   6. classify the 20 example PNGs with the best model.
# Options are passed on to mnist_train (e.g. --epochs 3, --threads 2, --model lenet5).
# Data: $KITNN_MNIST_DIR if set; else data/mnist, downloaded (or copied from
# ../shared/data/mnist when that folder exists).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi

scripts/install_dependencies.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target mnist_export mnist_train mnist_apply

if [[ -n "${KITNN_MNIST_DIR:-}" ]]; then
  data="$KITNN_MNIST_DIR"
else
  data="$root/data/mnist"
  if [[ -d "$root/../shared/data/mnist" ]]; then
    scripts/download_mnist.sh --dir "$data" --from "$root/../shared/data/mnist"
  else
    scripts/download_mnist.sh --dir "$data"
  fi
fi

out="$root/runs/exercise"
mkdir -p "$out/examples"
build/examples/mnist_export --data "$data" --out "$out/examples" --count 20
build/examples/mnist_train --data "$data" --out "$out" "$@"
echo
echo "Classifying the 20 example digits with $out/best.kitnn:"
build/examples/mnist_apply --model "$out/best.kitnn" "$out"/examples/example_input_{0..19}.png \
  | tee "$out/apply.txt"
# Score the 20 predictions against example_labels.csv (file,label).
awk -F'[,:( ]+' 'NR == FNR { if (FNR > 1) label[$1] = $2; next }
  { n = split($1, p, "/"); f = p[n]; total++; if (label[f] == $2) right++ }
  END { printf "example digits: %d of %d classified correctly\n", right, total }' \
  "$out/examples/example_labels.csv" "$out/apply.txt"
