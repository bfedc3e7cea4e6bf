"""The response cache's shared tier, with real parts: a redis-server, the
mock upstream and two testapp instances sharing the Redis, each with its
own worker cache (L1) in front. A response cached through one instance is
served by the other and the mock sees 1 request; an entry over
cache.shared_max_entry_bytes stays in L1; the Redis entry expires with the
entry; Redis stopped: calls are still answered (a miss, from the upstream),
counted and logged at most once a second, and the tier works again when
Redis is back; a call whose client leaves while its Redis lookup waits is
cancelled and never answered late; a worker stopped with lookups waiting
leaks nothing (the sanitizer build checks)."""
import signal
import time
import unittest
from urllib.parse import quote

import harness
import redisd
from harness import get_json

CAP = 4096              # cache.shared_max_entry_bytes of the instances
COMMAND_TIMEOUT = 1.0   # redis.command_timeout_ms, in seconds
DOWN_LINE = "the shared tier in Redis failed"


def fetch_path(url, **params):
    params["url"] = url
    return "/fetch?" + "&".join(f"{k}={quote(str(v), safe='')}" for k, v in params.items())


def instance(redis):
    return harness.testapp(
        "--redis", redis.url(), "--set", "redis.prefix=l2test:",
        "--set", f"cache.shared_max_entry_bytes={CAP}",
        "--set", f"redis.command_timeout_ms={int(COMMAND_TIMEOUT * 1000)}",
        "--set", "redis.connect_timeout_ms=300", "--set", "redis.backoff_max_ms=100")


