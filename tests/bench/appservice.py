#!/usr/bin/env python3
"""The bridge-shaped appservice benchmark (issue 24): 50 puppet users in 10
rooms send through the appservice's token with masquerading (`?user_id=`),
while the appservice receives every event in transactions.

Reports messages per second sent by the appservice and the delivery latency
from persistence (the send's 200) to the appservice's receipt of the event,
p50 and p99. Runs against Weft (zero-setup, in a temporary data directory)
or, as the reference in the same run, Synapse from PyPI (`pip install
matrix-synapse` into the venv running this script).

Needs a quiet machine (it measures latency): not run in CI.

  python tests/bench/appservice.py --weft target/release/weft [--seconds 20]
  python tests/bench/appservice.py --synapse [--seconds 20]

Both: the venv of tests/appservice/requirements.txt (aiohttp), plus
matrix-synapse for --synapse.
"""

import argparse
import asyncio
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def registration(as_port):
    return (
        f"id: bench\nurl: http://127.0.0.1:{as_port}\nas_token: {AS_TOKEN}\nhs_token: {HS_TOKEN}\n"
        "sender_localpart: benchbot\nrate_limited: false\nnamespaces:\n  users:\n  - regex: '@bench_.*'\n    exclusive: true\n"
        "  aliases: []\n  rooms: []\n"
    )


def wait_for(port, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit("the homeserver did not start")


def start_weft(binary, data, port, as_port):
    first = subprocess.Popen([binary, "run", "--data-dir", data, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(port)
    first.send_signal(signal.SIGTERM)
    first.wait()
    with open(os.path.join(data, "bench.yaml"), "w") as f:
        f.write(registration(as_port))
    path = os.path.join(data, "weft.toml")
    text = open(path).read().replace('server_name = "localhost"\n', 'server_name = "localhost"\napp_service_config_files = ["bench.yaml"]\n', 1)
    open(path, "w").write(text)
    process = subprocess.Popen([binary, "run", "--data-dir", data, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(port)
    return process


def start_synapse(data, port, as_port):
    with open(os.path.join(data, "bench.yaml"), "w") as f:
        f.write(registration(as_port))
    config = os.path.join(data, "homeserver.yaml")
    subprocess.run(
        [sys.executable, "-m", "synapse.app.homeserver", "-c", config, "--generate-config", "--server-name", "localhost", "--report-stats", "no"],
        cwd=data, check=True, capture_output=True,
    )
    text = open(config).read().replace("port: 8008", f"port: {port}")
    text += (
        f"\napp_service_config_files: [{os.path.join(data, 'bench.yaml')}]\n"
        "rc_message: {per_second: 10000, burst_count: 10000}\nrc_joins: {local: {per_second: 10000, burst_count: 10000}}\n"
        "rc_room_creation: {per_second: 10000, burst_count: 10000}\n"
    )
    open(config, "w").write(text)
    process = subprocess.Popen([sys.executable, "-m", "synapse.app.homeserver", "-c", config], cwd=data, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(port)
    return process


class Receiver:
    """The appservice: records when each event arrived."""

    def __init__(self):
        self.arrived = {}

    async def transaction(self, request):
        body = await request.json()
        now = time.monotonic()
        for event in body.get("events", []):
            self.arrived.setdefault(event["event_id"], now)
        return web.json_response({})

    async def query(self, request):
        return web.json_response({}, status=404)


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else float("nan")


async def run(base, as_port, seconds):
    receiver = Receiver()
    app = web.Application()
    app.router.add_put("/_matrix/app/v1/transactions/{txn}", receiver.transaction)
    app.router.add_get("/_matrix/app/v1/users/{user}", receiver.query)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", as_port).start()
    headers = {"Authorization": f"Bearer {AS_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        puppets = [f"@bench_{n}:localhost" for n in range(PUPPETS)]
        for n in range(PUPPETS):
            async with http.post(f"{base}/_matrix/client/v3/register", json={"type": "m.login.application_service", "username": f"bench_{n}", "inhibit_login": True}) as r:
                await r.read()
        rooms = []
        for n in range(ROOMS):
            async with http.post(f"{base}/_matrix/client/v3/createRoom", json={"preset": "public_chat"}) as r:
                rooms.append((await r.json())["room_id"])
        for index, puppet in enumerate(puppets):
            room = rooms[index % ROOMS]
            async with http.post(f"{base}/_matrix/client/v3/join/{room}", params={"user_id": puppet}, json={}) as r:
                await r.read()
        sent = {}
        deadline = time.monotonic() + seconds

        async def sender(index):
            puppet, room, n = puppets[index], rooms[index % ROOMS], 0
            while time.monotonic() < deadline:
                n += 1
                url = f"{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/b{index}-{n}"
                async with http.put(url, params={"user_id": puppet}, json={"msgtype": "m.text", "body": f"{index} {n}"}) as r:
                    if r.status == 200:
                        sent[(await r.json())["event_id"]] = time.monotonic()

        started = time.monotonic()
        await asyncio.gather(*(sender(index) for index in range(PUPPETS)))
        elapsed = time.monotonic() - started
        settle = time.monotonic() + 30
        while time.monotonic() < settle and not all(event in receiver.arrived for event in sent):
            await asyncio.sleep(0.1)
    await runner.cleanup()
    latencies = [(receiver.arrived[e] - t) * 1000 for e, t in sent.items() if e in receiver.arrived]
    print(f"messages sent: {len(sent)} in {elapsed:.1f} s = {len(sent) / elapsed:.0f}/s")
    print(f"delivered: {len(latencies)}; latency p50 {percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--weft")
    parser.add_argument("--synapse", action="store_true")
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="appservice-bench-")
    port, as_port = free_port(), free_port()
    process = start_weft(args.weft, data, port, as_port) if args.weft else start_synapse(data, port, as_port)
    try:
        asyncio.run(run(f"http://127.0.0.1:{port}", as_port, args.seconds))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait()


if __name__ == "__main__":
    main()
