#!/usr/bin/env python3
"""Daemon-side storage timings over a unix socket (HTTP/1.1, one kept-alive connection).

Each sample is the wall time from sending the request to the end of waiting for its
operation (`GET /1.0/operations/ID/wait`): `POST /1.0/instances` with `source.type=image`
(root disk on --pool), then `POST /1.0/instances/NAME/snapshots` of that instance.
No client process start is included (unlike timing the `lxc` CLI).

Usage: storage_api.py --socket S --pool P --alias A [-n 30] [--label L]
Prints one line per measure: `LABEL create|snapshot min/median/max ms (n=N)`.
"""
import argparse
import http.client
import json
import socket
import statistics
import sys
import time


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=600)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def req(conn, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    conn.request(method, path, body=data, headers=headers)
    r = conn.getresponse()
    out = json.loads(r.read() or b"{}")
    if r.status >= 400:
        raise RuntimeError(f"{method} {path}: {r.status} {out.get('error')}")
    return out


def run_op(conn, method, path, body):
    out = req(conn, method, path, body)
    if out.get("type") == "async":
        op = out["operation"]
        done = req(conn, "GET", f"{op}/wait?timeout=600")
        md = done.get("metadata") or {}
        if md.get("status") != "Success":
            raise RuntimeError(f"{method} {path}: operation {md.get('status')}: {md.get('err')}")
    return out


def stats(xs):
    xs = sorted(xs)
    return f"min {xs[0]:.1f}  median {statistics.median(xs):.1f}  max {xs[-1]:.1f} ms (n={len(xs)})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--pool", required=True)
    ap.add_argument("--alias", required=True)
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--label", default="")
    ap.add_argument("--prefix", default="sb")
    a = ap.parse_args()
    conn = UnixHTTP(a.socket)
    create, snap = [], []
    names = [f"{a.prefix}{i}" for i in range(a.n)]
    try:
        for name in names:
            body = {
                "name": name,
                "type": "container",
                "source": {"type": "image", "alias": a.alias},
                "devices": {"root": {"type": "disk", "path": "/", "pool": a.pool}},
            }
            t = time.perf_counter()
            run_op(conn, "POST", "/1.0/instances", body)
            create.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            run_op(conn, "POST", f"/1.0/instances/{name}/snapshots", {"name": "s0"})
            snap.append((time.perf_counter() - t) * 1000)
    finally:
        for name in names:
            try:
                run_op(conn, "DELETE", f"/1.0/instances/{name}", None)
            except Exception as e:  # not created (failed run)
                print(f"cleanup {name}: {e}", file=sys.stderr)
    print(f"{a.label} create-from-image: {stats(create)}")
    print(f"{a.label} snapshot:          {stats(snap)}")


if __name__ == "__main__":
    main()
