#!/usr/bin/env bash
# Build times of one checkout (docs/development.md): a clean build of the
# plugin testkit, then of the rest of the workspace (with `--timings`; the
# report is copied to $TIMINGS_DIR, default /tmp), then two incremental
# rebuilds after a real code change (a `tracing::trace!` line at the top of a
# function body) in one client endpoint and in one storage function, both
# restored afterwards. Works on checkouts from before the crate split (one
# `host/` crate) and after it. Run it on a quiet machine.
#
# Usage: tests/bench/build-times.sh [CHECKOUT]   (default: this one)
set -euo pipefail
checkout="$(cd "${1:-$(dirname "$0")/../..}" && pwd)"
export CARGO_TARGET_DIR="$(mktemp -d)"
cd "$checkout"
if [ -f host/src/api/mod.rs ]; then
    endpoint=host/src/api/client/profile.rs storage=host/src/storage/profiles.rs
else
    endpoint=api/src/client/profile.rs storage=storage/src/profiles.rs
fi
trap 'rm -rf "$CARGO_TARGET_DIR"; git -C "$checkout" checkout -q -- "$endpoint" "$storage"' EXIT
timed() {
    local label=$1; shift
    local start=$(date +%s.%N)
    if ! "$@" >"$CARGO_TARGET_DIR/step.log" 2>&1; then
        echo "$label: failed; the end of its output:" >&2
        tail -n 30 "$CARGO_TARGET_DIR/step.log" >&2
        exit 1
    fi
    printf '%-55s %6.0f s\n' "$label" "$(echo "$(date +%s.%N) - $start" | bc)"
}
probe='    tracing::trace!("build-times probe");'
timed "clean testkit (build -p weft-plugin-testkit --tests)" cargo build --locked -p weft-plugin-testkit --tests
timed "rest of the workspace (test --workspace --no-run)" cargo test --locked --workspace --no-run --timings
cp "$CARGO_TARGET_DIR/cargo-timings/cargo-timing.html" "${TIMINGS_DIR:-/tmp}/build-times-$(git rev-parse --short HEAD).html"
sed -i "/pub async fn get(state: AppState/a\\$probe" "$endpoint"
grep -q 'build-times probe' "$endpoint"
timed "incremental: one client endpoint changed" cargo test --locked --workspace --no-run
sed -i "/pub async fn profile(&self/a\\$probe" "$storage"
grep -q 'build-times probe' "$storage"
timed "incremental: one storage function changed" cargo test --locked --workspace --no-run
