#!/usr/bin/env bash
# What one fan-out costs, counted rather than timed (docs/benchmarks.md,
# issue 28): one build of Weft under `weft-loadgen fanout`, reporting per
# message sent the database statements the server ran (PostgreSQL's
# committed transactions on its database: every statement outside a
# transaction is one), and the CPU time of the server and of PostgreSQL.
# With PERF=1 it also samples the server's stacks with `perf record` for the
# run and prints the functions it spent most time in.
#
# Usage: tests/bench/fanout-cost.sh BIN_DIR [LISTENERS] [MESSAGES]
# BIN_DIR holds `weft` and `weft-loadgen` (release builds). Needs PostgreSQL
# on 127.0.0.1:5432 (user postgres) and port 18800 free; drops and creates
# the database weft_bench_cost. Run from the repository (config/bench.toml).
set -euo pipefail
bin="$(realpath "$1")"; listeners="${2:-20}"; messages="${3:-300}"
database=weft_bench_cost
scratch="$(mktemp -d)"
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$scratch"
}
trap cleanup EXIT
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $database" -c "CREATE DATABASE $database" >/dev/null
printf '[database.args]\ndbname = "%s"\n' "$database" >"$scratch/db.toml"
"$bin/weft" run -c config/bench.toml -c "$scratch/db.toml" >"$scratch/weft.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/18800) 2>/dev/null && break; sleep 0.1; done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
postgres_ticks() {
    local total=0 p
    for p in $(pgrep -x postgres); do total=$((total + $(ticks "$p" 2>/dev/null || echo 0))); done
    echo "$total"
}
statements() { psql -h 127.0.0.1 -U postgres -Atc "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$database'"; }

# A short run first: registrations, room creation and the first syncs are not what is measured.
"$bin/weft-loadgen" --url http://127.0.0.1:18800 fanout --listeners "$listeners" --messages 20 --interval-ms 20 >/dev/null
sleep 1
before_statements="$(statements)"; before_weft="$(ticks "$pid")"; before_pg="$(postgres_ticks)"
if [ "${PERF:-0}" = 1 ]; then
    perf record -F 499 -g -p "$pid" -o "$scratch/perf.data" >/dev/null 2>&1 &
    perf_pid=$!
fi
"$bin/weft-loadgen" --url http://127.0.0.1:18800 fanout --listeners "$listeners" --messages "$messages" --interval-ms 20
if [ "${PERF:-0}" = 1 ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
sleep 0.5
after_statements="$(statements)"; after_weft="$(ticks "$pid")"; after_pg="$(postgres_ticks)"
hz="$(getconf CLK_TCK)"
# The measured run also registers its users, creates the room and syncs once
# per listener: about 6 statements per listener, counted here too.
awk -v s=$((after_statements - before_statements)) -v w=$((after_weft - before_weft)) -v p=$((after_pg - before_pg)) \
    -v m="$messages" -v l="$listeners" -v hz="$hz" 'BEGIN {
    printf "statements per message: %.1f (per listener woken: %.2f)\n", s / m, s / (m * l)
    printf "CPU per message: weft %.2f ms, postgres %.2f ms\n", w * 1000 / hz / m, p * 1000 / hz / m
}'
if [ "${PERF:-0}" = 1 ]; then
    perf report -i "$scratch/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -40
fi
