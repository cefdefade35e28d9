#!/bin/bash
# VM boot benchmark (issue 7): time from `lxc start` to a usable exec, against a bare QEMU
# boot of the same kernel and initramfs, alternating, in one run.
#   (a) bare:   QEMU with berthd's exact command line (captured from a VM berthd started),
#               run dir swapped and `rdinit=/bare-init` appended; timed from launching QEMU
#               until /bare-init's marker BERTH-BARE-BOOT is in the serial log.
#   (b) berthd: `lxc start v1`, then `lxc exec v1 -- true` retried until it succeeds; then
#               `lxc stop --force v1`.
# Usage (root, repository root): bench/vm/boot.sh [RUNS]   (default 7)
# Prints both medians, their ratio and the median of the per-pair ratios.
# Env: BERTHD (default target/release/berthd), IMG (default target/vm-test-image, built by
# tests/vm/build-test-image.sh when missing), MEM (default 512MiB).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${1:-7}
BERTHD=${BERTHD:-$ROOT/target/release/berthd}
IMG=${IMG:-$ROOT/target/vm-test-image}
MEM=${MEM:-512MiB}
[ -x "$BERTHD" ] || { echo "no $BERTHD: cargo build --release -p berth-engine --bin berthd" >&2; exit 1; }
[ -f "$IMG/vmlinuz" ] && [ -f "$IMG/initrd.img" ] || "$ROOT/tests/vm/build-test-image.sh" "$IMG" >&2

WORK=$(mktemp -d /tmp/berth-vmbench-XXXXXX)
DATA=$WORK/data
export LXD_SOCKET=$DATA/unix.socket LXD_CONF=$WORK/lxc-conf
BERTHD_PID=
cleanup() {
    lxc stop --force v1 >/dev/null 2>&1 || true
    [ -n "$BERTHD_PID" ] && kill "$BERTHD_PID" 2>/dev/null && wait "$BERTHD_PID" 2>/dev/null || true
    if [ -f "$WORK/bare/qemu.pid" ]; then kill -9 "$(cat "$WORK/bare/qemu.pid")" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

BERTH_LOG=warn "$BERTHD" --data-dir "$DATA" >"$WORK/berthd.log" 2>&1 &
BERTHD_PID=$!
for _ in $(seq 200); do [ -S "$LXD_SOCKET" ] && lxc list >/dev/null 2>&1 && break; sleep 0.05; done

lxc init --empty --vm v1 -c limits.memory="$MEM" >/dev/null
VOL=$DATA/storage-pools/default/virtual-machines/v1
mkdir -p "$VOL/boot"
cp "$IMG/vmlinuz" "$VOL/boot/vmlinuz"
cp "$IMG/initrd.img" "$VOL/boot/initrd.img"
cp "$IMG/root.qcow2" "$VOL/root.img"
# The image's kernel command line (as boot/cmdline of an imported image); both sides use it.
[ -n "${CMDLINE:-}" ] && echo "$CMDLINE" > "$VOL/boot/cmdline"

# Warm-up boot (page cache, accelerator probe); capture berthd's QEMU command line.
lxc start v1
until lxc exec v1 -- true 2>/dev/null; do sleep 0.01; done
RUN=$DATA/vms/default_v1
mapfile -d '' ARGV < "/proc/$(cat "$RUN/qemu.pid")/cmdline"
lxc stop --force v1

BARE=$WORK/bare
bare_args=()
prev=
for a in "${ARGV[@]}"; do
    a=${a//$RUN/$BARE}
    [ "$prev" = "-append" ] && a="$a rdinit=/bare-init"
    bare_args+=("$a")
    prev=$a
done

bare_boot() {
    rm -rf "$BARE"; mkdir -p "$BARE"
    local t0 t1
    t0=$(now_ms)
    "${bare_args[@]}" >"$BARE/qemu.out" 2>&1
    until grep -q BERTH-BARE-BOOT "$BARE/console.log" 2>/dev/null; do sleep 0.005; done
    t1=$(now_ms)
    # /bare-init powers off by itself.
    for _ in $(seq 200); do [ -f "$BARE/qemu.pid" ] && kill -0 "$(cat "$BARE/qemu.pid" 2>/dev/null)" 2>/dev/null || break; sleep 0.05; done
    echo $((t1 - t0))
}

berthd_boot() {
    local t0 t1
    t0=$(now_ms)
    lxc start v1
    until lxc exec v1 -- true 2>/dev/null; do sleep 0.01; done
    t1=$(now_ms)
    lxc stop --force v1
    echo $((t1 - t0))
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

B=(); L=()
for i in $(seq "$RUNS"); do
    B+=("$(bare_boot)")
    L+=("$(berthd_boot)")
    echo "run $i: bare ${B[-1]} ms, berthd start->exec ${L[-1]} ms" >&2
done
mb=$(printf '%s\n' "${B[@]}" | median)
ml=$(printf '%s\n' "${L[@]}" | median)
mr=$(for i in "${!B[@]}"; do awk -v l="${L[$i]}" -v b="${B[$i]}" 'BEGIN { printf "%.3f\n", l / b }'; done | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bare boot (ms):            ${B[*]}  median $mb"
echo "lxc start -> exec (ms):    ${L[*]}  median $ml"
awk -v l="$ml" -v b="$mb" 'BEGIN { printf "ratio of the medians: %.3f (target <= 1.15)\n", l / b }'
echo "median of the per-pair ratios: $mr"
