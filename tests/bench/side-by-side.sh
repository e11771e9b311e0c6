#!/usr/bin/env bash
# Two builds of Weft side by side: send, fan-out, resident memory and the
# spam-checker plugin call cost, in interleaved rounds, each side on a fresh
# database of its own (weft_bench_before, weft_bench_after) with its own
# config/bench.toml, both driven by the same weft-loadgen. Used for
# docs/benchmarks.md's "before and after the crate split", and by
# tests/bench/compare.sh, which builds the two sides and tabulates this
# script's output.
#
# Usage: tests/bench/side-by-side.sh BEFORE_CHECKOUT AFTER_CHECKOUT [ROUNDS]
# Each checkout must hold target/release/weft (cargo build --release -p weft
# -p weft-loadgen in it; or set BEFORE_BIN / AFTER_BIN to the directories of
# the binaries). The load generator is the after side's (or LOADGEN_BIN's).
# Run it on a quiet machine: PostgreSQL on 127.0.0.1:5432 (user postgres),
# port 18800 free.
#
# What runs, per round and side (environment, with defaults):
#   SEND_SECONDS=10       send --users 20 --rooms 10 --concurrency 20 (0: skipped)
#   FANOUT="20"           fanout --listeners N for each N listed (empty: skipped)
#   MESSAGES=200          messages per fanout run
#   INTERVAL_MS=20        between fanout messages
#   PLUGIN=1              the plugin call cost (0: skipped)
set -euo pipefail
before="$(realpath "$1")"; after="$(realpath "$2")"; rounds="${3:-3}"
before_bin="${BEFORE_BIN:-$before/target/release}"; after_bin="${AFTER_BIN:-$after/target/release}"
loadgen="${LOADGEN_BIN:-$after_bin}/weft-loadgen"
send_seconds="${SEND_SECONDS:-10}"; fanout="${FANOUT-20}"; messages="${MESSAGES:-200}"; interval="${INTERVAL_MS:-20}"; plugin="${PLUGIN:-1}"
scratch="$(mktemp -d)"
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$scratch"
}
trap cleanup EXIT
rules="$scratch/rules.json"
echo '{"body_patterns": ["(?i)buy now", "bit\\.ly/", "(?i)free bitcoin"], "blocked_servers": ["evil.example"], "blocked_users": ["@spammer:example.org"]}' >"$rules"
for round in $(seq 1 "$rounds"); do
    for side in before after; do
        if [ "$side" = before ]; then checkout="$before"; bin="$before_bin"; else checkout="$after"; bin="$after_bin"; fi
        cd "$checkout"
        database="weft_bench_$side"
        printf '[database.args]\ndbname = "%s"\n' "$database" >"$scratch/$side.toml"
        psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $database" -c "CREATE DATABASE $database" >/dev/null
        "$bin/weft" run -c config/bench.toml -c "$scratch/$side.toml" >"$scratch/$side.log" 2>&1 &
        pid=$!
        for _ in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/18800) 2>/dev/null && break; sleep 0.1; done
        if [ "$send_seconds" != 0 ]; then
            echo "== round $round, $side: send"
            "$loadgen" --url http://127.0.0.1:18800 send --users 20 --rooms 10 --concurrency 20 --seconds "$send_seconds"
        fi
        for listeners in $fanout; do
            echo "== round $round, $side: fanout $listeners"
            "$loadgen" --url http://127.0.0.1:18800 fanout --listeners "$listeners" --messages "$messages" --interval-ms "$interval"
        done
        echo "== round $round, $side: resident memory after the runs: $(grep VmRSS /proc/$pid/status)"
        kill "$pid"; wait "$pid" 2>/dev/null || true
        pid=""
        if [ "$plugin" = 1 ]; then
            echo "== round $round, $side: plugin, fresh instances"
            "$bin/weft" plugin bench -p host/tests/plugins/fixtures/spam-rules-0.1.0.wasm -c "$rules" -n 20000
            echo "== round $round, $side: plugin, warm instances"
            "$bin/weft" plugin bench -p host/tests/plugins/fixtures/spam-rules-0.1.0.wasm -c "$rules" -n 20000 --max-calls-per-instance 1000
        fi
    done
done
