#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan + fuzzer), up to KITNN_JOBS
# (default: the number of cores) at once, then runs them side by side, each for SECONDS
# (default 60, wall time) from the committed seed corpus. scripts/test.sh runs it (stage 3).
#   tests/fuzz/run.sh [SECONDS] [TARGET...]     targets: idx model image onnx (default: all;
#                                               onnx only when libonnx-dev is installed)
#   SECONDS = 0: no fuzzing, just run every seed once (a quick regression check)
# Limits: -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 (per input).
# Fails (exit 1) on any crash, sanitizer report, leak, out-of-memory or timeout; the
# input that triggered it is saved as BUILD/artifacts/<target>-crash-… (or leak-,
# oom-, timeout-) and can be replayed with BUILD/fuzz_<target> FILE.
# Needs clang++ with libFuzzer (Debian: clang-14 libclang-rt-14-dev, installed by
# scripts/install_dependencies.sh). Env: CXX_FUZZ (compiler, default
# clang++, else clang++-14), KITNN_FUZZ_BUILD (default build-fuzz).
# New inputs found go to BUILD/corpus/<target>, never into the committed tests/fuzz/corpus.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${1:-60}
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "run.sh: SECONDS must be a number, got '$seconds'" >&2; exit 2; }
shift $(( $# > 0 ? 1 : 0 ))
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(idx model image)
  if [[ -f /usr/include/onnx/onnx_pb.h ]]; then targets+=(onnx)
  else echo "run.sh: fuzz_onnx skipped: libonnx-dev is not installed (scripts/install_dependencies.sh)"; fi
fi
build=${KITNN_FUZZ_BUILD:-$root/build-fuzz}

cxx=${CXX_FUZZ:-}
if [[ -z "$cxx" ]]; then
  for c in clang++ clang++-14; do command -v "$c" >/dev/null && { cxx=$c; break; }; done
fi
[[ -n "$cxx" ]] || { echo "run.sh: clang++ not found: scripts/install_dependencies.sh" >&2; exit 1; }
deps=$(pkg-config --cflags eigen3 zlib stb) || { echo "run.sh: pkg-config eigen3 zlib stb failed" >&2; exit 1; }
mkdir -p "$build/artifacts"

flags=(-std=c++17 -g -O1 -fno-omit-frame-pointer
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -fsanitize-ignorelist="$here/ubsan_ignore.txt"
       -I"$root/include" -I"$here")
jobs=${KITNN_JOBS:-$(nproc)}

# 1. Build the targets that are missing or older than their sources, up to $jobs at once.
# Rebuilt when the target or any kitnn header is newer than the binary.
building=()
for t in "${targets[@]}"; do
  src=$here/fuzz_$t.cpp
  [[ -f "$src" ]] || { echo "run.sh: no target '$t' ($src)" >&2; exit 2; }
  bin=$build/fuzz_$t
  if [[ ! -x "$bin" || -n "$(find "$src" "$here/fuzz_common.hpp" "$root/include" -newer "$bin" -print -quit)" ]]; then
    while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do wait -n; done
    echo "== building fuzz_$t with $cxx"
    extra=()  # the ONNX importer links Debian's libonnx_proto and protobuf
    [[ $t == onnx ]] && extra=(-DONNX_NAMESPACE=onnx -DONNX_ML=1 -lonnx_proto -lprotobuf)
    # shellcheck disable=SC2086  # $deps is a list of flags
    ( "$cxx" "${flags[@]}" $deps "$src" -o "$bin.new" -lz "${extra[@]}" > "$build/build_$t.log" 2>&1
      echo $? > "$build/build_$t.rc" ) &
    building+=("$t")
  fi
done
wait
for t in "${building[@]}"; do
  if [[ "$(cat "$build/build_$t.rc" 2>/dev/null)" == 0 ]]; then
    mv "$build/fuzz_$t.new" "$build/fuzz_$t"
  else
    cat "$build/build_$t.log" >&2
    echo "run.sh: build of fuzz_$t failed" >&2
    exit 1
  fi
done

# 2. Run every target at once, each for $seconds (wall time; they share the cores).
pids=()
for t in "${targets[@]}"; do
  bin=$build/fuzz_$t seeds=$here/corpus/$t log=$build/fuzz_$t.log
  touch "$build/.start_$t"
  if [[ "$seconds" -eq 0 ]]; then
    echo "== fuzz_$t: running the $(ls "$seeds" | wc -l) seeds once"
    "$bin" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
           -artifact_prefix="$build/artifacts/$t-" "$seeds"/* > "$log" 2>&1 &
  else
    echo "== fuzz_$t: ${seconds} s"
    mkdir -p "$build/corpus/$t"
    "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
           -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" \
           "$build/corpus/$t" "$seeds" > "$log" 2>&1 &
  fi
  pids+=($!)
done

# 3. Collect: a crash, sanitizer report, leak, OOM or timeout fails, naming the input.
fail=0
summary=()
for i in "${!targets[@]}"; do
  t=${targets[$i]} bin=$build/fuzz_${targets[$i]} seeds=$here/corpus/${targets[$i]}
  log=$build/fuzz_$t.log
  wait "${pids[$i]}"
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  if [[ $rc -eq 0 ]]; then
    summary+=("fuzz_$t: ok, ${execs:-$(ls "$seeds" | wc -l)} executions${cov:+, $cov}")
  else
    fail=1
    grep -E 'ERROR|SUMMARY|Test unit written|==[0-9]+==' "$log" | head -20
    kept=$(find "$build/artifacts" -name "$t-*" -newer "$build/.start_$t" | head -5)
    summary+=("fuzz_$t: FAILED (exit $rc), see $log")
    for a in $kept; do summary+=("  input kept: $a  (replay: $bin $a)"); done
  fi
done
printf '%s\n' "${summary[@]}"
exit $fail
