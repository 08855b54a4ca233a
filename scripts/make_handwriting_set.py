#!/usr/bin/python3
"""Writes tests/data/handwriting/: a labelled set of synthetic handwritten digits in the
styles MNIST under-represents, to measure how a model trained on MNIST reads them
(docs/own-digits.md, section 7).

Why synthetic, and what it is: this machine has no camera and no human hand, and every
public handwriting set other than MNIST is out of reach offline. A set made *from* MNIST
digits (tests/data/own_digits) only measures the preprocessing. So each digit here is
drawn from a pen path written by hand in this file, one per style a person uses and
that the issue names: crossed and plain 7s, 7s with a hook, open and closed 4s, 1s as a
stick, with a flag, with a flag and a base (serif), 2s with and without a loop, flat-topped
3s, straight and curved stems of 6 and 9, 8 as two loops or one figure-eight stroke, and
so on (STYLES below). Every sample then varies the way hands and pens do: the path is
bent by a smooth random displacement (no two strokes alike), the digit is slanted
(-27..+24 degrees), rotated (+-12), stretched (width 0.65-1.4x), sized (35-90 % of the
canvas) and placed anywhere; the pen is 2-22 % of the digit's height (fine liner to
thick marker); ink and paper levels, paper noise and blur vary, one image in six is light ink
on a dark ground. What it does not have: real people's idiosyncrasies beyond these
templates, photos (perspective, ruled paper, shadows).

Two parts, from different seeds:
  dev/      200 images (20 per digit): may be looked at while choosing what to change
  holdout/  300 images (30 per digit): scored only to report before/after, never used
            to train or to choose anything
Each folder has labels.csv (file,label: mnist_apply --labels) and styles.csv (file,
label, style, pen width in % of height, slant in degrees, polarity).

Deterministic: the same numpy and OpenCV give the same PNGs.
  /usr/bin/python3 scripts/make_handwriting_set.py [OUT_DIR]   (default tests/data/handwriting)
Needs Debian's python3-opencv and python3-numpy (scripts/install_dependencies.sh).
"""
import math
import os
import sys

import cv2
import numpy as np


# --- pen paths: strokes of (x, y) points, x in [0, 0.6], y in [0, 1] (down) ----------
def arc(cx, cy, rx, ry, a0, a1, n=40):
    """Points on an ellipse from angle a0 to a1 (degrees; 0 = right, 90 = down)."""
    t = np.radians(np.linspace(a0, a1, n))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in t]


def bezier(p0, p1, p2, p3, n=30):
    t = np.linspace(0, 1, n)[:, None]
    p = ((1 - t) ** 3) * p0 + 3 * ((1 - t) ** 2) * t * p1 + 3 * (1 - t) * t * t * p2 + t ** 3 * p3
    return [tuple(q) for q in p]


def line(*pts):
    return list(pts)


def fig8(n=80):
    t = np.linspace(0, 2 * math.pi, n)
    return [(0.3 + 0.26 * math.sin(2 * a), 0.5 - 0.48 * math.cos(a)) for a in t]


