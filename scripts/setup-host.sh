#!/usr/bin/env bash
# Installs what berthd and its tests need on a fresh Debian 12 machine (as root).
# Idempotent: packages and targets already present are skipped quickly.
set -euo pipefail

need_apt=()
for pkg in lxd-client busybox-static btrfs-progs uidmap iproute2 procps xz-utils zstd cpio curl \
           python3-venv qemu-system-x86 qemu-utils; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: apt-get install ${need_apt[*]}"
    apt-get update -qq
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${need_apt[@]}"; then
        # The base image may carry a backported qemu-utils that conflicts with Debian 12's
        # qemu-system-x86: take the matching qemu-utils from the release instead.
        ver=$(apt-cache madison qemu-utils | awk '$3 ~ /^1:7\.2/ {print $3; exit}')
        apt-get install -y -qq --no-install-recommends --allow-downgrades \
            "${need_apt[@]/qemu-utils/qemu-utils=$ver}"
    fi
fi

if command -v rustup >/dev/null; then
    for t in wasm32-wasip2 x86_64-unknown-linux-musl; do
        rustup target list --installed | grep -qx "$t" || rustup target add "$t"
    done
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "setup: cargo-nextest not found; tests will run with cargo test"
fi
