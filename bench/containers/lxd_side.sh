#!/bin/bash
# Same measurements against LXD (image bb): lxc start / exec true / stop --force, client wall and daemon op time.
set -uo pipefail
N=${N:-10}; S=/var/lib/lxd/unix.socket; export LXD_CONF=/tmp/lxd-anchor/work/lxcconf; unset LXD_SOCKET
ms() { echo "$(( (${2/./} - ${1/./}) ))" | awk '{printf "%.1f", $1/1000}'; }
med() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
opdur() { python3 -c 'import json,sys,datetime as d
o=json.load(sys.stdin)["metadata"]
def p(s):
    s=s.replace("Z","")
    if "." in s:
        a,b=s.split("."); b=b[:6]; s=a+"."+b
    return d.datetime.fromisoformat(s[:26])
print("%.1f"%((p(o["updated_at"])-p(o["created_at"])).total_seconds()*1000))'; }
state() { local id; id=$(curl -s --unix-socket $S -X PUT -d "{\"action\":\"$2\",\"timeout\":-1,\"force\":true}" http://x/1.0/instances/$1/state | python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["id"])')
  curl -s --unix-socket $S "http://x/1.0/operations/$id/wait?timeout=60" | opdur; }
O=/tmp/cbench/lxd; mkdir -p $O; : > $O/start_cli; : > $O/stop_cli; : > $O/exec_cli; : > $O/start_d; : > $O/stop_d
for i in $(seq $N); do lxc init bb lxb$i >/dev/null 2>&1; done
for i in $(seq $N); do
  s=$EPOCHREALTIME; lxc start lxb$i; e=$EPOCHREALTIME; ms $s $e >> $O/start_cli; echo >> $O/start_cli
  s=$EPOCHREALTIME; lxc exec lxb$i -- true; e=$EPOCHREALTIME; ms $s $e >> $O/exec_cli; echo >> $O/exec_cli
  s=$EPOCHREALTIME; lxc stop --force lxb$i; e=$EPOCHREALTIME; ms $s $e >> $O/stop_cli; echo >> $O/stop_cli
  state lxb$i start >> $O/start_d; state lxb$i stop >> $O/stop_d
done
echo "LXD lxc start (client wall) median ms: $(med < $O/start_cli)"
echo "LXD lxc start (daemon op)   median ms: $(med < $O/start_d)"
echo "LXD lxc stop --force (client wall) median ms: $(med < $O/stop_cli)"
echo "LXD lxc stop --force (daemon op)   median ms: $(med < $O/stop_d)"
echo "LXD lxc exec -- true (client wall) median ms: $(med < $O/exec_cli)"
for i in $(seq $N); do lxc delete -f lxb$i >/dev/null 2>&1; done
