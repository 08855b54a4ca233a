#!/usr/bin/env python3
"""Accuracy of one or more models on tests/data/handwriting (docs/own-digits.md,
section 7): overall, per part (dev, holdout), per style, per pen width, and every miss.

  scripts/handwriting_report.py MNIST_APPLY MODEL.kitnn [MODEL.kitnn ...] [--parts dev,holdout]

MNIST_APPLY is build/examples/mnist_apply; each model is run with
`--json --labels`, so the answers are exactly mnist_apply's (default preprocessing).
Only the standard library: any python3.
"""
import csv
import json
import os
import subprocess
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
SET = os.path.join(HERE, "..", "tests", "data", "handwriting")


def run(apply, model, part):
    folder = os.path.join(SET, part)
    out = subprocess.run([apply, "--model", model, "--threads", "1", "--json", "--labels",
                          os.path.join(folder, "labels.csv"), folder],
                         capture_output=True, text=True)
    rows = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    per_file = {os.path.basename(r["file"]): r for r in rows if "file" in r and "prediction" in r}
    with open(os.path.join(folder, "styles.csv")) as f:
        styles = {r["file"]: r for r in csv.DictReader(f)}
    if len(per_file) != len(styles):
        sys.exit(f"handwriting_report: {model} {part}: {len(per_file)} answers for "
                 f"{len(styles)} images (mnist_apply exit {out.returncode}): {out.stderr.strip()}")
    return [(styles[f], per_file[f]) for f in sorted(styles)]


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--parts")]
    parts = ["dev", "holdout"]
    for a in sys.argv[1:]:
        if a.startswith("--parts="):
            parts = a.split("=", 1)[1].split(",")
    if len(args) < 2:
        sys.exit(__doc__)
    apply, models = args[0], args[1:]
    for model in models:
        print(f"== {model}")
        by_style, by_pen, misses = defaultdict(lambda: [0, 0]), defaultdict(lambda: [0, 0]), []
        for part in parts:
            res = run(apply, model, part)
            ok = sum(1 for s, r in res if r["prediction"] == int(s["label"]))
            print(f"  {part}: {ok / len(res):.4f} ({ok}/{len(res)})")
            for s, r in res:
                right = r["prediction"] == int(s["label"])
                key = f'{s["label"]} {s["style"]}'
                by_style[key][0] += right
                by_style[key][1] += 1
                pen = float(s["pen_percent_of_height"])
                bucket = "pen < 6 %" if pen < 6 else "pen 6-14 %" if pen < 14 else "pen >= 14 %"
                by_pen[bucket][0] += right
                by_pen[bucket][1] += 1
                if not right:
                    misses.append(f'    {part}/{s["file"]}: a {s["label"]} ({s["style"]}, pen '
                                  f'{s["pen_percent_of_height"]} %, slant {s["slant_degrees"]} deg, '
                                  f'{s["polarity"]}) read as {r["prediction"]} ({r["probability"]:.2f})')
        print("  by pen width: " + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(by_pen.items())))
        weak = [f"{k} {v[0]}/{v[1]}" for k, v in sorted(by_style.items()) if v[0] < v[1]]
        print("  styles with a miss: " + (", ".join(weak) if weak else "none"))
        print("  misses:")
        print("\n".join(misses) if misses else "    none")


if __name__ == "__main__":
    main()
