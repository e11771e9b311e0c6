#!/usr/bin/env python3
"""SSO logins against a running Weft and the test OpenID provider (tests/idp):
the time from the provider's callback reaching Weft to Weft's redirect to the
client (the plugin's code exchange with the provider included), what Weft
and its plugin add to it, and logins per second sustained by N concurrent
browsers. Standard library only.

Added by Weft and the plugin, per login: callback → redirect minus the time
Weft's HTTP client spent on the plugin's requests to the provider during that
callback (the token request; discovery and keys are cached after the first
login), read from Weft's own `weft_plugin_http_request_duration_seconds`
(its `_sum` on /metrics before and after the callback, so one login at a
time only); then p50 and p99 over the logins. `added_in_weft_ms` is the
same without the client's part: Weft's own timer of the callback request
(`weft_http_request_duration_seconds_sum{group="sso"}`, differenced the
same way) minus those provider requests. The same scrape gives each
login's steps (`weft_sso_callback_step_seconds{step}`) and the plugin's
`complete` call. With N > 1 at a time the scrapes cannot be told apart per
login: the run's mean is reported instead. For comparison, the provider's
token endpoint timed directly from here (refusing a made-up code).

Start the provider (`WEFT_IDP_NODE_MODULES=... node tests/idp/server.mjs`, it
prints its issuer) and Weft with the reference plugin for it (client
`weft-basic`, `sso.client_whitelist = ["http://client.invalid/"]`, no
`confirm_localpart`, `enable_metrics = true` and the `metrics` resource on
the listener: tests/bench/sso.sh writes such a configuration), then:

    tests/bench/sso_logins.py http://127.0.0.1:8008 oidc-test 200 4

(200 logins, 4 at a time; every login is alice's, so after the first each is
a returning user's). Needs a quiet machine: the numbers are latencies.
"""
import json, re, statistics, sys, threading, time, urllib.error, urllib.parse, urllib.request
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


HTTP = "weft_plugin_http_request_duration_seconds"
SERVED = 'weft_http_request_duration_seconds{group="sso"}'
STEP = 'weft_sso_callback_step_seconds{step="%s"}'
STEPS = ("take_attempt", "plugin", "finish")
COMPLETE = "weft_plugin_call_duration_seconds"
SAMPLE = re.compile(r"^(\w+)_sum(\{[^}]*\})? (\S+)$")


def sums():
    """Every histogram's `_sum` on Weft's /metrics, by name and labels."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            found[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return found


def spent(before, after):
    """Seconds each timed part took between two scrapes."""
    delta = lambda key: after.get(key, 0.0) - before.get(key, 0.0)  # noqa: E731
    parts = {"provider_http": delta(HTTP), "served": delta(SERVED), "complete_call": sum(delta(k) for k in after if k.startswith(COMPLETE) and 'call="complete"' in k)}
    parts.update({step: delta(STEP % step) for step in STEPS})
    return parts


def login(scrape):
    """One login: seconds from callback to redirect, for the whole login, and
    (with `scrape`, one login at a time) the timed parts of the callback."""
    browser = Browser()
    started = time.perf_counter()
    _, to_provider = browser.request(f"{base}/_matrix/client/v3/login/sso/redirect/{idp_id}?" + urllib.parse.urlencode({"redirectUrl": CLIENT}))
    _, form = browser.request(to_provider)
    browser.request(form)
    _, resume = browser.request(form + "/login", {"username": "alice", "password": "wonderland"})
    _, callback = browser.request(resume)
    before = sums() if scrape else None
    at_callback = time.perf_counter()
    status, to_client = browser.request(callback)
    done = time.perf_counter()
    parts = spent(before, sums()) if scrape else None
    if status != 302 or not (to_client or "").startswith(CLIENT):
        raise RuntimeError(f"the login did not reach the client: {status} {to_client}")
    # The scrape before the callback is not part of the whole login.
    return done - at_callback, done - started, parts


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


def ms(values):
    return {"p50": round(percentile(values, 50) * 1000, 2), "p99": round(percentile(values, 99) * 1000, 2), "max": round(max(values) * 1000, 2)}


scrape = concurrency == 1
login(False)  # warm: discovery and keys cached, the user mapped
results, errors, lock = [], [], threading.Lock()
per_thread = total // concurrency
totals_before = sums()


def worker():
    for _ in range(per_thread):
        try:
            measured = login(scrape)
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
totals = spent(totals_before, sums())

callbacks = [c for c, _, _ in results]
whole = [w for _, w, _ in results]
_, to_provider = Browser().request(f"{base}/_matrix/client/v3/login/sso/redirect/{idp_id}?" + urllib.parse.urlencode({"redirectUrl": CLIENT}))
split = urllib.parse.urlsplit(to_provider)
provider = provider_round_trip(f"{split.scheme}://{split.netloc}")
report = {
    "logins": len(results),
    "errors": len(errors),
    "concurrency": concurrency,
    "logins_per_second": round(len(results) / elapsed, 1),
    "callback_to_redirect_ms": ms(callbacks),
    "whole_login_ms": ms(whole),
    "provider_token_endpoint_direct_ms": ms(provider),
}
if scrape:
    parts = [p for _, _, p in results]
    report["added_by_weft_and_plugin_ms"] = ms([c - p["provider_http"] for c, _, p in results])
    # Weft's own time for the callback (its SSO routes' request timer, from
    # the request handed to the router to the response), minus the same
    # provider requests: what the host and plugin add without this client's
    # connection set-up and Python around them.
    report["added_in_weft_ms"] = ms([p["served"] - p["provider_http"] for p in parts])
    report["provider_http_in_callback_ms"] = ms([p["provider_http"] for p in parts])
    report["steps_ms"] = {step: ms([p[step] for p in parts]) for step in STEPS}
    report["steps_ms"]["plugin_without_http"] = ms([p["plugin"] - p["provider_http"] for p in parts])
    report["steps_ms"]["complete_call"] = ms([p["complete_call"] for p in parts])
else:
    count = max(len(results), 1)
    report["added_by_weft_and_plugin_mean_ms"] = round((sum(callbacks) - totals["provider_http"]) / count * 1000, 2)
    report["provider_http_mean_ms"] = round(totals["provider_http"] / count * 1000, 2)
print(json.dumps(report, indent=2))
if scrape:
    # The slowest logins, part by part: whether Weft's steps were slow on
    # their own or together with the provider's answer.
    print("slowest logins, ms: Weft's own, take_attempt, plugin without HTTP, provider HTTP, finish", file=sys.stderr)
    slowest = sorted(parts, key=lambda p: p["served"] - p["provider_http"], reverse=True)[:8]
    for p in slowest:
        row = (p["served"] - p["provider_http"], p["take_attempt"], p["plugin"] - p["provider_http"], p["provider_http"], p["finish"])
        print("  " + " ".join("%.2f" % (x * 1000) for x in row), file=sys.stderr)
if errors:
    print("first error:", errors[0], file=sys.stderr)
