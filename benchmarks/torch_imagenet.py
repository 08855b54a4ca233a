#!/usr/bin/python3
# torch_imagenet.py — the PyTorch counterpart of kitnn's ImageNet-sized zoo networks
# (include/kitnn/zoo_imagenet.hpp), timed the same way so the two can be put side by side:
#
#   benchmarks/torch_imagenet.py --model {alexnet,vgg16,inception_v4} --batch B
#                                --mode {forward,train} [--repeats 5] [--threads 2] [--seed 1]
#
# The networks are built here in plain torch.nn (no torchvision, no timm), layer for
# layer as in zoo_imagenet.hpp, and their parameter counts are asserted to equal the
# header's: alexnet 61,100,840 (3x224x224), vgg16 138,357,544 (3x224x224), inception_v4
# 42,679,816 trainable (3x299x299; BatchNorm's running mean and variance are buffers,
# as they are state in kitnn). Same layers as the header, hence the same details:
#   alexnet  torchvision's single tower, 64-192-384-256-256 filters, 11x11/4 pad 2 first;
#            AdaptiveAvgPool2d((6, 6)) left out (the identity at 224x224).
#   vgg16    configuration D; AdaptiveAvgPool2d((7, 7)) left out (identity at 224x224).
#   inception_v4  timm's layout; every conv is BasicConv2d = Conv2d(bias=False) ->
#            BatchNorm2d(eps=1e-3, momentum=0.01, i.e. kitnn's/Keras' 0.99) -> ReLU;
#            3x3/1 average pools with padding 1 and count_include_pad=False; global
#            average pool, Dropout(0.2), Linear(1536, 1000).
# Convolutions start from He normal, dense layers from Glorot uniform, biases from zero
# (as kitnn); the values do not change the timings.
#
# Input: N(0, 1) float32 images (B, 3, 224, 224) or (B, 3, 299, 299) drawn after
# torch.manual_seed(seed); no data loading, nothing but the network is timed.
# --mode forward: model.eval() under torch.no_grad() (inference mode: dropout off,
#   BatchNorm on its running statistics, no autograd graph). torch.inference_mode was
#   also tried (torch 1.13, 1 thread, batch 1, busy machine) and was not consistently
#   faster: alexnet 51.6 vs 55.4 ms, inception_v4 1521 vs 1483 ms (median, inference_mode
#   vs no_grad), i.e. within noise, so no_grad is used. One timed pass = model(x).
# --mode train: model.train(), Adam(lr=1e-3), cross-entropy against random labels in
#   [0, 1000). One timed step = zero_grad, forward, loss, backward, optimizer.step() —
#   the same step as kitnn_bench_train (bench_train.cpp) and the MNIST peer.
# Both modes run one untimed warm-up (first-touch allocation, oneDNN/MKL set-up), then
# --repeats timed ones (time.perf_counter), and report their median and minimum.
# torch.set_num_threads(--threads) sets the intra-op threads (kitnn's --threads).
#
# Output: exactly one JSON line on stdout,
#   {"framework": "pytorch", "model", "batch", "mode", "threads", "repeats",
#    "median_ms", "min_ms", "params", "torch"}
# everything else (progress, per-repeat times) goes to stderr. Needs Debian's
# python3-torch, which only /usr/bin/python3 sees.
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# name -> (input side, trainable parameters as in zoo_imagenet.hpp)
MODELS = {
    "alexnet": (224, 61_100_840),
    "vgg16": (224, 138_357_544),
    "inception_v4": (299, 42_679_816),
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- alexnet

def alexnet():
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True),     # (64, 55, 55)
        nn.MaxPool2d(3, 2),                                                    # (64, 27, 27)
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True),               # (192, 27, 27)
        nn.MaxPool2d(3, 2),                                                    # (192, 13, 13)
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),              # (384, 13, 13)
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),              # (256, 13, 13)
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),              # (256, 13, 13)
        nn.MaxPool2d(3, 2),                                                    # (256, 6, 6)
        nn.Flatten(),                                                          # (9216)
        nn.Dropout(0.5),
        nn.Linear(9216, 4096), nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True),
        nn.Linear(4096, 1000))


# ------------------------------------------------------------------------------ vgg16

def vgg16():
    layers, cin = [], 3
    # Configuration D: 2x64, 2x128, 3x256, 3x512, 3x512 3x3 convs, a 2x2 max pool after each group.
    for filters, convs in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
        for _ in range(convs):
            layers += [nn.Conv2d(cin, filters, 3, padding=1), nn.ReLU(inplace=True)]
            cin = filters
        layers.append(nn.MaxPool2d(2))
    layers += [                                                                # (512, 7, 7)
        nn.Flatten(),                                                          # (25088)
        nn.Linear(25088, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, 1000)]
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------- inception_v4

