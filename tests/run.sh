#!/usr/bin/env bash
# Runs every Weft test on a fresh machine.
#
# Ensures what the suite needs first: the wasm32-wasip2 Rust target,
# PostgreSQL and Redis on 127.0.0.1, Chromium (Debian's package, for the SSO
# browser test), and the test OpenID provider's npm packages with
# puppeteer-core (tests/idp, installed with `npm ci` beside the target directory,
# again only when its lock file changed; the tests start and stop the
# provider themselves). When either service is unreachable it starts a
# throwaway one from the installed binaries (stopped again on exit), or says
# what to install. Then builds the reference plugins, checks
# formatting and clippy's lints, that the plugin testkit builds no part of the
# server, that weft-core and weft-router build no database, plugin runtime or
# server layer, and runs the workspace's tests.
#
# Environment: WEFT_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432),
# WEFT_TEST_REDIS_URL (default redis://127.0.0.1:6379), WEFT_IDP_DIR (where the
# provider's packages go; default node/idp beside $CARGO_TARGET_DIR, else
# ~/.cache/weft/node/idp), WEFT_CHROMIUM (default /usr/bin/chromium). Last,
# the matrix-nio client checks and the mautrix-python appservice check
# (tests/appservice), each in a venv in the target directory, as is Synapse
# (the federation tests' peer, WEFT_SYNAPSE_VENV).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
reachable() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
cleanup=()
on_exit() { for step in "${cleanup[@]}"; do eval "$step" || true; done; }
trap on_exit EXIT

if ! command -v cargo >/dev/null; then
    echo "Rust is not installed: install it with rustup (https://rustup.rs), then run this again." >&2
    exit 1
fi
if ! command -v python3 >/dev/null; then
    echo "Python 3 is not installed (the client-library check needs it): apt-get install python3 python3-venv" >&2
    exit 1
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "Node.js and npm are not installed (the SSO tests run a real OpenID provider, node's oidc-provider): apt-get install nodejs npm (Node.js 20.19 or later)" >&2
    exit 1
fi
# The SSO browser test drives Debian's Chromium (headless) with puppeteer-core.
export WEFT_CHROMIUM="${WEFT_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$WEFT_CHROMIUM" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing Chromium (apt-get install chromium) for the SSO browser test"
        apt-get install -y --no-install-recommends chromium >/dev/null || { apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null; }
    else
        echo "Chromium is not installed (the SSO browser test drives it headless): apt-get install chromium, or set WEFT_CHROMIUM to a Chromium binary" >&2
        exit 1
    fi
fi
if ! command -v openssl >/dev/null; then
    echo "The openssl command is not installed (the plugin HTTPS test makes a CA and serves TLS with it): apt-get install openssl" >&2
    exit 1
fi
for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
        say "adding the $component component"
        rustup component add "$component"
    fi
done
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    say "adding the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
fi

export WEFT_TEST_POSTGRES_URL="${WEFT_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}"
pg_hostport="${WEFT_TEST_POSTGRES_URL#*://}"; pg_hostport="${pg_hostport#*@}"; pg_hostport="${pg_hostport%%/*}"
pg_host="${pg_hostport%:*}"; pg_port="${pg_hostport##*:}"
if ! reachable "$pg_host" "$pg_port"; then
    pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
        echo "PostgreSQL is not reachable at $pg_host:$pg_port and not installed." >&2
        echo "Install it (Debian/Ubuntu: apt-get install postgresql) or set WEFT_TEST_POSTGRES_URL." >&2
        exit 1
    fi
    say "starting a throwaway PostgreSQL on port $pg_port"
    pg_dir="$(mktemp -d)"
    as_pg=()
    if [ "$(id -u)" = 0 ]; then chown postgres "$pg_dir"; as_pg=(runuser -u postgres --); fi
    "${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust >/dev/null
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1" -l "$pg_dir/log" -w start >/dev/null
    cleanup+=("${as_pg[*]} $pg_bin/pg_ctl -D $pg_dir/data -m fast -w stop >/dev/null; rm -rf $pg_dir")
fi

export WEFT_TEST_REDIS_URL="${WEFT_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
redis_hostport="${WEFT_TEST_REDIS_URL#*://}"; redis_hostport="${redis_hostport%%/*}"
redis_host="${redis_hostport%:*}"; redis_port="${redis_hostport##*:}"
if ! reachable "$redis_host" "$redis_port"; then
    if ! command -v redis-server >/dev/null; then
        echo "Redis is not reachable at $redis_host:$redis_port and not installed." >&2
        echo "Install it (Debian/Ubuntu: apt-get install redis-server) or set WEFT_TEST_REDIS_URL." >&2
        exit 1
    fi
    say "starting a throwaway Redis on port $redis_port"
    redis_dir="$(mktemp -d)"
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$redis_dir" \
        --daemonize yes --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/log"
    cleanup+=("kill \$(cat $redis_dir/redis.pid); rm -rf $redis_dir")
