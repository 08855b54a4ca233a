#!/usr/bin/env bash
# Runs a kitnn_serve test script with python3 (standard library only); exits 77, which
# CTest reports as skipped (never as passed), when there is no python3.
command -v python3 > /dev/null || { echo "SKIPPED: python3 not found"; exit 77; }
exec python3 "$@"
