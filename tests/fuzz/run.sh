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
# fuzz_model and fuzz_onnx load models, so they instantiate every layer of the registry
# in float and double; those layers are compiled once, as two objects built side by side
# (cmake/kitnn_layers.cpp, as kitnn's CMake build does: KITNN_PRECOMPILED_LAYERS in
# include/kitnn/layers/registry.hpp), with the same flags (the same instrumentation)
# and linked into both: the stage builds in about two thirds of the time.
stale() {  # stale OUTPUT SOURCE...: OUTPUT is missing or older than a source or a header
  local out=$1; shift
  [[ ! -e "$out" || -n "$(find "$@" "$here/fuzz_common.hpp" "$root/include" -newer "$out" -print -quit)" ]]
}
# compile NAME OUTPUT ARGS...: runs "$cxx flags deps ARGS -o OUTPUT.new" in the
# background (at most $jobs at once), its log and exit code in $build/build_NAME.*
building=()
compile() {
  local name=$1 out=$2; shift 2
  while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do wait -n; done
  echo "== building $name with $cxx"
  # shellcheck disable=SC2086  # $deps is a list of flags
  ( "$cxx" "${flags[@]}" $deps "$@" -o "$out.new" > "$build/build_$name.log" 2>&1
    echo $? > "$build/build_$name.rc" ) &
  building+=("$name:$out")
}
finish() {  # waits for every compile; moves each output into place, or fails naming it
  wait
  local b
  for b in "${building[@]}"; do
    if [[ "$(cat "$build/build_${b%%:*}.rc" 2>/dev/null)" == 0 ]]; then
      mv "${b#*:}.new" "${b#*:}"
    else
      cat "$build/build_${b%%:*}.log" >&2
      echo "run.sh: build of ${b%%:*} failed" >&2
      exit 1
    fi
  done
  building=()
}
uses_layers() { [[ $1 == model || $1 == onnx ]]; }
layer_objs=("$build/layers_float.o" "$build/layers_double.o")
for t in "${targets[@]}"; do
  [[ -f "$here/fuzz_$t.cpp" ]] || { echo "run.sh: no target '$t' ($here/fuzz_$t.cpp)" >&2; exit 2; }
done
# First the layer objects (when a target needs them) and the targets without layers.
for t in "${targets[@]}"; do
  if uses_layers "$t"; then
    for s in FLOAT DOUBLE; do
      o=$build/layers_${s,,}.o
      if [[ ! " ${building[*]} " == *":$o "* ]] && stale "$o" "$root/cmake/kitnn_layers.cpp"; then
        compile "layers_${s,,}" "$o" -DKITNN_INSTANTIATE_${s}_LAYERS -c "$root/cmake/kitnn_layers.cpp"
      fi
    done
  fi
done
for t in "${targets[@]}"; do
  uses_layers "$t" && continue
  stale "$build/fuzz_$t" "$here/fuzz_$t.cpp" &&
    compile "fuzz_$t" "$build/fuzz_$t" "$here/fuzz_$t.cpp" -lz
done
finish
# Then the targets that link the layers (rebuilt too when the layers were).
for t in "${targets[@]}"; do
  uses_layers "$t" || continue
  extra=()  # the ONNX importer links Debian's libonnx_proto and protobuf
  [[ $t == onnx ]] && extra=(-DONNX_NAMESPACE=onnx -DONNX_ML=1 -lonnx_proto -lprotobuf)
  stale "$build/fuzz_$t" "$here/fuzz_$t.cpp" "${layer_objs[@]}" &&
    compile "fuzz_$t" "$build/fuzz_$t" -DKITNN_PRECOMPILED_LAYERS "$here/fuzz_$t.cpp" \
            "${layer_objs[@]}" -lz "${extra[@]}"
done
finish

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
