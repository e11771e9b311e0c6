#!/usr/bin/env python3
"""The federation benchmark (issue 26): messages sent on one server into a
room shared with a second server, measured where a client of the second
server sees them in its `/sync`.

Pairs, each on fresh PostgreSQL databases, in the same run: Weft to Weft,
Weft to Synapse, Synapse to Weft and, as the reference, Synapse to
Synapse; and (issue 27) the example deployment of `config/workers/` under
`weft supervise` to a Weft monolith (`dw`: its federation senders send)
and from one (`wd`: its federation reader receives), beside `ww`. For each
pair:

- throughput: 10 senders on the first server send as fast as they can for
  `--seconds`; events per second is the number that reached the second
  server's `/sync` divided by the time from the first send to the last
  arrival;
- latency: the same senders paced at `--rate` messages per second in all;
  the latency is from the send's 200 on the first server to the event's
  arrival in the second server's `/sync`, p50 and p99;
- CPU time per delivered event, for each Weft server and each phase: its
  processes (the monolith, or the supervisor and everything under it), and
  with its PostgreSQL backends (and, for the deployment, Redis), from
  /proc before the sends and after the reader stopped
  (`federation_deployment.py`).

The `/sync` reader runs in a process of its own, so that the senders'
event loop does not delay its clock readings (`time.monotonic` is the
system's monotonic clock, the same in both processes).

Servers are named `localhost:PORT` with TLS on that port, certificates from
a test CA made here with `openssl` (as the federation tests do), loopback
allowed, no notary, rate limits lifted. Needs a quiet machine, PostgreSQL
on 127.0.0.1:5432 (user postgres, trust) and `psql`, and for the deployment
Redis on 127.0.0.1:6379; not run in CI.

  python tests/bench/federation.py --weft target/release/weft \\
      --synapse-python ~/.cache/weft/bench-synapse-venv/bin/python \\
      [--seconds 15] [--rate 50] [--pairs ww,ws,sw,ss]   # or --pairs ww,dw,wd

The Python running it needs aiohttp; `--synapse-python` a venv with
matrix-synapse[postgres]==1.163.0.
"""

import argparse
import asyncio
import base64
import multiprocessing
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import aiohttp

import federation_deployment as deployment

