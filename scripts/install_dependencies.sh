#!/usr/bin/env bash
# Installs the Debian packages kitnn needs to build, test and benchmark, then the browser
# test's npm package (npm ci in tests/browser). Idempotent: installs only what is missing. As root it runs apt-get; otherwise
# it prints the exact command to run with sudo and exits 1.
#   scripts/install_dependencies.sh [--with-peer]   (--with-peer: also PyTorch for the comparison)
# clang-14 + libclang-rt-14-dev (libFuzzer, for tests/fuzz/run.sh, which scripts/test.sh
# runs) are part of the default set; --with-fuzz is still accepted and changes nothing.
set -euo pipefail

# clang-14 + its runtime (libclang_rt.fuzzer, asan, ubsan): -fsanitize=fuzzer in tests/fuzz/.
packages=(build-essential cmake pkg-config libeigen3-dev libstb-dev catch2 libomp-dev
          zlib1g-dev libcli11-dev libbenchmark-dev curl ca-certificates
          python3  # tests/check_test_count.py (CTest catch_test_count)
          clang-14 libclang-rt-14-dev
          libopenmpi-dev openmpi-bin  # MPI: kitnn::mpi, mpirun for distributed training and its tests
          dataset-fashion-mnist)  # Fashion-MNIST IDX files: mnist_train --dataset fashion, tests
# ONNX (docs/onnx.md): libonnx + protobuf for kitnn::onnx; the ONNX checker, OpenCV's DNN
# (the independent runtime) and PyTorch (import test) for the ONNX tests.
packages+=(libonnx-dev libprotobuf-dev python3-onnx python3-opencv python3-torch python3-numpy)
# kitnn_serve (HTTP + JSON) and its tests: a real browser (Debian's chromium) driven by node.
packages+=(libcpp-httplib-dev nlohmann-json3-dev chromium nodejs)
if [[ "${1:-}" == "--with-peer" ]]; then packages+=(python3-torch python3-numpy); fi
# Debian's nodejs comes without npm (a separate package); NodeSource's includes it.
command -v npm > /dev/null || packages+=(npm)
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0
fi

# The browser test's npm package (tests/browser: playwright-core, pinned in its
# package-lock.json), installed into tests/browser/node_modules by `npm ci`. It downloads
# no browser: the test drives Debian's chromium.
npm_ci() {
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
  [[ -d "$dir/node_modules/playwright-core" ]] && return 0
  command -v npm > /dev/null || { echo "install_dependencies: npm not found for $dir" >&2; return 1; }
  echo "install_dependencies: npm ci in $dir"
  (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install_dependencies: all ${#packages[@]} packages are installed"
  npm_ci
  exit $?
fi
echo "install_dependencies: missing: ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "Run as root, or:  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install_dependencies: installed ${missing[*]}"
npm_ci
