"""Pushers through a real Matrix client library (matrix-nio) against a running Weft.

Usage: python nio_push.py BASE_URL WEFT_BINARY
matrix-nio 0.26 has no pusher methods, so the pusher requests go through its
raw `AsyncClient.send` with the client's session and access token; the rest
(registering, rooms, messages, receipts) is nio's own API. Against BASE_URL
(the zero-setup server): sets an HTTP pusher, reads it back, checks the
refusals a client sees (a gateway URL with the wrong path, a loopback gateway
the zero-setup server may not reach), and deletes it. Then delivery: starts
WEFT_BINARY zero-setup in a temporary directory with `ip_range_whitelist =
["127.0.0.0/8"]` and a push gateway here on loopback (written from the Push
Gateway API: it records each POST and answers `{"rejected": []}`); a nio
client sets its pusher, another one writes to it, and the gateway receives
the notification (full format, then `event_id_only`), then the badge update
when the nio client sends its read receipt. Prints one line per check and a
closing `N passed, N failed` line; exits non-zero on any failure.
"""

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from aiohttp import web
from nio import AsyncClient, JoinResponse, RegisterResponse, RoomCreateResponse, RoomSendResponse

from report import check, summary

GATEWAY = "https://push.example.org/_matrix/push/v1/notify"


def pusher(url, pushkey="nio-device-token"):
    return {
        "kind": "http",
        "app_id": "org.example.nio",
        "pushkey": pushkey,
        "app_display_name": "nio check",
        "device_display_name": "nio device",
        "lang": "en",
        "data": {"url": url, "format": "event_id_only"},
    }


async def call(client, method, path, body=None):
    """A raw request through nio's session; returns (status, JSON body)."""
    headers = {"Authorization": f"Bearer {client.access_token}", "Content-Type": "application/json"}
    response = await client.send(method, path, json.dumps(body) if body is not None else None, headers)
    try:
        payload = await response.json(content_type=None)
    except ValueError:
        payload = None
    return response.status, payload


async def main(base):
    bob = AsyncClient(base, "niopushbob" + secrets.token_hex(4))
    registered = await bob.register(bob.user, secrets.token_urlsafe(12), device_name="nio push")
    check("register", isinstance(registered, RegisterResponse), registered)

    status, body = await call(bob, "POST", "/_matrix/client/v3/pushers/set", pusher(GATEWAY))
    check("set an HTTP pusher", status == 200 and body == {}, (status, body))
    status, body = await call(bob, "GET", "/_matrix/client/v3/pushers")
    listed = (body or {}).get("pushers", [])
    expected = dict(pusher(GATEWAY))
    check("GET /pushers shows it as set", status == 200 and len(listed) == 1 and all(listed[0].get(k) == v for k, v in expected.items()), body)

    status, body = await call(bob, "POST", "/_matrix/client/v3/pushers/set", pusher("https://push.example.org/not/the/path", "other"))
    check("a gateway URL with another path is M_MISSING_PARAM", status == 400 and (body or {}).get("errcode") == "M_MISSING_PARAM", (status, body))
    status, body = await call(bob, "POST", "/_matrix/client/v3/pushers/set", pusher("http://127.0.0.1:9/_matrix/push/v1/notify", "loop"))
    check("a loopback gateway is refused at set time", status == 400 and (body or {}).get("errcode") == "M_INVALID_PARAM", (status, body))

    # Another user writes to Bob: the message is sent whatever the gateway does.
    alice = AsyncClient(base, "niopushalice" + secrets.token_hex(4))
    await alice.register(alice.user, secrets.token_urlsafe(12))
    created = await alice.room_create(name="nio push")
    check("create a room", isinstance(created, RoomCreateResponse), created)
    room_id = getattr(created, "room_id", "")
    await alice.room_invite(room_id, bob.user_id)
    joined = await bob.join(room_id)
    check("join it", isinstance(joined, JoinResponse), joined)
    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "ping"})
    check("a message to a user with a pusher", isinstance(sent, RoomSendResponse), sent)
    status, body = await call(bob, "GET", "/_matrix/client/v3/notifications")
    notified = [n.get("event", {}).get("event_id") for n in (body or {}).get("notifications", [])]
    check("it is among the user's notifications", status == 200 and getattr(sent, "event_id", None) in notified, body)

    status, body = await call(bob, "POST", "/_matrix/client/v3/pushers/set", {"kind": None, "app_id": "org.example.nio", "pushkey": "nio-device-token"})
    check("delete the pusher", status == 200, (status, body))
    status, body = await call(bob, "GET", "/_matrix/client/v3/pushers")
    check("GET /pushers is empty again", status == 200 and (body or {}).get("pushers") == [], body)

    await alice.close()
    await bob.close()


