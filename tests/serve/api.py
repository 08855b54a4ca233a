#!/usr/bin/env python3
"""kitnn_serve's API against mnist_apply, on the real server (127.0.0.1, a free port).

  api.py BIN_DIR MODEL OWN_DIGITS_DIR WORK_DIR

* GET / is the page: HTML, one canvas, no reference to any other host; GET /api/model.
* The 50 committed own digits, posted one by one as PNG files, get exactly the answers of
  `mnist_apply --json --top 3` on the same files (prediction, top 3, probabilities to the
  4 decimals mnist_apply prints), with MNIST-style preprocessing and with
  ?preprocess=raw (= mnist_apply --raw --resize).
* The 28x28 image each answer returns is, byte for byte, the PNG mnist_apply
  --save-preprocessed writes; its pixels posted back as raw grey (application/octet-stream,
  ?width=28&height=28, ?preprocess=raw) get mnist_apply --raw's answers on that PNG.
* --collect: POST /api/collect stores PNG + labels.csv rows that mnist_apply --labels
  reads, numbering goes on after a restart, no temporary file stays behind; a server
  without --collect answers 404.
* SIGTERM and SIGINT stop the server with exit code 0 and a "stopped" line.
"""
import base64
import glob
import json
import os
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import Checks, Server, apply_json, own_digits, same_answer  # noqa: E402

bin_dir, model, own_dir, work = sys.argv[1:5]
serve, mnist_apply = os.path.join(bin_dir, "kitnn_serve"), os.path.join(bin_dir, "mnist_apply")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
check = Checks("serve_api")
digits = own_digits(own_dir)
files = [f for f, _ in digits]

collect = os.path.join(work, "collect")
srv = Server(serve, model, os.path.join(work, "server.log"), "--collect", collect, "--threads", "2")

# --- the page and the model ---
status, headers, page = srv.request("GET", "/")
text = page.decode("utf-8", "replace")
check("GET / is the page (200, text/html)", status == 200 and headers.get("content-type", "").startswith("text/html"),
      (status, headers.get("content-type")))
check("the page has the drawing canvas, undo, clear, the raw/MNIST toggle and save",
      all(s in text for s in ('id="pad"', 'id="undo"', 'id="clear"', 'value="raw"', 'value="mnist"', 'id="save"')))
check("the page refers to no other host (no http:// or https:// or //host URL in it)",
      "http://" not in text and "https://" not in text and 'src="//' not in text and "url(" not in text)
check("the page is served with a Content-Security-Policy that allows only its own server",
      "connect-src 'self'" in headers.get("content-security-policy", "")
      and "default-src 'none'" in headers.get("content-security-policy", ""))
status, headers, body = srv.request("GET", "/api/model")
info = json.loads(body) if status == 200 else {}
check("GET /api/model: name, classes, input, parameters, summary",
      info.get("classes") == [str(d) for d in range(10)] and info.get("input") == {"channels": 1, "height": 28, "width": 28}
      and info.get("parameters", 0) > 0 and "Total params" in info.get("summary", "") and info.get("collect") is True,
      {k: v for k, v in info.items() if k != "summary"})

# --- the own digits against mnist_apply, both modes ---
pre_dir = os.path.join(work, "preprocessed")
rc, applied = apply_json(mnist_apply, model, files, "--save-preprocessed", pre_dir)
check("mnist_apply --json classified all 50 own digits", rc == 0 and len(applied) == 50, rc)
rc, applied_raw = apply_json(mnist_apply, model, files, "--raw", "--resize")
check("mnist_apply --raw --resize --json classified all 50", rc == 0 and len(applied_raw) == 50, rc)
pre_files = [os.path.join(pre_dir, os.path.basename(f)) for f in files]
rc, applied_pre = apply_json(mnist_apply, model, pre_files, "--raw")
check("mnist_apply --raw --json classified the 50 preprocessed PNGs", rc == 0 and len(applied_pre) == 50, rc)

answers = {}
diffs, raw_diffs, png_diffs, back_diffs = [], [], [], []
conn = srv.connection()  # one keep-alive connection for all of them, as a browser does
for f in files:
    with open(f, "rb") as fh:
        png = fh.read()
    status, j = srv.classify(png, "image/png", "?top=3", conn)
    answers[f] = j
    d = same_answer(j, applied[f]) if status == 200 else f"status {status}: {j}"
    if d:
        diffs.append(f"{os.path.basename(f)}: {d}")
    status, jr = srv.classify(png, "image/png", "?preprocess=raw&top=3", conn)
    d = same_answer(jr, applied_raw[f]) if status == 200 else f"status {status}: {jr}"
    if d:
        raw_diffs.append(f"{os.path.basename(f)}: {d}")
    if status != 200 or j is None or "image" not in j:
        continue
    # The image the network saw: the very PNG mnist_apply --save-preprocessed wrote.
    with open(os.path.join(pre_dir, os.path.basename(f)), "rb") as fh:
        if base64.b64decode(j["image"]["png"]) != fh.read():
            png_diffs.append(os.path.basename(f))
    # Its 8-bit pixels, posted back as raw grey, are classified as mnist_apply --raw
    # classifies that PNG (the raw-pixel path is the PNG path without the file).
    pixels = bytes(j["image"]["pixels"])
    status, jb = srv.classify(pixels, "application/octet-stream", "?preprocess=raw&width=28&height=28&top=3", conn)
    d = same_answer(jb, applied_pre[os.path.join(pre_dir, os.path.basename(f))]) if status == 200 else f"{status} {jb}"
    if d:
        back_diffs.append(f"{os.path.basename(f)}: {d}")
