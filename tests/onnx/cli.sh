#!/usr/bin/env bash
# kitnn_onnx's command line: export + import of a real model file, and every failure
# is a clear message, a non-zero exit and no file (no half-written file, no temporary).
#   tests/onnx/cli.sh KITNN_ONNX ONNX_PROBE WORK
set -uo pipefail
prog=$1 probe=$2 work=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail=0
check() {  # check NAME EXPECTED_RC PATTERN FILE_THAT_MUST_NOT_EXIST -- command...
  local name=$1 want=$2 pattern=$3 nofile=$4
  shift 5
  "$@" > out.txt 2>&1
  local rc=$?
  if [[ $rc -ne $want ]] || ! grep -q -- "$pattern" out.txt || [[ -n "$nofile" && -e "$nofile" ]] ||
     ls ./*.tmp.* > /dev/null 2>&1; then
    echo "FAILED: $name (exit $rc, want $want; expected '$pattern')"; cat out.txt; fail=1
  else
    echo "ok: $name"
  fi
}
# A model file to start from: the fuzz seeds' chain model, imported.
"$probe" seeds . || exit 1
check "import a graph" 0 "wrote m.kitnn: 13 layers" "" -- "$prog" import chain.onnx m.kitnn
check "export it again with --softmax" 0 "opset 13" "" -- "$prog" export m.kitnn m.onnx --softmax
check "export with opset 17" 0 "opset 17" "" -- "$prog" export m.kitnn m17.onnx --opset 17
check "import a truncated file" 1 "not a valid ONNX protobuf (truncated or corrupted)" out1.kitnn -- "$prog" import chain_cut.onnx out1.kitnn
check "import a text file" 1 "kitnn_onnx: error: text.onnx" out2.kitnn -- "$prog" import text.onnx out2.kitnn
check "import an empty file" 1 "empty file" out3.kitnn -- "$prog" import empty.onnx out3.kitnn
check "import a missing file" 1 "no such file" out4.kitnn -- "$prog" import missing.onnx out4.kitnn
check "export a non-kitnn file" 1 "not a kitnn model file" out5.onnx -- "$prog" export chain.onnx out5.onnx
check "unsupported opset" 2 "opset" out6.onnx -- "$prog" export m.kitnn out6.onnx --opset 9
check "unknown flag" 2 "Run with --help" "" -- "$prog" export m.kitnn out7.onnx --frobnicate
check "no subcommand" 2 "Run with --help" "" -- "$prog"
# A failed import leaves an existing OUT untouched.
cp m.kitnn keep.kitnn
check "failed import keeps the old file" 1 "truncated or corrupted" "" -- "$prog" import chain_cut.onnx keep.kitnn
cmp -s m.kitnn keep.kitnn || { echo "FAILED: keep.kitnn was changed"; fail=1; }
exit $fail
