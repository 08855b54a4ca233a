#!/usr/bin/env bash
# Generates the API reference from the headers with Doxygen: docs/api/html/index.html
# (the README and the hand-written docs/ pages are included as pages). One command:
#   scripts/api_docs.sh
# Installs doxygen with apt-get when it is missing (as root; otherwise prints the
# command). Configuration: docs/Doxyfile; comment filter: scripts/doxygen_filter.pl.
# Doxygen's warnings go to docs/api/warnings.log; an error (a bad configuration, an
# unreadable input) fails the script. docs/api/ is generated: it is not committed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! command -v doxygen > /dev/null; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "api_docs: doxygen is missing. Run as root, or: sudo apt-get install -y doxygen" >&2
    exit 1
  fi
  echo "api_docs: installing doxygen"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends doxygen > /dev/null
fi
command -v perl > /dev/null || { echo "api_docs: needs perl (for scripts/doxygen_filter.pl)" >&2; exit 1; }

KITNN_VERSION=$(sed -n 's/^project(kitnn VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
export KITNN_VERSION
rm -rf docs/api
mkdir -p docs/api
doxygen docs/Doxyfile
warnings=$(grep -c 'warning:' docs/api/warnings.log || true)
errors=$(grep -c 'error:' docs/api/warnings.log || true)
[[ -f docs/api/html/index.html ]] || { echo "api_docs: doxygen wrote no docs/api/html/index.html" >&2; exit 1; }
if [[ $errors -gt 0 ]]; then
  grep 'error:' docs/api/warnings.log | head -20 >&2
  echo "api_docs: $errors error(s), see docs/api/warnings.log" >&2
  exit 1
fi
echo "api_docs: docs/api/html/index.html (doxygen $(doxygen --version), $warnings warning(s) in docs/api/warnings.log)"
