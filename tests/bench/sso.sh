#!/usr/bin/env bash
# The SSO benchmark (docs/benchmarks.md, "SSO logins"): starts the test OpenID
# provider (tests/idp, node's oidc-provider) and a release Weft with the
# reference OpenID Connect plugin on SQLite, as tests/run.sh's matrix-nio SSO
# step configures them, then runs tests/bench/sso_logins.py twice: one login
# at a time (latency) and 8 at a time (throughput).
#
# Needs: cargo build --release -p weft; the plugin built for WebAssembly
# (cargo build --release --target wasm32-wasip2 --manifest-path
# plugins/oidc/Cargo.toml, or a target directory where tests/run.sh built it);
# the provider's packages (tests/run.sh installs them into WEFT_IDP_DIR,
# default ~/.cache/weft/node/idp). Run it on a quiet machine.
# LOGINS (default 200) and CONCURRENCY (default 8) change the load;
# WEFT_BIN_DIR and WEFT_OIDC_WASM measure another build (a base commit's);
# MAX_CALLS_PER_INSTANCE=1 a fresh plugin instance per call (default 1000,
# the role's default). PIN=1 runs Weft on CPU 0 and the provider and the
# browsers on CPU 1 (taskset), so what Weft adds is not lengthened by the
# provider's own work on the same two cores (see docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="${WEFT_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}"
logins="${LOGINS:-200}"
concurrency="${CONCURRENCY:-8}"
idp_dir="${WEFT_IDP_DIR:-$HOME/.cache/weft/node/idp}"
wasm="${WEFT_OIDC_WASM:-}"
for candidate in "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/oidc.wasm" plugins/oidc/target/wasm32-wasip2/release/oidc.wasm; do
    if [ -z "$wasm" ] && [ -f "$candidate" ]; then wasm="$(realpath "$candidate")"; fi
done
[ -n "$wasm" ] || { echo "build the reference plugin first: cargo build --release --target wasm32-wasip2 --manifest-path plugins/oidc/Cargo.toml" >&2; exit 1; }
[ -d "$idp_dir/node_modules/oidc-provider" ] || { echo "no oidc-provider in $idp_dir (tests/run.sh installs it)" >&2; exit 1; }

weft_cpu=() others_cpu=()
if [ "${PIN:-0}" = 1 ]; then weft_cpu=(taskset -c 0) others_cpu=(taskset -c 1); fi
run="$(mktemp -d)"
pids=()
trap 'for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$run"' EXIT
mkfifo "$run/idp-stdin"
sleep infinity >"$run/idp-stdin" &
pids+=($!)
WEFT_IDP_NODE_MODULES="$idp_dir/node_modules" "${others_cpu[@]}" node tests/idp/server.mjs <"$run/idp-stdin" >"$run/idp.out" 2>"$run/idp.err" &
pids+=($!)
for _ in $(seq 1 300); do [ -s "$run/idp.out" ] && break; sleep 0.1; done
issuer="$(python3 -c 'import json, sys; print(json.loads(sys.stdin.readline())["issuer"])' <"$run/idp.out")"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat >"$run/weft.toml" <<TOML
server_name = "localhost"
public_baseurl = "http://127.0.0.1:$port/"
signing_key_path = "$run/signing.key"
ip_range_whitelist = ["127.0.0.0/8"]
enable_metrics = true
[database]
name = "sqlite3"
args = { database = "$run/homeserver.db" }
[sso]
client_whitelist = ["http://client.invalid/"]
[[listeners]]
port = $port
bind_addresses = ["127.0.0.1"]
type = "http"
[[listeners.resources]]
names = ["client", "metrics"]
[[plugins]]
name = "sso-test"
role = "sso-provider"
path = "$wasm"
[plugins.config]
idp_id = "test"
idp_name = "Test IdP"
issuer = "$issuer"
skip_verification = true
client_id = "weft-basic"
client_secret = "weft-basic-secret"
scopes = ["openid", "profile", "email"]
[plugins.config.user_mapping_provider.config]
localpart_template = "{{ user.preferred_username | lower }}"
[plugins.limits]
max_calls_per_instance = ${MAX_CALLS_PER_INSTANCE:-1000}
[plugins.capabilities]
allowed_outbound_hosts = ["$issuer"]
[logging]
level = "warn"
TOML
"${weft_cpu[@]}" "$bin/weft" run -c "$run/weft.toml" >"$run/weft.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done

echo "==> one login at a time ($logins logins)"
"${others_cpu[@]}" python3 tests/bench/sso_logins.py "http://127.0.0.1:$port" oidc-test "$logins" 1
echo "==> $concurrency at a time ($((logins * 2)) logins)"
"${others_cpu[@]}" python3 tests/bench/sso_logins.py "http://127.0.0.1:$port" oidc-test "$((logins * 2))" "$concurrency"
