"""Limits on upstream calls in flight (max_calls, max_calls_per_host), the
call queue beyond them (max_queued_calls, call_queue_timeout_ms), run once
per transport: the limits sit above both. Two mock upstreams are two
origins; each mock reports the most requests it held at once."""
import os
import threading
import time
import unittest
from urllib.parse import quote

import harness
from harness import get_json, mock, testapp

DELAY = 0.3  # seconds each mock call takes, unless a test says otherwise


class CallLimitSuite:
    transport = None

    @classmethod
    def setUpClass(cls):
        cls.a, cls.b = mock(), mock()

    @classmethod
    def tearDownClass(cls):
        cls.a.stop()
        cls.b.stop()

    def setUp(self):
        self.app = None
        for m in (self.a, self.b):  # the peak counts from here
            get_json(m.port, "/stats")

    def tearDown(self):
        if self.app:
            self.app.stop()

    def start(self, *flags):
        env = dict(os.environ, FANOUT_TRANSPORT=self.transport)
        self.app = testapp(*flags, env=env)

    def url(self, m, ms=DELAY):
        return f"http://127.0.0.1:{m.port}/delay?ms={int(ms * 1000)}"

    def fanout(self, n, ms=DELAY, n2=0, ms2=DELAY, extra=""):
        q = f"/fanout?n={n}&url={quote(self.url(self.a, ms), safe='')}"
        if n2:
            q += f"&n2={n2}&url2={quote(self.url(self.b, ms2), safe='')}"
        return get_json(self.app.port, q + extra)

    def peak(self, m):
        return get_json(m.port, "/stats")[1]["peak_in_flight"]

    def test_per_host_limit_queues_calls_and_spares_other_hosts(self):
        self.start("--max-calls-per-host", "2")
        status, j = self.fanout(6, n2=2)
        self.assertEqual(status, 200, j)
        self.assertEqual(j["errors"], ["ok"] * 8)
        self.assertEqual(self.peak(self.a), 2)
        self.assertEqual(self.peak(self.b), 2)
        # Six calls two at a time take three delays; the other host's two
        # calls are not held behind them.
        self.assertGreaterEqual(j["elapsed"] / DELAY, 2.9)
        b_done = [t for t, u in zip(j["finished"], j["urls"]) if f":{self.b.port}/" in u]
        self.assertLess(max(b_done) / j["elapsed"], 0.6)

    def test_an_origin_ignores_case_and_credentials(self):
        # "HTTP://User:pw@127.0.0.1:P" is the origin of "http://127.0.0.1:P":
        # with one call per host, the two calls run one after the other.
        self.start("--max-calls-per-host", "1")
        plain = self.url(self.a)
        other = plain.replace("http://", "HTTP://user:pw@", 1)
        q = (f"/fanout?n=1&url={quote(plain, safe='')}&n2=1&url2={quote(other, safe='')}")
        status, j = get_json(self.app.port, q)
        self.assertEqual(status, 200, j)
        self.assertEqual(j["errors"], ["ok", "ok"])
        self.assertGreaterEqual(j["elapsed"] / DELAY, 1.9)
        self.assertEqual(self.peak(self.a), 1)

    def test_worker_limit_counts_every_host(self):
        self.start("--max-calls", "3", "--max-calls-per-host", "0")
        status, j = self.fanout(3, n2=3)
        self.assertEqual(status, 200, j)
        self.assertEqual(j["errors"], ["ok"] * 6)
        # Six calls three at a time take two delays, and first come, first
        # served: the three calls to a ran first, then the three to b.
        self.assertGreaterEqual(j["elapsed"] / DELAY, 1.9)
        self.assertEqual([f":{self.a.port}/" in u for u in j["urls"]], [True] * 3 + [False] * 3)
        self.assertEqual((self.peak(self.a), self.peak(self.b)), (3, 3))

    def test_full_queue_refuses_at_once(self):
        self.start("--max-calls", "2", "--max-queued-calls", "1")
        status, j = self.fanout(5, ms=0.5)
        self.assertEqual(status, 502)
        self.assertEqual(sorted(j["errors"]), ["busy", "busy", "ok", "ok", "ok"])
        # The refusals come first, long before the first call that ran ended.
        self.assertEqual(j["errors"][:2], ["busy", "busy"])
        self.assertLess(max(j["finished"][:2]) / min(j["finished"][2:]), 0.2)
        self.app.wait_log(r"refused: the call queue is full \(max_queued_calls\)")

    def test_queue_timeout_refuses_a_call_that_waited_too_long(self):
        self.start("--max-calls", "1", "--call-queue-timeout-ms", "200")
        status, j = self.fanout(3, ms=1.0)
        self.assertEqual(status, 502)
        self.assertEqual(j["errors"], ["busy", "busy", "ok"])
        # Refused once their wait passed, well before the running call ended.
        for t in j["finished"][:2]:
            self.assertGreaterEqual(t / 0.2, 0.95)
            self.assertLess(t / j["finished"][2], 0.6)
        self.app.wait_log(r"no slot within call_queue_timeout_ms")

    def test_call_timeout_runs_while_queued(self):
        self.start("--max-calls", "1", "--call-queue-timeout-ms", "0")
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("r", self.fanout(1, ms=1.0)))
        t.start()
        deadline = time.monotonic() + 5
        while get_json(self.a.port, "/stats")[1]["in_flight"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.monotonic()
        _, j = get_json(self.app.port, "/fetch?timeout=200&url=" + quote(self.url(self.a), safe=""))
        waited = time.monotonic() - t0
        t.join()
        self.assertEqual(j["error"], "timeout")
        # Timed out while queued, well before the call holding the slot ended.
        self.assertLess(waited / out["r"][1]["elapsed"], 0.6)
        self.assertEqual(out["r"][1]["errors"], ["ok"])

    def test_cancelled_waiting_calls_give_back_their_place(self):
        self.start("--max-calls", "1", "--max-queued-calls", "2")
        before = get_json(self.a.port, "/stats")[1]["requests"]
        status, j = self.fanout(3, ms=1.0, extra="&deadline=200")
        self.assertEqual(j["cancelled"], "timeout")
        # The running call was cut; the two waiting ones never went out.
        self.assertEqual(get_json(self.a.port, "/stats")[1]["requests"] - before, 1)
        # Nothing leaked: a full set of calls fits again, slots and queue.
        status, j = self.fanout(3, ms=0.05)
        self.assertEqual(status, 200, j)
        self.assertEqual(j["errors"], ["ok"] * 3)


class IdleSuite(CallLimitSuite):
    idle_flag = None

    def connections_for_two_rounds(self, *flags):
        """Upstream connections two requests of five concurrent calls open,
        one after the other."""
        self.start(*flags)
        before = get_json(self.a.port, "/stats")[1]["connections"]
        for _ in range(2):
            status, j = self.fanout(5, ms=0.1)
            self.assertEqual(status, 200, j)
            self.assertEqual(j["errors"], ["ok"] * 5)
        # The second /stats request came on a connection of its own.
        return get_json(self.a.port, "/stats")[1]["connections"] - before - 1

    def test_idle_connections_are_kept_up_to_the_limit(self):
        # Five connections, two kept: the second request reuses two, opens three.
        self.assertEqual(self.connections_for_two_rounds(self.idle_flag, "2"), 8)

    def test_every_connection_of_a_burst_is_kept_by_default(self):
        self.assertEqual(self.connections_for_two_rounds(), 5)

    def test_no_idle_connection_is_kept_at_zero(self):
        self.assertEqual(self.connections_for_two_rounds(self.idle_flag, "0"), 10)


class LeanTransport(IdleSuite, unittest.TestCase):
    transport = "lean"
    idle_flag = "--max-idle-connections-per-host"


class CurlTransport(IdleSuite, unittest.TestCase):
    transport = "curl"
    idle_flag = "--max-idle-curl-connections"


if __name__ == "__main__":
    harness.main()
