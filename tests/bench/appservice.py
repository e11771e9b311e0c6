#!/usr/bin/env python3
"""The bridge-shaped appservice benchmark (issue 24): 50 puppet users in 10
rooms send through the appservice's token with masquerading (`?user_id=`),
while the appservice receives every event in transactions.

Reports messages per second sent by the appservice and the delivery latency
from persistence (the send's 200) to the appservice's receipt of the
transaction holding the event, p50 and p99. The appservice runs in a
process of its own (the senders' event loop would delay its answers and its
clock readings). Runs Weft (a release build, the
monolith, `config/bench.toml`: PostgreSQL database `weft_bench`, port 18800)
and, as the reference in the same run, Synapse from PyPI (the Python running
this script must have `matrix-synapse[postgres]`; database `synapse_bench`,
port 18008), each given a fresh database, in alternating rounds.

Needs a quiet machine (it measures latency), PostgreSQL on 127.0.0.1:5432
(user postgres, trust) and `psql`: not run in CI.

  python tests/bench/appservice.py --weft target/release/weft \\
      --plugin target/wasm32-wasip2/release/appservice_http.wasm --synapse \\
      [--synapse-python synapse-venv/bin/python] [--seconds 20] [--rounds 2]

The Python running it needs aiohttp (tests/appservice/requirements.txt pins
it); Synapse runs with `--synapse-python`, a venv with
matrix-synapse[postgres]==1.163.0 (default: the same Python).
"""

import argparse
import asyncio
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import aiohttp
from aiohttp import web

AS_TOKEN = "bench-as-token"
HS_TOKEN = "bench-hs-token"
PUPPETS = 50
ROOMS = 10
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def registration(as_port, server_name):
    return (
        f"id: bench\nurl: http://127.0.0.1:{as_port}\nas_token: {AS_TOKEN}\nhs_token: {HS_TOKEN}\n"
        f"sender_localpart: benchbot\nrate_limited: false\nnamespaces:\n  users:\n  - regex: '@bench_.*:{server_name}'\n    exclusive: true\n"
        "  aliases: []\n  rooms: []\n"
    )


def wait_for(port, process, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the homeserver exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit("the homeserver did not start")


def fresh_database(name):
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", f"DROP DATABASE IF EXISTS {name}",
         "-c", f"CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"],
        check=True,
    )


def start_weft(binary, plugin, data, as_port):
    fresh_database("weft_bench")
    registration_path = os.path.join(data, "bench.yaml")
    with open(registration_path, "w") as f:
        f.write(registration(as_port, "bench.local"))
    extra = os.path.join(data, "appservice.toml")
    with open(extra, "w") as f:
        f.write(
            f"app_service_config_files = [{registration_path!r}]\n"
            f"[[plugins]]\nname = \"appservice-http\"\nrole = \"appservice-notifier\"\npath = {plugin!r}\n"
        )
    log = open(os.path.join(data, "weft.log"), "wb")
    process = subprocess.Popen([binary, "run", "-c", os.path.join(REPO, "config/bench.toml"), "-c", extra], cwd=data, stdout=log, stderr=log)
    wait_for(18800, process)
    return process, "http://127.0.0.1:18800", "bench.local"


SYNAPSE_PYTHON = sys.executable


def start_synapse(data, as_port):
    fresh_database("synapse_bench")
    registration_path = os.path.join(data, "bench.yaml")
    with open(registration_path, "w") as f:
        f.write(registration(as_port, "bench.local"))
    config = os.path.join(data, "homeserver.yaml")
    subprocess.run(
        [SYNAPSE_PYTHON, "-m", "synapse.app.homeserver", "-c", config, "--generate-config", "--server-name", "bench.local", "--report-stats", "no"],
        cwd=data, check=True, capture_output=True,
    )
    with open(config, "a") as f:
        f.write(
            "\n# Benchmark overrides (later keys win in PyYAML's loader).\n"
            "listeners:\n  - port: 18008\n    bind_addresses: ['127.0.0.1']\n    type: http\n    x_forwarded: false\n"
            "    resources: [{names: [client], compress: false}]\n"
            "database:\n  name: psycopg2\n"
            "  args: {user: postgres, host: 127.0.0.1, port: 5432, dbname: synapse_bench, cp_min: 10, cp_max: 20}\n"
            f"app_service_config_files: [{registration_path}]\n"
            "rc_message: {per_second: 100000, burst_count: 100000}\n"
            "rc_joins: {local: {per_second: 100000, burst_count: 100000}}\n"
            "rc_room_creation: {per_second: 100000, burst_count: 100000}\n"
        )
    log = open(os.path.join(data, "synapse.log"), "wb")
    process = subprocess.Popen([SYNAPSE_PYTHON, "-m", "synapse.app.homeserver", "-c", config], cwd=data, stdout=log, stderr=log)
    wait_for(18008, process)
    return process, "http://127.0.0.1:18008", "bench.local"


class Receiver:
    """The appservice: records when each event arrived. It runs in a process
    of its own (`serve_appservice`), so that the 50 senders' event loop does
    not delay its answers or its clock readings; `time.monotonic` is the
    system's monotonic clock, the same in both processes."""

    def __init__(self):
        self.arrived = {}
        self.transactions = 0

    async def transaction(self, request):
        body = await request.json()
        now = time.monotonic()
        self.transactions += 1
        for event in body.get("events", []):
            self.arrived.setdefault(event["event_id"], now)
        return web.json_response({})

    async def query(self, request):
        return web.json_response({}, status=404)

    async def stats(self, request):
        return web.json_response({"arrived": self.arrived, "transactions": self.transactions})


