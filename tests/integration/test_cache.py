"""Single-flight and the response cache, run once per transport, over real
sockets: the testapp's /fetch makes one call with the cache and
single-flight options of its query, and the mock's /stats says how many
requests really reached the upstream."""
import signal
import subprocess
import threading
import time
import unittest
from urllib.parse import quote

import harness
from harness import connect, get_json


class Mock:
    """The mock upstream, as TransportSuite wants it (close())."""

    def __init__(self):
        self.server = harness.mock()
        self.port = self.server.port

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stats(self):
        return get_json(self.port, "/stats")[1]

    def close(self):
        self.server.stop()


def fetch_path(url, headers=(), **params):
    params["url"] = url
    for i, h in enumerate(headers):
        params["header" if i == 0 else f"header{i + 1}"] = h
    return "/fetch?" + "&".join(f"{k}={quote(str(v), safe='')}" for k, v in params.items())


class Base(harness.TransportSuite):
    """The mock, the testapp, and how the tests talk to them."""

    @classmethod
    def make_upstream(cls):
        return Mock()

    def setUp(self):
        # Nothing of an earlier test in flight (the mock counts a request
        # cancelled when its delay ends), then counters from zero.
        self.wait_for(lambda: self.upstream.stats()["in_flight"] == 0)
        get_json(self.upstream.port, "/stats?reset=1")
        # Every test has paths of its own: the cache lives as long as the app.
        self.path = f"/{self._testMethodName}/{self.transport}"

    def url(self, suffix="", **q):
        query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in q.items())
        return self.upstream.url(self.path + suffix + ("?" + query if query else ""))

    def fetch(self, url, headers=(), **params):
        status, j = get_json(self.app.port, fetch_path(url, headers, **params))
        self.assertEqual(status, 200, j)
        return j

    def upstream_count(self, suffix=""):
        return self.upstream.stats()["paths"].get(self.path + suffix, 0)

    def counters(self):
        return get_json(self.app.port, "/cache/counters")[1]

    def concurrently(self, n, path):
        """n client requests of `path` at once, each on its connection; the
        JSON answers."""
        out = [None] * n
        barrier = threading.Barrier(n)

        def one(i):
            barrier.wait()
            status, out[i] = get_json(self.app.port, path)
            self.assertEqual(status, 200, out[i])

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    def send_raw(self, path):
        """A request on a connection of its own, left open: the socket."""
        s = connect(self.app.port)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        return s

    def wait_for(self, what, within=5.0):
        deadline = time.monotonic() + within
        while not what() and time.monotonic() < deadline:
            time.sleep(0.02)
        return what()


