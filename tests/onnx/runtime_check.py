#!/usr/bin/python3
"""kitnn's ONNX export checked by an independent runtime: OpenCV's DNN module
(Debian python3-opencv; why OpenCV and not onnxruntime: docs/onnx.md), and every file by
the ONNX checker (Debian python3-onnx, or libonnx's C++ checker inside onnx_probe).

  runtime_check.py mnist KITNN_ONNX MNIST_TRAIN ONNX_PROBE WORK
                                           every MNIST zoo model, trained briefly
                                           (mnist_train --limit 1000 --epochs 1; best: its
                                           recipe's ensemble of 3), exported
                                           with --softmax: python checker; OpenCV and kitnn
                                           give the same class on all 10,000 test images
                                           and max |dp| <= 1e-5; kitnn -> ONNX -> kitnn is
                                           bit-exact (onnx_probe roundtrip).
  runtime_check.py imagenet ONNX_PROBE WORK [NAME...]
                                           alexnet, vgg16, inception_v4 with random weights
                                           on 2 random inputs: max |d| / max |y| <= 1e-4
                                           between OpenCV and kitnn (raw outputs);
                                           inception_v4 also round-trips bit-exactly.
KITNN_ONNX, MNIST_TRAIN, ONNX_PROBE: the programs' paths. Exit 77 (CTest: skipped) when
python3-onnx or python3-opencv is missing, or (mnist) KITNN_MNIST_DIR is not set.
"""
import gzip
import os
import subprocess
import sys
import time

SKIP = 77


def need_modules():
    try:
        import cv2  # noqa: F401
        import numpy  # noqa: F401
        import onnx  # noqa: F401
    except ImportError as e:
        print(f"SKIPPED: {e} (install python3-onnx python3-opencv python3-numpy)")
        sys.exit(SKIP)


def run(*cmd):
    t = time.time()
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"FAILED ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stdout}{r.stderr}")
        sys.exit(1)
    return time.time() - t


def opencv_forward(path, x, batch=500):
    import cv2
    import numpy as np
    net = cv2.dnn.readNetFromONNX(str(path))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    out = []
    for s in range(0, len(x), batch):
        net.setInput(np.ascontiguousarray(x[s:s + batch]))
        out.append(net.forward().reshape(min(batch, len(x) - s), -1).copy())
    return np.concatenate(out)


def mnist_test_images(folder):
    import numpy as np
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"):
        p = os.path.join(folder, name)
        if os.path.exists(p):
            raw = (gzip.open if p.endswith(".gz") else open)(p, "rb").read()
            n = int.from_bytes(raw[4:8], "big")
            # kitnn's loader (idx.hpp): byte / 255.0f
            return (np.frombuffer(raw, np.uint8, offset=16).reshape(n, 1, 28, 28).astype(np.float32) / np.float32(255))
    print(f"SKIPPED: no t10k-images-idx3-ubyte(.gz) in {folder}")
    sys.exit(SKIP)


def check_mnist(kitnn_onnx, mnist_train, probe, work):
    import numpy as np
    import onnx
    mnist = os.environ.get("KITNN_MNIST_DIR", "")
    if not mnist or not os.path.isdir(mnist):
        print("SKIPPED: set KITNN_MNIST_DIR to the MNIST IDX folder to run this test")
        sys.exit(SKIP)
    x = mnist_test_images(mnist)
    x.tofile(os.path.join(work, "t10k.f32"))
    failed = False
    for name in ("keck", "lenet5", "kerascnn", "best", "fast"):
        out = os.path.join(work, name)
        t_train = run(mnist_train, "--model", name, "--data", mnist, "--epochs", 1,
                      "--limit", 1000, "--val-split", 0.1, "--out", out, "--progress", "plain", "--seed", 1)
        kit = os.path.join(out, "best.kitnn")
        onx = os.path.join(out, name + ".onnx")
        run(kitnn_onnx, "export", kit, onx, "--softmax")
        onnx.checker.check_model(onx, full_check=True)  # raises on an invalid model
        run(probe, "roundtrip", kit, os.path.join(out, "plain.onnx"))
        t = time.time()
        run(probe, "predict", kit, os.path.join(work, "t10k.f32"), os.path.join(out, "kitnn.f32"))
        t_kitnn = time.time() - t
        p_kitnn = np.fromfile(os.path.join(out, "kitnn.f32"), np.float32).reshape(len(x), 10)
        t = time.time()
        p_cv = opencv_forward(onx, x)
        t_cv = time.time() - t
        same = int((p_kitnn.argmax(1) == p_cv.argmax(1)).sum())
        dp = float(np.abs(p_kitnn - p_cv).max())
        ok = same == len(x) and dp <= 1e-5
        failed |= not ok
        print(f"{name:9s} checker ok, round trip exact, same class {same}/{len(x)}, max |dp| {dp:.2e} "
              f"{'ok' if ok else 'FAILED'} (train {t_train:.1f} s, kitnn {t_kitnn:.1f} s, OpenCV {t_cv:.1f} s)")
    return failed


def check_imagenet(probe, work, names):
    import numpy as np
    failed = False
    for name in names:
        side = 299 if name == "inception_v4" else 224
        x = np.random.default_rng(2024).standard_normal((2, 3, side, side)).astype(np.float32)
        xin = os.path.join(work, f"{name}.in.f32")
        x.tofile(xin)
        onx = os.path.join(work, f"{name}.onnx")
        yout = os.path.join(work, f"{name}.kitnn.f32")
        extra = ["roundtrip"] if name == "inception_v4" else []
        t_kitnn = run(probe, "imagenet", name, 1, onx, xin, yout, *extra)
        y_kitnn = np.fromfile(yout, np.float32).reshape(len(x), -1)
        t = time.time()
        y_cv = opencv_forward(onx, x, batch=len(x))
        t_cv = time.time() - t
        rel = float(np.abs(y_kitnn - y_cv).max() / np.abs(y_kitnn).max())
        ok = rel <= 1e-4 and y_cv.shape == y_kitnn.shape
        failed |= not ok
        print(f"{name:12s} checker ok{', round trip exact' if extra else ''}, max |d| / max |y| = {rel:.2e} "
              f"{'ok' if ok else 'FAILED'} (kitnn export + forward {t_kitnn:.1f} s, OpenCV {t_cv:.1f} s, "
              f"{os.path.getsize(onx) / 1e6:.0f} MB)")
        os.remove(onx)  # VGG-16 is 553 MB: do not leave it in the build folder
    return failed


def main():
    a = sys.argv[1:]
    if not ((len(a) == 5 and a[0] == "mnist") or (len(a) >= 3 and a[0] == "imagenet")):
        print(__doc__)
        return 2
    need_modules()
    work = a[4] if a[0] == "mnist" else a[2]
    os.makedirs(work, exist_ok=True)
    if a[0] == "mnist":
        failed = check_mnist(a[1], a[2], a[3], work)
    else:
        failed = check_imagenet(a[1], work, a[3:] or ["alexnet", "vgg16", "inception_v4"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
