#!/usr/bin/env bash
# Runs "$@" when Fashion-MNIST is there: $KITNN_FASHION_MNIST_DIR, else the Debian
# package's folder (apt-get install dataset-fashion-mnist). Else exits 77, which
# CTest reports as "Skipped" (never as passed).
dir="${KITNN_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"
if ! compgen -G "$dir/train-images-idx3-ubyte*" > /dev/null; then
  echo "SKIPPED: no Fashion-MNIST in $dir (apt-get install dataset-fashion-mnist, or set KITNN_FASHION_MNIST_DIR)"
  exit 77
fi
exec "$@"