fi

# The test OpenID provider's packages, kept beside the target directory (CI
# keeps both between runs) and reinstalled only when the lock file changes.
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    idp_default="$(realpath -m "$CARGO_TARGET_DIR/..")/node/idp"
else
    idp_default="$HOME/.cache/weft/node/idp"
fi
export WEFT_IDP_DIR="${WEFT_IDP_DIR:-$idp_default}"
idp_lock="$(sha256sum tests/idp/package-lock.json | cut -d' ' -f1)"
if [ ! -d "$WEFT_IDP_DIR/node_modules/oidc-provider" ] || [ "$(cat "$WEFT_IDP_DIR/.lock-sha256" 2>/dev/null)" != "$idp_lock" ]; then
    say "installing the test OpenID provider (npm ci) into $WEFT_IDP_DIR"
    mkdir -p "$WEFT_IDP_DIR"
    cp tests/idp/package.json tests/idp/package-lock.json "$WEFT_IDP_DIR/"
    rm -f "$WEFT_IDP_DIR/.lock-sha256"
    (cd "$WEFT_IDP_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$idp_lock" >"$WEFT_IDP_DIR/.lock-sha256"
fi

say "building the reference plugins and the test guests (wasm32-wasip2)"
for plugin in plugins/*/ host/tests/plugins/guests/*/; do
    cargo build --locked --release --target wasm32-wasip2 --manifest-path "$plugin/Cargo.toml"
done

say "running the reference plugins' own unit tests (natively)"
for plugin in plugins/*/; do
    cargo test --locked --quiet --manifest-path "$plugin/Cargo.toml"
done

say "checking formatting (rustfmt.toml) and lints (clippy, warnings are errors)"
cargo fmt --all --check
for plugin in plugins/*/ host/tests/plugins/guests/*/; do
    cargo fmt --manifest-path "$plugin/Cargo.toml" --check
done
cargo clippy --workspace --all-targets --locked -- -D warnings

say "checking that the plugin testkit depends on no part of the server"
server_deps='^(sqlx|axum|redis|image|weft|weft-core|weft-storage|weft-services|weft-http|weft-api|weft-router) v|^(hyper|hyper-util) feature "server"'
testkit_tree="$(cargo tree --locked -p weft-plugin-testkit -e normal,features --prefix none)"
if grep -E "$server_deps" <<<"$testkit_tree"; then
    echo "weft-plugin-testkit pulls in the server dependencies above: it must depend on weft-plugin-runtime only" >&2
    exit 1
fi

say "checking that weft-core and weft-router depend on no database, plugin runtime or server layer"
core_tree="$(cargo tree --locked -p weft-core -e normal --prefix none)"
if grep -E '^(sqlx|wasmtime|redis|image|axum|hyper|weft-plugin-runtime|weft-storage|weft-services|weft-http|weft-api|weft-router) v' <<<"$core_tree"; then
    echo "weft-core pulls in the dependencies above: it must stay free of the database, wasmtime, Redis, image and HTTP serving" >&2
    exit 1
fi
router_tree="$(cargo tree --locked -p weft-router -e normal --prefix none)"
if grep -E '^(sqlx|wasmtime|redis|image|weft-plugin-runtime|weft-storage|weft-services|weft-api) v' <<<"$router_tree"; then
    echo "weft-router pulls in the dependencies above: it must depend on weft-core and weft-http only" >&2
    exit 1
fi

# Synapse, the federation peer of host/tests/federation, in a venv beside the
# target directory (kept between runs), reinstalled only when missing or of
# another version.
synapse_venv="${CARGO_TARGET_DIR:-target}/synapse-venv"
if [ ! -x "$synapse_venv/bin/python" ] || [ "$("$synapse_venv/bin/python" -c 'import synapse; print(synapse.__version__)' 2>/dev/null)" != "1.163.0" ]; then
    say "installing Synapse 1.163.0 (the federation peer of the tests) into $synapse_venv"
    python3 -m venv "$synapse_venv"
    "$synapse_venv/bin/pip" install --quiet --disable-pip-version-check -r tests/federation/requirements.txt
fi
export WEFT_SYNAPSE_VENV="$(realpath "$synapse_venv")"

# matrix-nio with vodozemac, in a venv beside the target directory: the
# client checks below, and host/tests/federation/edus.rs's end-to-end
# encryption across servers (tests/clients/nio_federation.py, WEFT_CLIENT_VENV).
target_dir="${CARGO_TARGET_DIR:-target}"
venv="$target_dir/client-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import nio, vodozemac" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
fi
export WEFT_CLIENT_VENV="$(realpath "$venv")"

say "running the test suite"
cargo test --workspace --locked

# A real client library against the real binary, started as a newcomer would.
say "running the matrix-nio client check"
cargo build --locked -p weft
data_dir="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$target_dir/debug/weft" run --data-dir "$data_dir" --port "$port" >"$data_dir/stdout" 2>"$data_dir/stderr" &
weft_pid=$!
cleanup+=("kill $weft_pid 2>/dev/null; wait $weft_pid 2>/dev/null; rm -rf $data_dir")
for _ in $(seq 1 100); do
    reachable 127.0.0.1 "$port" && break
    sleep 0.1
done
"$venv/bin/python" tests/clients/nio_accounts.py "http://127.0.0.1:$port"
"$venv/bin/python" tests/clients/nio_e2ee.py "http://127.0.0.1:$port"
"$venv/bin/python" tests/clients/nio_media.py "http://127.0.0.1:$port"
"$venv/bin/python" tests/clients/nio_push.py "http://127.0.0.1:$port" "$target_dir/debug/weft"

# A real application service, mautrix-python's AppService, against the real
# binary (tests/appservice/bridge.py starts its own zero-setup weft with a
# registration for it). Its packages are kept beside the target directory.
say "running the mautrix-python appservice check"
as_venv="$target_dir/appservice-venv"
if [ ! -x "$as_venv/bin/python" ] || ! "$as_venv/bin/python" -c "import mautrix, aiohttp" 2>/dev/null; then
    python3 -m venv "$as_venv"
    "$as_venv/bin/pip" install --quiet --disable-pip-version-check -r tests/appservice/requirements.txt
fi
"$as_venv/bin/python" tests/appservice/bridge.py "$target_dir/debug/weft"

# An SSO login finished by matrix-nio: Weft with the reference OpenID Connect
# plugin and the test provider.
say "running the matrix-nio SSO check (m.login.token)"
sso_dir="$(mktemp -d)"
mkfifo "$sso_dir/idp-stdin"
sleep infinity >"$sso_dir/idp-stdin" &
hold_pid=$!
WEFT_IDP_NODE_MODULES="$WEFT_IDP_DIR/node_modules" node tests/idp/server.mjs <"$sso_dir/idp-stdin" >"$sso_dir/idp.out" 2>"$sso_dir/idp.err" &
idp_pid=$!
cleanup+=("kill $hold_pid $idp_pid 2>/dev/null")
for _ in $(seq 1 100); do
    [ -s "$sso_dir/idp.out" ] && break
    sleep 0.1
done
issuer="$(python3 -c 'import json, sys; print(json.loads(sys.stdin.readline())["issuer"])' <"$sso_dir/idp.out")"
sso_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat >"$sso_dir/weft.toml" <<TOML
server_name = "localhost"
public_baseurl = "http://127.0.0.1:$sso_port/"
signing_key_path = "$sso_dir/signing.key"
ip_range_whitelist = ["127.0.0.0/8"]
[database]
name = "sqlite3"
args = { database = "$sso_dir/homeserver.db" }
[sso]
client_whitelist = ["http://client.invalid/"]
[[listeners]]
port = $sso_port
bind_addresses = ["127.0.0.1"]
type = "http"
[[listeners.resources]]
names = ["client"]
[[plugins]]
name = "sso-test"
role = "sso-provider"
path = "$(realpath "$target_dir")/wasm32-wasip2/release/oidc.wasm"
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
[plugins.capabilities]
allowed_outbound_hosts = ["$issuer"]
TOML
"$target_dir/debug/weft" run -c "$sso_dir/weft.toml" >"$sso_dir/stdout" 2>"$sso_dir/stderr" &
sso_weft_pid=$!
cleanup+=("kill $sso_weft_pid 2>/dev/null; wait $sso_weft_pid 2>/dev/null; rm -rf $sso_dir")
for _ in $(seq 1 100); do
    reachable 127.0.0.1 "$sso_port" && break
    sleep 0.1
done
"$venv/bin/python" tests/clients/nio_sso.py "http://127.0.0.1:$sso_port" oidc-test alice wonderland