def conv_bn(cin, cout, k, stride=1, padding=0):
    """timm's BasicConv2d: conv without bias (BatchNorm's beta is the bias) -> BN -> ReLU.
    BatchNorm as kitnn's BatchNorm(0.99, 1e-3): PyTorch's momentum is 1 - Keras' momentum."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01),
        nn.ReLU(inplace=True))


def conv_bn_same(cin, cout, k):
    """Stride 1, `same` padding (odd kernels): (1,1) for 3x3, (0,3)/(3,0) for 1x7/7x1, ..."""
    k = (k, k) if isinstance(k, int) else k
    return conv_bn(cin, cout, k, 1, (k[0] // 2, k[1] // 2))


def pool_branch(cin, cout):
    """3x3/1 average over the real pixels only (kitnn's AvgPool2D `same`), then a 1x1 conv."""
    return nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
                         conv_bn(cin, cout, 1))


class Concat(nn.Module):
    """kitnn's Branches(Merge::concat): every branch sees the input, outputs are
    concatenated along the channels in branch order."""

    def __init__(self, *branches):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], 1)


def fork_1x3_3x1(cin, cout):
    """Inception-C's fork: 1x3 and 3x1 convolutions side by side, concatenated."""
    return Concat(conv_bn_same(cin, cout, (1, 3)), conv_bn_same(cin, cout, (3, 1)))


def inception_stem():
    """3x299x299 -> 384x35x35 (timm's features[0..5])."""
    return [
        conv_bn(3, 32, 3, 2),                                                  # (32, 149, 149)
        conv_bn(32, 32, 3),                                                    # (32, 147, 147)
        conv_bn_same(32, 64, 3),                                               # (64, 147, 147)
        Concat(nn.MaxPool2d(3, 2), conv_bn(64, 96, 3, 2)),                     # Mixed_3a (160, 73, 73)
        Concat(nn.Sequential(conv_bn(160, 64, 1), conv_bn(64, 96, 3)),         # Mixed_4a (192, 71, 71)
               nn.Sequential(conv_bn(160, 64, 1), conv_bn_same(64, 64, (1, 7)),
                             conv_bn_same(64, 64, (7, 1)), conv_bn(64, 96, 3))),
        Concat(conv_bn(192, 192, 3, 2), nn.MaxPool2d(3, 2)),                   # Mixed_5a (384, 35, 35)
    ]


def inception_a():
    """Figure 4, 384x35x35 -> 384x35x35: 96 + 96 + 96 + 96 channels."""
    return Concat(
        conv_bn(384, 96, 1),
        nn.Sequential(conv_bn(384, 64, 1), conv_bn_same(64, 96, 3)),
        nn.Sequential(conv_bn(384, 64, 1), conv_bn_same(64, 96, 3), conv_bn_same(96, 96, 3)),
        pool_branch(384, 96))


def reduction_a():
    """Figure 7 (k=192 l=224 m=256 n=384), 384x35x35 -> 1024x17x17."""
    return Concat(
        conv_bn(384, 384, 3, 2),
        nn.Sequential(conv_bn(384, 192, 1), conv_bn_same(192, 224, 3), conv_bn(224, 256, 3, 2)),
        nn.MaxPool2d(3, 2))


def inception_b():
    """Figure 5, 1024x17x17 -> 1024x17x17: 384 + 256 + 256 + 128 channels."""
    return Concat(
        conv_bn(1024, 384, 1),
        nn.Sequential(conv_bn(1024, 192, 1), conv_bn_same(192, 224, (1, 7)),
                      conv_bn_same(224, 256, (7, 1))),
        nn.Sequential(conv_bn(1024, 192, 1), conv_bn_same(192, 192, (7, 1)),
                      conv_bn_same(192, 224, (1, 7)), conv_bn_same(224, 224, (7, 1)),
                      conv_bn_same(224, 256, (1, 7))),
        pool_branch(1024, 128))


def reduction_b():
    """Figure 8, 1024x17x17 -> 1536x8x8: 192 + 320 + 1024 channels."""
    return Concat(
        nn.Sequential(conv_bn(1024, 192, 1), conv_bn(192, 192, 3, 2)),
        nn.Sequential(conv_bn(1024, 256, 1), conv_bn_same(256, 256, (1, 7)),
                      conv_bn_same(256, 320, (7, 1)), conv_bn(320, 320, 3, 2)),
        nn.MaxPool2d(3, 2))


