#!/usr/bin/env python3
"""kitnn_serve under bad requests: each gets a 4xx (a JSON {"error": ...} where the
server answers at all) and the server then still answers a good request correctly.

  bad_requests.py BIN_DIR MODEL OWN_DIGITS_DIR WORK_DIR

Empty, truncated, garbage and oversized bodies; a PNG header claiming 100000x100000;
raw pixels of the wrong size; wrong content types, methods, paths and parameters; a
blank drawing (422); a body over --max-body with and without Expect: 100-continue and
chunked; malformed HTTP; a client that stalls in the middle of its request while others
are served; a client that hangs up mid-body.
"""
import json
import os
import shutil
import socket
import struct
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import HOST, Checks, Server, own_digits  # noqa: E402

bin_dir, model, own_dir, work = sys.argv[1:5]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
check = Checks("serve_bad_requests")
digit = own_digits(own_dir)[0][0]
good_png = open(digit, "rb").read()
MAX_BODY = 65536
srv = Server(os.path.join(bin_dir, "kitnn_serve"), model, os.path.join(work, "server.log"),
             "--max-body", str(MAX_BODY), "--threads", "2", "--connections", "4")

status, expected = srv.classify(good_png)
check("a good request first: 200 with a prediction", status == 200 and "prediction" in expected, (status, expected))


def still_serving(after):
    """The server is alive and answers the good request exactly as at the start."""
    if not srv.alive():
        return check(f"after {after}: the server is still running", False, "it exited")
    status, j = srv.classify(good_png)
    return check(f"after {after}: a good request is still answered correctly",
                 status == 200 and j["probabilities"] == expected["probabilities"], (status, j))


