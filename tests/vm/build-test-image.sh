#!/bin/sh
# Builds the small VM test image offline: a Debian cloud kernel and a busybox initramfs that
# carries berth-agent. Output (in OUT, default target/vm-test-image):
#   vmlinuz      the guest kernel (Debian linux-image-*-cloud-amd64, never installed on the host)
#   initrd.img   busybox initramfs: /init = busybox init, berth-agent respawned, acpid → poweroff
#   root.qcow2   a small empty qcow2 root disk (the tests attach it as the virtio-blk root)
#   metadata.tar.gz  LXD-style image metadata (metadata.yaml) for the kernel + initrd pair
#   lxd/meta.tar.gz, lxd/root.qcow2  the same as an LXD split VM image (boot/ extension), for
#                    `lxc image import OUT/lxd/meta.tar.gz OUT/lxd/root.qcow2 --alias vmtest`
# Needs: apt-get (Debian archive), dpkg, busybox-static, qemu-utils, gzip, cargo with the
# x86_64-unknown-linux-musl target (or AGENT=/path/to/static/berth-agent).
# Kernel command line to use: "console=ttyS0 quiet panic=-1". With "rdinit=/bare-init"
# the same initramfs prints BERTH-BARE-BOOT on the serial console and powers off (boot
# time baseline).
# Usage: tests/vm/build-test-image.sh [OUT]
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-$ROOT/target/vm-test-image}
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
WORK=$OUT/work
CACHE=$OUT/cache
# Modules the cloud kernel builds as modules that this guest needs (check with its config).
MODULES="virtio_pci virtio_console virtio_blk virtio_balloon virtio_net button evdev"

mkdir -p "$CACHE"
rm -rf "$WORK"
mkdir -p "$WORK/kernel" "$WORK/rootfs"

# 1. The agent: static musl binary.
if [ -z "${AGENT:-}" ]; then
    (cd "$ROOT" && cargo build -q -p berth-agent --release --target x86_64-unknown-linux-musl)
    AGENT=$ROOT/target/x86_64-unknown-linux-musl/release/berth-agent
fi

# 2. The kernel: resolve the meta package to the versioned one, download it, unpack it.
cd "$CACHE"
if ! ls linux-image-*-cloud-amd64_*.deb >/dev/null 2>&1; then
    apt-get download linux-image-cloud-amd64 2>/dev/null
    VERSIONED=$(dpkg-deb -f linux-image-cloud-amd64_*.deb Depends | sed -n 's/^\(linux-image-[^ ,]*-cloud-amd64\).*/\1/p')
    apt-get download "$VERSIONED" 2>/dev/null
fi
DEB=$(ls linux-image-[0-9]*-cloud-amd64_*.deb | head -n1)
dpkg -x "$DEB" "$WORK/kernel"
KVER=$(ls "$WORK/kernel/lib/modules" | head -n1)
cp "$WORK/kernel/boot/vmlinuz-$KVER" "$OUT/vmlinuz"

# 3. The initramfs.
R=$WORK/rootfs
mkdir -p "$R/bin" "$R/sbin" "$R/etc/acpi" "$R/proc" "$R/sys" "$R/dev" "$R/tmp" "$R/run" "$R/root" "$R/lib/modules/$KVER"
cp /bin/busybox "$R/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ -e "$R/bin/$applet" ] || ln -s busybox "$R/bin/$applet"
done
for a in init poweroff reboot halt modprobe depmod acpid; do ln -sf ../bin/busybox "$R/sbin/$a"; done
ln -sf bin/busybox "$R/init"
install -m 0755 "$AGENT" "$R/bin/berth-agent"
strip "$R/bin/berth-agent" 2>/dev/null || true

