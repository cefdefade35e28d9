#!/bin/bash
# Builds berthd and berth-bench in release, brings up the real LXD 5.0.2 from the anchor
# scripts, runs the side-by-side benchmark and prints its markdown report; stops LXD
# (and lxcfs) at the end, even on failure.
#
# Usage (as root, from anywhere):  bench/run.sh [berth-bench options]
#   e.g. bench/run.sh --samples 50 --restarts 5      (berth-bench --help lists them)
# Env:   ANCHOR_SRC  the LXD anchor folder  (default /work/shared/anchors/lxd)
#        ANCHOR      where it is copied     (default /tmp/lxd-anchor)
#        NO_LXD=1    measure berthd only
#        OUT=FILE    also write the report to FILE
set -euo pipefail
cd "$(dirname "$0")/.."
ANCHOR_SRC=${ANCHOR_SRC:-/work/shared/anchors/lxd}
ANCHOR=${ANCHOR:-/tmp/lxd-anchor}

cargo build --release -p berth-engine -p berth-bench >&2

if [ -z "${NO_LXD:-}" ]; then
  if [ ! -x "$ANCHOR/start-lxd.sh" ]; then
    cp -r "$ANCHOR_SRC" "$ANCHOR" && chmod -R u+w "$ANCHOR"
  fi
  trap '"$ANCHOR/stop-lxd.sh" --all >&2' EXIT
  if ! command -v lxd >/dev/null; then
    "$ANCHOR/setup.sh" >&2          # apt install lxd, start it, dir pool, images
  else
    "$ANCHOR/start-lxd.sh" >&2
    lxc storage show default >/dev/null 2>&1 || lxd init --preseed < "$ANCHOR/preseed.yaml"
  fi
fi

target/release/berth-bench --berthd target/release/berthd ${NO_LXD:+--no-lxd} "$@" | tee "${OUT:-/dev/null}"
