#!/usr/bin/env python3
"""Daemon-side start / stop --force latency: PUT state + GET operation wait on one
unix-socket connection, timed in-process (no CLI). Usage: rest_side.py SOCKET PREFIX N"""
import http.client, json, socket, sys, time, statistics
class UC(http.client.HTTPConnection):
    def __init__(self, path): super().__init__("x"); self.p = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(self.p)
def req(c, m, u, body=None):
    c.request(m, u, body=json.dumps(body) if body else None, headers={"Content-Type": "application/json"})
    r = c.getresponse(); return json.loads(r.read())
def one(c, name, action):
    t = time.perf_counter()
    op = req(c, "PUT", f"/1.0/instances/{name}/state", {"action": action, "timeout": -1, "force": True})
    w = req(c, "GET", f"/1.0/operations/{op['metadata']['id']}/wait?timeout=60")
    dt = (time.perf_counter() - t) * 1000
    if w["metadata"]["status"] != "Success": raise SystemExit(f"{name} {action}: {w['metadata']['err']}")
    return dt
s, p, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = UC(s); st, sp = [], []
for i in range(1, n + 1):
    st.append(one(c, f"{p}{i}", "start")); sp.append(one(c, f"{p}{i}", "stop"))
print(f"{p}: REST start median {statistics.median(st):.1f} ms (min {min(st):.1f}); stop --force median {statistics.median(sp):.1f} ms (min {min(sp):.1f})")
