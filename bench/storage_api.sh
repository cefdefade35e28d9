#!/bin/bash
# Daemon-side storage benchmark (issue 3 target): create-from-image and snapshot over the
# unix socket (bench/storage_api.py: POST + operation wait, no CLI start), berthd release on
# a btrfs loop pool, with a small (~2 MB) and a large (~200 MB) image; LXD 5.0.2 on its dir
# pool with the same two images when LXD_ANCHOR is set.
#
# Usage (root): N=30 NBIG=10 LXD_ANCHOR=/tmp/lxd-anchor bench/storage_api.sh
#   LXD_ANCHOR: a copy of /work/shared/anchors/lxd (started with its start-lxd.sh, and
#   stopped with stop-lxd.sh --all at the end); unset: berthd only.
#   BERTHD defaults to target/release/berthd. BIG_MB sets the large image's size.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-30}
NBIG=${NBIG:-$N}
BIG_MB=${BIG_MB:-200}
BERTHD=${BERTHD:-$root/target/release/berthd}
work=$(mktemp -d /var/tmp/berth-storage-api.XXXXXX)
data=$work/data
pid=
started_lxd=

cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
    mountpoint -q "$data/storage-pools/bt" && umount -l "$data/storage-pools/bt"
    for l in $(losetup -j "$data/disks/bt.img" 2>/dev/null | cut -d: -f1); do losetup -d "$l"; done
    if [ -n "${LXD_ANCHOR:-}" ]; then L image delete bbsmall bbbig >/dev/null 2>&1; fi
    if [ -n "$started_lxd" ]; then "$LXD_ANCHOR/stop-lxd.sh" --all >&2; fi
    rm -rf "$work"
}
trap cleanup EXIT

# busybox images: the small one is busybox + symlinks (~2 MB unpacked), the big one adds
# an incompressible BIG_MB file.
mkimg() { # $1 name, $2 extra MB
    local d=$work/$1
    mkdir -p "$d/rootfs/bin" "$d/rootfs/etc" "$d/rootfs/sbin"
    cp /bin/busybox "$d/rootfs/bin/"
    for a in sh ls cat echo; do ln -s busybox "$d/rootfs/bin/$a"; done
    ln -s ../bin/busybox "$d/rootfs/sbin/init"
    [ "$2" -gt 0 ] && head -c "$(( $2 * 1048576 ))" /dev/urandom >"$d/rootfs/blob"
    printf 'architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: busybox\n  description: %s\n' "$1" >"$d/metadata.yaml"
    tar -C "$d" -cf "$work/$1.tar" metadata.yaml rootfs
    rm -rf "$d"
}
mkimg bbsmall 0
mkimg bbbig "$BIG_MB"

B() { LXD_SOCKET=$data/unix.socket LXD_CONF=$work/conf lxc "$@"; }
L() { LXD_SOCKET=/var/lib/lxd/unix.socket LXD_CONF=$work/lconf lxc "$@"; }

mkdir -p "$data"
"$BERTHD" --data-dir "$data" --log-level warn >"$work/berthd.log" 2>&1 &
pid=$!
"$BERTHD" --data-dir "$data" waitready --timeout 30
B storage create bt btrfs size=4GiB >/dev/null
B image import "$work/bbsmall.tar" --alias bbsmall >/dev/null
B image import "$work/bbbig.tar" --alias bbbig >/dev/null
# Unpack both images into the btrfs pool once (the first instance made there does it),
# so the samples measure the per-instance path.
for a in bbsmall bbbig; do B init "$a" warm -s bt >/dev/null && B delete warm >/dev/null; done
sync   # the unpacked images' data is on disk before timing (else writeback lands in the samples)
echo "berthd: $("$BERTHD" --version 2>/dev/null || echo "$BERTHD"); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$root/bench/storage_api.py" --socket "$data/unix.socket" --pool bt --alias bbsmall -n "$N" --label "berthd btrfs 2MB  "
python3 "$root/bench/storage_api.py" --socket "$data/unix.socket" --pool bt --alias bbbig -n "$NBIG" --label "berthd btrfs ${BIG_MB}MB"

if [ -n "${LXD_ANCHOR:-}" ]; then
    if ! L query /1.0 >/dev/null 2>&1; then "$LXD_ANCHOR/start-lxd.sh" >&2 && started_lxd=1; fi
    L storage show default >/dev/null 2>&1 || lxd init --preseed <"$LXD_ANCHOR/preseed.yaml"
    L image import "$work/bbsmall.tar" --alias bbsmall >/dev/null
    L image import "$work/bbbig.tar" --alias bbbig >/dev/null
    for a in bbsmall bbbig; do L init "$a" warm >/dev/null && L delete warm >/dev/null; done
    sync
    echo "LXD: load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    python3 "$root/bench/storage_api.py" --socket /var/lib/lxd/unix.socket --pool default --alias bbsmall -n "$N" --label "LXD dir 2MB       "
    python3 "$root/bench/storage_api.py" --socket /var/lib/lxd/unix.socket --pool default --alias bbbig -n "$NBIG" --label "LXD dir ${BIG_MB}MB     "
fi
