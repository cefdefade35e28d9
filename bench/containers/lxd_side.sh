#!/bin/bash
# Same measurements against LXD (image bb): lxc start / exec true / stop --force, client wall and daemon op time.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
N=${N:-10}; S=/var/lib/lxd/unix.socket; export LXD_CONF=/tmp/lxd-anchor/work/lxcconf; unset LXD_SOCKET
ms() { echo "$(( (${2/./} - ${1/./}) ))" | awk '{printf "%.1f", $1/1000}'; }
med() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
# Daemon-side duration of PUT state + GET operation wait, timed in-process on one
# connection. (LXD 5.0.2 leaves an operation's updated_at equal to created_at unless its
# metadata changed, so updated_at - created_at printed 0.0 here.)
state() {
  python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import rest_side as r; print("%.1f" % r.state(r.UC(sys.argv[2]), sys.argv[3], sys.argv[4]))' "$HERE" "$S" "$1" "$2"; }
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
