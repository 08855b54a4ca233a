#!/usr/bin/env bash
# Packaging test (CTest "packaging_consumer"): uses kitnn the three ways a user can.
#   1. cmake --install the configured kitnn build into WORK/prefix, check the files;
#   2. find_package(kitnn): configure, build and run tests/consumer against that prefix,
#      its layers compiled once in layers.cpp (CONSUMER_PRECOMPILED_LAYERS);
#   3. pkg-config: compile the same main.cpp with `pkg-config --cflags --libs kitnn`;
#   4. add_subdirectory: configure, build and run tests/consumer with KITNN_SOURCE_DIR.
# Usage: run.sh SOURCE_DIR BUILD_DIR WORK_DIR [CXX]
# Consumers are built at -O0 without -march=native: this checks wiring, not speed.
set -uo pipefail
src=$(cd "$1" && pwd) build=$2 work=$3 cxx=${4:-${CXX:-c++}}
rm -rf "$work" && mkdir -p "$work"
fails=0
ok()  { echo "ok   - $*"; }
bad() { echo "FAIL - $*"; fails=$((fails + 1)); }
# run_logged NAME CMD...: runs CMD with its output in WORK/NAME.log, shown on failure.
run_logged() {
  local name=$1; shift
  "$@" > "$work/$name.log" 2>&1
  local rc=$?  # taken here: after an `if`, $? would be the if's own status (0)
  if [[ $rc -eq 0 ]]; then ok "$name"; return 0; fi
  bad "$name (exit $rc): $*"; sed 's/^/    /' "$work/$name.log" | tail -40; return 1
}
expect='Total params: 77'   # conv 2*(3*3+1) + dense 3*(18+1)
check_output() {
  if grep -qx "$expect" "$work/$1.log"; then ok "$1 prints '$expect'"; else bad "$1 output lacks '$expect'"; fi
}
cfg=(-DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O0 -DCMAKE_CXX_COMPILER="$cxx")

# 1. Install.
prefix=$work/prefix
run_logged install cmake --install "$build" --prefix "$prefix"
for f in include/kitnn/kitnn.hpp include/kitnn/io/model_file.hpp \
         share/cmake/kitnn/kitnnConfig.cmake share/cmake/kitnn/kitnnConfigVersion.cmake \
         share/cmake/kitnn/kitnnTargets.cmake share/pkgconfig/kitnn.pc; do
  if [[ -f "$prefix/$f" ]]; then ok "installed $f"; else bad "not installed: $f"; fi
done
# The version file: 0.1 is compatible, 0.2 and 1.0 are not (SameMinorVersion).
cat > "$work/version_check.cmake" <<CMK
cmake_policy(VERSION 3.16)
string(REPLACE "." ";" _parts "\${PACKAGE_FIND_VERSION}")
list(GET _parts 0 PACKAGE_FIND_VERSION_MAJOR)
list(GET _parts 1 PACKAGE_FIND_VERSION_MINOR)
set(PACKAGE_FIND_VERSION_PATCH 0)
include("$prefix/share/cmake/kitnn/kitnnConfigVersion.cmake")
message("\${PACKAGE_VERSION_COMPATIBLE}")
CMK
for v in 0.1:TRUE 0.1.0:TRUE 0.2:FALSE 1.0:FALSE; do
  got=$(cmake -DPACKAGE_FIND_VERSION="${v%%:*}" -P "$work/version_check.cmake" 2>&1)
  want=${v##*:}
  [[ "$got" == "$want" ]] && ok "find_package(kitnn ${v%%:*}) compatible=$want" \
                          || bad "find_package(kitnn ${v%%:*}): compatible='$got', expected $want"
done

# 2. find_package(kitnn REQUIRED) against the installed prefix, with the layers compiled
# once in their own two files (docs/packaging.md, "Compile time"): the installed headers
# must support that too.
if run_logged find_configure cmake -S "$src/tests/consumer" -B "$work/find" \
       -DCMAKE_PREFIX_PATH="$prefix" -DCONSUMER_PRECOMPILED_LAYERS=ON "${cfg[@]}" &&
   run_logged find_build cmake --build "$work/find" -j2 &&
   run_logged find_run "$work/find/consumer"; then
  check_output find_run
  grep -q "kitnn 0.1.0 found in $prefix/share/cmake/kitnn" "$work/find_configure.log" &&
    ok "find_package used the installed copy" || bad "find_package did not use $prefix"
  [[ $(grep -c 'consumer_layers_\(FLOAT\|DOUBLE\).dir/layers.cpp' "$work/find_build.log") -eq 2 ]] &&
    ok "the layers compiled once, in layers.cpp for float and double" ||
    bad "find_build did not compile layers.cpp twice (CONSUMER_PRECOMPILED_LAYERS)"
fi

# 3. pkg-config, no CMake.
if flags=$(PKG_CONFIG_PATH="$prefix/share/pkgconfig" pkg-config --cflags --libs kitnn 2>"$work/pc.err"); then
  ok "pkg-config --cflags --libs kitnn: $flags"
  [[ "$flags" == *"-I$prefix/share/pkgconfig/../../include"* || "$flags" == *"-I$prefix/include"* ]] &&
    ok "kitnn.pc points into the prefix" || bad "kitnn.pc include path is not in $prefix"
  # shellcheck disable=SC2086  # $flags is a list of words
  run_logged pc_build "$cxx" -std=c++17 -O0 "$src/tests/consumer/main.cpp" -o "$work/pc_consumer" $flags &&
    run_logged pc_run "$work/pc_consumer" && check_output pc_run
else
  bad "pkg-config kitnn: $(cat "$work/pc.err")"
fi

# 4. add_subdirectory(kitnn) from the source tree.
if run_logged subdir_configure cmake -S "$src/tests/consumer" -B "$work/subdir" \
       -DKITNN_SOURCE_DIR="$src" "${cfg[@]}" &&
   run_logged subdir_build cmake --build "$work/subdir" &&
   run_logged subdir_run "$work/subdir/consumer"; then
  check_output subdir_run
  [[ ! -e "$work/subdir/kitnn/tests" && ! -e "$work/subdir/kitnn/examples" ]] &&
    ok "add_subdirectory built no kitnn tests/examples" || bad "add_subdirectory built kitnn's own programs"
  # Nor the layer libraries of kitnn's own programs (KITNN_PRECOMPILED_LAYERS): a user's
  # build compiles only what the user's targets need.
  ! grep -q 'kitnn_layers_' "$work/subdir_build.log" &&
    ok "add_subdirectory compiled no kitnn_layers_* library" || bad "add_subdirectory compiled kitnn's layer libraries"
fi

echo "consumer: $fails failure(s); logs in $work"
[[ $fails -eq 0 ]]