class CacheSuite(Base):
    # ---- single-flight

    def test_100_identical_concurrent_gets_reach_the_upstream_once(self):
        before = self.counters()
        answers = self.concurrently(100, fetch_path(self.url(ms=1500), coalesce=1))
        self.assertEqual(self.upstream_count(), 1)
        self.assertEqual({a["error"] for a in answers}, {"ok"})
        self.assertEqual(len({a["body"] for a in answers}), 1)  # one response, 100 copies
        coalesced = [a for a in answers if a["flags"]["coalesced"]]
        self.assertEqual(len(coalesced), 99)
        self.assertEqual(sorted(a["attempts"] for a in answers), [0] * 99 + [1])
        after = self.counters()
        self.assertEqual(after["coalesced"] - before["coalesced"], 99)
        self.assertEqual(after["exchanges"] - before["exchanges"], 1)

    def test_without_coalesce_identical_calls_each_reach_the_upstream(self):
        # The default: single-flight is off for a call that does not ask.
        answers = self.concurrently(5, fetch_path(self.url(ms=300)))
        self.assertEqual(self.upstream_count(), 5)
        self.assertFalse(any(a["flags"]["coalesced"] for a in answers))

    def test_calls_that_differ_do_not_share(self):
        # Another header, another timeout, another method: other exchanges.
        url = self.url(ms=300)
        paths = [fetch_path(url, coalesce=1), fetch_path(url, ["X-A: 1"], coalesce=1),
                 fetch_path(url, coalesce=1, timeout=5000),
                 fetch_path(url, coalesce=1, method="HEAD")]
        threads = [threading.Thread(target=get_json, args=(self.app.port, p)) for p in paths]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(self.upstream_count(), 4)

    def test_post_is_never_coalesced(self):
        answers = self.concurrently(3, fetch_path(self.url(ms=300), coalesce=1, method="POST",
                                                  body="x"))
        self.assertEqual(self.upstream_count(), 3)
        self.assertFalse(any(a["flags"]["coalesced"] for a in answers))

    def test_a_cancelled_waiter_leaves_alone(self):
        path = fetch_path(self.url(ms=1500), coalesce=1)
        gone = self.send_raw(path)
        stay = [self.send_raw(path) for _ in range(2)]
        self.assertTrue(self.wait_for(lambda: self.upstream.stats()["in_flight"] == 1))
        gone.close()  # its request is cancelled, its call leaves the exchange
        answers = [harness.Reader(s).read().json() for s in stay]
        for s in stay:
            s.close()
        self.assertEqual([a["error"] for a in answers], ["ok", "ok"])
        s = self.upstream.stats()
        self.assertEqual((s["paths"].get(self.path), s["cancelled"], s["completed"]), (1, 0, 1))

    def test_the_exchange_is_cancelled_when_its_last_waiter_goes(self):
        # The upstream's delay is far longer than the waits, so that only a
        # cancel can end the exchange in time, even on a loaded machine.
        path = fetch_path(self.url(ms=20000), coalesce=1)
        socks = [self.send_raw(path) for _ in range(3)]
        self.assertTrue(self.wait_for(lambda: self.upstream.stats()["in_flight"] == 1, 10),
                        self.upstream.stats())
        self.assertEqual(self.upstream_count(), 1)  # one exchange for the three
        for s in socks:
            s.close()
        self.assertTrue(self.wait_for(lambda: self.upstream.stats()["cancelled"] == 1, 10))
        # A new call of the same key starts a new exchange.
        j = self.fetch(self.url(ms=0), coalesce=1)
        self.assertEqual(j["error"], "ok")

    def test_every_waiter_gets_the_exchanges_failure(self):
        answers = self.concurrently(4, fetch_path(self.url(ms=300, fail=503, fail_rate=1), coalesce=1))
        self.assertEqual([(a["error"], a["status"]) for a in answers], [("ok", 503)] * 4)
        answers = self.concurrently(3, fetch_path(self.url("/reset", ms=300, fail="reset", fail_rate=1),
                                                  coalesce=1))
        self.assertEqual(len({a["error"] for a in answers}), 1)
        self.assertNotEqual(answers[0]["error"], "ok")
        answers = self.concurrently(3, fetch_path(self.url("/slow", ms=1000), coalesce=1,
                                                  timeout=200))
        self.assertEqual([a["error"] for a in answers], ["timeout"] * 3)
        # (The lean transport sends a request again, once, when a reused
        # connection is reset before any byte: /reset may count 2.)
        self.assertEqual((self.upstream_count(), self.upstream_count("/slow")), (1, 1))

    def test_a_shared_exchange_is_retried_once_for_all_its_waiters(self):
        url = self.url(fail=503, fail_first=1, key=f"retried-{self.transport}", ms=200)
        status, j = get_json(self.app.port, "/resilient?" + "&".join(
            f"{k}={quote(str(v), safe='')}" for k, v in
            {"url": url, "n": 3, "coalesce": 1, "retries": 2, "base": 1}.items()))
        self.assertEqual(status, 200, j)
        calls = j["calls"]
        self.assertEqual([(c["error"], c["status"]) for c in calls], [("ok", 200)] * 3)
        self.assertEqual([(c["attempts"], c["flags"]) for c in calls],
                         [(2, 1), (0, 16), (0, 16)])  # RETRIED; COALESCED
        self.assertEqual(len({c["body"] for c in calls}), 1)
        self.assertEqual(self.upstream_count(), 2)  # the failure and its retry, once

    # ---- the response cache

    def test_a_hit_within_the_ttl_and_a_miss_after_it(self):
        url = self.url()
        before = self.counters()
        first = self.fetch(url, cache=1, ttl=800)
        second = self.fetch(url, cache=1, ttl=800)
        self.assertEqual(self.upstream_count(), 1)
        self.assertEqual(second["body"], first["body"])
        self.assertEqual((first["flags"]["cached"], second["flags"]["cached"]), (False, True))
        self.assertEqual((first["attempts"], second["attempts"]), (1, 0))
        time.sleep(0.9)
        third = self.fetch(url, cache=1, ttl=800)
        self.assertFalse(third["flags"]["cached"])
        self.assertEqual(self.upstream_count(), 2)
        after = self.counters()
        self.assertEqual({k: after[k] - before[k] for k in ("hits", "misses", "stores")},
                         {"hits": 1, "misses": 2, "stores": 2})

    def test_without_cache_nothing_is_stored(self):
        url = self.url(cache_control="max-age=60")
        for _ in range(2):
            self.assertFalse(self.fetch(url, ttl=60000)["flags"]["cached"])
        self.assertEqual(self.upstream_count(), 2)

    def test_max_age_and_s_maxage_give_the_ttl(self):
        for cc, cached in (("max-age=60", True), ("public, max-age=0, s-maxage=60", True),
                           ("max-age=60, s-maxage=0", False), ("max-age=0", False)):
            url = self.url(cache_control=cc)
            self.fetch(url, cache=1)
            self.assertEqual(self.fetch(url, cache=1)["flags"]["cached"], cached, cc)

    def test_no_store_and_private_are_not_cached_even_with_a_ttl(self):
        for cc in ("max-age=60, no-store", "private, max-age=60", "no-cache"):
            url = self.url(cache_control=cc)
            self.fetch(url, cache=1, ttl=60000)
            self.assertFalse(self.fetch(url, cache=1, ttl=60000)["flags"]["cached"], cc)

    def test_a_response_without_a_ttl_is_not_cached(self):
        url = self.url()
        self.fetch(url, cache=1)
        self.assertFalse(self.fetch(url, cache=1)["flags"]["cached"])
        self.assertEqual(self.upstream_count(), 2)

    def test_errors_are_not_cached(self):
        url = self.url(status=503)
        self.fetch(url, cache=1, ttl=60000)
        self.assertEqual(self.fetch(url, cache=1, ttl=60000)["status"], 503)
        self.assertEqual(self.upstream_count(), 2)

    def test_the_key_holds_every_request_header_unless_told_which(self):
        url = self.url()
        a = self.fetch(url, ["X-A: 1", "X-B: 1"], cache=1, ttl=60000)
        self.assertFalse(self.fetch(url, ["X-A: 1", "X-B: 2"], cache=1,
                                    ttl=60000)["flags"]["cached"])
        # With vary=X-A, only X-A's value counts.
        url = self.url("/vary")
        a = self.fetch(url, ["X-A: 1", "X-B: 1"], cache=1, ttl=60000, vary="X-A")
        b = self.fetch(url, ["x-b: 2", "X-A: 1"], cache=1, ttl=60000, vary="x-a")
        c = self.fetch(url, ["X-A: 2"], cache=1, ttl=60000, vary="X-A")
        d = self.fetch(url, cache=1, ttl=60000, vary="X-A")  # absent is not empty
        self.assertEqual(b["body"], a["body"])
        self.assertEqual([x["flags"]["cached"] for x in (a, b, c, d)], [False, True, False, False])

    def test_a_response_that_varies_on_a_header_outside_the_key_is_not_cached(self):
        # The testapp is the upstream here: it answers with the header asked for.
        def url(vary):
            return (f"http://127.0.0.1:{self.app.port}/app/setheader?name=Vary&value="
                    f"{quote(vary)}&t={self._testMethodName}")
        for vary, names, cached in (("X-B", "X-A", False), ("x-b, X-A", "X-A,X-B", True),
                                    ("*", None, False), ("X-B", None, True)):
            opts = {"vary": names} if names else {}
            self.fetch(url(vary), ["X-A: 1"], cache=1, ttl=60000, **opts)
            j = self.fetch(url(vary), ["X-A: 1"], cache=1, ttl=60000, **opts)
            self.assertEqual(j["flags"]["cached"], cached, (vary, names))

    def test_a_response_that_sets_a_cookie_is_not_cached(self):
        url = f"http://127.0.0.1:{self.app.port}/resp/headers"
        self.fetch(url, cache=1, ttl=60000)
        self.assertFalse(self.fetch(url, cache=1, ttl=60000)["flags"]["cached"])

    def test_a_cache_miss_is_shared(self):
        answers = self.concurrently(10, fetch_path(self.url(ms=400), cache=1, ttl=60000))
        self.assertEqual(self.upstream_count(), 1)
        self.assertEqual(sum(a["flags"]["coalesced"] for a in answers), 9)

    def test_stale_while_revalidate_serves_stale_and_refreshes_once(self):
        url = self.url(ms=400, cache_control="max-age=0, stale-while-revalidate=60")
        first = self.fetch(url, cache=1)
        answers = self.concurrently(5, fetch_path(url, cache=1))
        # Not waiting for the refresh: each call took a fraction of the exchange.
        self.assertLess(max(a["duration"] for a in answers), first["duration"] / 2)
        self.assertTrue(all(a["flags"]["stale"] and a["flags"]["cached"] for a in answers))
        self.assertEqual({a["body"] for a in answers}, {first["body"]})
        # One refresh reached the upstream, and it stored what it got.
        self.assertTrue(self.wait_for(lambda: self.upstream.stats()["completed"] == 2))
        time.sleep(0.1)
        self.assertEqual(self.upstream_count(), 2)
        self.assertNotEqual(self.fetch(url, cache=1)["body"], first["body"])
        # That answer was stale too and started a refresh of its own: it is
        # waited for, so that no later test finds it at the mock (setUp's
        # wait for nothing in flight can run before it has arrived there).
        self.assertTrue(self.wait_for(lambda: self.upstream.stats()["completed"] == 3))
        self.assertEqual(self.upstream_count(), 3)

    def test_stale_if_error_serves_the_stale_entry_when_the_refresh_fails(self):
        key = f"sie-{self.transport}"
        url = self.url(cache_control="max-age=0, stale-if-error=60", fail=503, fail_first=1,
                       key=key)
        # The first request of the key fails: spend it, then store a success.
        get_json(self.upstream.port, url.split(str(self.upstream.port), 1)[1])
        stored = self.fetch(url, cache=1)
        self.assertEqual((stored["status"], stored["flags"]["cached"]), (200, False))
        get_json(self.upstream.port, "/stats?reset=1")  # the next request fails again
        served = self.fetch(url, cache=1)
        self.assertEqual(self.upstream.stats()["keys"].get(key), 1)  # the refresh was sent
        self.assertEqual((served["status"], served["body"]), (200, stored["body"]))
        self.assertTrue(served["flags"]["stale"] and served["flags"]["cached"])
        # It succeeds now: the fresh answer replaces the stale one.
        fresh = self.fetch(url, cache=1)
        self.assertEqual((fresh["status"], fresh["flags"]["stale"]), (200, False))
        self.assertNotEqual(fresh["body"], stored["body"])

    def test_head_and_get_are_cached_apart(self):
        url = self.url(cache_control="max-age=60")
        head = self.fetch(url, cache=1, method="HEAD")
        get = self.fetch(url, cache=1)
        self.assertEqual((head["flags"]["cached"], get["flags"]["cached"]), (False, False))
        self.assertGreater(get["body_len"], 0)
        again = self.fetch(url, cache=1, method="HEAD")
        self.assertEqual((again["flags"]["cached"], again["body_len"]), (True, 0))

    def test_call_options_give_the_stale_windows(self):
        url = self.url(ms=300)
        self.fetch(url, cache=1, ttl=1, swr=60000)
        time.sleep(0.05)
        self.assertTrue(self.fetch(url, cache=1, ttl=1, swr=60000)["flags"]["stale"])
        self.assertTrue(self.wait_for(lambda: self.upstream_count() == 2))


