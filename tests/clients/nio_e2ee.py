"""End-to-end encryption through a real client library (matrix-nio with its
vodozemac crypto) against a running Weft.

Usage: python nio_e2ee.py BASE_URL
Two users log in with encryption-capable clients, upload and query keys,
claim one-time keys, share a Megolm session over to-device messages and
exchange encrypted messages both ways, each decrypting the other's. Typing,
receipts and read markers travel between them too. Prints one line per check
and a closing `N passed, N failed` line; exits non-zero on any failure.
"""

import asyncio
import secrets
import sys
import tempfile
import time

from nio import (
    AsyncClient,
    AsyncClientConfig,
    FullyReadEvent,
    JoinResponse,
    LoginResponse,
    MegolmEvent,
    ReceiptEvent,
    RegisterResponse,
    RoomCreateResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
    TypingNoticeEvent,
)

from report import check, summary


async def e2e_client(base, name, password, store):
    registrar = AsyncClient(base, name)
    registered = await registrar.register(name, password)
    await registrar.close()
    if not isinstance(registered, RegisterResponse):
        raise SystemExit(f"could not register {name}: {registered}")
    config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
    client = AsyncClient(base, f"@{name}:{registered.user_id.split(':', 1)[1]}", store_path=store, config=config)
    login = await client.login(password, device_name=f"{name}'s laptop")
    if not isinstance(login, LoginResponse):
        raise SystemExit(f"could not log {name} in: {login}")
    if client.should_upload_keys:
        await client.keys_upload()
    return client


async def sync_until(client, predicate, what, seconds=20):
    """Syncs until `predicate(response)` holds; returns that response or None."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        response = await client.sync(timeout=1000)
        if not isinstance(response, SyncResponse):
            continue
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())
        if predicate(response):
            return response
    print(f"     (gave up waiting for {what})")
    return None


def timeline(response, room_id):
    room = response.rooms.join.get(room_id)
    return room.timeline.events if room else []


def ephemeral(response, room_id):
    room = response.rooms.join.get(room_id)
    return room.ephemeral if room else []


async def main(base):
    suffix = secrets.token_hex(4)
    password = secrets.token_urlsafe(12)
    with tempfile.TemporaryDirectory() as alice_store, tempfile.TemporaryDirectory() as bob_store:
        alice = await e2e_client(base, "alice" + suffix, password, alice_store)
        bob = await e2e_client(base, "bob" + suffix, password, bob_store)
        try:
            await alice.sync(timeout=0)
            await bob.sync(timeout=0)
            check("device keys and one-time keys uploaded", not alice.should_upload_keys and not bob.should_upload_keys)

            created = await alice.room_create(
                name="secrets",
                invite=[bob.user_id],
                initial_state=[{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
            )
            check("alice creates an encrypted room", isinstance(created, RoomCreateResponse), str(created))
            room_id = created.room_id
            invited = await sync_until(bob, lambda r: room_id in r.rooms.invite, "bob's invite")
            check("bob sees the invite", invited is not None)
            joined = await bob.join(room_id)
            check("bob joins", isinstance(joined, JoinResponse), str(joined))
            await sync_until(bob, lambda r: room_id in r.rooms.join, "bob's join")
            await sync_until(alice, lambda r: bob.user_id in alice.rooms[room_id].users, "alice seeing bob")
            check("alice's room is encrypted", alice.rooms[room_id].encrypted)

            # Alice learns bob's device through /keys/query and claims a one-time key.
            sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "the eagle lands at dawn"}, ignore_unverified_devices=True)
            check("alice sends an encrypted message", isinstance(sent, RoomSendResponse), str(sent))
            check("bob's device is known to alice", bool(alice.device_store[bob.user_id]), str(list(alice.device_store.users)))

            def decrypted(body):
                return lambda r: any(isinstance(e, RoomMessageText) and e.body == body for e in timeline(r, room_id))

            undecryptable = []

            def bob_sees(r):
                undecryptable.extend(e for e in timeline(r, room_id) if isinstance(e, MegolmEvent))
                return decrypted("the eagle lands at dawn")(r)

            got = await sync_until(bob, bob_sees, "bob decrypting alice's message")
            check("bob decrypts alice's message", got is not None, f"undecryptable: {len(undecryptable)}")

            reply = await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "understood"}, ignore_unverified_devices=True)
            check("bob replies encrypted", isinstance(reply, RoomSendResponse), str(reply))
            got = await sync_until(alice, decrypted("understood"), "alice decrypting bob's reply")
            check("alice decrypts bob's reply", got is not None)

            typing = await bob.room_typing(room_id, True, timeout=10000)
            check("bob starts typing", not hasattr(typing, "status_code"), str(typing))
            got = await sync_until(
                alice, lambda r: any(isinstance(e, TypingNoticeEvent) and bob.user_id in e.users for e in ephemeral(r, room_id)), "bob typing"
            )
            check("alice sees bob typing", got is not None)
            await bob.room_typing(room_id, False)
            got = await sync_until(
                alice, lambda r: any(isinstance(e, TypingNoticeEvent) and bob.user_id not in e.users for e in ephemeral(r, room_id)), "bob stopping"
            )
            check("alice sees bob stop typing", got is not None)

            marked = await alice.room_read_markers(room_id, reply.event_id, reply.event_id)
            check("alice sets read markers", not hasattr(marked, "status_code"), str(marked))

            def receipt_for(r):
                for event in ephemeral(r, room_id):
                    if isinstance(event, ReceiptEvent):
                        for receipt in event.receipts:
                            if receipt.user_id == alice.user_id and receipt.event_id == reply.event_id:
                                return True
                return False

            got = await sync_until(bob, receipt_for, "alice's read receipt")
            check("bob sees alice's read receipt", got is not None)
            def fully_read(r):
                room = r.rooms.join.get(room_id)
                return room is not None and any(isinstance(e, FullyReadEvent) and e.event_id == reply.event_id for e in room.account_data)

            got = await sync_until(alice, fully_read, "alice's fully-read marker")
            check("alice's fully-read marker reaches her other syncs", got is not None)
        finally:
            await alice.close()
            await bob.close()
    return summary("matrix-nio e2ee")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    sys.exit(0 if asyncio.run(main(sys.argv[1])) else 1)
