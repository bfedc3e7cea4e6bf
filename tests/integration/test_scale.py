"""Beyond one machine, with real parts: a redis-server and an HAProxy with
health checks in front of 3 fanout instances, all on loopback ports the
test picks, in temporary directories, stopped at the end. A session
written through one instance is read through the others; a rate limit
holds across them; kill -9 of one instance under load fails only its
requests in flight, and HAProxy stops sending to it; Redis stopped under
load gets the answers the declared policies say, and all recovers when it
is back; a response cached by one instance is served by the others (the
cache's shared tier), the mock upstream seeing 1 request."""
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request

import harness
import redisd

REDISAPP = os.environ.get("FANOUT_REDISAPP", "build/tests/redisapp")
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

HAPROXY_CFG = """global
    maxconn 512
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    retries 2
    option redispatch
    # A new connection per request: one refused by a dead instance is sent
    # to another, where a kept-alive one would fail the request it carries.
    http-reuse never
frontend web
    bind 127.0.0.1:{port}
    option forwardfor
    default_backend fanout
backend fanout
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server inter 100ms fall 2 rise 2
{servers}
listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"""


class HAProxy:
    def __init__(self, backends):
        self.dir = tempfile.mkdtemp(prefix="fanout-haproxy-")
        self.port, self.stats_port = redisd.free_port(), redisd.free_port()
        servers = "\n".join(f"    server s{i} 127.0.0.1:{p} check" for i, p in enumerate(backends))
        cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(HAPROXY_CFG.format(port=self.port, stats_port=self.stats_port,
                                       servers=servers))
        self.proc = redisd.spawn([HAPROXY, "-db", "-f", cfg])

    def status(self):
        """Server name -> UP/DOWN, from the stats page's CSV."""
        url = f"http://127.0.0.1:{self.stats_port}/stats;csv"
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            cols = line.split(",")
            if len(cols) > 17 and cols[0] == "fanout" and cols[1] not in ("FRONTEND", "BACKEND"):
                out[cols[1]] = cols[17].split()[0]
        return out

    def wait(self, want, within=10):
        deadline = time.monotonic() + within
        while True:
            try:
                got = self.status()
                if got == want:
                    return
            except OSError:
                got = None
            if time.monotonic() > deadline:
                raise AssertionError(f"haproxy: {got}, expected {want}")
            time.sleep(0.05)

    def close(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def instance(redis):
    return harness.Server([
        REDISAPP, "--workers", "0", "--redis", redis.url(), "--trusted-proxies", "127.0.0.1",
        "--set", "redis.prefix=scale:", "--set", "redis.command_timeout_ms=300",
        "--set", "redis.connect_timeout_ms=300",
        "--set", "redis.backoff_max_ms=200",
        "--set", 'session.secrets=["scale-secret"]', "--set", "session.store=redis",
        "--set", "session.redis_down=503",
        "--set", "ratelimit.rate=0.2", "--set", "ratelimit.burst=6",
        "--set", "ratelimit.key=header:X-Api-Key", "--set", 'ratelimit.paths=["/api/ping"]',
        "--set", "ratelimit.redis_down=allow"], "instance")


def get(port, path, cookie=None, headers=(), timeout=10):
    h = list(headers) + ([("Cookie", cookie)] if cookie else [])
    return harness.request(port, "GET", path, headers=h, timeout=timeout)


class Load:
    """`threads` clients sending `path` through the balancer until stopped
    (at most `limit` seconds), each request recorded as (start, end, status
    or the exception's name, pid)."""

    def __init__(self, port, path, threads=6, cookie=None, limit=15):
        self.port, self.path, self.cookie, self.limit = port, path, cookie, limit
        self.results, self.stop_event = [], threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def run(self):
        end = time.monotonic() + self.limit
        while not self.stop_event.is_set() and time.monotonic() < end:
            t0 = time.monotonic()
            try:
                r = get(self.port, self.path, self.cookie)
                body = r.json() if r.body.startswith(b"{") else {}
                self.results.append((t0, time.monotonic(), r.status, body))
            except Exception as e:  # a connection cut: recorded, not raised
                self.results.append((t0, time.monotonic(), type(e).__name__, {}))

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join()
        return self.results


class Scale(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis, cls.instances, cls.haproxy = redisd.Redis(), [], None
        cls.mock = harness.mock()
        try:
            cls.instances = [instance(cls.redis) for _ in range(3)]
            cls.haproxy = HAProxy([i.port for i in cls.instances])
            cls.haproxy.wait({"s0": "UP", "s1": "UP", "s2": "UP"})
        except BaseException:
            cls.tearDownClass()
            raise
        cls.port = cls.haproxy.port

    @classmethod
    def tearDownClass(cls):
        if cls.haproxy:
            cls.haproxy.close()
        for i in cls.instances:
            if i.proc.poll() is None:
                i.stop()
            else:
                i.stop(check=False)
        cls.redis.close()
        cls.mock.stop()

    def pids(self):
        return {i.proc.pid for i in self.instances if i.proc.poll() is None}

    def test_1_a_session_written_through_one_instance_is_read_through_the_others(self):
        r = get(self.port, "/session/set?" + urllib.parse.urlencode({"key": "user", "value": "ann"}))
        self.assertEqual(r.status, 200)
        writer = r.json()["pid"]
        cookie = r.header("Set-Cookie").split(";", 1)[0]
        readers = set()
        for _ in range(6):
            j = get(self.port, "/session/get?key=user", cookie).json()
            self.assertEqual(j["value"], "ann")
            readers.add(j["pid"])
        self.assertEqual(readers, self.pids())  # every instance, the writer's and two others
        self.assertIn(writer, readers)

    def test_2_a_rate_limit_holds_across_the_instances(self):
        h = [("X-Api-Key", "client-2")]
        results = [get(self.port, "/api/ping", headers=h) for _ in range(12)]
        statuses = [r.status for r in results]
        # 6 in all, not 6 per instance (18): the bucket is shared.
        self.assertEqual(statuses.count(200), 6, statuses)
        self.assertEqual(statuses.count(429), 6, statuses)
        served = {r.json()["pid"] for r in results if r.status == 200}
        self.assertEqual(len(served), 3)
        self.assertTrue(all(r.header("Retry-After") for r in results if r.status == 429))

    def test_2b_a_response_cached_by_one_instance_is_served_by_the_others(self):
        url = f"http://127.0.0.1:{self.mock.port}/scale-cached"
        first = get(self.port, "/api/cached?url=" + urllib.parse.quote(url, safe="")).json()
        self.assertEqual((first["error"], first["status"], first["cached"]), ("ok", 200, False))
        # The first instance's SET is not waited for: wait for its key.
        deadline = time.monotonic() + 5
        while not self.redis.command("KEYS", "scale:cache:*") and time.monotonic() < deadline:
            time.sleep(0.02)
        rest = [get(self.port, "/api/cached?url=" + urllib.parse.quote(url, safe="")).json()
                for _ in range(5)]
        self.assertEqual({r["error"] for r in rest}, {"ok"})
        self.assertTrue(all(r["cached"] for r in rest), rest)
        self.assertEqual({r["pid"] for r in rest} | {first["pid"]}, self.pids())  # all three
        paths = harness.get_json(self.mock.port, "/stats")[1]["paths"]
        self.assertEqual(paths.get("/scale-cached"), 1)

    def test_3_redis_stopped_under_load_answers_by_the_policies_and_recovers(self):
        r = get(self.port, "/session/set?" + urllib.parse.urlencode({"key": "user", "value": "bo"}))
        cookie = r.header("Set-Cookie").split(";", 1)[0]
        sessions = Load(self.port, "/session/get?key=user", threads=3, cookie=cookie)
        pings = Load(self.port, "/api/ping", threads=2)  # no X-Api-Key: limited by address
        time.sleep(0.3)
        self.redis.pause()
        t_stop = time.monotonic()
        time.sleep(1.2)
        self.redis.resume()
        t_back = time.monotonic()
        time.sleep(1.2)
        s_res, p_res = sessions.stop(), pings.stop()
        for start, end, status, body in s_res:
            self.assertIn(status, (200, 503), (start, status))
            if status == 200:
                self.assertEqual(body["value"], "bo")
            else:
                self.assertEqual(body["error"], "session store unavailable")
        # Answered while Redis was away (a request started just before it
        # came back may be answered after, by a Redis that is back).
        during = [s for t0, end, s, _ in s_res if t_stop + 0.4 < t0 and end < t_back]
        after = [s for t0, _, s, _ in s_res if t0 > t_back + 0.6]
        self.assertTrue(during and set(during) == {503}, during)
        self.assertTrue(after and set(after) == {200}, after)
        # The rate limiter's policy is "allow": served while Redis is away
        # (the shared bucket of this address is spent long before).
        p_during = [s for t0, end, s, _ in p_res if t_stop + 0.4 < t0 and end < t_back]
        self.assertTrue(p_during and set(p_during) == {200}, p_during)
        self.assertTrue({s for _, _, s, _ in p_res} <= {200, 429})
        for i in self.instances:
            i.wait_log(r"redis .*: connected again")

    def test_4_kill_9_of_one_instance_under_load_fails_only_its_requests_in_flight(self):
        victim = self.instances[1]
        load = Load(self.port, "/api/slow?ms=200", threads=6)
        time.sleep(0.6)
        t_kill = time.monotonic()
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        t_dead = time.monotonic()  # reaped: its sockets are closed
        self.haproxy.wait({"s0": "UP", "s1": "DOWN", "s2": "UP"}, within=5)
        t_down = time.monotonic()
        time.sleep(0.8)
        results = load.stop()
        failed = [(t0, end, s) for t0, end, s, _ in results if s != 200]
        # Only requests in flight at the kill failed: started before the
        # process was gone (a dying process's listener still takes
        # connections, then resets them), ended after the kill, and no more
        # than the clients sending at once.
        for t0, end, s in failed:
            self.assertLess(t0, t_dead, failed)
            self.assertGreater(end, t_kill, failed)
        self.assertLessEqual(len(failed), 6)
        after = [body["pid"] for t0, _, s, body in results if t0 > t_down]
        self.assertTrue(after)
        self.assertNotIn(victim.proc.pid, after)
        self.assertEqual(len([r for r in results if r[2] == 200 and r[0] < t_kill]) > 0, True)


if __name__ == "__main__":
    harness.main()
