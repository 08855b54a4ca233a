#!/usr/bin/env bash
# CTest "handwriting_set": tests/data/handwriting is exactly what
# scripts/make_handwriting_set.py writes (the committed PNGs and labels have not drifted
# from their generator). Skipped (77) without Debian's python3 with OpenCV and numpy.
#   handwriting_set.sh SOURCE_DIR WORK_DIR
set -uo pipefail
src=$1 work=$2
py=/usr/bin/python3
if ! "$py" -c "import cv2, numpy" 2>/dev/null; then
  echo "SKIPPED: /usr/bin/python3 with cv2 and numpy not found (scripts/install_dependencies.sh)"
  exit 77
fi
rm -rf "$work" && mkdir -p "$work"
"$py" "$src/scripts/make_handwriting_set.py" "$work/handwriting" || exit 1
if diff -r "$src/tests/data/handwriting" "$work/handwriting"; then
  echo "ok: $(ls "$work/handwriting/dev" "$work/handwriting/holdout" | grep -c png) images identical"
else
  echo "FAIL: tests/data/handwriting differs from what scripts/make_handwriting_set.py writes"
  exit 1
fi