P = np.array
STYLES = {
    0: {
        "oval": [arc(0.3, 0.5, 0.27, 0.48, -90, 275)],
        "narrow": [arc(0.3, 0.5, 0.17, 0.48, -80, 285)],
        "open_top": [arc(0.3, 0.52, 0.27, 0.46, -60, 235)],
    },
    1: {
        "stick": [line((0.3, 0.0), (0.3, 1.0))],
        "flag": [line((0.1, 0.25), (0.33, 0.0), (0.33, 1.0))],
        "serif": [line((0.1, 0.25), (0.33, 0.0), (0.33, 1.0)), line((0.08, 1.0), (0.58, 1.0))],
    },
    2: {
        "plain": [arc(0.3, 0.28, 0.27, 0.27, 190, 385) + line((0.03, 1.0), (0.6, 1.0))],
        "loop": [arc(0.3, 0.28, 0.27, 0.27, 190, 385) + line((0.1, 0.9))
                 + arc(0.12, 0.88, 0.09, 0.08, 20, -250, 20) + line((0.6, 0.98))],
        "z": [line((0.04, 0.04), (0.56, 0.04), (0.03, 1.0), (0.6, 1.0))],
    },
    3: {
        "round": [arc(0.3, 0.26, 0.25, 0.24, 200, 450) + arc(0.3, 0.74, 0.28, 0.26, 270, 520)],
        "flat_top": [line((0.04, 0.02), (0.56, 0.02), (0.24, 0.42)) + arc(0.28, 0.7, 0.29, 0.29, 250, 520)],
        "pointed": [arc(0.28, 0.25, 0.26, 0.23, 200, 430) + line((0.2, 0.5))
                    + arc(0.28, 0.75, 0.29, 0.25, 265, 515)],
    },
    4: {
        "closed": [line((0.46, 0.0), (0.02, 0.68), (0.6, 0.68)), line((0.46, 0.0), (0.46, 1.0))],
        "open": [line((0.1, 0.0), (0.05, 0.62), (0.6, 0.62)), line((0.46, 0.22), (0.46, 1.0))],
        "open_tall": [line((0.14, 0.02), (0.04, 0.56), (0.56, 0.56)), line((0.44, 0.0), (0.44, 1.0))],
    },
    5: {
        "two_strokes": [line((0.1, 0.02), (0.07, 0.45)) + arc(0.28, 0.7, 0.28, 0.29, 235, 520),
                        line((0.1, 0.02), (0.58, 0.02))],
        "one_stroke": [line((0.58, 0.02), (0.1, 0.02), (0.06, 0.45)) + arc(0.28, 0.7, 0.28, 0.29, 235, 520)],
        "round_belly": [line((0.55, 0.03), (0.12, 0.03), (0.1, 0.42))
                        + arc(0.3, 0.7, 0.28, 0.3, 220, 500)],
    },
    6: {
        "curved": [bezier(P((0.52, 0.03)), P((0.2, 0.1)), P((0.02, 0.45)), P((0.05, 0.72)))
                   + arc(0.3, 0.73, 0.25, 0.26, 180, 535)],
        "straight": [line((0.46, 0.0)) + arc(0.3, 0.73, 0.25, 0.26, 200, 560)],
    },
    7: {
        "plain": [line((0.02, 0.03), (0.58, 0.03), (0.22, 1.0))],
        "crossed": [line((0.02, 0.03), (0.58, 0.03), (0.22, 1.0)), line((0.14, 0.53), (0.56, 0.53))],
        "hook": [line((0.03, 0.17), (0.03, 0.03), (0.58, 0.03), (0.25, 1.0))],
        "curved": [line((0.02, 0.04), (0.58, 0.04))
                   + bezier(P((0.58, 0.04)), P((0.4, 0.35)), P((0.3, 0.6)), P((0.3, 1.0)))],
    },
    8: {
        "two_loops": [arc(0.3, 0.26, 0.2, 0.24, 90, 450), arc(0.3, 0.74, 0.27, 0.26, -90, 270)],
        "figure_eight": [fig8()],
    },
    9: {
        "straight": [arc(0.3, 0.27, 0.26, 0.25, 0, 360) + line((0.5, 1.0))],
        "curved": [arc(0.3, 0.27, 0.26, 0.25, 0, 360)
                   + bezier(P((0.56, 0.27)), P((0.56, 0.7)), P((0.45, 0.95)), P((0.15, 1.0)))],
        "open_loop": [arc(0.3, 0.27, 0.26, 0.25, 30, 350) + line((0.54, 1.0))],
    },
}


def smooth_field(rng, amp):
    """A smooth random displacement of the unit square: a few low-frequency waves."""
    waves = []
    for _ in range(3):
        waves.append((rng.uniform(1.5, 4.5), rng.uniform(1.5, 4.5), rng.uniform(0, 2 * math.pi),
                      rng.uniform(0, 2 * math.pi), rng.uniform(-amp, amp), rng.uniform(-amp, amp)))

    def f(x, y):
        dx = sum(ax * math.sin(fx * x + px) for fx, _, px, _, ax, _ in waves)
        dy = sum(ay * math.sin(fy * y + py) for _, fy, _, py, _, ay in waves)
        return x + dx / 3, y + dy / 3
    return f


