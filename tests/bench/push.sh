#!/usr/bin/env bash
# The push benchmark (docs/benchmarks.md, "Push"): the send scenario with every
# user holding an HTTP pusher to a push gateway run by weft-loadgen (`push`
# scenario), measuring notifications delivered per second and
# event-to-gateway latency, on
#   1. the monolith (config/bench.toml), then
#   2. the example worker deployment (config/workers/) with two pusher
#      instances (client1 and background1) sharing the users, and, with
#      SYNAPSE=1,
#   3. Synapse 1.163 from PyPI on the same PostgreSQL, with the same load and
#      gateway, as the reference.
#
# Run it on a quiet machine: it measures throughput. Needs release binaries
# (cargo build --release -p weft -p weft-loadgen), the reference pusher built
# for WebAssembly (cargo build --release --target wasm32-wasip2 --manifest-path
# plugins/http-pusher/Cargo.toml), PostgreSQL and Redis on their default local
# ports, ports 8008, 8080-8086, 8448, 9093-9112 and 18800 free, and for Synapse
# python3 with venv and port 18008. Drops and recreates the databases
# weft_bench, weft_bench_workers and synapse_bench.
#
# RATE (messages/s, default 200), DURATION (seconds, default 20), USERS (default 20:
# rooms of 20 pushers, 19 notifications a message) and ROOMS (default 10)
# change the load; WORKERS=0 leaves out the worker deployment.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="${WEFT_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}"
rate="${RATE:-200}"
seconds="${DURATION:-20}"
users="${USERS:-20}"
rooms="${ROOMS:-10}"
wasm=""
for candidate in "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/http_pusher.wasm" plugins/http-pusher/target/wasm32-wasip2/release/http_pusher.wasm; do
    if [ -f "$candidate" ]; then wasm="$(realpath "$candidate")"; break; fi
done
if [ -z "$wasm" ]; then
    echo "build the reference pusher first: cargo build --release --target wasm32-wasip2 --manifest-path plugins/http-pusher/Cargo.toml" >&2
    exit 1
fi
run="$(mktemp -d)"
pids=()
stop_all() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    pids=()
}
trap 'stop_all; rm -rf "$run"' EXIT
wait_for() {
    for _ in $(seq 1 600); do
        curl -fsS "$1" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "$1 did not come up" >&2
    return 1
}
loadgen() {
    "$bin/weft-loadgen" --url "$1" push --users "$users" --rooms "$rooms" --rate "$rate" --seconds "$seconds"
}
plugin_toml() {
    # $1: the instances it is pinned to, as a TOML list ("" = every instance).
    printf '[[plugins]]\nname = "http-pusher"\nrole = "pusher"\npath = "%s"\n' "$wasm"
    if [ -n "$1" ]; then printf 'instances = %s\n' "$1"; fi
    printf '[plugins.capabilities]\nallowed_outbound_hosts = ["*:*"]\n'
}

echo "==> Weft monolith"
psql -h 127.0.0.1 -U postgres -q -c 'DROP DATABASE IF EXISTS weft_bench' -c 'CREATE DATABASE weft_bench'
{ printf 'ip_range_whitelist = ["127.0.0.0/8"]\n'; plugin_toml ""; } >"$run/push.toml"
"$bin/weft" run -c config/bench.toml -c "$run/push.toml" >"$run/monolith.log" 2>&1 &
pids+=($!)
wait_for http://127.0.0.1:18800/health
loadgen http://127.0.0.1:18800
stop_all

if [ "${WORKERS:-1}" = 1 ]; then
echo "==> Weft workers, two pusher instances"
psql -h 127.0.0.1 -U postgres -q -c 'DROP DATABASE IF EXISTS weft_bench_workers' -c 'CREATE DATABASE weft_bench_workers'
{
    printf 'ip_range_whitelist = ["127.0.0.0/8"]\npusher_instances = ["client1", "background1"]\n'
    plugin_toml '["client1", "background1"]'
} >"$run/push-workers.toml"
"$bin/weft" supervise -c config/workers/shared.toml -c config/workers/bench.toml -c "$run/push-workers.toml" --run-dir "$run/workers" \
    >"$run/workers.log" 2>&1 &
supervisor=$!
wait_for http://127.0.0.1:8008/health
loadgen http://127.0.0.1:8008
"$bin/weft" supervise stop -c config/workers/shared.toml --run-dir "$run/workers" || kill "$supervisor" || true
wait "$supervisor" || true
fi

if [ "${SYNAPSE:-0}" = 1 ]; then
    echo "==> Synapse 1.163 (PyPI), the same load and gateway"
    venv="${SYNAPSE_VENV:-$run/synapse-venv}"
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet 'matrix-synapse[postgres]==1.163.0'
    fi
    psql -h 127.0.0.1 -U postgres -q -c 'DROP DATABASE IF EXISTS synapse_bench' \
        -c "CREATE DATABASE synapse_bench ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
    mkdir -p "$run/synapse"
    "$venv/bin/python" -m synapse.app.homeserver --server-name bench.local --config-path "$run/synapse/homeserver.yaml" \
        --generate-config --report-stats=no >/dev/null
    cat >>"$run/synapse/homeserver.yaml" <<'YAML'
# Benchmark overrides (later keys win in PyYAML's loader).
listeners:
  - port: 18008
    bind_addresses: ["127.0.0.1"]
    type: http
    x_forwarded: false
    resources: [{names: [client], compress: false}]
database:
  name: psycopg2
  args: {user: postgres, host: 127.0.0.1, port: 5432, dbname: synapse_bench, cp_min: 10, cp_max: 20}
enable_registration: true
enable_registration_without_verification: true
ip_range_whitelist: ["127.0.0.0/8"]
rc_message: {per_second: 100000, burst_count: 100000}
rc_registration: {per_second: 100000, burst_count: 100000}
rc_joins: {local: {per_second: 100000, burst_count: 100000}, remote: {per_second: 100000, burst_count: 100000}}
rc_joins_per_room: {per_second: 100000, burst_count: 100000}
rc_invites: {per_room: {per_second: 100000, burst_count: 100000}, per_user: {per_second: 100000, burst_count: 100000}, per_issuer: {per_second: 100000, burst_count: 100000}}
rc_room_creation: {per_second: 100000, burst_count: 100000}
rc_login: {address: {per_second: 100000, burst_count: 100000}}
YAML
    "$venv/bin/python" -m synapse.app.homeserver --config-path "$run/synapse/homeserver.yaml" >"$run/synapse.log" 2>&1 &
    pids+=($!)
    wait_for http://127.0.0.1:18008/health
    loadgen http://127.0.0.1:18008
    stop_all
fi
