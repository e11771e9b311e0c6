#!/usr/bin/env python3
"""Times single requests whose work grows with a list in the body: createRoom
with N `initial_state` entries, `/keys/query` and `/keys/claim` for N users.
Needs a running server with open registration and its limits lifted (or the
caps in force: then an over-cap size answers 400 quickly). Standard library only.

    tests/bench/heavy_requests.py http://127.0.0.1:18800 2000 4000 8000
"""
import json, sys, time, urllib.error, urllib.request, uuid

base = sys.argv[1].rstrip("/")
sizes = [int(n) for n in sys.argv[2:]] or [2000, 4000]


def call(method, path, token=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            status, reply = response.status, json.load(response)
    except urllib.error.HTTPError as error:
        status, reply = error.code, json.load(error)
    return status, reply, time.monotonic() - started


localpart = "bench" + uuid.uuid4().hex[:8]
status, reply, _ = call("POST", "/_matrix/client/v3/register", body={"username": localpart, "password": "pw", "auth": {"type": "m.login.dummy"}})
assert status == 200, reply
token, server = reply["access_token"], reply["user_id"].split(":", 1)[1]

for n in sizes:
    state = [{"type": "org.example.bench", "state_key": str(i), "content": {"i": i}} for i in range(n)]
    status, reply, took = call("POST", "/_matrix/client/v3/createRoom", token, {"initial_state": state})
    print(f"createRoom initial_state={n}: {status} {took:.2f} s {reply.get('errcode', '')}")
for n in sizes:
    users = {f"@nobody{i}:{server}": [] for i in range(n)}
    status, reply, took = call("POST", "/_matrix/client/v3/keys/query", token, {"device_keys": users})
    print(f"keys/query users={n}: {status} {took:.2f} s {reply.get('errcode', '')}")
    claims = {f"@nobody{i}:{server}": {"DEVICE": "signed_curve25519"} for i in range(n)}
    status, reply, took = call("POST", "/_matrix/client/v3/keys/claim", token, {"one_time_keys": claims})
    print(f"keys/claim users={n}: {status} {took:.2f} s {reply.get('errcode', '')}")
