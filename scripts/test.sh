#!/usr/bin/env bash
# Installs the dependencies, builds everything and runs all tests (CTest).
# This is the command .ci/run calls.
#   scripts/test.sh            build in build/ and run the tests
# The real-MNIST integration tests run when KITNN_MNIST_DIR points at the IDX
# files; when it is unset and ../shared/data/mnist exists, that folder is used.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

scripts/install_dependencies.sh

if [[ -z "${KITNN_MNIST_DIR:-}" && -d "$root/../shared/data/mnist" ]]; then
  export KITNN_MNIST_DIR="$root/../shared/data/mnist"
fi
echo "test.sh: KITNN_MNIST_DIR=${KITNN_MNIST_DIR:-<unset: real-MNIST tests will be skipped>}"

build=${KITNN_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure -j1
