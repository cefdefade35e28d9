#!/usr/bin/env bash
# Builds and runs berthd in the foreground on its embedded default: a redb database and a
# `dir` pool under the data dir (default /var/lib/berth, or $BERTH_DIR).
# Point lxc at it with:  LXD_SOCKET=${BERTH_DIR:-/var/lib/berth}/unix.socket lxc list
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup-host.sh"
cargo build --release --manifest-path "$root/Cargo.toml" -p berth-engine --bins
exec "${CARGO_TARGET_DIR:-$root/target}/release/berthd" "$@"
