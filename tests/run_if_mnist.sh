#!/usr/bin/env bash
# Runs "$@" when KITNN_MNIST_DIR names a folder with MNIST; else exits 77, which
# CTest reports as "Skipped" (never as passed).
if [[ -z "${KITNN_MNIST_DIR:-}" || ! -d "${KITNN_MNIST_DIR}" ]]; then
  echo "SKIPPED: set KITNN_MNIST_DIR to the MNIST IDX folder to run this test"
  exit 77
fi
exec "$@"