class Gateway:
    """A push gateway from the Push Gateway API: records every notification."""

    def __init__(self):
        self.received = []
        self.arrived = asyncio.Event()

    async def notify(self, request):
        self.received.append(await request.json())
        self.arrived.set()
        return web.json_response({"rejected": []})

    async def next(self, seconds=20):
        """The next notification received, or None after `seconds`."""
        seen = len(self.received)
        deadline = time.monotonic() + seconds
        while len(self.received) == seen and time.monotonic() < deadline:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
        return self.received[seen]["notification"] if len(self.received) > seen else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_weft(weft, data, port):
    log = open(os.path.join(data, "weft.log"), "ab")
    process = subprocess.Popen([weft, "run", "--data-dir", data, "--port", str(port)], stdout=log, stderr=log)
    deadline = time.time() + 60
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"weft exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.1)
    raise SystemExit("weft did not start listening")


def stop_weft(process):
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


async def delivery(base):
    gateway = Gateway()
    app = web.Application()
    app.router.add_post("/_matrix/push/v1/notify", gateway.notify)
    runner = web.AppRunner(app)
    await runner.setup()
    gateway_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", gateway_port).start()
    url = f"http://127.0.0.1:{gateway_port}/_matrix/push/v1/notify"

    bob = AsyncClient(base, "niopushed" + secrets.token_hex(4))
    await bob.register(bob.user, secrets.token_urlsafe(12), device_name="nio pushed")
    full = dict(pusher(url, "nio-pushkey"), data={"url": url, "custom": "kept"})
    status, body = await call(bob, "POST", "/_matrix/client/v3/pushers/set", full)
    check("a loopback gateway the operator allowed is accepted", status == 200, (status, body))

    alice = AsyncClient(base, "niopusher" + secrets.token_hex(4))
    await alice.register(alice.user, secrets.token_urlsafe(12))
    created = await alice.room_create(name="pushed room", invite=[bob.user_id])
    room_id = getattr(created, "room_id", "")
    invite = await gateway.next()
    check("the invite is pushed", invite is not None and invite.get("membership") == "invite" and invite.get("user_is_target") is True, invite)
    await bob.join(room_id)
    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": f"hello {bob.user_id}", "m.mentions": {"user_ids": [bob.user_id]}})
    note = await gateway.next()
    while note is not None and note.get("event_id") != getattr(sent, "event_id", None):
        note = await gateway.next()
    check("the gateway receives the message", note is not None, gateway.received)
    note = note or {}
    device = (note.get("devices") or [{}])[0]
    check("with the event in full format", note.get("room_id") == room_id and note.get("sender") == alice.user_id
          and note.get("type") == "m.room.message" and (note.get("content") or {}).get("body") == f"hello {bob.user_id}", note)
    check("room name and counts", note.get("room_name") == "pushed room" and (note.get("counts") or {}).get("unread") == 1, note)
    check("the device: app_id, pushkey, pushkey_ts in seconds, data without url",
          device.get("app_id") == "org.example.nio" and device.get("pushkey") == "nio-pushkey"
          and 1_600_000_000 < device.get("pushkey_ts", 0) < 10_000_000_000 and device.get("data") == {"custom": "kept"}, device)
    check("a mention is high priority with the highlight tweak", note.get("prio") == "high" and (device.get("tweaks") or {}).get("highlight") is True, note)

    read = await bob.room_read_markers(room_id, fully_read_event=sent.event_id, read_event=sent.event_id)
    badge = await gateway.next()
    check("the read receipt sends a badge update", badge is not None and badge.get("id") == "" and (badge.get("counts") or {}).get("unread") == 0, (read, badge))

    status, body = await call(bob, "POST", "/_matrix/client/v3/pushers/set", dict(pusher(url, "nio-pushkey")))
    check("switch the pusher to event_id_only", status == 200, (status, body))
    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "quiet"})
    note = await gateway.next() or {}
    check("event_id_only carries ids and counts, no content", note.get("event_id") == getattr(sent, "event_id", None)
          and note.get("room_id") == room_id and "content" not in note and "sender" not in note and "counts" in note, note)

    await alice.close()
    await bob.close()
    await runner.cleanup()


def with_loopback_allowed(weft):
    """A zero-setup server in a temporary directory whose push may reach loopback."""
    data = tempfile.mkdtemp(prefix="weft-nio-push-")
    port = free_port()
    stop_weft(start_weft(weft, data, port))  # writes the zero-setup configuration
    path = os.path.join(data, "weft.toml")
    with open(path) as f:
        config = f.read()
    config = config.replace('server_name = "localhost"\n', 'server_name = "localhost"\nip_range_whitelist = ["127.0.0.0/8"]\n', 1)
    with open(path, "w") as f:
        f.write(config)
    return data, port, start_weft(weft, data, port)


async def everything(base, weft):
    await main(base)
    data, port, process = with_loopback_allowed(weft)
    try:
        await delivery(f"http://127.0.0.1:{port}")
    finally:
        stop_weft(process)
        shutil.rmtree(data, ignore_errors=True)
    return summary("matrix-nio push")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: nio_push.py BASE_URL WEFT_BINARY")
    sys.exit(0 if asyncio.run(everything(sys.argv[1], sys.argv[2])) else 1)
