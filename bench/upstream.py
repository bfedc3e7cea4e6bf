"""The mock upstream (GET /delay?ms=N): every candidate is probed, the cheapest
sound one serves the run, and one that fails is replaced by the next. Also
S4's static bound (nginx-static) and the https upstreams of S2's variants
(nginx-tls). Every upstream counts the connections it accepted."""
import http.client
import os
import re
import time

import procs
from load import measure, wrk
from procs import Server, ServerError

CANDIDATES = ["nginx-lua", "fanout"]  # bench/upstream/<name>/run.sh
MAX_P99_MS = 100  # at 64 clients and ms=0 a sound upstream answers far faster
# Where each upstream says how many connections it accepted: the fanout
# mock's /stats ("connections"), nginx's stub_status ("accepts").
COUNTERS = {"fanout": "/stats", "nginx-lua": "/nginx_status", "nginx-tls": "/nginx_status"}


def accepted(url):
    """The connections the upstream at `url` (its counter) accepted so far,
    this read's own included: exact, and free for the upstream."""
    status, body, _, _ = procs.http_get(url)
    text = body.decode("utf-8", "replace")
    m = re.search(r'"connections":\s*(\d+)', text) or \
        re.search(r"server accepts handled requests\s+(\d+)", text)
    if status != 200 or not m:
        raise ServerError(f"{url}: no count of accepted connections ({status} {text[:100]!r})")
    return int(m.group(1))


def handled(url):
    """The requests the nginx at `url` (its stub_status) handled so far, this
    read's own included."""
    status, body, _, _ = procs.http_get(url)
    m = re.search(r"server accepts handled requests\s+\d+\s+\d+\s+(\d+)",
                  body.decode("utf-8", "replace"))
    if status != 200 or not m:
        raise ServerError(f"{url}: no count of requests ({status} {body[:100]!r})")
    return int(m.group(1))


class Counter:
    """accepted() of one upstream server, for load.measure()."""

    def __init__(self, url):
        self.url = url

    def accepted(self):
        return accepted(self.url)


class RequestCounter(Counter):
    """accepted() and requests() of an nginx upstream, for load.measure()."""

    def requests(self):
        return handled(self.url)


def check(server):
    """The contract: JSON {"value": float in [0,1)} after ms milliseconds."""
    for ms in (0, 50):
        status, body, ctype, secs = procs.get_json(f"{server.url}/delay?ms={ms}")
        value = body.get("value") if isinstance(body, dict) else None
        if status != 200 or not isinstance(value, float) or not 0 <= value < 1:
            raise ServerError(f"/delay?ms={ms} answered {status} {body!r}")
        if "application/json" not in ctype or secs < ms / 1000:
            raise ServerError(f"/delay?ms={ms}: type {ctype!r}, {secs * 1000:.0f} ms")


def start(name, tmp, **env):
    server = Server("upstream", name, tmp, **env)
    try:
        server.wait_ready("/delay?ms=0", timeout=15)
        check(server)
    except ServerError as e:
        server.stop()
        raise ServerError(f"{e}; log: {server.log_tail()}") from None
    return server


def probe(name, tmp, seconds, burst):
    """Capacity and CPU µs per exchange at 64 clients, which it must serve without
    error, then a burst of `burst` clients left mid-delay (as every load ends)
    that it must survive."""
    try:
        server = start(name, tmp)
    except ServerError as e:
        return None, {"name": name, "error": str(e)}
    unsound = None
    try:
        res = measure(server, "/delay?ms=0", 64, seconds)
        # wrk counts no error for a request never answered: count the answers too.
        enough = 64 * seconds * (1000 / MAX_P99_MS) / 2
        if res["errors"] or res["requests"] < enough or (res["p99"] or 1e9) > MAX_P99_MS:
            unsound = res
            raise ServerError(f"unsound at 64 clients: {res['errors']} errors, "
                              f"p99 {res['p99']} ms, {res['rps']:.0f} req/s")
        if burst:
            wrk(server.url + "/delay?ms=500", burst, 1)
            time.sleep(0.3)
            server.check_alive()
            check(server)
    except (ServerError, RuntimeError) as e:
        server.stop()
        # Its CPU per exchange still holds as a figure (S4's Lua-mock bound).
        cost = {k: unsound[k] for k in ("cpu_us", "user_us")} if unsound else {}
        return None, {"name": name, "error": f"{e}; log: {server.log_tail()}", **cost}
    res["name"] = name
    print(f"upstream {name}: {res['rps']:.0f} req/s, {res['cpu_us']:.1f} µs CPU per exchange",
          flush=True)
    return server, res


