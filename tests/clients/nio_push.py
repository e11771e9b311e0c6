"""Pushers through a real Matrix client library (matrix-nio) against a running Weft.

Usage: python nio_push.py BASE_URL
matrix-nio 0.26 has no pusher methods, so the pusher requests go through its
raw `AsyncClient.send` with the client's session and access token; the rest
(registering, rooms, messages, receipts) is nio's own API. Sets an HTTP
pusher, reads it back, checks the refusals a client sees (a gateway URL with
the wrong path, a loopback gateway the zero-setup server may not reach), and
deletes it. Delivery itself is tested against a push gateway in the Rust
suite (host/tests/push_delivery.rs), where the gateway's loopback address is
allowed. Prints one line per check and a closing `N passed, N failed` line;
exits non-zero on any failure.
"""

import asyncio
import json
import secrets
import sys

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
    return summary("matrix-nio push")


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main(sys.argv[1])) else 1)
