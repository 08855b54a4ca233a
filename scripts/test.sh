#!/usr/bin/env bash
# Installs the dependencies, builds everything and runs all tests (CTest).
# This is the command .ci/run calls.
#   scripts/test.sh            build in build/ and run the tests
#   scripts/test.sh --sanitize build in build-asan/ with AddressSanitizer + UBSan
#                              (-O1 -g, KITNN_SANITIZE=ON) and run the tests there
#                              (KITNN_JOBS=N limits the parallel compile jobs)
# The real-MNIST integration tests run when KITNN_MNIST_DIR points at the IDX
# files; when it is unset and ../shared/data/mnist exists, that folder is used.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

sanitize=
for arg in "$@"; do
  case "$arg" in
    --sanitize) sanitize=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

scripts/install_dependencies.sh

if [[ -z "${KITNN_MNIST_DIR:-}" && -d "$root/../shared/data/mnist" ]]; then
  export KITNN_MNIST_DIR="$root/../shared/data/mnist"
fi
echo "test.sh: KITNN_MNIST_DIR=${KITNN_MNIST_DIR:-<unset: real-MNIST tests will be skipped>}"

if [[ -n "$sanitize" ]]; then
  # Sanitizer build: the tests and the example programs (the end-to-end test runs
  # them), no benchmarks. Any ASan/UBSan report aborts the test that triggered it.
  build=${KITNN_BUILD_DIR:-build-asan}
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" \
        -DKITNN_SANITIZE=ON -DKITNN_BUILD_BENCHMARKS=OFF
  cmake --build "$build" -j"${KITNN_JOBS:-$(nproc)}"
  cd "$build"
  export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:strict_string_checks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
  # packaging_consumer builds unsanitized consumers: the normal run covers it.
  exec ctest --output-on-failure -j1 -E '^packaging_consumer$'
fi

build=${KITNN_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure -j1
