#!/usr/bin/env bash
# A performance claim, measured: BASE_COMMIT against the working tree, both
# in release, each on its own PostgreSQL database, driven by the working
# tree's weft-loadgen in interleaved rounds (tests/bench/side-by-side.sh),
# then one table of the send and fan-out scenarios and resident memory.
#
# Usage: tests/bench/compare.sh BASE_COMMIT [ROUNDS]
#
# BASE_COMMIT is checked out in a git worktree inside its own target
# directory, BASE_TARGET_DIR (default: $CARGO_TARGET_DIR-base, or
# target-base beside the repository), and built there, so the working
# tree's build is not invalidated; deleting that directory and running
# `git worktree prune` removes both. The working tree builds into $CARGO_TARGET_DIR (or target).
# SKIP_BUILD=1 reuses both builds as they are. The scenarios are
# side-by-side.sh's knobs, with these defaults here:
#   SEND_SECONDS=8 FANOUT="20 1 200" MESSAGES=300 INTERVAL_MS=20 PLUGIN=0
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and port 18800
# free; run it on a quiet machine (docs/benchmarks.md).
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 BASE_COMMIT [ROUNDS]" >&2
    exit 2
fi
repo="$(cd "$(dirname "$0")/../.." && pwd)"
base_commit="$(git -C "$repo" rev-parse --verify "$1^{commit}")"
rounds="${2:-3}"
head_target="${CARGO_TARGET_DIR:-$repo/target}"
base_target="${BASE_TARGET_DIR:-${CARGO_TARGET_DIR:-$repo/target}-base}"
work="$(mktemp -d)"
# Kept beside its build, at a path that does not change: cargo rebuilds a
# workspace whose path moved.
base_tree="$base_target/worktree-${base_commit:0:12}"
trap 'rm -rf "$work"' EXIT

mkdir -p "$base_target"
if [ ! -e "$base_tree/.git" ]; then
    git -C "$repo" worktree prune
    git -C "$repo" worktree add --detach "$base_tree" "$base_commit" >/dev/null
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    echo "== building $base_commit (release, $base_target)"
    (cd "$base_tree" && CARGO_TARGET_DIR="$base_target" nice -n 10 cargo build --release -q -p weft)
    echo "== building the working tree (release, $head_target)"
    (cd "$repo" && CARGO_TARGET_DIR="$head_target" nice -n 10 cargo build --release -q -p weft -p weft-loadgen)
fi

export SEND_SECONDS="${SEND_SECONDS:-8}" FANOUT="${FANOUT-20 1 200}" MESSAGES="${MESSAGES:-300}" INTERVAL_MS="${INTERVAL_MS:-20}" PLUGIN="${PLUGIN:-0}"
BEFORE_BIN="$base_target/release" AFTER_BIN="$head_target/release" \
    "$repo/tests/bench/side-by-side.sh" "$base_tree" "$repo" "$rounds" | tee "$work/runs.txt"

head_name="working tree ($(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD -- . && echo "" || echo "+changes"))"
echo
awk -v base="${base_commit:0:7}" -v head="$head_name" -v messages="$MESSAGES" -v interval="$INTERVAL_MS" -v seconds="$SEND_SECONDS" '
    function range(values,    n, parts, i, lo, hi) {
        n = split(values, parts, " ")
        if (n == 0) return "-"
        lo = parts[1] + 0; hi = parts[1] + 0
        for (i = 2; i <= n; i++) { if (parts[i] + 0 < lo) lo = parts[i] + 0; if (parts[i] + 0 > hi) hi = parts[i] + 0 }
        return (lo == hi) ? sprintf(fmt, lo) : sprintf(fmt "–" fmt, lo, hi)
    }
    function add(key, value) { values[key] = values[key] " " value; if (!(key in seen)) { seen[key] = 1; order[++count] = key } }
    /^== round [0-9]+, (before|after): / {
        side = $4; sub(/:$/, "", side)
        label = $0; sub(/^== round [0-9]+, (before|after): /, "", label)
        if (label ~ /^resident memory/) { kb = $(NF - 1); add("memory", side "=" sprintf("%.0f", kb / 1024)) }
        next
    }
    /^throughput:/ && label == "send" { add("send", side "=" $2) }
    /^send-to-delivery:/ && label ~ /^fanout/ {
        split(label, words, " "); n = words[2]
        p50 = $3; sub(/p50=/, "", p50); sub(/ms/, "", p50)
        p99 = $5; sub(/p99=/, "", p99); sub(/ms/, "", p99)
        add("fanout " n " p50", side "=" p50); add("fanout " n " p99", side "=" p99)
    }
    function side_values(key, wanted,    n, parts, i, out, kv) {
        out = ""; n = split(values[key], parts, " ")
        for (i = 1; i <= n; i++) { split(parts[i], kv, "="); if (kv[1] == wanted) out = out " " kv[2] }
        return out
    }
    END {
        printf "| | %s | %s |\n|---|---|---|\n", base, head
        for (i = 1; i <= count; i++) {
            key = order[i]
            if (key ~ /^fanout .* p50$/) {
                n = key; sub(/^fanout /, "", n); sub(/ p50$/, "", n)
                fmt = "%.1f"
                row = sprintf("fanout, %s listener%s, %s messages %s ms apart: send-to-delivery p50 / p99", n, (n == 1 ? "" : "s"), messages, interval)
                printf "| %s | %s / %s ms | %s / %s ms |\n", row, range(side_values(key, "before")), range(side_values("fanout " n " p99", "before")), range(side_values(key, "after")), range(side_values("fanout " n " p99", "after"))
            } else if (key == "send") {
                fmt = "%.0f"
                printf "| send, 20 senders, %s s | %s messages/s | %s messages/s |\n", seconds, range(side_values(key, "before")), range(side_values(key, "after"))
            } else if (key == "memory") {
                fmt = "%.0f"
                printf "| resident memory after the runs | %s MB | %s MB |\n", range(side_values(key, "before")), range(side_values(key, "after"))
            }
        }
    }' "$work/runs.txt"
