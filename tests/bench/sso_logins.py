#!/usr/bin/env python3
"""SSO logins against a running Weft and the test OpenID provider (tests/idp):
the time from the provider's callback reaching Weft to Weft's redirect to the
client (p50, p99: the plugin's code exchange with the provider included), the
provider's own token-endpoint round trip for comparison, and logins per
second sustained by N concurrent browsers. Standard library only.

Start the provider (`WEFT_IDP_NODE_MODULES=... node tests/idp/server.mjs`, it
prints its issuer) and Weft with the reference plugin for it (client
`weft-basic`, `sso.client_whitelist = ["http://client.invalid/"]`, no
`confirm_localpart`: tests/run.sh's matrix-nio SSO step writes such a
configuration), then:

    tests/bench/sso_logins.py http://127.0.0.1:8008 oidc-test 200 4

(200 logins, 4 at a time; every login is alice's, so after the first each is
a returning user's). Needs a quiet machine: the numbers are latencies.
"""
import json, statistics, sys, threading, time, urllib.error, urllib.parse, urllib.request
from http.cookies import SimpleCookie

base, idp_id = sys.argv[1].rstrip("/"), sys.argv[2]
total = int(sys.argv[3]) if len(sys.argv) > 3 else 100
concurrency = int(sys.argv[4]) if len(sys.argv) > 4 else 1
CLIENT = "http://client.invalid/app"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


opener = urllib.request.build_opener(NoRedirect)


class Browser:
    """Cookies per host and port, sent whatever their `Secure` flag (Weft's are Secure; this is plain http)."""

    def __init__(self):
        self.jar = {}

    def request(self, url, form=None):
        origin = urllib.parse.urlsplit(url).netloc
        headers = {}
        if self.jar.get(origin):
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar[origin].items())
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(url, data=data, headers=headers)
        try:
            response = opener.open(request, timeout=60)
        except urllib.error.HTTPError as error:
            response = error
        for value in response.headers.get_all("Set-Cookie") or []:
            cookie = SimpleCookie()
            cookie.load(value)
            for name, morsel in cookie.items():
                if morsel.value and morsel["max-age"] != "0":
                    self.jar.setdefault(origin, {})[name] = morsel.value
                else:
                    self.jar.get(origin, {}).pop(name, None)
        location = response.headers.get("Location")
        response.read()
        return response.status, urllib.parse.urljoin(url, location) if location else None


def login():
    """One login; returns (seconds from callback to redirect, seconds for the whole login)."""
    browser = Browser()
    started = time.perf_counter()
    _, to_provider = browser.request(f"{base}/_matrix/client/v3/login/sso/redirect/{idp_id}?" + urllib.parse.urlencode({"redirectUrl": CLIENT}))
    _, form = browser.request(to_provider)
    browser.request(form)
    _, resume = browser.request(form + "/login", {"username": "alice", "password": "wonderland"})
    _, callback = browser.request(resume)
    at_callback = time.perf_counter()
    status, to_client = browser.request(callback)
    done = time.perf_counter()
    if status != 302 or not (to_client or "").startswith(CLIENT):
        raise RuntimeError(f"the login did not reach the client: {status} {to_client}")
    return done - at_callback, done - started


def provider_round_trip(issuer, samples=50):
    """The provider's token endpoint refusing a made-up code: its own round trip, no Weft in it."""
    times = []
    for _ in range(samples):
        request = urllib.request.Request(
            f"{issuer}/token",
            data=urllib.parse.urlencode({"grant_type": "authorization_code", "code": "none", "redirect_uri": "http://x/"}).encode(),
            headers={"Authorization": "Basic d2VmdC1iYXNpYzp3ZWZ0LWJhc2ljLXNlY3JldA==", "Content-Type": "application/x-www-form-urlencoded"},
        )
        started = time.perf_counter()
        try:
            opener.open(request, timeout=30).read()
        except urllib.error.HTTPError as error:
            error.read()
        times.append(time.perf_counter() - started)
    return times


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


login()  # warm: discovery and keys cached, the user mapped
results, errors, lock = [], [], threading.Lock()
per_thread = total // concurrency


def worker():
    for _ in range(per_thread):
        try:
            measured = login()
            with lock:
                results.append(measured)
        except Exception as error:  # noqa: BLE001 (counted and reported)
            with lock:
                errors.append(str(error))


started = time.perf_counter()
threads = [threading.Thread(target=worker) for _ in range(concurrency)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
elapsed = time.perf_counter() - started

callbacks = [c for c, _ in results]
whole = [w for _, w in results]
_, to_provider = Browser().request(f"{base}/_matrix/client/v3/login/sso/redirect/{idp_id}?" + urllib.parse.urlencode({"redirectUrl": CLIENT}))
split = urllib.parse.urlsplit(to_provider)
provider = provider_round_trip(f"{split.scheme}://{split.netloc}")
print(json.dumps({
    "logins": len(results),
    "errors": len(errors),
    "concurrency": concurrency,
    "logins_per_second": round(len(results) / elapsed, 1),
    "callback_to_redirect_ms": {"p50": round(percentile(callbacks, 50) * 1000, 2), "p99": round(percentile(callbacks, 99) * 1000, 2)},
    "whole_login_ms": {"p50": round(percentile(whole, 50) * 1000, 2), "p99": round(percentile(whole, 99) * 1000, 2)},
    "provider_token_round_trip_ms": {"p50": round(statistics.median(provider) * 1000, 2), "p99": round(percentile(provider, 99) * 1000, 2)},
}, indent=2))
if errors:
    print("first error:", errors[0], file=sys.stderr)
