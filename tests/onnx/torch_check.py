#!/usr/bin/python3
"""From PyTorch into kitnn: a network built and trained briefly in Debian's PyTorch,
exported with torch.onnx.export (opset 13), imported with `kitnn_onnx import`, must
classify the 10,000 MNIST test images like PyTorch: >= 99.9 % the same class and
max |dp| <= 1e-5 between the probabilities. Then kitnn -> ONNX -> kitnn of the imported
model must give bit-identical outputs (onnx_probe roundtrip).

  torch_check.py KITNN_ONNX ONNX_PROBE WORK      (the programs' paths)

The network uses what kitnn imports from PyTorch: Conv2d (padding, stride, no bias +
BatchNorm2d), ReLU, LeakyReLU, MaxPool2d, AvgPool2d, a residual block (x + f(x): Add),
an Inception-style torch.cat along channels (Concat), nn.Flatten, Linear, Dropout,
Sigmoid/Tanh. Exit 77 (CTest: skipped) when python3-torch is missing or KITNN_MNIST_DIR
is not set.
"""
import gzip
import os
import subprocess
import sys
import time

SKIP = 77


def load_idx(folder, images, labels):
    import numpy as np

    def read(name):
        for n in (name + ".gz", name):
            p = os.path.join(folder, n)
            if os.path.exists(p):
                return (gzip.open if p.endswith(".gz") else open)(p, "rb").read()
        print(f"SKIPPED: no {name}(.gz) in {folder}")
        sys.exit(SKIP)
    xi, yl = read(images), read(labels)
    n = int.from_bytes(xi[4:8], "big")
    x = np.frombuffer(xi, np.uint8, offset=16).reshape(n, 1, 28, 28).astype(np.float32) / np.float32(255)
    y = np.frombuffer(yl, np.uint8, offset=8).astype(np.int64)
    return x, y


def run(*cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"FAILED ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stdout}{r.stderr}")
        sys.exit(1)
    return r.stdout


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    kitnn_onnx, probe, work = sys.argv[1], sys.argv[2], sys.argv[3]
    try:
        import numpy as np
        import torch
        from torch import nn
    except ImportError as e:
        print(f"SKIPPED: {e} (install python3-torch python3-numpy)")
        return SKIP
    mnist = os.environ.get("KITNN_MNIST_DIR", "")
    if not mnist or not os.path.isdir(mnist):
        print("SKIPPED: set KITNN_MNIST_DIR to the MNIST IDX folder to run this test")
        return SKIP
    os.makedirs(work, exist_ok=True)
    torch.manual_seed(1)
    torch.set_num_threads(2)

    class Residual(nn.Module):  # x + f(x): an Add of two branches
        def __init__(self, c):
            super().__init__()
            self.f = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                                   nn.Conv2d(c, c, 3, padding=1))

        def forward(self, x):
            return x + self.f(x)

    class Mixed(nn.Module):  # torch.cat of three branches along channels: a Concat
        def __init__(self, c):
            super().__init__()
            self.a = nn.Conv2d(c, 8, 1)
            self.b = nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.Tanh())
            self.p = nn.MaxPool2d(3, stride=1, padding=1)

        def forward(self, x):
            return torch.cat([self.a(x), self.b(x), self.p(x)], dim=1)

    net = nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # 16x14x14
        Residual(16),
        Mixed(16), nn.LeakyReLU(0.1),                                 # 32x14x14
        nn.Conv2d(32, 32, 3, stride=2, bias=False), nn.BatchNorm2d(32), nn.ReLU(),  # 32x6x6
        nn.AvgPool2d(2),                                              # 32x3x3
        nn.Flatten(), nn.Linear(288, 64), nn.Sigmoid(), nn.Dropout(0.25), nn.Linear(64, 10))

    x_train, y_train = load_idx(mnist, "train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    x_test, _ = load_idx(mnist, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    t = time.time()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    net.train()
    xt, yt = torch.from_numpy(x_train[:2000].copy()), torch.from_numpy(y_train[:2000].copy())
    for s in range(0, 2000, 50):  # one short epoch: enough to move every weight and BN statistic
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(xt[s:s + 50]), yt[s:s + 50])
        loss.backward()
        opt.step()
    net.eval()
    t_train = time.time() - t
    onx, kit = os.path.join(work, "torch.onnx"), os.path.join(work, "torch.kitnn")
    torch.onnx.export(net, torch.zeros(1, 1, 28, 28), onx, opset_version=13, input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
    print(run(kitnn_onnx, "import", onx, kit).splitlines()[0])
    x_test.tofile(os.path.join(work, "t10k.f32"))
    run(probe, "predict", kit, os.path.join(work, "t10k.f32"), os.path.join(work, "p.f32"))
    p_kitnn = np.fromfile(os.path.join(work, "p.f32"), np.float32).reshape(len(x_test), 10)
    with torch.no_grad():
        p_torch = torch.softmax(net(torch.from_numpy(x_test)), dim=1).numpy()
    same = float((p_kitnn.argmax(1) == p_torch.argmax(1)).mean())
    dp = float(np.abs(p_kitnn - p_torch).max())
    print(run(probe, "roundtrip", kit, os.path.join(work, "again.onnx")).strip())
    ok = same >= 0.999 and dp <= 1e-5
    print(f"PyTorch -> ONNX -> kitnn: same class {same * 100:.2f} % of {len(x_test)}, max |dp| {dp:.2e} "
          f"{'ok' if ok else 'FAILED'} (torch training {t_train:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
