#!/bin/sh
# Packs the VM test image (vmlinuz, initrd.img, root.qcow2 in IMAGE, as build-test-image.sh
# makes them) as an LXD split VM image with berth's boot/ extension:
#   OUT/meta.tar.gz   metadata.yaml + boot/vmlinuz, boot/initrd.img, boot/cmdline
#   OUT/root.qcow2    the qcow2 root disk (LXD's rootfs.img)
# Import it with: lxc image import OUT/meta.tar.gz OUT/root.qcow2 --alias vmtest
# Usage: tests/vm/make-lxd-image.sh IMAGE [OUT]   (OUT defaults to IMAGE/lxd)
set -eu

IMAGE=$(cd "$1" && pwd)
OUT=${2:-$IMAGE/lxd}
CMDLINE=${CMDLINE:-console=ttyS0 quiet panic=-1}
for f in vmlinuz initrd.img root.qcow2; do
    [ -f "$IMAGE/$f" ] || { echo "$IMAGE/$f is missing (run tests/vm/build-test-image.sh)" >&2; exit 1; }
done
mkdir -p "$OUT"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/boot"
cat > "$STAGE/metadata.yaml" <<META
architecture: x86_64
creation_date: $(date +%s)
properties:
  description: berth VM test image (Debian cloud kernel, busybox, berth-agent)
  os: busybox
  release: test
META
cp "$IMAGE/vmlinuz" "$STAGE/boot/vmlinuz"
cp "$IMAGE/initrd.img" "$STAGE/boot/initrd.img"
printf '%s\n' "$CMDLINE" > "$STAGE/boot/cmdline"
tar -C "$STAGE" --owner=0 --group=0 -czf "$OUT/meta.tar.gz" metadata.yaml boot
cp "$IMAGE/root.qcow2" "$OUT/root.qcow2"
echo "built $OUT: meta.tar.gz, root.qcow2"