def png(w, h, rows=None):
    """A greyscale PNG with a correct structure (CRCs); rows default to a few zero bytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes(r) for r in rows) if rows is not None else b"\x00" * 16
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def raw_exchange(data, read_timeout=10, shut=False):
    """Sends bytes on a new socket; returns (status or None, body) of the first response."""
    s = socket.create_connection((HOST, srv.port), timeout=read_timeout)
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        buf = b""
        while b"\r\n\r\n" not in buf:
            part = s.recv(65536)
            if not part:
                break
            buf += part
        if not buf.startswith(b"HTTP/1.1 "):
            return None, buf
        status = int(buf[9:12])
        head, _, body = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(body) < length:
            part = s.recv(65536)
            if not part:
                break
            body += part
        return status, body[:length]
    except (ConnectionResetError, BrokenPipeError, socket.timeout) as e:
        return None, str(e).encode()
    finally:
        s.close()


def is_json_error(body):
    try:
        return bool(json.loads(body).get("error"))
    except (ValueError, AttributeError):
        return False


def expect(what, status, body, want):
    """Status `want` (an int, or a range of them) with a JSON error, then the server still serves."""
    ok = (status == want if isinstance(want, int) else status in want) and is_json_error(body)
    check(f"{what} -> {want if isinstance(want, int) else '4xx'} with a JSON error", ok, (status, body[:300]))
    still_serving(what)


def post(body, content_type="image/png", query=""):
    headers = {"Content-Type": content_type} if content_type is not None else {}
    status, _, data = srv.request("POST", "/api/classify" + query, body, headers)
    return status, data


# --- bodies ---
expect("an empty body", *post(b""), 400)
expect("a truncated PNG (its first 200 bytes)", *post(good_png[:200]), 400)
status, data = post(png(100000, 100000))
expect("a PNG header claiming 100000x100000", status, data, 400)
check("... and the message says it is too large", b"too large" in data, data[:300])
status, data = post(png(10000, 10000))
expect("a PNG header claiming 10000x10000 (over load_grey's pixel limit)", status, data, 400)
check("... and the message names the size and the limit", b"10000x10000" in data and b"67108864" in data, data[:300])
expect("a PNG whose IDAT chunk claims 1.4 GB", *post(good_png[:33] + struct.pack(">I", 1400000000) + b"IDAT" + b"\0" * 40),
       400)
expect("text posted as image/png", *post(b"hello, this is not an image\n" * 40), 400)
expect("random bytes posted as image/jpeg", *post(os.urandom(5000), "image/jpeg"), 400)
expect("a JPEG signature and then garbage", *post(b"\xff\xd8\xff\xe0" + os.urandom(3000), "image/jpeg"), 400)
white = png(60, 40, [[255] * 60 for _ in range(40)])
status, data = post(white)
expect("a blank (all white) drawing", status, data, 422)
check("... and the message says blank", b"blank" in data, data[:300])

# --- content types ---
for ctype in ("text/plain", "application/json", "application/x-www-form-urlencoded"):
    expect(f"Content-Type {ctype}", *post(good_png, ctype), 415)
# httplib parses multipart bodies itself and refuses this malformed one with 400 first.
expect("Content-Type multipart/form-data", *post(good_png, "multipart/form-data; boundary=x"), range(400, 416))
expect("no Content-Type", *post(good_png, None), 415)

# --- raw pixels and parameters ---
expect("raw pixels: 100 bytes for 28x28", *post(b"\0" * 100, "application/octet-stream", "?width=28&height=28"), 400)
expect("raw pixels: width only", *post(b"\0" * 784, "application/octet-stream", "?width=28"), 400)
expect("raw pixels: width=0", *post(b"\0" * 784, "application/octet-stream", "?width=0&height=28"), 400)
expect("raw pixels: width=abc", *post(b"\0" * 784, "application/octet-stream", "?width=abc&height=28"), 400)
expect("raw pixels: 100000x100000", *post(b"\0" * 784, "application/octet-stream", "?width=100000&height=100000"), 400)
expect("raw pixels: 8192x8193 (over the pixel limit)",
       *post(b"\0" * 784, "application/octet-stream", "?width=8192&height=8193"), 400)
expect("?preprocess=sharpen", *post(good_png, "image/png", "?preprocess=sharpen"), 400)
for top in ("0", "11", "-1", "3x", "99999999999"):
    expect(f"?top={top}", *post(good_png, "image/png", f"?top={top}"), 400)

# --- methods and paths ---
for method, path, want in (("GET", "/api/classify", 405), ("PUT", "/api/classify", 405), ("DELETE", "/", 405),
                           ("POST", "/", 405), ("PATCH", "/api/model", 405), ("GET", "/nothing", 404),
                           ("GET", "/index.html", 404), ("GET", "/../../etc/passwd", 404),
                           ("GET", "/api/model/../../../etc/passwd", 404), ("POST", "/api/classify/extra", 404)):
    status, headers, data = srv.request(method, path, good_png if method in ("POST", "PUT", "PATCH") else None,
                                        {"Content-Type": "image/png"})
    expect(f"{method} {path}", status, data, want)
status, headers, data = srv.request("GET", "/api/classify")
check("405 names the allowed method (Allow: POST)", headers.get("allow") == "POST", headers)

# --- size limits ---
big = png(10, 10) + b"\0" * (MAX_BODY + 1000)
expect(f"a body over --max-body ({len(big)} > {MAX_BODY} bytes)", *post(big), 413)
status, body = raw_exchange(b"POST /api/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                            b"Content-Length: 50000000\r\nExpect: 100-continue\r\n\r\n")
expect("Expect: 100-continue with Content-Length 50 MB (refused before the body is sent)", status, body, 413)
chunk = b"\0" * 32768
chunked = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(4)) + b"0\r\n\r\n"
status, body = raw_exchange(b"POST /api/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
expect("a chunked body (refused before it is read: no Content-Length to limit it)", status, body, 411)

# --- malformed HTTP ---
for what, data in (("a garbage request line", b"HELLO\r\n\r\n"),
                   ("an unknown method", b"BREW /api/classify HTTP/1.1\r\nHost: x\r\n\r\n"),
                   ("a non-numeric Content-Length", b"POST /api/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                                                    b"Content-Length: lots\r\n\r\nabc"),
                   ("a 20,000-character URI", b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
                   ("a 20,000-character header", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n")):
    status, body = raw_exchange(data)
    # httplib closes some of these without an answer; either way no 2xx, and still serving.
    check(f"{what} -> a 4xx or a closed connection, never 2xx", status is None or 400 <= status < 500, (status, body[:200]))
    still_serving(what)

# --- clients that misbehave over time ---
stalled = socket.create_connection((HOST, srv.port), timeout=30)
stalled.sendall(b"POST /api/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 5000\r\n\r\n"
                + good_png[:100])
t0 = time.time()
still_serving("a client stalled mid-body (still connected)")
check("... the good request did not wait for the stalled one", time.time() - t0 < 3, time.time() - t0)
stalled.close()
status, body = raw_exchange(b"POST /api/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                            b"Content-Length: 5000\r\n\r\n" + good_png[:100], shut=True)
check("a client that hangs up mid-body gets no 2xx", status is None or 400 <= status < 500, (status, body[:200]))
still_serving("a client that hung up mid-body")

rc = srv.stop()
check("the server stops on SIGTERM with exit code 0", rc == 0, rc)
check.done()