class Upstream:
    """The upstream in use; ranked holds the sound candidates, cheapest first."""

    def __init__(self, ranked, server, tmp):
        self.ranked, self.server, self.tmp = ranked, server, tmp
        self.name, self.failures = ranked[0], []

    def accepted(self):
        return accepted(self.server.url + COUNTERS[self.name])

    def healthy(self):
        """Alive, and answers twice on one keep-alive connection, as pools use it."""
        if self.server.proc.poll() is not None:
            return False
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=2)
        try:
            for _ in range(2):
                conn.request("GET", "/delay?ms=0")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    return False
            return True
        except OSError:
            return False
        finally:
            conn.close()

    def ensure(self):
        """The URL of a healthy upstream."""
        if not self.healthy():
            self.replace("found dead or hung")
        return self.server.url

    def replace(self, why):
        """Go on with the next sound candidate (the same one if it is the last)."""
        why = f"{self.name} {why}: {self.server.log_tail()}"
        self.failures.append(why)
        print(f"upstream {why}", flush=True)
        self.server.stop()
        if len(self.ranked) > 1:
            self.ranked.remove(self.name)
        self.name = self.ranked[0]
        try:
            self.server = start(self.name, self.tmp)
        except ServerError as e:
            raise SystemExit(f"bench: no upstream left: {e}")
        print(f"upstream in use: {self.name} at {self.server.url}", flush=True)


def s1_floor(upstream, seconds, warm):
    """S1's floor on this machine: the upstream alone under S1's 200 clients,
    each waiting for the slowest call (/delay?ms=200), with the same load
    generator and the same warm-up as the stacks get. No stack in front of
    it can answer faster than this."""
    return measure(upstream.server, "/delay?ms=200", 200, seconds, timeout=30, warm=warm)


def choose(tmp, seconds, burst):
    """Probe every candidate; keep the cheapest per exchange running."""
    probed = [probe(name, tmp, seconds, burst) for name in CANDIDATES]
    for _, res in probed:
        if "error" in res:
            print(f"upstream {res['name']}: not used: {res['error']}", flush=True)
    ok = sorted(((r["cpu_us"], r["name"], s) for s, r in probed if s), key=lambda t: t[0])
    if not ok:
        raise SystemExit("bench: no upstream could run")
    for _, _, server in ok[1:]:
        server.stop()
    print(f"upstream in use: {ok[0][1]} at {ok[0][2].url}", flush=True)
    return Upstream([name for _, name, _ in ok], ok[0][2], tmp), [r for _, r in probed]


def static_bound(tmp, seconds, warm):
    """S4's bound from the cheapest server there is: nginx answering a fixed
    {"value": 0.5} (no Lua, no access log) to S2's 64 clients; CPU µs per
    exchange, measured as every stack's is. None with the reason if it
    cannot run."""
    try:
        server = Server("upstream", "nginx-static", tmp)
        with server:
            server.wait_ready("/delay?ms=0", timeout=15)
            res = measure(server, "/delay?ms=0", 64, seconds, warm=warm)
    except (ServerError, RuntimeError) as e:
        print(f"upstream nginx-static: not run: {e}", flush=True)
        return {"name": "nginx-static", "error": str(e)}
    res["name"] = "nginx-static"
    print(f"upstream nginx-static (S4 bound): {res['rps']:.0f} req/s, "
          f"{res['cpu_us']:.1f} µs CPU per exchange", flush=True)
    return res


def start_tail(tmp, tail_p, tail_ms):
    """S6's upstream: /delay?ms=N takes N ms, and tail_ms more for a share
    tail_p of requests, each drawn on its own: (server, counter)."""
    server = start("nginx-tail", tmp, TAIL_P=tail_p, TAIL_MS=tail_ms)
    return server, RequestCounter(server.url + "/nginx_status")


def start_tls(tmp, http2):
    """The Lua mock over https (HTTP/2 on or off), with its CA file, for the
    https variants of S2: (server, its https URL, CA file, counter)."""
    status_port = procs.free_port()
    server = Server("upstream", "nginx-tls", tmp, STATUS_PORT=status_port,
                    HTTP2=1 if http2 else 0)
    counter = Counter(f"http://127.0.0.1:{status_port}/nginx_status")
    deadline = time.monotonic() + 15
    while True:  # ready once it counts: the TLS side is checked through the peers
        server.check_alive()
        try:
            counter.accepted()
            break
        except ServerError:
            if time.monotonic() > deadline:
                server.stop()
                raise ServerError(f"nginx-tls: no answer; {server.log_tail()}") from None
            time.sleep(0.1)
    url = f"https://127.0.0.1:{server.port}"
    return server, url, os.path.join(server.dir, "ca.crt"), counter
