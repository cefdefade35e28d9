#!/bin/bash
# Storage benchmark, berthd side by side with LXD 5.0.2 (not a timed test).
#
#   1. create-from-image and snapshot, N times each through the real `lxc` client:
#      berthd on a btrfs pool (loop file) and on dir, LXD on its dir pool (the anchor);
#      prints min/median/max in ms.
#   2. exporting a ~1 GB instance from berthd: free space of the data dir's filesystem and
#      the size of the data dir are sampled while `lxc export` runs, to show that no
#      temporary tarball is written (only the output file grows).
#
# Usage (root): N=30 LXD_ANCHOR=/tmp/lxd-anchor bench/storage.sh
#   LXD_ANCHOR: a copy of /work/shared/anchors/lxd after setup.sh (LXD running, image bb);
#   unset: the LXD rows are skipped. BERTHD defaults to target/debug/berthd.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-30}
BERTHD=${BERTHD:-$root/target/debug/berthd}
work=$(mktemp -d /var/tmp/berth-storage-bench.XXXXXX)
data=$work/data
pid=

cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
    mountpoint -q "$data/storage-pools/bt" && umount -l "$data/storage-pools/bt"
    for l in $(losetup -j "$data/disks/bt.img" 2>/dev/null | cut -d: -f1); do losetup -d "$l"; done
    rm -rf "$work"
}
trap cleanup EXIT

ms() { echo $(( (${2/./} - ${1/./}) / 1000 )); }
stats() { sort -n | awk '{a[NR]=$1} END {printf "min %d  median %d  max %d  (n=%d)\n", a[1], a[int((NR+1)/2)], a[NR], NR}'; }

# busybox image as the anchor builds it: busybox + symlinks + metadata.yaml
img=$work/img
mkdir -p "$img/rootfs/bin" "$img/rootfs/etc"
cp /bin/busybox "$img/rootfs/bin/"
for a in sh ls cat echo init; do ln -s busybox "$img/rootfs/bin/$a"; done
printf 'architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: busybox\n' >"$img/metadata.yaml"
tar -C "$img" -czf "$work/bb.tar.gz" metadata.yaml rootfs

mkdir -p "$data"
"$BERTHD" --data-dir "$data" --log-level warn >"$work/berthd.log" 2>&1 &
pid=$!
"$BERTHD" --data-dir "$data" waitready --timeout 30
B() { LXD_SOCKET=$data/unix.socket LXD_CONF=$work/conf lxc "$@"; }
L() { LXD_SOCKET=/var/lib/lxd/unix.socket LXD_CONF=$work/lconf lxc "$@"; }
B image import "$work/bb.tar.gz" --alias bb >/dev/null
B storage create bt btrfs size=4GiB >/dev/null

have_lxd=
if [ -n "${LXD_ANCHOR:-}" ] && L image info bb >/dev/null 2>&1; then have_lxd=1; fi

for target in berth-btrfs berth-dir lxd-dir; do
    case $target in
        berth-btrfs) run() { B "$@"; }; pool=(-s bt) ;;
        berth-dir) run() { B "$@"; }; pool=(-s default) ;;
        lxd-dir) [ -n "$have_lxd" ] || { echo "lxd-dir: skipped (no LXD_ANCHOR)"; continue; }; run() { L "$@"; }; pool=() ;;
    esac
    : >"$work/create.txt"; : >"$work/snap.txt"
    for i in $(seq "$N"); do
        s=$EPOCHREALTIME; run init bb "sb$i" "${pool[@]}" >/dev/null 2>&1 || echo "create failed" >&2; e=$EPOCHREALTIME
        ms "$s" "$e" >>"$work/create.txt"
        s=$EPOCHREALTIME; run snapshot "sb$i" >/dev/null || echo "snapshot failed" >&2; e=$EPOCHREALTIME
        ms "$s" "$e" >>"$work/snap.txt"
    done
    echo "$target create-from-image: $(stats <"$work/create.txt")"
    echo "$target snapshot:          $(stats <"$work/snap.txt")"
    for i in $(seq "$N"); do run delete "sb$i" >/dev/null 2>&1; done
done

# Export of a ~1 GB instance: sample free space and the data dir while it runs.
B init bb big -s default >/dev/null 2>&1
dd if=/dev/urandom of="$data/storage-pools/default/containers/big/rootfs/blob" bs=1M count=1000 status=none
sync
out=$work/big.tar
df_before=$(df -B1 --output=avail "$work" | tail -1)
du_before=$(du -sb --exclude=disks "$data" | cut -f1)
B export big "$out" --compression none >/dev/null 2>&1 &
epid=$!
max_data=$du_before; min_avail=$df_before
while kill -0 "$epid" 2>/dev/null; do
    d=$(du -sb --exclude=disks "$data" 2>/dev/null | cut -f1); a=$(df -B1 --output=avail "$work" | tail -1)
    [ "$d" -gt "$max_data" ] && max_data=$d
    [ "$a" -lt "$min_avail" ] && min_avail=$a
    sleep 0.2
done
wait "$epid"
size=$(stat -c %s "$out")
echo "export of a $(( du_before / 1048576 )) MiB data dir: tarball $(( size / 1048576 )) MiB;" \
     "data dir grew by at most $(( (max_data - du_before) / 1048576 )) MiB;" \
     "free space dropped by at most $(( (df_before - min_avail) / 1048576 )) MiB (the tarball itself is $(( size / 1048576 )) MiB)"
