#!/usr/bin/env python3
"""A bounded load test of kitnn_serve: CLIENTS concurrent clients, each on its own
keep-alive connection, post REQUESTS own digits each (PNG files, round robin); every
answer must equal the answer the server gave for that file alone, before the load.
Latency (p50, p99) and requests/s are printed (and written as JSON with --json FILE):
figures for benchmarks/serve_load.sh and docs/performance.md, never asserted.

  load.py BIN_DIR MODEL OWN_DIGITS_DIR WORK_DIR [--clients 8] [--requests 200]
          [--threads N] [--json FILE]

Only 127.0.0.1; the number of requests is fixed, so the test ends by itself.
"""
import argparse
import json
import os
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import Checks, Server, own_digits  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("bin_dir")
ap.add_argument("model")
ap.add_argument("own_dir")
ap.add_argument("work")
ap.add_argument("--clients", type=int, default=8)
ap.add_argument("--requests", type=int, default=200)
ap.add_argument("--threads", type=int, default=0, help="kitnn_serve --threads (default: its own default)")
ap.add_argument("--json", default="")
args = ap.parse_args()
shutil.rmtree(args.work, ignore_errors=True)
os.makedirs(args.work)
check = Checks("serve_load")
extra = ["--threads", str(args.threads)] if args.threads else []
srv = Server(os.path.join(args.bin_dir, "kitnn_serve"), args.model, os.path.join(args.work, "server.log"), *extra)

bodies = [open(f, "rb").read() for f, _ in own_digits(args.own_dir)]
expected = []
for b in bodies:
    status, j = srv.classify(b)
    expected.append(j["probabilities"] if status == 200 else None)
check("every own digit is answered alone first", all(e is not None for e in expected))

latencies = [[] for _ in range(args.clients)]
wrong = [[] for _ in range(args.clients)]
start = threading.Barrier(args.clients + 1)


def client(c):
    conn = srv.connection()
    start.wait()
    for r in range(args.requests):
        i = (c * 7 + r) % len(bodies)
        t0 = time.perf_counter()
        try:
            status, j = srv.classify(bodies[i], conn=conn)
        except Exception as e:  # a dropped connection is a failure, reported below
            status, j = None, str(e)
        latencies[c].append(time.perf_counter() - t0)
        if status != 200 or j["probabilities"] != expected[i]:
            wrong[c].append((r, i, status, str(j)[:200]))
    conn.close()


threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
for t in threads:
    t.start()
start.wait()
t0 = time.perf_counter()
for t in threads:
    t.join()
elapsed = time.perf_counter() - t0

total = args.clients * args.requests
all_lat = sorted(x for l in latencies for x in l)
bad = [w for ws in wrong for w in ws]
check(f"{args.clients} clients x {args.requests} requests: all {total} answered, each exactly as alone",
      len(all_lat) == total and not bad, bad[:5])
p50 = all_lat[len(all_lat) // 2] * 1000
p99 = all_lat[min(len(all_lat) - 1, int(len(all_lat) * 0.99))] * 1000
rate = total / elapsed
print(f"serve_load: {total} requests ({args.clients} clients x {args.requests}) in {elapsed:.2f} s: "
      f"{rate:.0f} requests/s, latency p50 {p50:.1f} ms, p99 {p99:.1f} ms (not asserted)", flush=True)
if args.json:
    with open(args.json, "w") as f:
        json.dump({"clients": args.clients, "requests": total, "seconds": elapsed, "requests_per_s": rate,
                   "p50_ms": p50, "p99_ms": p99}, f)
rc = srv.stop()
check("the server stops on SIGTERM with exit code 0 after the load", rc == 0, rc)
check.done()
