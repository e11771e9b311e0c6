#!/usr/bin/env bash
# Build times of one checkout (docs/development.md): a clean build of the
# plugin testkit, then of the rest of the workspace, then two incremental
# rebuilds after a line is appended to one client endpoint and to one
# storage function (both restored afterwards). Run it on a quiet machine.
#
# Usage: tests/bench/build-times.sh [CHECKOUT]   (default: this one)
set -euo pipefail
checkout="$(cd "${1:-$(dirname "$0")/../..}" && pwd)"
export CARGO_TARGET_DIR="$(mktemp -d)"
trap 'rm -rf "$CARGO_TARGET_DIR"; git -C "$checkout" checkout -q -- host/src/api/client/profile.rs host/src/storage/profiles.rs' EXIT
cd "$checkout"
timed() {
    local label=$1; shift
    local start=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    printf '%-55s %6.0f s\n' "$label" "$(echo "$(date +%s.%N) - $start" | bc)"
}
timed "clean testkit (build -p weft-plugin-testkit --tests)" cargo build --locked -p weft-plugin-testkit --tests
timed "rest of the workspace (test --workspace --no-run)" cargo test --locked --workspace --no-run
echo "// timing" >> host/src/api/client/profile.rs
timed "incremental: one client endpoint touched" cargo test --locked --workspace --no-run
echo "// timing" >> host/src/storage/profiles.rs
timed "incremental: one storage function touched" cargo test --locked --workspace --no-run
