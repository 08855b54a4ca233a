#!/usr/bin/env bash
# Writes a small synthetic MNIST into DIR (the IDX files mnist_train reads): N training
# and 100 test images, 28x28, label i % 10, a bright band whose row is the label plus
# noise, from a fixed seed (perl, part of every Debian system): no download needed.
#   synthetic_mnist.sh DIR [N]
set -euo pipefail
dir=$1 n=${2:-600}
mkdir -p "$dir"
perl -e '
  my ($dir, $ntrain) = @ARGV; srand(12345);
  for my $set (["train", $ntrain], ["t10k", 100]) {
    my ($name, $n) = @$set;
    open(my $im, ">:raw", "$dir/$name-images-idx3-ubyte") or die $!;
    open(my $lb, ">:raw", "$dir/$name-labels-idx1-ubyte") or die $!;
    print $im pack("NNNN", 0x803, $n, 28, 28);
    print $lb pack("NN", 0x801, $n);
    for my $i (0 .. $n - 1) {
      my $label = $i % 10;
      print $lb pack("C", $label);
      my @px;
      for my $r (0 .. 27) {
        my $band = $r >= 2 * $label + 3 && $r < 2 * $label + 7;
        push @px, map { $band ? 160 + int(rand(96)) : int(rand(60)) } 0 .. 27;
      }
      print $im pack("C*", @px);
    }
  }' "$dir" "$n"
