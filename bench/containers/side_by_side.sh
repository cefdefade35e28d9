#!/bin/bash
# berthd and LXD 5.0.2 in ONE run, interleaved sample by sample, same lxc 5.0.2 client,
# busybox rootfs (berthd: hard-linked template; LXD: the anchor's image `bb`), dir pools,
# no NIC, unprivileged. LXD must be up already (anchor: `NO_LXCFS=1 ./start-lxd.sh`).
#
# Usage (root): BERTHD=target/release/berthd N=20 SC=500 RUN=100 bench/containers/side_by_side.sh
#   N    samples per lifecycle operation (CLI and REST)
#   SC   containers created on each daemon for the list test, RUN of them running
# Output: one line per measurement; raw samples in $O.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
N=${N:-20}; SC=${SC:-500}; RUN=${RUN:-100}; BERTHD=$(realpath "${BERTHD:?}")
O=${O:-/tmp/cbench/side}; D=$O/berthd
LSOCK=/var/lib/lxd/unix.socket; LCONF=/tmp/lxd-anchor/work/lxcconf
rm -rf "$O"; mkdir -p "$D"
BSOCK=$D/unix.socket; BCONF=$D/lxcconf
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "load average at start: $(load)"
echo "berthd: $BERTHD ($(stat -c %y "$BERTHD" | cut -c1-19)); lxd: $(lxd --version); lxcfs running: $(pgrep -x lxcfs >/dev/null && echo yes || echo no)"

"$BERTHD" --data-dir "$D" >"$O/berthd.log" 2>&1 & BPID=$!
trap 'kill -TERM $BPID 2>/dev/null' EXIT
for _ in $(seq 100); do [ -S "$BSOCK" ] && break; sleep 0.1; done
LPID=$(pgrep -x lxd | head -1)
[ -n "$LPID" ] || { echo "LXD is not running"; exit 1; }

bl() { LXD_SOCKET=$BSOCK LXD_CONF=$BCONF lxc "$@"; }          # lxc against berthd
ll() { env -u LXD_SOCKET LXD_CONF=$LCONF lxc "$@"; }           # lxc against LXD

TPL=$O/tpl
mkdir -p $TPL/bin $TPL/sbin $TPL/etc $TPL/proc $TPL/sys $TPL/dev $TPL/tmp $TPL/root
chmod 1777 $TPL/tmp; cp /usr/bin/busybox $TPL/bin/busybox
for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox $TPL/bin/$a; done
ln -s ../bin/busybox $TPL/sbin/init
printf '::sysinit:/bin/true\n::respawn:/bin/sleep 100000\n' > $TPL/etc/inittab
printf 'root:x:0:0:root:/root:/bin/sh\n' > $TPL/etc/passwd
bmk() { curl -sf -o /dev/null --unix-socket $BSOCK -X POST \
          -d "{\"name\":\"$1\",\"source\":{\"type\":\"none\"}}" http://x/1.0/instances
        local r=$D/storage-pools/default/containers/$1/rootfs; rmdir $r && cp -al $TPL $r; }
lmk() { ll init bb "$1" >/dev/null 2>&1; }

ms() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f\n", (b-a)*1000}'; }
# t FILE CMD...: wall time of one CLI call, appended to FILE
t() { local f=$1; shift; local s=$EPOCHREALTIME; "$@" >/dev/null 2>>"$O/errors"; local e=$EPOCHREALTIME; ms "$s" "$e" >> "$O/$f"; }
stat3() { sort -n "$O/$1" | awk '{a[NR]=$1} END{printf "median %.1f ms (min %.1f, max %.1f, n=%d)", a[int((NR+1)/2)], a[1], a[NR], NR}'; }

echo "creating $SC containers on each daemon ..."
for i in $(seq "$SC"); do bmk b$i; done
printf 'l%s\n' $(seq "$SC") | xargs -P 3 -I{} env -u LXD_SOCKET LXD_CONF=$LCONF lxc init bb {} >/dev/null 2>>"$O/errors"
echo "created: berthd $(bl list -c n -f csv | wc -l), LXD $(ll list -c n -f csv | wc -l); load: $(load)"

# Warm-up, unmeasured: LXD shifts (remaps) a new container's rootfs on its first start;
# measure steady-state starts on both sides.
for i in $(seq "$N"); do bl start b$i; bl stop --force b$i; ll start l$i >/dev/null 2>&1; ll stop --force l$i; done
echo "warm-up done; load: $(load)"