# Copy the needed modules with their dependencies, then let busybox build modules.dep.
KMOD=$WORK/kernel/lib/modules/$KVER
copy_module() {
    f=$(find "$KMOD/kernel" -name "$1.ko" | head -n1)
    [ -n "$f" ] || { echo "module $1 not found" >&2; exit 1; }
    rel=${f#"$KMOD"/}
    [ -e "$R/lib/modules/$KVER/$rel" ] && return 0
    mkdir -p "$(dirname "$R/lib/modules/$KVER/$rel")"
    cp "$f" "$R/lib/modules/$KVER/$rel"
    deps=$(tr '\0' '\n' < "$f" | sed -n 's/^depends=//p' | head -n1 | tr ',' ' ')
    for d in $deps; do copy_module "$d"; done
}
for m in $MODULES; do copy_module "$m"; done
cp "$KMOD/modules.builtin" "$KMOD/modules.order" "$R/lib/modules/$KVER/" 2>/dev/null || true
/bin/busybox depmod -b "$R" "$KVER"

cat > "$R/etc/inittab" <<'INITTAB'
::sysinit:/etc/rc.sh
::respawn:/bin/berth-agent
::ctrlaltdel:/sbin/poweroff
::shutdown:/bin/sync
INITTAB

cat > "$R/etc/rc.sh" <<RC
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
hostname berth-test
# Boot time (docs/benchmarks.md): only the agent's port is set up before init starts the
# agent; everything else follows in the background. Each virtio PCI device's probe costs
# time under TCG (~17 ms on Q35, ~0.1 s on i440FX with its ACPI interrupt links), so PCI
# autoprobe is off while virtio_pci loads and only the virtio-serial device (1af4:1003
# legacy, 1af4:1043 modern) is bound at first.
echo 0 > /sys/bus/pci/drivers_autoprobe
modprobe virtio_pci
for d in /sys/bus/pci/devices/*; do
    read v < \$d/vendor; read p < \$d/device
    case "\$v:\$p" in
        0x1af4:0x1003|0x1af4:0x1043) echo \${d##*/} > /sys/bus/pci/drivers/virtio-pci/bind ;;
    esac
done
modprobe virtio_console
echo 1 > /sys/bus/pci/drivers_autoprobe
/etc/rc.background &
RC
cat > "$R/etc/rc.background" <<RC
#!/bin/sh
# At the lowest priority (inherited by what it starts): on the guest's one vCPU the agent's
# start and first exec come first.
renice -n 19 -p \$\$ >/dev/null
for d in /sys/bus/pci/devices/*; do
    [ -e \$d/driver ] || echo \${d##*/} > /sys/bus/pci/drivers_probe
done 2>/dev/null
mount -t tmpfs tmpfs /run
for m in $MODULES; do modprobe \$m; done
ip link set lo up
# The ACPI power button (QMP system_powerdown) → busybox acpid → poweroff via init; at the
# normal priority again.
acpid -f -l /dev/null -c /etc/acpi -a /etc/acpid.conf &
renice -n -19 -p \$! >/dev/null
echo BERTH-INIT-DONE > /dev/console
RC
chmod 0755 "$R/etc/rc.background"
chmod 0755 "$R/etc/rc.sh"

echo "PWRF power.sh" > "$R/etc/acpid.conf"
printf '#!/bin/sh\necho BERTH-POWERDOWN > /dev/console\n/sbin/poweroff\n' > "$R/etc/acpi/power.sh"
chmod 0755 "$R/etc/acpi/power.sh"

cat > "$R/bare-init" <<'BARE'
#!/bin/sh
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo BERTH-BARE-BOOT > /dev/ttyS0
/bin/busybox poweroff -f
BARE
chmod 0755 "$R/bare-init"

(cd "$R" && find . | /bin/busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$OUT/initrd.img")

# 4. A small root disk and LXD-style metadata.
rm -f "$OUT/root.qcow2"
qemu-img create -q -f qcow2 "$OUT/root.qcow2" 64M
mkdir -p "$WORK/meta"
cat > "$WORK/meta/metadata.yaml" <<META
architecture: x86_64
creation_date: $(date +%s)
properties:
  description: berth VM test image (Debian cloud kernel $KVER, busybox, berth-agent)
  os: busybox
  release: test
  type: virtual-machine
berth:
  boot.kernel: vmlinuz
  boot.initrd: initrd.img
  boot.append: console=ttyS0 quiet panic=-1
META
tar -C "$WORK/meta" -czf "$OUT/metadata.tar.gz" metadata.yaml
rm -rf "$WORK"
"$ROOT/tests/vm/make-lxd-image.sh" "$OUT" "$OUT/lxd"
echo "built $OUT: vmlinuz ($KVER), initrd.img, root.qcow2, metadata.tar.gz, lxd/"
