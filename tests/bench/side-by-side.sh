#!/usr/bin/env bash
# Two builds of Weft side by side: send, fan-out, resident memory and the
# spam-checker plugin call cost, in interleaved rounds, each side on a fresh
# weft_bench database with its own config/bench.toml, both driven by the
# same weft-loadgen. Used for docs/benchmarks.md's "before and after the
# crate split".
#
# Usage: tests/bench/side-by-side.sh BEFORE_CHECKOUT AFTER_CHECKOUT [ROUNDS]
# Each checkout must hold target/release/weft (cargo build --release -p weft
# -p weft-loadgen in it; or set BEFORE_BIN / AFTER_BIN to the directories of
# the binaries). The load generator is the after side's. Run it on a quiet
# machine: PostgreSQL on 127.0.0.1:5432 (user postgres), port 18800 free.
set -euo pipefail
before="$(realpath "$1")"; after="$(realpath "$2")"; rounds="${3:-3}"
before_bin="${BEFORE_BIN:-$before/target/release}"; after_bin="${AFTER_BIN:-$after/target/release}"
rules="$(mktemp)"
echo '{"body_patterns": ["(?i)buy now", "bit\\.ly/", "(?i)free bitcoin"], "blocked_servers": ["evil.example"], "blocked_users": ["@spammer:example.org"]}' >"$rules"
for round in $(seq 1 "$rounds"); do
    for side in before after; do
        if [ "$side" = before ]; then checkout="$before"; bin="$before_bin"; else checkout="$after"; bin="$after_bin"; fi
        cd "$checkout"
        psql -q -h 127.0.0.1 -U postgres -c 'DROP DATABASE IF EXISTS weft_bench' -c 'CREATE DATABASE weft_bench' >/dev/null
        "$bin/weft" run -c config/bench.toml >/dev/null 2>&1 &
        pid=$!
        for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/18800) 2>/dev/null && break; sleep 0.1; done
        echo "== round $round, $side: send"
        "$after_bin/weft-loadgen" --url http://127.0.0.1:18800 send --users 20 --rooms 10 --concurrency 20 --seconds 10
        echo "== round $round, $side: fanout"
        "$after_bin/weft-loadgen" --url http://127.0.0.1:18800 fanout --listeners 20 --messages 200 --interval-ms 20
        echo "== round $round, $side: resident memory after the runs: $(grep VmRSS /proc/$pid/status)"
        kill "$pid"; wait "$pid" 2>/dev/null || true
        echo "== round $round, $side: plugin, fresh instances"
        "$bin/weft" plugin bench -p host/tests/plugins/fixtures/spam-rules-0.1.0.wasm -c "$rules" -n 20000
        echo "== round $round, $side: plugin, warm instances"
        "$bin/weft" plugin bench -p host/tests/plugins/fixtures/spam-rules-0.1.0.wasm -c "$rules" -n 20000 --max-calls-per-instance 1000
    done
done
rm -f "$rules"
