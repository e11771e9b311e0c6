#!/usr/bin/env bash
# Where the one-persister deployment's send throughput goes (docs/benchmarks.md,
# "what each part of the deployment costs"): the send scenario against the
# monolith, the monolith behind `weft router`, and the example deployment with
# every room on persister1 four ways, interleaved for ROUNDS rounds (default 2):
#
#   routed     the monolith behind `weft router` (config/bench-router.toml),
#              the hop a production monolith also has behind its TLS proxy
#   router     through `weft router`, as tests/bench/workers.sh runs it
#   direct     straight to persister1's client listener, no router hop
#   paused     through the router, with main, client1 and sync1 (the three
#              processes that follow every events row) stopped with SIGSTOP
#              once the load generator's setup is done, continued after
#   both       straight to persister1 and those three stopped
#
# Stopping a process is an experiment, not a configuration: while stopped it
# applies nothing and answers nothing, Redis still writes to its socket.
#
# VARIANTS picks deployment columns (default: all four, in that order).
#
# Needs release binaries (cargo build --release -p weft -p weft-loadgen), PostgreSQL and
# Redis on their default local ports, and the ports of tests/bench/workers.sh
# plus 18800 and 18808. Drops and recreates weft_bench and weft_bench_workers.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="${WEFT_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}"
rounds="${ROUNDS:-2}"
run="$(mktemp -d)"
trap 'rm -rf "$run"' EXIT
load=(send --users 20 --rooms 10 --concurrency 20 --seconds 20)
followers=(main client1 sync1)

recreate() { psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"; }
wait_for() { for _ in $(seq 1 600); do curl -fsS "$1" >/dev/null 2>&1 && return; sleep 0.2; done; echo "no answer from $1" >&2; exit 1; }
throughput() { grep -o 'throughput: [0-9]* messages/s' "$1" | grep -o '[0-9]*' || echo failed; }

monolith() {
    recreate weft_bench
    "$bin/weft" run -c config/bench.toml >"$run/monolith.log" 2>&1 &
    local server=$!
    wait_for http://127.0.0.1:18800/health
    "$bin/weft-loadgen" --url http://127.0.0.1:18800 "${load[@]}" >"$run/load.out" 2>&1 || true
    kill "$server"; wait "$server" || true
    throughput "$run/load.out"
}

routed_monolith() {
    recreate weft_bench
    "$bin/weft" run -c config/bench.toml >"$run/monolith.log" 2>&1 &
    local server=$!
    "$bin/weft" router -c config/bench.toml -c config/bench-router.toml >"$run/router.log" 2>&1 &
    local router=$!
    wait_for http://127.0.0.1:18800/health
    wait_for http://127.0.0.1:18808/health
    "$bin/weft-loadgen" --url http://127.0.0.1:18808 "${load[@]}" >"$run/load.out" 2>&1 || true
    kill "$router" "$server"; wait "$router" "$server" || true
    throughput "$run/load.out"
}

deployment() {
    local variant=$1 url=http://127.0.0.1:8008 pause=false
    case $variant in direct | both) url=http://127.0.0.1:8081 ;; esac
    case $variant in paused | both) pause=true ;; esac
    recreate weft_bench_workers
    local files=(-c config/workers/shared.toml -c config/workers/bench.toml -c config/workers/bench-one-persister.toml)
    rm -rf "$run/current"
    "$bin/weft" supervise "${files[@]}" --run-dir "$run/current" >/dev/null 2>&1 &
    local supervisor=$!
    wait_for http://127.0.0.1:8008/health
    wait_for http://127.0.0.1:8081/health
    : >"$run/load.out"
    "$bin/weft-loadgen" --url "$url" "${load[@]}" >"$run/load.out" 2>&1 &
    local loadgen=$! stopped=()
    if $pause; then
        until grep -q '^send:' "$run/load.out" || ! kill -0 "$loadgen" 2>/dev/null; do sleep 0.05; done
        for name in "${followers[@]}"; do
            stopped+=("$(cat "$run/current/$name.pid")")
            kill -STOP "${stopped[-1]}"
        done
    fi
    wait "$loadgen" || true
    for pid in "${stopped[@]}"; do kill -CONT "$pid"; done
    "$bin/weft" supervise stop -c config/workers/shared.toml --run-dir "$run/current" >/dev/null 2>&1 || kill "$supervisor" || true
    wait "$supervisor" || true
    throughput "$run/load.out"
}

variants=(${VARIANTS:-router direct paused both})
printf 'round  monolith  routed '
printf ' %-7s' "${variants[@]}"
printf '  (messages/s)\n'
for round in $(seq 1 "$rounds"); do
    printf '%-6s %-9s %-7s' "$round" "$(monolith)" "$(routed_monolith)"
    for variant in "${variants[@]}"; do printf ' %-7s' "$(deployment "$variant")"; done
    printf '\n'
done
