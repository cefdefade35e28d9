#!/bin/bash
# berthd container benchmark: same lxc 5.0.2 client as the LXD anchor bench.
# Usage: BERTHD=/path/berthd N=20 ./bench.sh
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
N=${N:-20}; D=${D:-/tmp/cbench/data}; BERTHD=${BERTHD:?}
rm -rf $D; mkdir -p $D
export LXD_SOCKET=$D/unix.socket LXD_CONF=$D/lxcconf
$BERTHD --data-dir $D >$D/log 2>&1 & BPID=$!
trap 'kill -9 $BPID 2>/dev/null' EXIT
sleep 1
TPL=/tmp/cbench/tpl
if [ ! -d $TPL ]; then
  mkdir -p $TPL/bin $TPL/sbin $TPL/etc $TPL/proc $TPL/sys $TPL/dev $TPL/tmp $TPL/root
  chmod 1777 $TPL/tmp; cp /usr/bin/busybox $TPL/bin/busybox
  for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox $TPL/bin/$a; done
  ln -s ../bin/busybox $TPL/sbin/init
  printf '::sysinit:/bin/true\n::respawn:/bin/sleep 100000\n' > $TPL/etc/inittab
  printf 'root:x:0:0:root:/root:/bin/sh\n' > $TPL/etc/passwd
fi
mk() { curl -sf -o /dev/null --unix-socket $LXD_SOCKET -X POST -d "{\"name\":\"$1\",\"source\":{\"type\":\"none\"}}" http://x/1.0/instances; 
       local r=$D/storage-pools/default/containers/$1/rootfs; rmdir $r; cp -al $TPL $r; }
ms() { echo "$(( (${2/./} - ${1/./}) ))" | awk '{printf "%.1f", $1/1000}'; }
med() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
# daemon-side duration: PUT state + GET operation wait timed in-process (as lxd_side.sh)
state() { # name action -> daemon ms
  python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import rest_side as r; print("%.1f" % r.state(r.UC(sys.argv[2]), sys.argv[3], sys.argv[4]))' "$HERE" "$LXD_SOCKET" "$1" "$2"; }
for i in $(seq $N); do mk b$i; done
: > $D/start_cli; : > $D/stop_cli; : > $D/exec_cli; : > $D/start_d; : > $D/stop_d
for i in $(seq $N); do
  s=$EPOCHREALTIME; lxc start b$i; e=$EPOCHREALTIME; ms $s $e >> $D/start_cli; echo >> $D/start_cli
  s=$EPOCHREALTIME; lxc exec b$i -- true; e=$EPOCHREALTIME; ms $s $e >> $D/exec_cli; echo >> $D/exec_cli
  s=$EPOCHREALTIME; lxc stop --force b$i; e=$EPOCHREALTIME; ms $s $e >> $D/stop_cli; echo >> $D/stop_cli
  state b$i start >> $D/start_d; state b$i stop >> $D/stop_d
done
echo "lxc start (client wall) median ms: $(med < $D/start_cli)"
echo "lxc start (daemon op)   median ms: $(med < $D/start_d)"
echo "lxc stop --force (client wall) median ms: $(med < $D/stop_cli)"
echo "lxc stop --force (daemon op)   median ms: $(med < $D/stop_d)"
echo "lxc exec -- true (client wall) median ms: $(med < $D/exec_cli)"
SC=${SC:-500}; RUN=${RUN:-100}
for i in $(seq $((N+1)) $SC); do mk b$i; done
rss0=$(awk '/VmRSS/{print $2}' /proc/$BPID/status)
for i in $(seq $RUN); do state b$i start >/dev/null; done
sleep 1
rss1=$(awk '/VmRSS/{print $2}' /proc/$BPID/status)
pss=0; n=0; for p in $(pgrep -f "berth-console .*$D/"); do v=$(awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup); pss=$((pss+v)); n=$((n+1)); done
echo "running: $(curl -s --unix-socket $LXD_SOCKET 'http://x/1.0/instances?recursion=1' | python3 -c 'import json,sys; print(sum(1 for i in json.load(sys.stdin)["metadata"] if i["status"]=="Running"))') of $SC"
: > $D/list
for k in $(seq 5); do s=$EPOCHREALTIME; lxc list >/dev/null; e=$EPOCHREALTIME; ms $s $e >> $D/list; echo >> $D/list; done
echo "lxc list ($RUN of $SC running) median ms: $(med < $D/list)"
: > $D/listd
for k in $(seq 5); do curl -s -o /dev/null -w '%{time_total}\n' --unix-socket $LXD_SOCKET 'http://x/1.0/instances?recursion=2&filter=' | awk '{printf "%.1f\n",$1*1000}' >> $D/listd; done
echo "GET /1.0/instances?recursion=2 median ms: $(med < $D/listd)"
echo "berth-console helpers: $n, total PSS kB: $pss, per container kB: $((pss/ (n>0?n:1) ))"
echo "daemon RSS kB before/after $RUN starts: $rss0 / $rss1, per container kB: $(( (rss1-rss0)/RUN ))"
for i in $(seq $RUN); do state b$i stop >/dev/null; done