class OriginSuite(Base):
    """An app whose mock origin has the cache and single-flight on, with a
    small cache: calls without options use the origin's settings."""
    MAX_CACHE = 20000

    @classmethod
    def setUpClass(cls):
        cls.upstream = Mock()
        origin = f"http://127.0.0.1:{cls.upstream.port}"
        # localhost is another origin, with a stale-while-revalidate window.
        other = f"http://localhost:{cls.upstream.port}"
        cls.app = harness.testapp("--max-cache-bytes", str(cls.MAX_CACHE), "--origin",
                                  origin + ",cache=on,coalesce=on,cache-ttl=60000,"
                                  "stale-if-error=60000", "--origin",
                                  other + ",cache=on,cache-ttl=1,stale-while-revalidate=60000",
                                  env={"FANOUT_TRANSPORT": cls.transport})

    def test_the_origin_turns_the_cache_and_single_flight_on(self):
        url = self.url(ms=500)
        answers = self.concurrently(4, fetch_path(url))
        self.assertEqual(sum(a["flags"]["coalesced"] for a in answers), 3)
        self.assertTrue(self.fetch(url)["flags"]["cached"])
        self.assertEqual(self.upstream_count(), 1)

    def test_a_call_may_bypass_what_its_origin_turns_on(self):
        url = self.url(ms=100)
        self.fetch(url)
        self.assertFalse(self.fetch(url, cache=-1)["flags"]["cached"])
        answers = self.concurrently(3, fetch_path(self.url("/own", ms=100), cache=-1, coalesce=-1))
        self.assertFalse(any(a["flags"]["coalesced"] for a in answers))
        self.assertEqual((self.upstream_count(), self.upstream_count("/own")), (2, 3))

    def test_the_origin_gives_the_stale_windows(self):
        url = self.url("/swr").replace("127.0.0.1", "localhost")
        first = self.fetch(url)
        time.sleep(0.01)
        j = self.fetch(url)
        self.assertTrue(j["flags"]["stale"])
        self.assertEqual(j["body"], first["body"])
        self.assertTrue(self.wait_for(lambda: self.upstream_count("/swr") == 2))
        # stale-if-error: the call's TTL of 1 ms, the origin's window.
        key = f"origin-sie-{self.transport}"
        url = self.url("/sie", fail=503, fail_first=1, key=key)
        get_json(self.upstream.port, url.split(str(self.upstream.port), 1)[1])
        stored = self.fetch(url, ttl=1)
        get_json(self.upstream.port, "/stats?reset=1")
        time.sleep(0.01)
        j = self.fetch(url, ttl=1)
        self.assertEqual((j["status"], j["body"], j["flags"]["stale"]),
                         (200, stored["body"], True))

    def test_the_least_recently_used_entry_goes_at_the_byte_bound(self):
        size = self.MAX_CACHE // 4  # about a quarter each, with its headers and key
        urls = {n: self.url("/" + n, size=size) for n in "abcd"}
        for n in "abc":
            self.fetch(urls[n])
        self.assertTrue(self.fetch(urls["a"])["flags"]["cached"])  # a is now the most recent
        before = self.counters()["evictions"]
        self.fetch(urls["d"])  # no room: b, the least recently used, goes (and older ones)
        c = self.counters()
        self.assertGreaterEqual(c["evictions"] - before, 1)
        self.assertLessEqual(c["bytes"], self.MAX_CACHE)
        self.assertEqual([self.fetch(urls[n])["flags"]["cached"] for n in "acdb"],
                         [True, True, True, False])

    def test_a_response_larger_than_the_cache_is_not_stored(self):
        url = self.url(size=self.MAX_CACHE + 1)
        self.fetch(url)
        self.assertFalse(self.fetch(url)["flags"]["cached"])
        self.assertEqual(self.upstream_count(), 2)