def render(label, style, strokes, rng):
    W = int(rng.choice([80, 96, 112]))
    H = int(rng.choice([W, W, int(W * 1.25)]))
    field = smooth_field(rng, rng.uniform(0.01, 0.07))
    slant = rng.uniform(-0.5, 0.45)        # shear: x += slant * (0.5 - y)  (+ leans right)
    rot = math.radians(rng.uniform(-12, 12))
    widen = rng.uniform(0.65, 1.4)
    height = rng.uniform(0.35, 0.9) * min(W, H)
    pen = rng.uniform(0.02, 0.22) * height
    pts_all = []
    for s in strokes:
        q = []
        for x, y in s:
            x, y = field(x, y)
            x = (x - 0.3) * widen + slant * (0.5 - y)
            y = y - 0.5
            xr = x * math.cos(rot) - y * math.sin(rot)
            yr = x * math.sin(rot) + y * math.cos(rot)
            q.append((xr * height, yr * height))
        pts_all.append(np.array(q))
    allp = np.concatenate(pts_all)
    lo, hi = allp.min(0) - pen, allp.max(0) + pen
    span = hi - lo
    # Anywhere on the canvas where it fits (shrunk if the slant made it too wide).
    fit = min(1.0, 0.96 * W / span[0], 0.96 * H / span[1])
    off = np.array([rng.uniform(0, max(0.0, W - span[0] * fit)), rng.uniform(0, max(0.0, H - span[1] * fit))])
    dark = rng.random() < 5 / 6
    paper = rng.uniform(190, 255) if dark else rng.uniform(0, 60)
    ink = rng.uniform(0, 90) if dark else rng.uniform(190, 255)
    scale = 8  # draw at 8x with anti-aliased lines, then area-average down: smooth edges
    img = np.full((H * scale, W * scale), paper, np.float32)
    for q in pts_all:
        p = ((q - lo) * fit + off) * scale
        cv2.polylines(img, [np.round(p).astype(np.int32)], False, float(ink),
                      thickness=max(1, int(round(pen * fit * scale))), lineType=cv2.LINE_AA)
    img = cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)
    noise = rng.uniform(0, 4)
    img += rng.normal(0, noise, img.shape).astype(np.float32)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.2))
    meta = dict(style=style, pen=100 * pen / height, slant=math.degrees(math.atan(slant)),
                polarity="dark_on_light" if dark else "light_on_dark")
    return np.clip(np.round(img), 0, 255).astype(np.uint8), meta


def make(out, per_digit, seed):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    n = 0
    for i in range(per_digit):
        for label in range(10):
            names = sorted(STYLES[label])
            style = names[i % len(names)]
            img, meta = render(label, style, STYLES[label][style], rng)
            name = f"hw_{n:03d}.png"
            n += 1
            tmp = os.path.join(out, name + ".tmp.png")
            if not cv2.imwrite(tmp, img, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
                raise SystemExit(f"make_handwriting_set: cannot write {tmp}")
            os.replace(tmp, os.path.join(out, name))
            rows.append((name, label, meta))
    with open(os.path.join(out, "labels.csv"), "w") as f:
        f.write("file,label\n")
        for name, label, _ in rows:
            f.write(f"{name},{label}\n")
    with open(os.path.join(out, "styles.csv"), "w") as f:
        f.write("file,label,style,pen_percent_of_height,slant_degrees,polarity\n")
        for name, label, m in rows:
            f.write(f"{name},{label},{m['style']},{m['pen']:.1f},{m['slant']:.1f},{m['polarity']}\n")
    return len(rows)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "handwriting")
    if len(sys.argv) > 2:
        raise SystemExit("usage: make_handwriting_set.py [OUT_DIR]")
    n_dev = make(os.path.join(out, "dev"), 20, seed=20261201)
    n_hold = make(os.path.join(out, "holdout"), 30, seed=19980101)
    print(f"make_handwriting_set: {n_dev} dev + {n_hold} holdout images in {os.path.normpath(out)}")


if __name__ == "__main__":
    main()
