#!/usr/bin/env bash
# Fan-out and the send it waits for, two or more builds in interleaved
# rounds (docs/benchmarks.md, issue 28, "the wait is the send").
#
#   tests/bench/fanout-ab.sh ROUNDS BIN_DIR...
#
# Each BIN_DIR holds release builds of `weft` and `weft-loadgen`. Per round
# and build: a fresh weft_bench database and a monolith on config/bench.toml,
# then `fanout` with 200 and with 20 listeners (300 messages 20 ms apart) and
# `send` into one room of 200 members with one sender for 6 s. The load
# generator of the first BIN_DIR drives every build. Needs PostgreSQL on
# 127.0.0.1:5432 and port 18800 free; drops and recreates weft_bench. Run it
# on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:?rounds}"
shift
[ $# -ge 1 ] || { echo "usage: $0 ROUNDS BIN_DIR..." >&2; exit 2; }
loadgen="$(realpath "$1/weft-loadgen")"
url=http://127.0.0.1:18800
run="$(mktemp -d)"
server=""
stop() { [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; server=""; }
trap 'stop; rm -rf "$run"' EXIT
cp config/bench.toml "$run/"
for round in $(seq 1 "$rounds"); do
    for bin in "$@"; do
        psql -h 127.0.0.1 -U postgres -q -c 'DROP DATABASE IF EXISTS weft_bench' -c 'CREATE DATABASE weft_bench'
        weft="$(realpath "$bin/weft")"
        (cd "$run" && exec "$weft" run -c bench.toml >"$run/weft.log" 2>&1) &
        server=$!
        for _ in $(seq 1 100); do curl -sf "$url/health" >/dev/null && break; sleep 0.1; done
        echo "== round $round, $bin"
        "$loadgen" --url "$url" fanout --listeners 200 --messages 300 --interval-ms 20 | sed 's/^/200 listeners: /'
        "$loadgen" --url "$url" fanout --listeners 20 --messages 300 --interval-ms 20 | sed 's/^/20 listeners: /'
        "$loadgen" --url "$url" send --users 200 --rooms 1 --concurrency 1 --seconds 6 | sed 's/^/send into 200 members: /'
        stop
    done
done