def serve_appservice(port, ready):
    async def main():
        receiver = Receiver()
        app = web.Application()
        app.router.add_put("/_matrix/app/v1/transactions/{txn}", receiver.transaction)
        app.router.add_get("/_matrix/app/v1/users/{user}", receiver.query)
        app.router.add_get("/bench/stats", receiver.stats)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else float("nan")


async def run(base, server_name, as_port, seconds, rate=None):
    headers = {"Authorization": f"Bearer {AS_TOKEN}"}
    connector = aiohttp.TCPConnector(limit=PUPPETS + 10)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as http:
        puppets = [f"@bench_{n}:{server_name}" for n in range(PUPPETS)]
        for n in range(PUPPETS):
            async with http.post(f"{base}/_matrix/client/v3/register", json={"type": "m.login.application_service", "username": f"bench_{n}", "inhibit_login": True}) as r:
                assert r.status == 200, await r.text()
        rooms = []
        for n in range(ROOMS):
            async with http.post(f"{base}/_matrix/client/v3/createRoom", json={"preset": "public_chat"}) as r:
                rooms.append((await r.json())["room_id"])
        for index, puppet in enumerate(puppets):
            room = rooms[index % ROOMS]
            async with http.post(f"{base}/_matrix/client/v3/join/{room}", params={"user_id": puppet}, json={}) as r:
                assert r.status == 200, await r.text()
        await asyncio.sleep(2)
        sent = {}
        failed = 0
        deadline = time.monotonic() + seconds

        async def sender(index):
            nonlocal failed
            puppet, room, n = puppets[index], rooms[index % ROOMS], 0
            interval = PUPPETS / rate if rate else 0
            first = time.monotonic() + index * interval / PUPPETS
            while time.monotonic() < deadline:
                if rate:
                    await asyncio.sleep(max(0, first + n * interval - time.monotonic()))
                n += 1
                url = f"{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/b{index}-{n}"
                async with http.put(url, params={"user_id": puppet}, json={"msgtype": "m.text", "body": f"{index} {n}"}) as r:
                    if r.status == 200:
                        sent[(await r.json())["event_id"]] = time.monotonic()
                    else:
                        failed += 1

        started = time.monotonic()
        await asyncio.gather(*(sender(index) for index in range(PUPPETS)))
        elapsed = time.monotonic() - started
        settle = time.monotonic() + 60
        while True:
            async with aiohttp.ClientSession() as plain:
                async with plain.get(f"http://127.0.0.1:{as_port}/bench/stats") as r:
                    stats = await r.json()
            if time.monotonic() >= settle or all(event in stats["arrived"] for event in sent):
                break
            await asyncio.sleep(0.5)
    arrived = stats["arrived"]
    latencies = [(arrived[e] - t) * 1000 for e, t in sent.items() if e in arrived]
    return {
        "sent": len(sent), "failed": failed, "rate": len(sent) / elapsed, "delivered": len(latencies),
        "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99), "transactions": stats["transactions"],
    }


def one(name, start, seconds, rate=None):
    data = tempfile.mkdtemp(prefix=f"appservice-bench-{name}-")
    as_port = free_port()
    ready = multiprocessing.Event()
    appservice = multiprocessing.Process(target=serve_appservice, args=(as_port, ready), daemon=True)
    appservice.start()
    ready.wait(30)
    process, base, server_name = start(data, as_port)
    try:
        result = asyncio.run(run(base, server_name, as_port, seconds, rate))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        appservice.terminate()
        appservice.join()
    print(
        f"{name}: {result['sent']} sent ({result['failed']} failed) in {seconds} s = {result['rate']:.0f} msg/s; "
        f"delivered {result['delivered']} in {result['transactions']} transactions; "
        f"latency p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms",
        flush=True,
    )
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--weft", help="the weft binary (a release build)")
    parser.add_argument("--plugin", help="appservice_http.wasm (release)")
    parser.add_argument("--synapse", action="store_true")
    parser.add_argument("--synapse-python", default=sys.executable, help="a Python with matrix-synapse[postgres]==1.163.0 (default: this one)")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--rate", type=float, help="messages/s for all senders together (default: as fast as they can)")
    args = parser.parse_args()
    global SYNAPSE_PYTHON
    SYNAPSE_PYTHON = args.synapse_python
    results = {"weft": [], "synapse": []}
    for _ in range(args.rounds):
        if args.weft:
            results["weft"].append(one("weft", lambda data, port: start_weft(os.path.abspath(args.weft), os.path.abspath(args.plugin), data, port), args.seconds, args.rate))
        if args.synapse:
            results["synapse"].append(one("synapse", start_synapse, args.seconds, args.rate))
    if results["weft"] and results["synapse"]:
        weft = sum(r["rate"] for r in results["weft"]) / len(results["weft"])
        synapse = sum(r["rate"] for r in results["synapse"]) / len(results["synapse"])
        print(f"throughput ratio (mean msg/s): {weft / synapse:.1f}x")


if __name__ == "__main__":
    main()