conn.close()
check("50 own digits posted as PNG: the server's answers are mnist_apply --json's (MNIST-style)",
      not diffs, "; ".join(diffs))
check("50 own digits with ?preprocess=raw: the answers of mnist_apply --raw --resize --json",
      not raw_diffs, "; ".join(raw_diffs))
check("the returned 28x28 image is byte for byte mnist_apply --save-preprocessed's PNG", not png_diffs, png_diffs)
check("the returned pixels posted back as raw grey (?width=28&height=28): mnist_apply --raw's answers on that PNG",
      not back_diffs, "; ".join(back_diffs))
ok = [j for j in answers.values() if j and j.get("model") == info.get("name") and j.get("preprocess") == "mnist"
      and len(j.get("top", [])) == 3 and len(j.get("probabilities", [])) == 10
      and j.get("input", {}).get("width", 0) > 0 and len(j.get("image", {}).get("pixels", [])) == 784]
check("every answer names the model and carries top 3, 10 probabilities, the input size and 784 pixels",
      len(ok) == 50, len(ok))
right = sum(1 for f, label in digits if answers[f] and answers[f].get("prediction") == label)
print(f"serve_api: {right}/50 own digits right with this model (information, not a check)")

# ?top=K
status, j = srv.classify(open(files[0], "rb").read(), "image/png", "?top=10")
check("?top=10 gives all 10 classes, sorted", status == 200 and [t["digit"] for t in j["top"]] ==
      sorted(range(10), key=lambda k: -j["probabilities"][k]), j if status != 200 else "")

# --- --collect ---
saved = []
for f, label in digits[:3]:
    status, headers, body = srv.request("POST", f"/api/collect?label={label}", open(f, "rb").read(),
                                        {"Content-Type": "image/png"})
    saved.append((status, json.loads(body) if body else None, label))
check("POST /api/collect stores 3 labelled examples",
      all(s == 200 and j and os.path.isfile(os.path.join(collect, j["file"])) for s, j, _ in saved), saved)
csv = open(os.path.join(collect, "labels.csv")).read() if os.path.isfile(os.path.join(collect, "labels.csv")) else ""
check("labels.csv: a header and one file,label row per example",
      csv == "file,label\n" + "".join(f"{j['file']},{label}\n" for s, j, label in saved if j), csv)
status, headers, body = srv.request("POST", "/api/collect?label=../../etc", open(files[0], "rb").read(),
                                    {"Content-Type": "image/png"})
check("?label that is not a digit -> 400, nothing stored", status == 400 and len(os.listdir(collect)) == 4,
      (status, body[:200], os.listdir(collect)))
status, headers, body = srv.request("POST", "/api/collect", open(files[0], "rb").read(), {"Content-Type": "image/png"})
check("?label missing -> 400", status == 400, (status, body[:200]))

rc = srv.stop(signal.SIGTERM)
check("SIGTERM: exit code 0 and a 'stopped' line", rc == 0 and any("stopped (SIGTERM)" in l for l in srv.stdout),
      (rc, srv.stdout[-2:]))

# A restart on the same folder goes on numbering and appending.
srv = Server(serve, model, os.path.join(work, "server2.log"), "--collect", collect)
f, label = digits[3]
status, headers, body = srv.request("POST", f"/api/collect?label={label}", open(f, "rb").read(),
                                    {"Content-Type": "image/png"})
j4 = json.loads(body) if body else {}
csv = open(os.path.join(collect, "labels.csv")).read()
check("after a restart: a new file, the 4th row, one header",
      status == 200 and j4.get("count") == 4 and j4.get("file") not in [j["file"] for _, j, _ in saved if j]
      and csv.count("file,label") == 1 and csv.endswith(f"{j4.get('file')},{label}\n"), (status, j4, csv))
rc = srv.stop(signal.SIGINT)
check("SIGINT: exit code 0 and a 'stopped' line", rc == 0 and any("stopped (SIGINT)" in l for l in srv.stdout),
      (rc, srv.stdout[-2:]))
check("no temporary file left in the collect folder", not glob.glob(os.path.join(collect, "*.tmp.*")))
out = subprocess.run([mnist_apply, "--model", model, "--json", "--labels", os.path.join(collect, "labels.csv"), collect],
                     capture_output=True, text=True)
summary = json.loads(out.stdout.splitlines()[-1]) if out.stdout else {}
check("mnist_apply --labels reads the collected folder (4 examples)", out.returncode == 0 and summary.get("total") == 4,
      (out.returncode, out.stdout[-300:], out.stderr[-300:]))

# Without --collect: 404 on /api/collect.
srv = Server(serve, model, os.path.join(work, "server3.log"))
status, headers, body = srv.request("POST", "/api/collect?label=1", open(files[0], "rb").read(),
                                    {"Content-Type": "image/png"})
check("without --collect, POST /api/collect -> 404 with a message naming --collect",
      status == 404 and "--collect" in json.loads(body).get("error", ""), (status, body[:200]))
check("server still stops cleanly", srv.stop() == 0)
check.done()
