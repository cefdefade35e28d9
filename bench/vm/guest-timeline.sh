#!/bin/bash
# Where a VM's guest spends its time before the agent starts (docs/benchmarks.md): boots
# the test image's kernel and a copy of its initramfs whose /etc/rc.sh writes /dev/kmsg
# markers, under TCG, with the devices berthd gives a VM (virtio-serial port, balloon,
# virtio-blk root, serial console; plus 4 PCIe root ports unless PORTS=0), and prints the
# guest's kernel timestamps of each stage. Alternates the machine types given.
# Usage (root, repository root): bench/vm/guest-timeline.sh [RUNS] [MACHINE...]
#   default: 4 runs of q35 and pc.   Env: IMG (default target/vm-test-image), PORTS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${1:-4}; shift || true
MACHINES=("${@:-q35}"); [ $# -eq 0 ] && MACHINES=(q35 pc)
IMG=${IMG:-$ROOT/target/vm-test-image}
[ -f "$IMG/initrd.img" ] || "$ROOT/tests/vm/build-test-image.sh" "$IMG" >&2
WORK=$(mktemp -d /tmp/berth-timeline-XXXXXX)
trap '[ -f "$WORK/pid" ] && kill -9 "$(cat "$WORK/pid")" 2>/dev/null; rm -rf "$WORK"' EXIT

# The marked initramfs.
mkdir "$WORK/root"
(cd "$WORK/root" && zcat "$IMG/initrd.img" | cpio -id 2>/dev/null)
mark() { printf 'echo "<1>MARK %s" > /dev/kmsg\n' "$1"; }
awk -v m1="$(mark rc-start)" -v m2="$(mark virtio_pci-loaded)" -v m3="$(mark serial-bound)" -v m4="$(mark virtio_console-loaded)" '
    /^hostname / { print; print m1; next }
    /^modprobe virtio_pci$/ { print; print m2; next }
    /^modprobe virtio_console$/ { print m3; print; print m4; next }
    { print }' "$WORK/root/etc/rc.sh" > "$WORK/rc.sh"
cp "$WORK/rc.sh" "$WORK/root/etc/rc.sh"
printf '#!/bin/sh\n%s\nexec /bin/berth-agent\n' "$(mark agent-exec)" > "$WORK/root/bin/agent-wrap"
chmod +x "$WORK/root/bin/agent-wrap" "$WORK/root/etc/rc.sh"
sed -i 's|::respawn:/bin/berth-agent|::respawn:/bin/agent-wrap|' "$WORK/root/etc/inittab"
(cd "$WORK/root" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$WORK/initrd.img")

boot() {
    local machine=$1 d=$WORK/run
    rm -rf "$d"; mkdir -p "$d"; cp "$IMG/root.qcow2" "$d/root.img"
    local ports=()
    for i in $(seq 0 $((${PORTS:-4} - 1))); do ports+=(-device "pcie-root-port,id=hp$i,chassis=$((i + 1))"); done
    [ "$machine" = pc ] && ports=()
    qemu-system-x86_64 -machine "$machine" -accel tcg -smp 1 -m 512M -nodefaults -no-user-config -nographic \
        -chardev "file,id=console,path=$d/console.log" -serial chardev:console \
        -device virtio-serial-pci,id=vserial0 -chardev "socket,id=agent,path=$d/agent.sock,server=on,wait=off" \
        -device virtserialport,bus=vserial0.0,chardev=agent,name=org.berth.agent.0 \
        -device virtio-balloon-pci,id=balloon0 "${ports[@]}" \
        -drive "file=$d/root.img,format=qcow2,if=none,id=root" -device virtio-blk-pci,drive=root,id=root-disk \
        -kernel "$IMG/vmlinuz" -initrd "$WORK/initrd.img" -append "console=ttyS0 quiet panic=-1 printk.time=1 ${APPEND:-}" \
        -pidfile "$WORK/pid" -daemonize
    for _ in $(seq 3000); do grep -qa 'MARK agent-exec' "$d/console.log" 2>/dev/null && break; sleep 0.01; done
    kill -9 "$(cat "$WORK/pid")"; rm -f "$WORK/pid"
    python3 - "$machine" "$d/console.log" <<'PY'
import re, sys
t = {m.group(2): float(m.group(1)) for m in re.finditer(r'\[\s*([\d.]+)\] MARK ([\w-]+)', open(sys.argv[2], errors='replace').read())}
ms = lambda a, b: f"{(t[b] - t[a]) * 1000:.0f}"
print(f"{sys.argv[1]:4} /init→rc-start at {t['rc-start']:.3f} s | modprobe virtio_pci {ms('rc-start', 'virtio_pci-loaded')} ms"
      f" | bind virtio-serial {ms('virtio_pci-loaded', 'serial-bound')} ms | virtio_console {ms('serial-bound', 'virtio_console-loaded')} ms"
      f" | rc-start→agent exec {ms('rc-start', 'agent-exec')} ms")
PY
}
for _ in $(seq "$RUNS"); do for m in "${MACHINES[@]}"; do boot "$m"; done; done