SENDERS = 10
# The log level of the Weft servers (`--weft-log`).
WEFT_LOG = "warn"
LIMIT = "{per_second: 100000, burst_count: 100000}"
BLACKLIST_WITHOUT_LOOPBACK = (
    "['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '192.0.0.0/24', '169.254.0.0/16', "
    "'192.88.99.0/24', '198.18.0.0/15', '192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24', '224.0.0.0/4', "
    "'fe80::/10', 'fc00::/7', '2001:db8::/32', 'ff00::/8', 'fec0::/10']"
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ca(directory):
    """A CA and a leaf for localhost and 127.0.0.1; the chain file holds the leaf then the CA."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3", "-subj", "/CN=Weft bench CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost")
    with open(os.path.join(directory, "leaf.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "leaf.crt",
            "-days", "3", "-extfile", "leaf.ext")
    path = lambda name: os.path.join(directory, name)  # noqa: E731
    with open(path("chain.pem"), "w") as f:
        f.write(open(path("leaf.crt")).read() + open(path("ca.crt")).read())
    return {"ca": path("ca.crt"), "chain": path("chain.pem"), "key": path("leaf.key")}


def fresh_database(name):
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", f"DROP DATABASE IF EXISTS {name}",
         "-c", f"CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"],
        check=True,
    )


def wait_for(port, process, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a homeserver exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit("a homeserver did not start")


class Server:
    def __init__(self, kind, process, client_base, server_name, database):
        self.kind, self.process, self.client_base, self.server_name = kind, process, client_base, server_name
        self.database = database

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def weft_limits():
    """The rate limits lifted, as TOML tables."""
    return "".join(
        f"[{name}]\nper_second = 100000\nburst_count = 100000\n"
        for name in ["rc_message", "rc_registration", "rc_room_creation", "rc_joins.local", "rc_joins.remote", "rc_login.address",
                     "rc_invites.per_room", "rc_invites.per_user", "rc_invites.per_issuer"]
    )


def start_weft(binary, ca, data, database):
    fresh_database(database)
    client_port, federation_port = free_port(), free_port()
    limits = weft_limits()
    config = (
        f'server_name = "localhost:{federation_port}"\nsigning_key_path = "signing.key"\n'
        "enable_registration = true\nenable_registration_without_verification = true\n"
        f'tls_certificate_path = "{ca["chain"]}"\ntls_private_key_path = "{ca["key"]}"\nfederation_custom_ca_list = ["{ca["ca"]}"]\n'
        'ip_range_whitelist = ["127.0.0.0/8", "::1"]\ntrusted_key_servers = []\n'
        f"{limits}"
        f"[logging]\nlevel = \"{WEFT_LOG}\"\n"
        "[database]\nname = \"psycopg2\"\n"
        f'args = {{ user = "postgres", host = "127.0.0.1", port = 5432, dbname = "{database}", cp_min = 10, cp_max = 20 }}\n'
        f'[[listeners]]\nport = {client_port}\nbind_addresses = ["127.0.0.1"]\ntype = "http"\n[[listeners.resources]]\nnames = ["client"]\n'
        f'[[listeners]]\nport = {federation_port}\nbind_addresses = ["127.0.0.1"]\ntype = "http"\ntls = true\n'
        '[[listeners.resources]]\nnames = ["federation", "keys"]\n'
    )
    path = os.path.join(data, "weft.toml")
    with open(path, "w") as f:
        f.write(config)
    log = open(os.path.join(data, "weft.log"), "wb")
    process = subprocess.Popen([binary, "run", "-c", path], cwd=data, stdout=log, stderr=log)
    wait_for(client_port, process)
    wait_for(federation_port, process)
    return Server("weft", process, f"http://127.0.0.1:{client_port}", f"localhost:{federation_port}", database)


def start_deployment(binary, ca, data, database):
    """The example deployment (config/workers/) under `weft supervise`; clients go through its router."""
    fresh_database(database)
    base, server_name, router, tls = deployment.write_example(data, ca, database, WEFT_LOG, weft_limits())
    process = deployment.start_supervisor(binary, data)
    deployment.wait_until_served(base, process)
    wait_for(tls, process)
    return Server("deployment", process, base, server_name, database)


def start_synapse(python, ca, data, database):
    fresh_database(database)
    port = free_port()
    config = (
        f"server_name: 'localhost:{port}'\npid_file: '{data}/homeserver.pid'\n"
        f"listeners:\n  - port: {port}\n    bind_addresses: ['127.0.0.1']\n    type: http\n    tls: true\n    x_forwarded: false\n"
        "    resources:\n      - names: [client, federation]\n        compress: false\n"
        f"tls_certificate_path: '{ca['chain']}'\ntls_private_key_path: '{ca['key']}'\nfederation_custom_ca_list: ['{ca['ca']}']\n"
        "database:\n  name: psycopg2\n"
        f"  args: {{user: postgres, host: 127.0.0.1, port: 5432, dbname: {database}, cp_min: 10, cp_max: 20}}\n"
        f"log_config: '{data}/log.yaml'\nmedia_store_path: '{data}/media'\nsigning_key_path: '{data}/signing.key'\n"
        "report_stats: false\nmacaroon_secret_key: 'bench-macaroon'\nform_secret: 'bench-form'\n"
        "enable_registration: true\nenable_registration_without_verification: true\n"
        f"ip_range_blacklist: {BLACKLIST_WITHOUT_LOOPBACK}\nip_range_whitelist: ['127.0.0.0/8']\n"
        "trusted_key_servers: []\nsuppress_key_server_warning: true\n"
        f"rc_message: {LIMIT}\nrc_registration: {LIMIT}\nrc_room_creation: {LIMIT}\n"
        f"rc_joins: {{local: {LIMIT}, remote: {LIMIT}}}\n"
        f"rc_joins_per_room: {LIMIT}\n"
        f"rc_login: {{address: {LIMIT}, account: {LIMIT}, failed_attempts: {LIMIT}}}\n"
        "rc_federation: {window_size: 1000, sleep_limit: 1000, sleep_delay: 1, reject_limit: 100000, concurrent: 100}\n"
    )
    with open(os.path.join(data, "homeserver.yaml"), "w") as f:
        f.write(config)
    seed = base64.b64encode(os.urandom(32)).decode().rstrip("=")
    with open(os.path.join(data, "signing.key"), "w") as f:
        f.write(f"ed25519 a_bench {seed}\n")
    with open(os.path.join(data, "log.yaml"), "w") as f:
        f.write(
            "version: 1\nformatters:\n  plain:\n    format: '%(asctime)s %(levelname)s %(name)s %(message)s'\n"
            f"handlers:\n  file:\n    class: logging.FileHandler\n    filename: '{data}/homeserver.log'\n    formatter: plain\n"
            "root:\n  level: WARNING\n  handlers: [file]\ndisable_existing_loggers: false\n"
        )
    log = open(os.path.join(data, "synapse.out"), "wb")
    process = subprocess.Popen([python, "-m", "synapse.app.homeserver", "-c", os.path.join(data, "homeserver.yaml")],
                               cwd=data, stdout=log, stderr=log)
    wait_for(port, process)
    return Server("synapse", process, f"https://127.0.0.1:{port}", f"localhost:{port}", database)


def ssl_context(ca):
    return ssl.create_default_context(cafile=ca["ca"])


async def register(http, base, localpart):
    body = {"username": localpart, "password": "bench-password-1", "auth": {"type": "m.login.dummy"}, "inhibit_login": False}
    async with http.post(f"{base}/_matrix/client/v3/register", json=body) as r:
        answer = await r.json()
        assert r.status == 200, answer
        return answer["access_token"], answer["user_id"]


def read_sync(base, token, room_id, ca, ready, stop, count, results):
    """The second server's client: long-polls `/sync` and records when each event of the room arrived."""
    async def main():
        arrived = {}
        connector = aiohttp.TCPConnector(ssl=ssl_context(ca))
        headers = {"Authorization": f"Bearer {token}"}
        timeline_only = '{"room":{"timeline":{"limit":1000},"state":{"lazy_load_members":true},"ephemeral":{"types":[]}},"presence":{"types":[]}}'
        async with aiohttp.ClientSession(headers=headers, connector=connector) as http:
            async with http.get(f"{base}/_matrix/client/v3/sync", params={"timeout": "0", "filter": timeline_only}) as r:
                since = (await r.json())["next_batch"]
            ready.set()
            while not stop.is_set():
                params = {"since": since, "timeout": "1000", "filter": timeline_only}
                async with http.get(f"{base}/_matrix/client/v3/sync", params=params) as r:
                    body = await r.json()
                now = time.monotonic()
                since = body["next_batch"]
                room = body.get("rooms", {}).get("join", {}).get(room_id, {})
                for event in room.get("timeline", {}).get("events", []):
                    if event.get("type") == "m.room.message":
                        arrived.setdefault(event["event_id"], now)
                count.value = len(arrived)
        results.put(arrived)

    asyncio.run(main())


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else float("nan")


async def send_phase(origin, senders, room_id, ca, seconds, rate, tag):
    sent, failed = {}, 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(ssl=ssl_context(ca), limit=SENDERS + 5)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def sender(index):
            nonlocal failed
            token, n = senders[index], 0
            interval = SENDERS / rate if rate else 0
            first = time.monotonic() + index * interval / SENDERS
            while time.monotonic() < deadline:
                if rate:
                    await asyncio.sleep(max(0, first + n * interval - time.monotonic()))
                n += 1
                url = f"{origin.client_base}/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{tag}-{index}-{n}"
                async with http.put(url, headers={"Authorization": f"Bearer {token}"}, json={"msgtype": "m.text", "body": f"{tag} {index} {n}"}) as r:
                    if r.status == 200:
                        sent[(await r.json())["event_id"]] = time.monotonic()
                    else:
                        failed += 1

        started = time.monotonic()
        await asyncio.gather(*(sender(index) for index in range(SENDERS)))
    return sent, failed, started


def collect(origin, target, room_id, sender_tokens, reader_token, ca, seconds, rate, tag):
    ready, stop, results = multiprocessing.Event(), multiprocessing.Event(), multiprocessing.Queue()
    count = multiprocessing.Value("i", 0)
    reader = multiprocessing.Process(target=read_sync, args=(target.client_base, reader_token, room_id, ca, ready, stop, count, results), daemon=True)
    reader.start()
    ready.wait(60)
    # CPU is counted for the Weft servers (Synapse's is not compared).
    measured = {side: server for side, server in (("origin", origin), ("target", target)) if server.kind != "synapse"}
    before = {side: deployment.cpu_snapshot(server) for side, server in measured.items()}
    sent, failed, started = asyncio.run(send_phase(origin, sender_tokens, room_id, ca, seconds, rate, tag))
    # The reader reports when stopped: once every event arrived, or after 15 s without one arriving.
    seen, quiet_since = -1, time.monotonic()
    while count.value < len(sent) and time.monotonic() - quiet_since < 15:
        if count.value != seen:
            seen, quiet_since = count.value, time.monotonic()
        time.sleep(0.2)
    stop.set()
    arrived = results.get(timeout=60)
    reader.join(10)
    cpu = {side: deployment.cpu_spent(before[side], deployment.cpu_snapshot(server)) for side, server in measured.items()}
    latencies = [(arrived[e] - t) * 1000 for e, t in sent.items() if e in arrived]
    last = max((arrived[e] for e in sent if e in arrived), default=started)
    return {
        "sent": len(sent), "failed": failed, "delivered": len(latencies),
        "rate": len(latencies) / (last - started) if latencies else 0.0,
        "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99), "cpu": cpu,
    }



async def share_room(origin, target, ca):
    """Senders on `origin` in a public room that a reader on `target` joined over federation."""
    connector = aiohttp.TCPConnector(ssl=ssl_context(ca))
    async with aiohttp.ClientSession(connector=connector) as http:
        tokens = [(await register(http, origin.client_base, f"sender{n}"))[0] for n in range(SENDERS)]
        reader_token, _ = await register(http, target.client_base, "reader")
        auth = lambda token: {"Authorization": f"Bearer {token}"}  # noqa: E731
        async with http.post(f"{origin.client_base}/_matrix/client/v3/createRoom", headers=auth(tokens[0]), json={"preset": "public_chat"}) as r:
            room_id = (await r.json())["room_id"]
        for token in tokens[1:]:
            async with http.post(f"{origin.client_base}/_matrix/client/v3/join/{room_id}", headers=auth(token), json={}) as r:
                assert r.status == 200, await r.text()
        async with http.post(f"{target.client_base}/_matrix/client/v3/join/{room_id}", headers=auth(reader_token),
                             params={"server_name": origin.server_name, "via": origin.server_name}, json={}) as r:
            assert r.status == 200, f"remote join: {r.status} {await r.text()}"
    return room_id, tokens, reader_token


def run_pair(label, start_origin, start_target, ca, seconds, rate):
    origin_dir, target_dir = tempfile.mkdtemp(prefix="fed-bench-a-"), tempfile.mkdtemp(prefix="fed-bench-b-")
    origin, target = start_origin(origin_dir, "fed_bench_a"), start_target(target_dir, "fed_bench_b")
    try:
        room_id, tokens, reader_token = asyncio.run(share_room(origin, target, ca))
        time.sleep(2)
        full = collect(origin, target, room_id, tokens, reader_token, ca, seconds, None, "full")
        paced = collect(origin, target, room_id, tokens, reader_token, ca, seconds, rate, "paced")
    finally:
        origin.stop()
        target.stop()
        for server, data in ((origin, origin_dir), (target, target_dir)):
            if server.kind == "deployment" and deployment.logs_with_errors(data):
                print(f"  (ERROR lines in {', '.join(deployment.logs_with_errors(data))} of {data}/run)", flush=True)
    print(
        f"{label}: full speed {full['sent']} sent ({full['failed']} failed), {full['delivered']} reached the other side's /sync, "
        f"{full['rate']:.0f} events/s, p50 {full['p50']:.1f} ms, p99 {full['p99']:.1f} ms; "
        f"paced at {rate:g}/s: {paced['delivered']}/{paced['sent']} delivered, p50 {paced['p50']:.1f} ms, p99 {paced['p99']:.1f} ms",
        flush=True,
    )
    for phase, result in (("full speed", full), ("paced", paced)):
        for side, spent in result["cpu"].items():
            kind = (origin if side == "origin" else target).kind
            print(f"  CPU, {phase}, {side} ({kind}): {deployment.describe(spent, result['delivered'])}", flush=True)
    return full, paced


def per_event(result, side, everything):
    spent = result["cpu"].get(side)
    if not spent or not result["delivered"]:
        return float("nan")
    return (sum(spent.values()) if everything else deployment.weft_only(spent)) / result["delivered"]


def compare_deployment(results):
    """The deployment against the monolith in the same run: events/s, latency, CPU per event of the measured side."""
    for pair, side, what in (("dw", "origin", "sending (federation senders)"), ("wd", "target", "receiving (federation reader)")):
        if pair not in results or "ww" not in results:
            continue
        (full, paced), (mono_full, mono_paced) = results[pair], results["ww"]
        below = 1 - full["rate"] / mono_full["rate"] if mono_full["rate"] else float("nan")
        print(f"Deployment {what} against the monolith: {full['rate']:.0f} against {mono_full['rate']:.0f} events/s ({abs(below):.1%} {'below' if below >= 0 else 'above'}); "
              f"paced p50 {paced['p50']:.1f} against {mono_paced['p50']:.1f} ms, p99 {paced['p99']:.1f} against {mono_paced['p99']:.1f} ms", flush=True)
        for phase, a, b in (("full speed", full, mono_full), ("paced", paced, mono_paced)):
            for everything, label in ((False, "Weft processes"), (True, "with PostgreSQL and Redis")):
                ours, theirs = per_event(a, side, everything), per_event(b, side, everything)
                print(f"  CPU per event, {phase}, {label}: {ours * 1000:.2f} against {theirs * 1000:.2f} ms ({ours / theirs:.2f}x)", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--weft", required=True, help="the weft binary (a release build)")
    parser.add_argument("--synapse-python", default=sys.executable, help="a Python with matrix-synapse[postgres]==1.163.0")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rate", type=float, default=50, help="messages/s of the paced phase, all senders together")
    parser.add_argument("--pairs", default="ww,ws,sw,ss", help="origin then target: w Weft, s Synapse, d the example deployment")
    parser.add_argument("--weft-log", default="warn", help="the Weft servers' log level (their logs stay in /tmp/fed-bench-*)")
    args = parser.parse_args()
    global WEFT_LOG
    WEFT_LOG = args.weft_log
    ca = test_ca(tempfile.mkdtemp(prefix="fed-bench-ca-"))
    starters = {
        "w": lambda data, db: start_weft(os.path.abspath(args.weft), ca, data, db),
        "s": lambda data, db: start_synapse(args.synapse_python, ca, data, db),
        "d": lambda data, db: start_deployment(os.path.abspath(args.weft), ca, data, db),
    }
    names = {"w": "Weft", "s": "Synapse", "d": "Weft deployment"}
    results = {}
    for pair in args.pairs.split(","):
        label = f"{names[pair[0]]} -> {names[pair[1]]}"
        results[pair] = run_pair(label, starters[pair[0]], starters[pair[1]], ca, args.seconds, args.rate)
    if "ww" in results and "ss" in results and results["ss"][0]["rate"]:
        print(f"Weft->Weft / Synapse->Synapse events/s: {results['ww'][0]['rate'] / results['ss'][0]['rate']:.1f}x")
    compare_deployment(results)


if __name__ == "__main__":
    main()
