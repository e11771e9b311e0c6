#!/usr/bin/env bash
# The workers benchmark (docs/benchmarks.md): the example deployment in
# config/workers/ under `weft supervise`, driven through its router by
# weft-loadgen's send and fanout scenarios, first with two event persisters,
# then with one; replication lag read off every process's /metrics.
#
# SEND_SECONDS (default 20; 0 skips the send scenario), LISTENERS (default
# 20) and PERSISTERS (default "2 1") change the runs.
#
# Needs release binaries (cargo build --release -p weft -p weft-loadgen), PostgreSQL
# and Redis on their default local ports, and ports 8008, 8080-8085,
# 9093-9106 free. Drops and recreates the database weft_bench_workers.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="${WEFT_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}"
run="$(mktemp -d)"
metrics=()
for port in $(seq 9100 9106); do metrics+=(--metrics "http://127.0.0.1:$port/metrics"); done
supervisor=""
stop() {
    if [ -n "$supervisor" ]; then
        "$bin/weft" supervise stop -c config/workers/shared.toml --run-dir "$run/current" || kill "$supervisor" || true
        wait "$supervisor" || true
        supervisor=""
    fi
}
trap 'stop; rm -rf "$run"' EXIT

for persisters in ${PERSISTERS:-2 1}; do
    echo "==> $persisters event persister(s)"
    psql -h 127.0.0.1 -U postgres -q -c 'DROP DATABASE IF EXISTS weft_bench_workers' -c 'CREATE DATABASE weft_bench_workers'
    files=(-c config/workers/shared.toml -c config/workers/bench.toml)
    if [ "$persisters" = 1 ]; then files+=(-c config/workers/bench-one-persister.toml); fi
    rm -rf "$run/current"
    "$bin/weft" supervise "${files[@]}" --run-dir "$run/current" >/dev/null 2>&1 &
    supervisor=$!
    for _ in $(seq 1 600); do
        curl -fsS http://127.0.0.1:8008/health >/dev/null 2>&1 && break
        sleep 0.2
    done
    if [ "${SEND_SECONDS:-20}" != 0 ]; then
        "$bin/weft-loadgen" --url http://127.0.0.1:8008 "${metrics[@]}" send --users 20 --rooms 10 --concurrency 20 --seconds "${SEND_SECONDS:-20}"
    fi
    "$bin/weft-loadgen" --url http://127.0.0.1:8008 "${metrics[@]}" fanout --listeners "${LISTENERS:-20}" --messages 300 --interval-ms 20
    for pid in "$run"/current/*.pid; do
        name="$(basename "$pid" .pid)"
        [ "$name" = supervisor ] && continue
        printf '%s: %s MiB resident\n' "$name" "$(( $(awk '/VmRSS/ {print $2}' "/proc/$(cat "$pid")/status") / 1024 ))"
    done
    stop
done
