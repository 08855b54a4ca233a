#!/usr/bin/env bash
# Installs the dependencies, builds everything and runs all tests. .ci/run calls it.
#   scripts/test.sh             all three stages (what CI runs):
#     1. release   build/ (Release): every test, including the real-MNIST and program
#                  tests, the kill test and the packaging test
#     2. sanitize  build-asan/ (clang, ASan + UBSan; the layers at -O1, most test files
#                  at -O0): the whole unit-test suite (kitnn_tests, every TEST_CASE)
#                  with every sanitizer report fatal
#     3. fuzz      tests/fuzz/run.sh: each libFuzzer target for KITNN_FUZZ_SECONDS
#                  from the committed seed corpus; a crash fails and names the input
#   scripts/test.sh --quick     stage 1 only
#   scripts/test.sh --sanitize  stage 2 only         scripts/test.sh --fuzz   stage 3 only
# Env: KITNN_FUZZ_SECONDS (per target, default 30), KITNN_JOBS (parallel compile and
# test jobs, default: the number of cores), KITNN_BUILD_DIR / KITNN_ASAN_BUILD_DIR /
# KITNN_FUZZ_BUILD (build folders). Every stage runs even when an earlier one failed;
# the exit code is 1 when any failed. The time of each stage is printed at the end.
# The real-MNIST tests run when KITNN_MNIST_DIR points at the IDX files; when it is
# unset, data/mnist (run_exercise.sh downloads there) or ../shared/data/mnist is used
# if it holds the files. See docs/reliability.md.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

stages=(release sanitize fuzz)
for arg in "$@"; do
  case "$arg" in
    --quick) stages=(release) ;;
    --sanitize) stages=(sanitize) ;;
    --fuzz) stages=(fuzz) ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done
jobs=${KITNN_JOBS:-$(nproc)}
fuzz_seconds=${KITNN_FUZZ_SECONDS:-30}

scripts/install_dependencies.sh || exit 1

# MNIST: $KITNN_MNIST_DIR, else data/mnist (where scripts/run_exercise.sh and
# scripts/download_mnist.sh put it), else ../shared/data/mnist. A folder counts only
# when it holds the test images (what every real-MNIST test reads).
if [[ -z "${KITNN_MNIST_DIR:-}" ]]; then
  for d in "$root/data/mnist" "$root/../shared/data/mnist"; do
    if compgen -G "$d/t10k-images*idx3-ubyte*" > /dev/null; then
      export KITNN_MNIST_DIR="$d"
      break
    fi
  done
fi
echo "test.sh: KITNN_MNIST_DIR=${KITNN_MNIST_DIR:-<unset: real-MNIST tests will be skipped>}"

# Totals over the stages, for the closing "N passed, N failed" line.
passed=0 failed=0 skipped=0
summary=()

# Adds a CTest run's counts (from its JUnit file) to the totals.
count_ctest() {
  local xml=$1 t f s
  if [[ ! -f "$xml" ]]; then failed=$((failed + 1)); return; fi
  # The <testsuite> element's attributes (one per line) come before any <testcase>.
  t=$(grep -o '\btests="[0-9]*"' "$xml" | head -1 | tr -dc 0-9)
  f=$(grep -o '\bfailures="[0-9]*"' "$xml" | head -1 | tr -dc 0-9)
  s=$(grep -o '\bskipped="[0-9]*"' "$xml" | head -1 | tr -dc 0-9)
  t=${t:-0} f=${f:-0} s=${s:-0}
  passed=$((passed + t - f - s)) failed=$((failed + f)) skipped=$((skipped + s))
}

# Configures and builds $1 with the remaining arguments as CMake options.
build() {
  local dir=$1; shift
  cmake -S . -B "$dir" "$@" > "$dir/configure.log" 2>&1 ||
    { cat "$dir/configure.log"; echo "test.sh: configuring $dir failed" >&2; return 1; }
  cmake --build "$dir" -j"$jobs"
}

stage_release() {
  local dir=${KITNN_BUILD_DIR:-build}
  mkdir -p "$dir"
  build "$dir" -DCMAKE_BUILD_TYPE=Release || { failed=$((failed + 1)); return 1; }
  rm -f "$dir/ctest-junit.xml"  # never count a previous run's results
  (cd "$dir" && ctest --output-on-failure -j"$jobs" --output-junit ctest-junit.xml)
  local rc=$?
  count_ctest "$dir/ctest-junit.xml"
  return $rc
}

