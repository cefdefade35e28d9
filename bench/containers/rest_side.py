#!/usr/bin/env python3
"""Daemon-side start / exec / stop --force latency, timed in-process (no CLI start-up).

Each sample is one kept-alive unix-socket connection doing the request and then
GET /1.0/operations/<id>/wait, i.e. until the daemon reports the operation finished.
(LXD 5.0.2 leaves an operation's updated_at at created_at unless its metadata changed,
so its created_at/updated_at cannot give the duration: we time the call with wait.)

Several daemons are measured interleaved, sample by sample, so that the load of the
shared machine hits them alike.

Usage: rest_side.py N SOCKET:PREFIX [SOCKET:PREFIX ...]
  containers PREFIX1..PREFIXN must exist and be stopped on each daemon.
Prints one line per daemon and operation: median, min, max in ms.
"""
import http.client, json, socket, sys, time, statistics


class UC(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("x")
        self.p = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.p)


def req(c, m, u, body=None):
    c.request(m, u, body=json.dumps(body) if body else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    return json.loads(r.read())


def timed(c, method, url, body, what):
    t = time.perf_counter()
    op = req(c, method, url, body)
    if op.get("type") != "async":
        raise SystemExit(f"{what}: {op.get('error')}")
    w = req(c, "GET", f"/1.0/operations/{op['metadata']['id']}/wait?timeout=60")
    dt = (time.perf_counter() - t) * 1000
    if w["metadata"]["status"] != "Success":
        raise SystemExit(f"{what}: {w['metadata']['err']}")
    return dt


def state(c, name, action):
    return timed(c, "PUT", f"/1.0/instances/{name}/state",
                 {"action": action, "timeout": -1, "force": True}, f"{name} {action}")


def exec_true(c, name):
    body = {"command": ["true"], "wait-for-websocket": False, "interactive": False,
            "record-output": False, "environment": {}}
    return timed(c, "POST", f"/1.0/instances/{name}/exec", body, f"{name} exec")


def main():
    n = int(sys.argv[1])
    targets = []
    for arg in sys.argv[2:]:
        sock, prefix = arg.rsplit(":", 1)
        targets.append((prefix, UC(sock), {"start": [], "exec": [], "stop": []}))
    for i in range(1, n + 1):
        for prefix, c, r in targets:
            name = f"{prefix}{i}"
            r["start"].append(state(c, name, "start"))
            r["exec"].append(exec_true(c, name))
            r["stop"].append(state(c, name, "stop"))
    for prefix, _, r in targets:
        for op, v in r.items():
            print(f"{prefix}: REST {op} median {statistics.median(v):.1f} ms "
                  f"(min {min(v):.1f}, max {max(v):.1f}, n={len(v)})")


if __name__ == "__main__":
    main()
