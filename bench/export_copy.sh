#!/bin/bash
# Does `lxc export` of a stopped 1 GiB instance write a copy? Prints berthd's write_bytes
# delta (from /proc/PID/io) over the export, the tarball size and hidden backup volumes left.
# Usage (root): BERTHD=target/debug/berthd bench/export_copy.sh
set -euo pipefail
BERTHD=$(realpath "${BERTHD:?}")
W=$(mktemp -d); D=$W/d; mkdir -p "$D"
export LXD_SOCKET=$D/unix.socket LXD_CONF=$D/lxcconf
"$BERTHD" --data-dir "$D" >"$W/log" 2>&1 & BP=$!
trap 'kill $BP 2>/dev/null; wait $BP 2>/dev/null; rm -rf "$W"' EXIT
"$BERTHD" waitready --data-dir "$D" --timeout 30 2>/dev/null || sleep 1
lxc init --empty x1 >/dev/null 2>&1
dd if=/dev/urandom of="$D/storage-pools/default/containers/x1/rootfs/big" bs=1M count=1024 status=none
sync
w0=$(awk '/^write_bytes/{print $2}' /proc/$BP/io); s=$EPOCHREALTIME
lxc export x1 "$W/x1.tar" --compression none --instance-only >/dev/null 2>&1; e=$EPOCHREALTIME
w1=$(awk '/^write_bytes/{print $2}' /proc/$BP/io)
echo "export: $(( (${e/./}-${s/./})/1000 )) ms; berthd wrote $(( (w1-w0)/1024 )) KiB;" \
     "tarball $(du -m "$W/x1.tar" | cut -f1) MiB; hidden backup volumes left:" \
     "$(ls -a "$D/storage-pools/default/containers" | grep -c '^\.backup-' || true)"