class OriginLean(OriginSuite, unittest.TestCase):
    transport = "lean"


class OriginCurl(OriginSuite, unittest.TestCase):
    transport = "curl"


class Defaults(unittest.TestCase):
    """The cache's bound by default, and bad --origin values."""

    def test_the_cache_holds_64_mib_by_default(self):
        out = subprocess.run([harness.TESTAPP, "--help"], capture_output=True, text=True,
                             timeout=20).stdout
        self.assertIn("--max-cache-bytes N", out)
        mock = Mock()
        app = harness.testapp()
        try:
            size = 8 << 20  # the largest body a call takes by default
            for i in range(7):  # 56 MiB: no eviction
                url = mock.url(f"/big{i}?size={size}&cache_control=max-age%3D60")
                get_json(app.port, fetch_path(url, cache=1))
            c = get_json(app.port, "/cache/counters")[1]
            self.assertEqual((c["entries"], c["evictions"]), (7, 0))
            url = mock.url(f"/big7?size={size}&cache_control=max-age%3D60")
            get_json(app.port, fetch_path(url, cache=1))  # 64 MiB and more: one goes
            c = get_json(app.port, "/cache/counters")[1]
            self.assertEqual((c["entries"], c["evictions"]), (7, 1))
        finally:
            app.stop()
            mock.close()

    def test_a_stop_cancels_a_background_refresh_and_frees_it(self):
        delay = 1500
        mock = Mock()
        app = harness.testapp("--log-level", "debug")
        try:
            url = mock.url(f"/refresh?ms={delay}")
            get_json(app.port, fetch_path(url, cache=1, ttl=1, swr=60000))
            time.sleep(0.01)
            j = get_json(app.port, fetch_path(url, cache=1, ttl=1, swr=60000))[1]
            self.assertTrue(j["flags"]["stale"])
            app.wait_log("refreshing its stale cache entry in the background")
            app.wait_log(r"call \S+/refresh\S*: answered from the cache \(stale\)")
            t0 = time.monotonic()
            app.stop()  # no sanitizer report: nothing leaked
            self.assertLess(time.monotonic() - t0, delay / 1000 / 2)
            deadline = time.monotonic() + 5
            while mock.stats()["cancelled"] < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            self.assertEqual(mock.stats()["cancelled"], 1)
        finally:
            app.stop(check=False)
            mock.close()

    def test_a_stop_lets_the_waiters_of_a_shared_exchange_finish(self):
        mock = Mock()
        app = harness.testapp("--log-level", "debug")
        try:
            path = fetch_path(mock.url("/drain?ms=800"), coalesce=1)
            socks = []
            for _ in range(2):
                s = connect(app.port)
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                socks.append(s)
            deadline = time.monotonic() + 5
            while mock.stats()["in_flight"] < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            app.wait_log(r"call \S+/drain\S*: joined the exchange in flight \(2 waiting\)")
            app.proc.send_signal(signal.SIGTERM)  # drains: requests in progress finish
            answers = [harness.Reader(s).read().json() for s in socks]
            self.assertEqual([(a["error"], a["status"]) for a in answers], [("ok", 200)] * 2)
            self.assertEqual(mock.stats()["paths"].get("/drain"), 1)
            for s in socks:
                s.close()
            self.assertEqual(app.stop(), 0)
        finally:
            app.stop(check=False)
            mock.close()

    def test_bad_origin_cache_options_exit_with_status_2(self):
        for bad in ("cache=yes", "coalesce=1", "cache-ttl=x", "stale-if-error=-1",
                    "stale-while-revalidate="):
            p = subprocess.run([harness.TESTAPP, "--workers", "0", "--port", "0", "--origin",
                                "http://a:1," + bad], capture_output=True, text=True, timeout=20)
            self.assertEqual(p.returncode, 2, (bad, p.stderr))
            self.assertIn("--origin", p.stderr)


class LeanTransport(CacheSuite, unittest.TestCase):
    transport = "lean"


class CurlTransport(CacheSuite, unittest.TestCase):
    transport = "curl"


if __name__ == "__main__":
    harness.main()