# 1. CLI wall time, interleaved: berthd bI then LXD lI, each start / exec true / stop --force
for i in $(seq "$N"); do
  t b_start bl start b$i; t b_exec bl exec b$i -- true; t b_stop bl stop --force b$i
  t l_start ll start l$i; t l_exec ll exec l$i -- true; t l_stop ll stop --force l$i
done
for op in start exec stop; do
  echo "CLI lxc $op: berthd $(stat3 b_$op) | LXD $(stat3 l_$op)"
done
echo "load: $(load)"

# 2. Daemon side (REST + operation wait on one connection), interleaved
python3 "$HERE/rest_side.py" "$N" "$BSOCK:b" "$LSOCK:l"
echo "load: $(load)"

# 3. Memory outside the containers and list with RUN of SC running.
# Every process that appears while the RUN containers start, lives in the host pid
# namespace and stays, is overhead outside a container; PSS from smaps_rollup.
hostns=$(readlink /proc/self/ns/pid)
pids() { for p in /proc/[0-9]*; do [ "$(readlink $p/ns/pid 2>/dev/null)" = "$hostns" ] && echo ${p#/proc/}; done | sort; }
pss_of() { local s=0 v; for p in "$@"; do v=$(awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup 2>/dev/null); s=$((s+${v:-0})); done; echo $s; }
rss() { awk '/VmRSS/{print $2}' /proc/$1/status; }
pids > "$O/pids0"; brss0=$(rss $BPID); lrss0=$(rss $LPID)
for i in $(seq "$RUN"); do bl start b$i; ll start l$i >/dev/null 2>&1; done
sleep 2
pids > "$O/pids1"; brss1=$(rss $BPID); lrss1=$(rss $LPID)
bnew=(); lnew=(); other=0
for p in $(comm -13 "$O/pids0" "$O/pids1"); do
  [ -r /proc/$p/cmdline ] || continue
  c=$(tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null) || continue
  case "$c" in
    *"$D"*) bnew+=($p) ;;
    *"[lxc monitor]"*|*/var/lib/lxd*|*lxd\ forkexec*) lnew+=($p) ;;
    *) other=$((other+1)); echo "$p $c" >> "$O/other_new_procs" ;;
  esac
done
echo "running: berthd $(bl list -c ns -f csv | grep -c RUNNING) of $SC, LXD $(ll list -c ns -f csv | grep -c RUNNING) of $SC"
bp=$(pss_of "${bnew[@]}"); lp=$(pss_of "${lnew[@]}")
pos() { [ "$1" -gt 0 ] && echo "$1" || echo 0; }
echo "memory outside per running container (new host-side processes' PSS + daemon RSS growth if any): berthd $(( (bp + $(pos $((brss1 - brss0)))) / RUN )) kB (${#bnew[@]} helper procs, PSS $bp kB; daemon RSS $brss0 -> $brss1 kB) | LXD $(( (lp + $(pos $((lrss1 - lrss0)))) / RUN )) kB (${#lnew[@]} procs, PSS $lp kB; daemon RSS $lrss0 -> $lrss1 kB); $other unrelated new procs ignored"
for k in $(seq 5); do t b_list bl list; t l_list ll list; done
echo "CLI lxc list ($RUN of $SC running): berthd $(stat3 b_list) | LXD $(stat3 l_list)"
for k in $(seq 5); do
  curl -s -o /dev/null -w '%{time_total}\n' --unix-socket $BSOCK 'http://x/1.0/instances?recursion=2' | awk '{printf "%.1f\n",$1*1000}' >> $O/b_get
  curl -s -o /dev/null -w '%{time_total}\n' --unix-socket $LSOCK 'http://x/1.0/instances?recursion=2' | awk '{printf "%.1f\n",$1*1000}' >> $O/l_get
done
echo "GET /1.0/instances?recursion=2: berthd $(stat3 b_get) | LXD $(stat3 l_get)"
echo "load average at end: $(load)"

echo "cleaning up ..."
for i in $(seq "$RUN"); do bl stop --force b$i; done
printf 'l%s\n' $(seq "$SC") | xargs -P 3 -I{} env -u LXD_SOCKET LXD_CONF=$LCONF lxc delete -f {} >/dev/null 2>&1
# LXD prints a notice on every start of a container without a NIC; anything else is an error.
grep -v -e "network attached to it" -e "lxc network create" -e "lxc network attach" -e '^$' "$O/errors" > "$O/errors.real" || true
[ -s "$O/errors.real" ] && { echo "errors (first 5):"; head -5 "$O/errors.real"; }
exit 0
