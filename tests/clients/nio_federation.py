"""End-to-end encryption across servers through a real client library
(matrix-nio with its vodozemac crypto): one user on Weft, one on Synapse.

Usage: python nio_federation.py WEFT_URL SYNAPSE_URL
(the Synapse URL is HTTPS with the test CA: run with SSL_CERT_FILE naming it;
host/tests/federation/edus.rs starts both servers and runs this.)

Alice (Weft) creates an encrypted room and invites bob (Synapse); each
server fetches the other user's device keys and claims their one-time keys
over federation, the Megolm room keys travel as to-device messages between
the servers, and each decrypts the other's message. Then bob logs in a
second device: alice's Weft hears of it (m.device_list_update), names bob in
/sync's device_lists.changed, and alice's client finds the new device; a
message alice sends next is decrypted there. The same for a second device
of alice, which Weft announces to Synapse. Prints one line per check and a
closing tally; exits non-zero on any failure.
"""

import asyncio
import secrets
import sys
import tempfile

from nio import JoinResponse, MegolmEvent, RoomCreateResponse, RoomInviteResponse, RoomMessageText, RoomSendResponse

from nio_e2ee import e2e_client, sync_until, timeline
from report import check, summary


async def main(weft, synapse):
    suffix = secrets.token_hex(4)
    password = secrets.token_urlsafe(12)
    with (
        tempfile.TemporaryDirectory() as alice_store,
        tempfile.TemporaryDirectory() as bob_store,
        tempfile.TemporaryDirectory() as bob2_store,
        tempfile.TemporaryDirectory() as alice2_store,
    ):
        alice = await e2e_client(weft, "alice" + suffix, password, alice_store)
        bob = await e2e_client(synapse, "bob" + suffix, password, bob_store)
        bob2 = alice2 = None
        try:
            await alice.sync(timeout=0)
            await bob.sync(timeout=0)
            check("each side uploaded its device keys", not alice.should_upload_keys and not bob.should_upload_keys)

            created = await alice.room_create(
                name="across servers",
                initial_state=[{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
            )
            check("alice creates an encrypted room on Weft", isinstance(created, RoomCreateResponse), str(created))
            room_id = created.room_id
            invited = await alice.room_invite(room_id, bob.user_id)
            check("alice invites bob of Synapse", isinstance(invited, RoomInviteResponse), str(invited))
            invited = await sync_until(bob, lambda r: room_id in r.rooms.invite, "bob's invite", seconds=60)
            check("bob's Synapse receives the invite", invited is not None)
            joined = await bob.join(room_id)
            check("bob joins through Weft", isinstance(joined, JoinResponse), str(joined))
            await sync_until(bob, lambda r: room_id in r.rooms.join, "bob's join", seconds=60)
            seen = await sync_until(alice, lambda r: bob.user_id in alice.rooms[room_id].users, "alice seeing bob", seconds=60)
            check("alice sees bob joined", seen is not None)

            def decrypted(body):
                return lambda r: any(isinstance(e, RoomMessageText) and e.body == body for e in timeline(r, room_id))

            undecryptable = []

            def sees(body):
                def found(r):
                    undecryptable.extend(e for e in timeline(r, room_id) if isinstance(e, MegolmEvent))
                    return decrypted(body)(r)

                return found

            # Alice's Weft fetches bob's devices and claims a one-time key from Synapse.
            sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hello from Weft"}, ignore_unverified_devices=True)
            check("alice sends an encrypted message", isinstance(sent, RoomSendResponse), str(sent))
            check("bob's device reached alice over federation", bool(alice.device_store[bob.user_id]), str(list(alice.device_store.users)))
            got = await sync_until(bob, sees("hello from Weft"), "bob decrypting alice's message", seconds=60)
            check("bob (Synapse) decrypts alice's message (Weft)", got is not None, f"undecryptable: {len(undecryptable)}")

            reply = await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hello from Synapse"}, ignore_unverified_devices=True)
            check("bob replies encrypted", isinstance(reply, RoomSendResponse), str(reply))
            check("alice's device reached bob over federation", bool(bob.device_store[alice.user_id]), str(list(bob.device_store.users)))
            undecryptable.clear()
            got = await sync_until(alice, sees("hello from Synapse"), "alice decrypting bob's reply", seconds=60)
            check("alice (Weft) decrypts bob's reply (Synapse)", got is not None, f"undecryptable: {len(undecryptable)}")

            # Bob's second device: Synapse sends m.device_list_update, Weft names bob in device_lists.changed.
            bob2 = await e2e_client_login(synapse, bob.user_id, password, bob2_store)
            await bob2.sync(timeout=0)
            changed = await sync_until(
                alice,
                lambda r: bob.user_id in r.device_list.changed and bob2.device_id in alice.device_store[bob.user_id],
                "bob's new device in alice's device list",
                seconds=60,
            )
            check("alice's /sync names bob's new device and her client finds it", changed is not None, str(list(alice.device_store[bob.user_id])))
            # A new device means a new Megolm session, shared with it too.
            alice.invalidate_outbound_session(room_id)
            sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "for both of bob's devices"}, ignore_unverified_devices=True)
            check("alice sends to bob's two devices", isinstance(sent, RoomSendResponse), str(sent))
            undecryptable.clear()
            got = await sync_until(bob2, sees("for both of bob's devices"), "bob's second device decrypting", seconds=60)
            check("bob's second device decrypts alice's message", got is not None, f"undecryptable: {len(undecryptable)}")

            # And the other way: alice's second device, announced by Weft to Synapse.
            alice2 = await e2e_client_login(weft, alice.user_id, password, alice2_store)
            await alice2.sync(timeout=0)
            changed = await sync_until(
                bob,
                lambda r: alice.user_id in r.device_list.changed and alice2.device_id in bob.device_store[alice.user_id],
                "alice's new device in bob's device list",
                seconds=60,
            )
            check("bob's /sync names alice's new device and his client finds it", changed is not None, str(list(bob.device_store[alice.user_id])))
            bob.invalidate_outbound_session(room_id)
            sent = await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "for both of alice's devices"}, ignore_unverified_devices=True)
            check("bob sends to alice's two devices", isinstance(sent, RoomSendResponse), str(sent))
            undecryptable.clear()
            got = await sync_until(alice2, sees("for both of alice's devices"), "alice's second device decrypting", seconds=60)
            check("alice's second device decrypts bob's message", got is not None, f"undecryptable: {len(undecryptable)}")
        finally:
            await alice.close()
            await bob.close()
            for other in (bob2, alice2):
                if other is not None:
                    await other.close()
    return summary("matrix-nio e2ee across servers")


async def e2e_client_login(base, user_id, password, store):
    """Another device of an existing user, with encryption."""
    from nio import AsyncClient, AsyncClientConfig, LoginResponse

    config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
    client = AsyncClient(base, user_id, store_path=store, config=config)
    login = await client.login(password, device_name="second device")
    if not isinstance(login, LoginResponse):
        raise SystemExit(f"could not log {user_id} in again: {login}")
    if client.should_upload_keys:
        await client.keys_upload()
    return client


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    sys.exit(0 if asyncio.run(main(sys.argv[1], sys.argv[2])) else 1)