class SharedCache(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = redisd.Redis()
        cls.mock = harness.mock()
        cls.a = instance(cls.redis)
        cls.b = instance(cls.redis)

    @classmethod
    def tearDownClass(cls):
        for s in (cls.b, cls.mock):
            s.stop()
        if cls.a.proc.poll() is None:
            cls.a.stop()
        cls.redis.close()

    def setUp(self):
        self.path = f"/{self._testMethodName}"

    def url(self, suffix="", **q):
        query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in q.items())
        return f"http://127.0.0.1:{self.mock.port}{self.path}{suffix}" + ("?" + query if query else "")

    def fetch(self, app, url, **params):
        status, j = get_json(app.port, fetch_path(url, cache=1, **params))
        self.assertEqual(status, 200, j)
        self.assertEqual(j["error"], "ok", j)
        return j

    def upstream_count(self, suffix=""):
        return get_json(self.mock.port, "/stats")[1]["paths"].get(self.path + suffix, 0)

    def counters(self, app):
        return get_json(app.port, "/cache/counters")[1]

    def keys(self):
        return self.redis.command("KEYS", "l2test:cache:*") or []

    def wait_for(self, what, within=5.0):
        deadline = time.monotonic() + within
        while not what() and time.monotonic() < deadline:
            time.sleep(0.02)
        return what()

    def test_1_a_response_cached_by_one_instance_is_served_by_the_other(self):
        before_a, before_b = self.counters(self.a), self.counters(self.b)
        first = self.fetch(self.a, self.url(), ttl=30000)
        self.assertFalse(first["flags"]["cached"])
        self.assertTrue(self.wait_for(lambda: self.counters(self.a)["shared_stores"] >
                                      before_a["shared_stores"]))
        self.assertTrue(self.wait_for(lambda: any(self.path.encode() in k for k in self.keys())))
        second = self.fetch(self.b, self.url(), ttl=30000)
        self.assertTrue(second["flags"]["cached"], second)
        self.assertEqual(second["body"], first["body"])
        self.assertEqual(self.upstream_count(), 1)
        after_b = self.counters(self.b)
        self.assertEqual(after_b["shared_hits"] - before_b["shared_hits"], 1)
        # Copied into B's own cache: the next call does not ask Redis.
        self.assertTrue(self.fetch(self.b, self.url(), ttl=30000)["flags"]["cached"])
        self.assertEqual(self.counters(self.b)["shared_hits"], after_b["shared_hits"])
        self.assertEqual(self.upstream_count(), 1)
        # The Redis entry expires with the entry (PX).
        key = next(k for k in self.keys() if self.path.encode() in k)
        pttl = self.redis.command("PTTL", key)
        self.assertTrue(0 < pttl <= 30000, pttl)

    def test_2_an_entry_over_the_cap_stays_in_the_worker_cache(self):
        before = self.counters(self.a)
        big = self.url(size=CAP * 2)
        self.fetch(self.a, big, ttl=30000)
        self.assertEqual(self.counters(self.a)["shared_too_large"] - before["shared_too_large"], 1)
        self.assertTrue(self.fetch(self.a, big, ttl=30000)["flags"]["cached"])  # L1 has it
        self.assertEqual(self.upstream_count(), 1)
        self.assertFalse(self.fetch(self.b, big, ttl=30000)["flags"]["cached"])  # L2 does not
        self.assertEqual(self.upstream_count(), 2)
        self.assertFalse(any(self.path.encode() in k for k in self.keys()))
        # One under the cap is shared.
        small = self.url("/small", size=CAP // 4)
        self.fetch(self.a, small, ttl=30000)
        self.assertTrue(self.wait_for(lambda: any(b"/small" in k for k in self.keys())))
        self.assertTrue(self.fetch(self.b, small, ttl=30000)["flags"]["cached"])
        self.assertEqual(self.upstream_count("/small"), 1)

    def test_3_an_expired_entry_is_gone_from_redis(self):
        self.fetch(self.a, self.url(), ttl=200)
        self.assertTrue(self.wait_for(lambda: any(self.path.encode() in k for k in self.keys())))
        self.assertTrue(self.wait_for(lambda: not any(self.path.encode() in k
                                                      for k in self.keys())))
        self.assertFalse(self.fetch(self.b, self.url(), ttl=200)["flags"]["cached"])
        self.assertEqual(self.upstream_count(), 2)

    def test_4_redis_down_is_a_miss_counted_and_logged_once_a_second(self):
        before = self.counters(self.a)
        lines_before = sum(DOWN_LINE in l for l in self.a.lines)
        self.redis.stop()
        try:
            t0 = time.monotonic()
            n = 20
            for i in range(n):
                j = self.fetch(self.a, self.url(f"/{i}"), ttl=30000)
                self.assertFalse(j["flags"]["cached"])
            elapsed = time.monotonic() - t0
            for i in range(n):
                self.assertEqual(self.upstream_count(f"/{i}"), 1)
            # Each lookup and each store failed, and was counted.
            now = self.counters(self.a)
            errors = now["shared_errors"] - before["shared_errors"]
            self.assertGreaterEqual(errors, 2 * n)  # a GET and a SET per call
            self.assertEqual(now["shared_stores"], before["shared_stores"])
            self.assertEqual(now["stores"] - before["stores"], n)  # in L1
            self.a.wait_log(DOWN_LINE, lines_before + 1)
            lines = sum(DOWN_LINE in l for l in self.a.lines) - lines_before
            self.assertGreaterEqual(lines, 1)
            self.assertLessEqual(lines, int(elapsed) + 2, "one line a second, not one a call")
            self.assertLess(lines, errors)
            # L1 still works.
            self.assertTrue(self.fetch(self.a, self.url("/0"), ttl=30000)["flags"]["cached"])
        finally:
            self.redis.start()

        # Redis back: the tier works again, after the reconnect's backoff.
        def shared_again():
            k = f"/back{time.monotonic_ns()}"
            self.fetch(self.a, self.url(k), ttl=30000)
            self.wait_for(lambda: any(k.encode() in x for x in self.keys()), within=0.5)
            return self.fetch(self.b, self.url(k), ttl=30000)["flags"]["cached"]

        self.assertTrue(self.wait_for(shared_again, within=10))

    def test_5_a_call_cancelled_while_its_lookup_waits_is_never_answered(self):
        before = self.counters(self.a)
        self.redis.pause()  # the GET is sent and waits for its reply
        try:
            s = harness.connect(self.a.port)
            s.sendall(f"GET {fetch_path(self.url(), cache=1, ttl=30000)} HTTP/1.1\r\n"
                      "Host: t\r\n\r\n".encode())
            time.sleep(COMMAND_TIMEOUT / 5)
            s.close()  # the request and its call are cancelled; the GET stays sent
            time.sleep(COMMAND_TIMEOUT / 5)
        finally:
            self.redis.resume()  # its reply comes, late, and is dropped
        # Had the call been answered, it would have gone on to the upstream.
        time.sleep(COMMAND_TIMEOUT * 2)
        self.assertEqual(self.upstream_count(), 0)
        after = self.counters(self.a)
        self.assertEqual(after["misses"], before["misses"])
        self.assertEqual(after["shared_errors"], before["shared_errors"])
        # The instance serves on, from the tier too.
        self.fetch(self.a, self.url(), ttl=30000)
        self.assertEqual(self.upstream_count(), 1)

    def test_6_stopping_with_lookups_waiting_leaks_nothing(self):
        self.redis.pause()
        try:
            socks = []
            for i in range(3):
                s = harness.connect(self.a.port)
                s.sendall(f"GET {fetch_path(self.url(f'/{i}'), cache=1, ttl=30000)} HTTP/1.1"
                          "\r\nHost: t\r\n\r\n".encode())
                socks.append(s)
            time.sleep(COMMAND_TIMEOUT / 5)
            # SIGQUIT: an immediate stop, the lookups still waiting: their
            # requests are cancelled, then the cache and the Redis
            # connection go; under the sanitizers, stop() fails on a leak
            # or a late callback.
            self.a.proc.send_signal(signal.SIGQUIT)
            self.a.proc.wait(20)
            self.a.stop()
            for s in socks:
                s.close()
        finally:
            self.redis.resume()


if __name__ == "__main__":
    unittest.main(verbosity=2)
