"""Shared by the kitnn_serve tests: start the real server on 127.0.0.1 and a free port
(--port 0: the server picks one and prints its URL, so no two tests race for a port),
send it requests, stop it with a signal, and count checks.

Python standard library only. Every request goes to 127.0.0.1, nowhere else.
"""
import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"


class Checks:
    """ok/FAIL lines like tests/e2e_exercise.sh; exit code 1 when any failed."""

    def __init__(self, name):
        self.name, self.fails, self.count = name, 0, 0

    def __call__(self, what, cond, detail=""):
        self.count += 1
        if cond:
            print(f"ok   - {what}", flush=True)
        else:
            self.fails += 1
            print(f"FAIL - {what}{': ' + str(detail)[:600] if detail != '' else ''}", flush=True)
        return cond

    def done(self):
        print(f"{self.name}: {self.count - self.fails} passed, {self.fails} failed", flush=True)
        sys.exit(1 if self.fails else 0)


class Server:
    """kitnn_serve as a child process; its stdout is collected line by line."""

    def __init__(self, binary, model, log_path, *extra, timeout=30):
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [binary, "--model", model, "--host", HOST, "--port", "0", *extra],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.lines = queue.Queue()
        self.stdout = []
        threading.Thread(target=self._read, daemon=True).start()
        self.port = None
        deadline = time.time() + timeout
        while self.port is None:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                self.kill()
                raise RuntimeError(f"kitnn_serve printed no URL within {timeout} s")
            if line is None:
                raise RuntimeError(f"kitnn_serve exited with {self.proc.wait()} before serving; see {log_path}")
            marker = f"open http://{HOST}:"
            if marker in line:
                self.port = int(line.split(marker, 1)[1].split("/", 1)[0])

    def _read(self):
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def connection(self, timeout=30):
        """A keep-alive connection. TCP_NODELAY: http.client sends the headers and the body
        in two writes, and Nagle's algorithm would hold the body back until the server's
        delayed ACK (40 ms on Linux), measuring that instead of the server."""
        c = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        c.connect()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return c

    def request(self, method, path, body=None, headers=None, conn=None):
        """(status, headers dict with lower-case names, body bytes); a new connection unless given."""
        own = conn is None
        c = self.connection() if own else conn
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            if own:
                c.close()

    def classify(self, body, content_type="image/png", query="", conn=None):
        """POST /api/classify -> (status, parsed JSON or None)."""
        status, headers, data = self.request("POST", "/api/classify" + query, body,
                                             {"Content-Type": content_type}, conn)
        try:
            return status, json.loads(data)
        except ValueError:
            return status, None

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Signals the server; returns its exit code (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = None
        deadline = time.time() + 5
        while time.time() < deadline:  # let the reader thread take the last lines
            try:
                if self.lines.get(timeout=0.2) is None:
                    break
            except queue.Empty:
                pass
        self.log.close()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def own_digits(folder):
    """[(file path, label)] from the committed tests/data/own_digits/labels.csv."""
    rows = []
    with open(os.path.join(folder, "labels.csv")) as f:
        next(f)
        for line in f:
            if line.strip():
                name, label = line.strip().rsplit(",", 1)
                rows.append((os.path.join(folder, name), int(label)))
    return rows


def apply_json(mnist_apply, model, files, *flags):
    """mnist_apply --json --top 3 on files -> {path: object} (one JSON object per line)."""
    out = subprocess.run([mnist_apply, "--model", model, "--json", "--top", "3", *flags, *files],
                         capture_output=True, text=True, timeout=300)
    result = {}
    for line in out.stdout.splitlines():
        obj = json.loads(line)
        if "file" in obj:
            result[obj["file"]] = obj
    return out.returncode, result


def same_answer(server, applied):
    """'' when the server's JSON answer is mnist_apply --json's (prediction, top-3 classes,
    probabilities printed to 4 decimals as mnist_apply prints them), else the difference."""
    if server is None or "prediction" not in server:
        return f"no prediction from the server: {server}"
    if server["prediction"] != applied["prediction"]:
        return f"prediction {server['prediction']} != mnist_apply's {applied['prediction']}"
    mine = [(t["digit"], "%.4f" % t["probability"]) for t in server["top"]]
    theirs = [(t["digit"], "%.4f" % t["probability"]) for t in applied["top"]]
    if mine != theirs:
        return f"top {mine} != mnist_apply's {theirs}"
    if "%.4f" % server["probability"] != "%.4f" % applied["probability"]:
        return f"probability {server['probability']} != {applied['probability']}"
    return ""
