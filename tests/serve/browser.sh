#!/usr/bin/env bash
# The real-browser test of kitnn_serve's page (tests/browser/draw_digit.mjs): headless
# Chromium from Debian's chromium package, driven by playwright-core from
# tests/browser/node_modules (`npm ci` there; scripts/install_dependencies.sh runs it).
#   browser.sh BIN_DIR MODEL WORK_DIR
# Exits 77 (CTest: skipped, never passed) when node, the browser or node_modules is missing.
set -uo pipefail
bin=$1 model=$2 work=$3
here=$(cd "$(dirname "$0")/.." && pwd)
chromium=${KITNN_CHROMIUM:-/usr/bin/chromium}
command -v node > /dev/null || { echo "SKIPPED: node not found (apt-get install nodejs)"; exit 77; }
[[ -x "$chromium" ]] || { echo "SKIPPED: $chromium not found (apt-get install chromium)"; exit 77; }
[[ -d "$here/browser/node_modules/playwright-core" ]] ||
  { echo "SKIPPED: $here/browser/node_modules missing (cd tests/browser && npm ci)"; exit 77; }
export KITNN_CHROMIUM=$chromium
exec node "$here/browser/draw_digit.mjs" "$bin/kitnn_serve" "$bin/mnist_apply" "$model" "$work"
