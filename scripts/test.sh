#!/usr/bin/env bash
# Runs every test tier: pure, root (namespaces, cgroups, btrfs, loop devices), qemu (TCG),
# the real `lxc` client, WASM plugins, and pylxd's integration suite. Run as root.
# BERTH_TEST_REQUIRE=all (set by CI) turns any skipped tier into a failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/setup-host.sh"

# The REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE of this environment break pylxd's certificate pinning.
unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE

echo "== build (debug, whole workspace)"
cargo build --workspace --all-targets

status=0
echo "== cargo tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast || status=1
else
    cargo test --workspace --no-fail-fast || status=1
fi

echo "== first-party plugin unit tests (host target; plugins/ builds for wasm32-wasip2 by default)"
(cd "$root/plugins" && cargo test -p name-policy --target "$(rustc -vV | sed -n 's/^host: //p')") || status=1

echo "== pylxd 2.4.2 integration suite"
BERTHD="$root/target/debug/berthd" "$root/tests/pylxd/run.sh" || status=1

if [ "$status" -ne 0 ]; then
    echo "test.sh: FAILED (see above)" >&2
fi
exit "$status"
