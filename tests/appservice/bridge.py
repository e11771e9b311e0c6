#!/usr/bin/env python3
"""A real appservice against the real binary: mautrix-python's AppService.

Usage: bridge.py WEFT_BINARY

Starts `weft run` (zero-setup, SQLite) in a temporary data directory with a
registration file for this appservice, then, as a bridge would:

- registers and masquerades as puppet users (`m.login.application_service`,
  `?user_id=`), creates and joins rooms through them, without rate limits;
- receives in transactions every event addressed to its namespaces (its
  puppets' own, an ordinary user's message in a room with a puppet, the
  invite of a puppet the server learnt of by the user query);
- answers the user query that makes the server create a puppet on the
  first invite;
- receives typing, receipts and presence (`receive_ephemeral`);
- with its encryption support (`org.matrix.msc3202`, mautrix's
  `encryption_events`): receives a to-device message for a puppet's device,
  the one-time key counts of that device after it uploads keys and after
  one is claimed, and a device-list change of a user sharing its room;
- is pinged through `/appservice/{id}/ping`;
- is down for a while: the transactions wait and then arrive in order, no
  event lost or repeated.

And the server refuses what it must: another user registering or taking an
alias in the exclusive namespaces (400 M_EXCLUSIVE), masquerading outside
the namespace (403), an unknown token (401 M_UNKNOWN_TOKEN). Exits non-zero
on the first failed check.
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import aiohttp
from mautrix.appservice import AppService
from mautrix.types import UserID

AS_TOKEN = "as-token-for-the-test-bridge"
HS_TOKEN = "hs-token-for-the-test-bridge"
SERVER = "localhost"
CHECKS = []


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    CHECKS.append(what)
    print(f"ok: {what}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"weft exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit("weft did not start listening")


def start_weft(weft, data, port):
    log = open(os.path.join(data, "weft.log"), "ab")
    process = subprocess.Popen([weft, "run", "--data-dir", data, "--port", str(port)], stdout=log, stderr=log)
    wait_for_port(port, process)
    return process


def stop_weft(process):
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


REGISTRATION = """id: bridge
url: http://127.0.0.1:{as_port}
as_token: {as_token}
hs_token: {hs_token}
sender_localpart: bridgebot
rate_limited: false
receive_ephemeral: true
de.sorunome.msc2409.push_ephemeral: true
org.matrix.msc3202: true
namespaces:
  users:
  - regex: '@bridge_.*:localhost'
    exclusive: true
  aliases:
  - regex: '#bridge_.*:localhost'
    exclusive: true
  rooms: []
