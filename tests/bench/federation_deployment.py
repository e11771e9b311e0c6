"""The federation benchmark's deployment side and its CPU accounting
(issue 27): what `federation.py` needs to run the example deployment
(`config/workers/`, under `weft supervise`) as one server of a pair, and to
count the CPU time each server's processes spend in a measured window.

The example's files are copied as they are, with only what a benchmark
must change rewritten, as host/tests/federation/example.rs does for its
test: every port to a free one (the router's TLS port becomes the server
name `localhost:<port>`), the test CA's leaf where the example keeps its
self-signed certificate, and a layer file (`bench-federation.toml`, read
after `shared.toml`) with the database, trust of the test CA and of
loopback, the monolith's lifted rate limits and its log level. The pools
stay the example's (2 to 10 connections a process). Redis is the one on
127.0.0.1:6379; its channels are named after the server name, which is new
every run.

CPU time is read from /proc: utime + stime of every process of a server
(the monolith, or the supervisor and all its descendants), of the
PostgreSQL backends connected to the server's database, and, for the
deployment, of redis-server (which only the deployment uses here).
"""

import os
import re
import shutil
import socket
import subprocess
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLE = os.path.join(REPO, "config", "workers")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RENUMBERED = ("port", "client_port", "tls_port")
# The example's PostgreSQL and Redis ports are the local servers' own.
KEPT_PORTS = (5432, 6379)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _renumber(text, ports):
    """`text` with every `port`, `client_port` and `tls_port` value moved to a free port, the same one for the same old port."""
    lines = []
    for line in text.splitlines():
        key, sep, value = line.partition(" = ")
        words = value.split()
        if sep and key.strip() in RENUMBERED and words and words[0].isdigit() and int(words[0]) not in KEPT_PORTS:
            old = int(words[0])
            new = ports.setdefault(old, _free_port())
            line = line.replace(str(old), str(new), 1)
        lines.append(line)
    return "\n".join(lines) + "\n"


def write_example(data, ca, database, log_level, limits):
    """The example deployment's files under `data`, rewritten; the router's client URL and the server name."""
    os.makedirs(os.path.join(data, "workers"))
    ports = {}
    names = ["shared.toml", "main.toml"] + [f"workers/{name}" for name in sorted(os.listdir(os.path.join(EXAMPLE, "workers")))]
    for name in names:
        with open(os.path.join(EXAMPLE, name)) as source, open(os.path.join(data, name), "w") as target:
            target.write(_renumber(source.read(), ports))
    router, tls = ports[8008], ports[8448]
    server_name = f"localhost:{tls}"
    shutil.copy(ca["chain"], os.path.join(data, "localhost.tls.crt"))
    shutil.copy(ca["key"], os.path.join(data, "localhost.tls.key"))
    with open(os.path.join(data, "bench-federation.toml"), "w") as f:
        f.write(
            f'server_name = "{server_name}"\npublic_baseurl = "http://127.0.0.1:{router}/"\n'
            f'federation_custom_ca_list = ["{ca["ca"]}"]\nip_range_whitelist = ["127.0.0.0/8", "::1"]\ntrusted_key_servers = []\n'
            f"{limits}"
            f'[logging]\nlevel = "{log_level}"\n'
            f'[database.args]\ndbname = "{database}"\n'
        )
    return f"http://127.0.0.1:{router}", server_name, router, tls


def start_supervisor(binary, data):
    """`weft supervise` over the files `write_example` wrote; its run directory is `data/run`."""
    log = open(os.path.join(data, "supervise.log"), "wb")
    files = ["-c", os.path.join(data, "shared.toml"), "-c", os.path.join(data, "bench-federation.toml")]
    return subprocess.Popen([binary, "supervise", *files, "--run-dir", os.path.join(data, "run")], cwd=data, stdout=log, stderr=log)


def wait_until_served(base, process, seconds=240):
    """Until `base` answers `/_matrix/client/versions` (the router starts last, after every worker is ready)."""
    import urllib.request

    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the supervisor exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/_matrix/client/versions", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("the example deployment did not start")


# CPU accounting.


def _stat(pid):
    """(parent pid, CPU ticks) of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _name(pid):
    """A process's name for the breakdown: `router`, `supervisor`, or the stem of the last config file of `weft run`."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "gone"
    if len(argv) > 1 and argv[1] in ("router", "supervise"):
        return {"router": "router", "supervise": "supervisor"}[argv[1]]
    configs = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-c"]
    return os.path.splitext(os.path.basename(configs[-1]))[0] if configs else os.path.basename(argv[0]) if argv else "?"


def _descendants(root):
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat:
                parents.setdefault(stat[0], []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def _backends(database):
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}'"],
                         check=True, capture_output=True, text=True).stdout
    return [int(line) for line in out.split()]


def _redis():
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == "redis-server":
                        return [int(entry)]
            except OSError:
                pass
    return []


def cpu_snapshot(server):
    """{(part, pid): CPU ticks} of every process counted for `server` now."""
    counted = [(_name(pid), pid) for pid in _descendants(server.process.pid)]
    counted += [("PostgreSQL", pid) for pid in _backends(server.database)]
    if server.kind == "deployment":
        counted += [("Redis", pid) for pid in _redis()]
    snapshot = {}
    for part, pid in counted:
        stat = _stat(pid)
        if stat:
            snapshot[(part, pid)] = stat[1]
    return snapshot


def cpu_spent(before, after):
    """CPU seconds by part between two snapshots (a process started between them counts from its start; one that ended is lost)."""
    spent = {}
    for (part, pid), ticks in after.items():
        spent[part] = spent.get(part, 0.0) + (ticks - before.get((part, pid), 0)) / CLOCK_TICKS
    return spent


def weft_only(spent):
    return sum(seconds for part, seconds in spent.items() if part not in ("PostgreSQL", "Redis"))


def describe(spent, events):
    """`spent` per event, in ms: Weft's processes, then with PostgreSQL (and Redis), then each part."""
    if not events:
        return "no event delivered"
    per = lambda seconds: seconds * 1000 / events  # noqa: E731
    parts = ", ".join(f"{part} {per(seconds):.2f}" for part, seconds in sorted(spent.items(), key=lambda item: -item[1]) if seconds > 0)
    return f"Weft {per(weft_only(spent)):.2f} ms/event, all {per(sum(spent.values())):.2f} ms/event ({parts})"


def logs_with_errors(data):
    """The names of the deployment's processes whose logs hold an ERROR line (warnings are expected)."""
    run = os.path.join(data, "run")
    bad = []
    for name in sorted(os.listdir(run)) if os.path.isdir(run) else []:
        if name.endswith(".log"):
            with open(os.path.join(run, name), errors="replace") as f:
                if re.search(r"\bERROR\b", f.read()):
                    bad.append(name[:-4])
    return bad