# The sanitizer pass: kitnn_tests only (the library code and every unit test); the
# example programs, benchmarks and install rules are not built, so the program
# tests (end-to-end, kill test, resume) and the packaging test run in the release stage
# only, and so do the two real-data tests (one epoch on MNIST / Fashion-MNIST: 40 s
# under ASan, for loaders the fuzz stage checks under ASan anyway), and so does
# catch_test_count (it checks how CTest registers the test cases, the same in both builds).
# The ONNX component (KITNN_ONNX) is off here too: its importer is fuzzed under ASan +
# UBSan in the fuzz stage (fuzz_onnx), and its runtime checks run VGG-16 forward, far
# too slow under ASan.
# Compiled with clang (installed for libFuzzer anyway): with ASan + UBSan it compiles
# kitnn's tests several times faster than GCC 12 (measured, docs/reliability.md), and it
# keeps kitnn building with a second compiler (OpenMP is then LLVM's libomp). Without
# -march=native (KITNN_NATIVE=OFF): a quarter faster to compile, and Eigen's SSE2 code
# paths get checked, the release stage runs the native (AVX) ones. KITNN_TESTS_O0: most
# test files at -O0 (three times faster to compile with the sanitizers), the layers at -O1
# (tests/CMakeLists.txt says which files keep -O1 and why).
stage_sanitize() {
  local dir=${KITNN_ASAN_BUILD_DIR:-build-asan} cxx=${KITNN_SANITIZE_CXX:-} c
  if [[ -z "$cxx" ]]; then
    for c in clang++ clang++-14; do command -v "$c" > /dev/null && { cxx=$(command -v "$c"); break; }; done
  fi
  [[ -n "$cxx" ]] || { echo "test.sh: clang++ not found (scripts/install_dependencies.sh)" >&2; failed=$((failed + 1)); return 1; }
  # A folder configured with another compiler cannot be switched in place.
  if [[ -f "$dir/CMakeCache.txt" ]] && ! grep -q "^CMAKE_CXX_COMPILER:[A-Z]*=$cxx\$" "$dir/CMakeCache.txt"; then
    rm -rf "$dir/CMakeCache.txt" "$dir/CMakeFiles"
  fi
  mkdir -p "$dir"
  build "$dir" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" \
        -DKITNN_SANITIZE=ON -DKITNN_NATIVE=OFF -DKITNN_TESTS_O0=ON \
        -DKITNN_BUILD_EXAMPLES=OFF -DKITNN_BUILD_BENCHMARKS=OFF -DKITNN_INSTALL=OFF \
        -DKITNN_ONNX=OFF ||
    { failed=$((failed + 1)); return 1; }
  # Any report aborts the test that triggered it, with a stack trace in its output.
  local asan="halt_on_error=1:abort_on_error=1:detect_leaks=1:strict_string_checks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
  local ubsan="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
  rm -f "$dir/ctest-junit.xml"
  (cd "$dir" && ASAN_OPTIONS=$asan UBSAN_OPTIONS=$ubsan \
     ctest --output-on-failure -j"$jobs" --output-junit ctest-junit.xml \
           -E '^(mnist_integration|fashion_mnist_integration|catch_test_count)$')
  local rc=$?
  count_ctest "$dir/ctest-junit.xml"
  return $rc
}

stage_fuzz() {
  local out rc n_ok n_bad
  out=$(mktemp)
  tests/fuzz/run.sh "$fuzz_seconds" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  n_ok=$(grep -c '^fuzz_[a-z]*: ok' "$out")
  n_bad=$(grep -c '^fuzz_[a-z]*: FAILED' "$out")
  rm -f "$out"
  passed=$((passed + n_ok)) failed=$((failed + n_bad))
  [[ $rc -eq 0 || $n_bad -gt 0 ]] || failed=$((failed + 1))  # failed before fuzzing (build)
  return $rc
}

status=0
for s in "${stages[@]}"; do
  echo
  echo "=============== test.sh: stage $s ==============="
  t0=$(date +%s)
  "stage_$s"
  rc=$?
  t=$(( $(date +%s) - t0 ))
  [[ $rc -eq 0 ]] || status=1
  summary+=("$(printf '  %-9s %-6s %4d s (%d:%02d)' "$s" "$([[ $rc -eq 0 ]] && echo ok || echo FAILED)" "$t" $((t / 60)) $((t % 60)))")
done

echo
echo "=============== test.sh: summary ==============="
printf '%s\n' "${summary[@]}"
echo "test.sh: $passed passed, $failed failed, $skipped skipped"
exit $status