def inception_c():
    """Figure 6, 1536x8x8 -> 1536x8x8: 256 + (256 + 256) + (256 + 256) + 256 channels."""
    return Concat(
        conv_bn(1536, 256, 1),
        nn.Sequential(conv_bn(1536, 384, 1), fork_1x3_3x1(384, 256)),
        nn.Sequential(conv_bn(1536, 384, 1), conv_bn_same(384, 448, (3, 1)),
                      conv_bn_same(448, 512, (1, 3)), fork_1x3_3x1(512, 256)),
        pool_branch(1536, 256))


def inception_v4():
    """features = stem (6 modules), 4x A, Reduction-A, 7x B, Reduction-B, 3x C (22 in all);
    then global average pooling, Dropout(0.2) (keep 0.8) and Linear(1536, 1000)."""
    features = (inception_stem() + [inception_a() for _ in range(4)] + [reduction_a()]
                + [inception_b() for _ in range(7)] + [reduction_b()]
                + [inception_c() for _ in range(3)])
    return nn.Sequential(
        nn.Sequential(*features),                                              # (1536, 8, 8)
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),                                 # (1536)
        nn.Dropout(0.2),
        nn.Linear(1536, 1000))


# ------------------------------------------------------------------------------ common

def init_like_kitnn(model):
    """He normal for convolutions (ReLU networks), Glorot uniform for dense layers, zero
    biases; BatchNorm keeps gamma = 1, beta = 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def build(name):
    model = {"alexnet": alexnet, "vgg16": vgg16, "inception_v4": inception_v4}[name]()
    init_like_kitnn(model)
    return model


def count_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer")
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


def seed_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer")
    if not 0 <= v < 2 ** 64:
        raise argparse.ArgumentTypeError(f"must be in [0, 2^64), got {v}")
    return v


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Time kitnn's ImageNet-sized zoo networks (zoo_imagenet.hpp) in PyTorch: "
                    "median of --repeats forward passes or training steps after one "
                    "untimed warm-up; prints one JSON line on stdout.")
    p.add_argument("--model", required=True, choices=list(MODELS),
                   help="network: alexnet, vgg16 (3x224x224) or inception_v4 (3x299x299)")
    p.add_argument("--batch", required=True, type=positive_int, metavar="B",
                   help="images per pass / step")
    p.add_argument("--mode", required=True, choices=("forward", "train"),
                   help="forward: eval() under no_grad; train: zero_grad + forward + "
                        "cross-entropy + backward + Adam(lr=1e-3) step")
    p.add_argument("--repeats", type=positive_int, default=5, metavar="N",
                   help="timed passes / steps after the warm-up (default: 5)")
    p.add_argument("--threads", type=positive_int, default=2, metavar="T",
                   help="torch.set_num_threads (default: 2)")
    p.add_argument("--seed", type=seed_int, default=1,
                   help="torch.manual_seed for weights, input, labels, dropout (default: 1)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    side, expected = MODELS[args.model]
    model = build(args.model)
    params = count_params(model)
    log(f"{args.model}: {params:,} trainable parameters (zoo_imagenet.hpp: {expected:,})")
    assert params == expected, f"{args.model}: {params} parameters, header says {expected}"

    x = torch.randn(args.batch, 3, side, side, dtype=torch.float32)
    times = []
    if args.mode == "forward":
        model.eval()
        with torch.no_grad():
            out = model(x)  # warm-up, untimed
            assert out.shape == (args.batch, 1000), tuple(out.shape)
            for i in range(args.repeats):
                t0 = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - t0) * 1e3)
                log(f"  forward {i + 1}/{args.repeats}: {times[-1]:.3f} ms")
    else:
        model.train()
        y = torch.randint(0, 1000, (args.batch,))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step():
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss.item()

        log(f"  warm-up step: loss {step():.4f}")
        for i in range(args.repeats):
            t0 = time.perf_counter()
            loss = step()
            times.append((time.perf_counter() - t0) * 1e3)
            log(f"  train step {i + 1}/{args.repeats}: {times[-1]:.3f} ms (loss {loss:.4f})")

    print(json.dumps({
        "framework": "pytorch", "model": args.model, "batch": args.batch, "mode": args.mode,
        "threads": args.threads, "repeats": args.repeats,
        "median_ms": round(statistics.median(times), 3), "min_ms": round(min(times), 3),
        "params": params, "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