"""


class Record:
    """What the appservice received, across restarts of it."""

    def __init__(self):
        self.txns = []
        self.events = []
        self.ephemeral = []
        self.to_device = []
        self.otk_counts = []
        self.device_lists = []


class Recorder(AppService):
    """Records every transaction that reaches the handler, in order."""

    def __init__(self, record, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.record = record

    async def handle_transaction(self, txn_id, *, events, extra_data, ephemeral=None, to_device=None, otk_counts=None, device_lists=None):
        self.record.txns.append(int(txn_id))
        self.record.events.extend(events)
        self.record.ephemeral.extend(ephemeral or [])
        return await super().handle_transaction(
            txn_id, events=events, extra_data=extra_data, ephemeral=ephemeral, to_device=to_device, otk_counts=otk_counts, device_lists=device_lists
        )


async def wait_until(predicate, what, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.1)
    check(False, what)


async def call(http, base, method, path, token=None, body=None, params=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, base + path, json=body, headers=headers, params=params) as response:
        return response.status, await response.json(content_type=None)


def bridge(record, base):
    appservice = None

    async def query_user(user_id):
        # The bridge knows every `bridge_` user: it registers the puppet, then says so.
        await appservice.intent.user(user_id).ensure_registered()
        return {"registered": True}  # mautrix answers 404 for a falsy (empty) answer

    appservice = Recorder(
        record, server=base, domain=SERVER, as_token=AS_TOKEN, hs_token=HS_TOKEN, bot_localpart="bridgebot", id="bridge",
        query_user=query_user, ephemeral_events=True, encryption_events=True,
    )

    # What mautrix parsed out of the transactions for its encryption support.
    async def on_to_device(event):
        record.to_device.append(event)

    async def on_otk_counts(counts):
        record.otk_counts.append(counts)

    async def on_device_lists(lists):
        record.device_lists.append(lists)

    appservice.to_device_handler = on_to_device
    appservice.otk_handler = on_otk_counts
    appservice.device_list_handler = on_device_lists
    return appservice


async def scenario(base, as_port):
    record = Record()
    appservice = bridge(record, base)
    await appservice.start(host="127.0.0.1", port=as_port)
    async with aiohttp.ClientSession() as http:
        bot = appservice.intent
        await bot.ensure_registered()
        check((await bot.whoami()).user_id == f"@bridgebot:{SERVER}", "the as_token is the sender user")

        alice = bot.user(UserID(f"@bridge_alice:{SERVER}"))
        await alice.ensure_registered()
        whoami = await alice.whoami()
        check(whoami.user_id == f"@bridge_alice:{SERVER}", "user_id masquerades as a registered puppet")

        status, body = await call(http, base, "GET", "/_matrix/client/v3/account/whoami", AS_TOKEN, params={"user_id": f"@carol:{SERVER}"})
        check(status == 403 and body["errcode"] == "M_FORBIDDEN", f"masquerading outside the namespace is 403 ({status} {body})")
        status, body = await call(http, base, "GET", "/_matrix/client/v3/account/whoami", "not-a-token")
        check(status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN", f"an unknown token is 401 M_UNKNOWN_TOKEN ({status} {body})")

        # An ordinary user: registration in the exclusive namespace is refused.
        status, flows = await call(http, base, "POST", "/_matrix/client/v3/register", body={"username": "bridge_mallory", "password": "pw"})
        check(status == 400 and flows["errcode"] == "M_EXCLUSIVE", f"an ordinary user cannot register in the namespace ({status} {flows})")
        status, flows = await call(http, base, "POST", "/_matrix/client/v3/register", body={"username": "carol", "password": "pw"})
        status, carol = await call(
            http, base, "POST", "/_matrix/client/v3/register",
            body={"username": "carol", "password": "pw", "auth": {"type": "m.login.dummy", "session": flows["session"]}},
        )
        check(status == 200, f"carol registers ({status} {carol})")
        carol_token, carol_id = carol["access_token"], carol["user_id"]
        status, body = await call(http, base, "POST", "/_matrix/client/v3/register", AS_TOKEN, {"type": "m.login.application_service", "username": "outsider"})
        check(status == 400 and body["errcode"] == "M_EXCLUSIVE", f"the appservice cannot register outside its namespace ({status} {body})")

        # A puppet creates a room and invites carol, who joins and talks.
        room_id = await alice.create_room(name="Bridged room", invitees=[UserID(carol_id)])
        status, _ = await call(http, base, "POST", f"/_matrix/client/v3/join/{room_id}", carol_token, {})
        check(status == 200, "carol joins the puppet's room")
        await alice.send_text(room_id, "hello from alice")
        status, sent = await call(http, base, "PUT", f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/c1", carol_token, {"msgtype": "m.text", "body": "hello bridge"})
        check(status == 200, "carol sends a message")
        carol_event = sent["event_id"]

        def bodies():
            return [e.get("content", {}).get("body") for e in record.events if e.get("type") == "m.room.message"]

        await wait_until(lambda: "hello from alice" in bodies() and "hello bridge" in bodies(), "the puppet's and carol's messages arrive in transactions")
        check(any(e.get("type") == "m.room.create" and e.get("room_id") == room_id for e in record.events), "the puppet's room creation arrives")

        status, body = await call(http, base, "PUT", f"/_matrix/client/v3/directory/room/%23bridge_taken:{SERVER}", carol_token, {"room_id": room_id})
        check(status == 400 and body["errcode"] == "M_EXCLUSIVE", f"carol cannot take an alias in the exclusive namespace ({status} {body})")

        # The user query: inviting a puppet the server has not seen yet.
        bob = f"@bridge_bob:{SERVER}"
        status, body = await call(http, base, "POST", f"/_matrix/client/v3/rooms/{room_id}/invite", carol_token, {"user_id": bob})
        check(status == 200, f"inviting an unknown puppet asks the appservice, which creates it ({status} {body})")
        await wait_until(
            lambda: any(e.get("type") == "m.room.member" and e.get("state_key") == bob and e["content"].get("membership") == "invite" for e in record.events),
            "the puppet's invite arrives",
        )

        # Ephemeral events with receive_ephemeral: typing and a receipt.
        status, _ = await call(http, base, "PUT", f"/_matrix/client/v3/rooms/{room_id}/typing/{carol_id}", carol_token, {"typing": True, "timeout": 30000})
        check(status == 200, "carol types")
        status, _ = await call(http, base, "POST", f"/_matrix/client/v3/rooms/{room_id}/receipt/m.read/{carol_event}", carol_token, {})
        check(status == 200, "carol sends a read receipt")
        await wait_until(lambda: any(e.get("type") == "m.typing" and e.get("room_id") == room_id for e in record.ephemeral), "typing arrives as an ephemeral event")
        await wait_until(lambda: any(e.get("type") == "m.receipt" and e.get("room_id") == room_id for e in record.ephemeral), "the receipt arrives as an ephemeral event")

        # Presence of a user in its room.
        status, _ = await call(http, base, "PUT", f"/_matrix/client/v3/presence/{carol_id}/status", carol_token, {"presence": "online"})
        check(status == 200, "carol sets her presence")
        await wait_until(
            lambda: any(e.get("type") == "m.presence" and e.get("sender") == carol_id for e in record.ephemeral), "carol's presence arrives as an ephemeral event"
        )

        # Encryption (MSC2409 to-device, MSC3202): a puppet with a device.
        status, body = await call(
            http, base, "POST", "/_matrix/client/v3/register", AS_TOKEN,
            {"type": "m.login.application_service", "username": "bridge_eve", "device_id": "EVEDEVICE"},
        )
        check(status == 200 and body.get("device_id") == "EVEDEVICE", f"a puppet gets a device ({status} {body})")
        eve = body["user_id"]
        as_eve = {"user_id": eve, "device_id": "EVEDEVICE"}
        status, body = await call(http, base, "POST", f"/_matrix/client/v3/rooms/{room_id}/invite", carol_token, {"user_id": eve})
        check(status == 200, f"carol invites the puppet ({status} {body})")
        status, body = await call(http, base, "POST", f"/_matrix/client/v3/join/{room_id}", AS_TOKEN, {}, params=as_eve)
        check(status == 200, f"the puppet joins through its device ({status} {body})")
        keys = {"one_time_keys": {f"signed_curve25519:K{n}": {"key": f"key{n}"} for n in range(5)}}
        status, body = await call(http, base, "POST", "/_matrix/client/v3/keys/upload", AS_TOKEN, keys, params=as_eve)
        check(status == 200, f"the puppet's device uploads one-time keys ({status} {body})")
        status, _ = await call(
            http, base, "PUT", "/_matrix/client/v3/sendToDevice/m.room_key_request/td1", carol_token,
            {"messages": {eve: {"EVEDEVICE": {"action": "request_cancellation", "request_id": "r1", "requesting_device_id": "CAROL"}}}},
        )
        check(status == 200, "carol sends a to-device message to the puppet's device")
        await wait_until(
            lambda: any(getattr(e, "to_user_id", None) == eve and getattr(e, "to_device_id", None) == "EVEDEVICE" for e in record.to_device),
            "mautrix receives the to-device message with to_user_id and to_device_id",
        )
        got = [e for e in record.to_device if getattr(e, "to_device_id", None) == "EVEDEVICE"]
        check(len(got) == 1 and str(got[0].sender) == carol_id, f"once, from carol ({got})")

        def eve_count():
            for counts in reversed(record.otk_counts):
                device = counts.get(eve, {}).get("EVEDEVICE")
                if device is not None:
                    return device.signed_curve25519
            return None

        await wait_until(lambda: eve_count() == 5, "mautrix reads the puppet device's one-time key count (5)")
        status, claimed = await call(http, base, "POST", "/_matrix/client/v3/keys/claim", carol_token, {"one_time_keys": {eve: {"EVEDEVICE": "signed_curve25519"}}})
        check(status == 200 and claimed["one_time_keys"].get(eve), f"carol claims one of its keys ({status} {claimed})")
        status, _ = await call(http, base, "PUT", f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/c2", carol_token, {"msgtype": "m.text", "body": "after the claim"})
        await wait_until(lambda: eve_count() == 4, "the next transaction counts one key fewer (4)")

        status, _ = await call(http, base, "POST", "/_matrix/client/v3/login", body={"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "carol"}, "password": "pw"})
        check(status == 200, "carol logs in on a second device")
        await wait_until(lambda: any(carol_id in lists.changed for lists in record.device_lists), "mautrix receives carol's device-list change")

        # The ping.
        duration = await appservice.ping_self("ping-1")
        check(isinstance(duration, int) and duration >= 0, f"the ping answers its duration ({duration} ms)")
        status, body = await call(http, base, "POST", "/_matrix/client/v1/appservice/other/ping", AS_TOKEN, {})
        check(status == 403, f"pinging another appservice's id is 403 ({status} {body})")
        status, body = await call(http, base, "POST", "/_matrix/client/v1/appservice/bridge/ping", carol_token, {})
        check(status == 403, f"a user's token cannot ping ({status} {body})")

        # Down for a while: nothing is lost or repeated, and the order holds.
        txns_before = len(record.txns)
        await appservice.stop()
        sent_while_down = [f"while down {n}" for n in range(15)]
        for n, text in enumerate(sent_while_down):
            status, _ = await call(
                http, base, "PUT", f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/down{n}", AS_TOKEN,
                {"msgtype": "m.text", "body": text}, params={"user_id": f"@bridge_alice:{SERVER}"},
            )
            check(status == 200, f"the puppet sends without a rate limit ({n})")
        await asyncio.sleep(5)
        appservice = bridge(record, base)
        await appservice.start(host="127.0.0.1", port=as_port)
        await wait_until(lambda: all(text in bodies() for text in sent_while_down), "the messages sent while it was down arrive once it is back", seconds=60)
        received = [b for b in bodies() if b and b.startswith("while down")]
        check(received == sent_while_down, f"they arrive in order, none lost or repeated ({received})")
        ids = [e["event_id"] for e in record.events]
        check(len(ids) == len(set(ids)), "no event arrived twice")
        check(record.txns == sorted(record.txns) and len(record.txns) > txns_before, f"transaction ids increase ({record.txns})")
    await appservice.stop()


def main():
    weft = sys.argv[1]
    data = tempfile.mkdtemp(prefix="weft-appservice-")
    port, as_port = free_port(), free_port()
    stop_weft(start_weft(weft, data, port))  # writes the zero-setup configuration
    with open(os.path.join(data, "bridge.yaml"), "w") as f:
        f.write(REGISTRATION.format(as_port=as_port, as_token=AS_TOKEN, hs_token=HS_TOKEN))
    config_path = os.path.join(data, "weft.toml")
    with open(config_path) as f:
        config = f.read()
    config = config.replace('server_name = "localhost"\n', 'server_name = "localhost"\napp_service_config_files = ["bridge.yaml"]\n', 1)
    with open(config_path, "w") as f:
        f.write(config)
    process = start_weft(weft, data, port)
    try:
        asyncio.run(scenario(f"http://127.0.0.1:{port}", as_port))
    finally:
        stop_weft(process)
    print(f"{len(CHECKS)} passed, 0 failed")


if __name__ == "__main__":
    main()
