"""Retries, the retry budget and hedged calls (docs/resilience.md), run once
per transport over real sockets. What reached the upstream is read from the
mock's per-key counters (/stats); the testapp's /resilient answers each
call's error, status, tries (fan_call_attempts()) and flags
(fan_call_flags()). Timings are ratios of the delays the tests set."""
import http.client
import itertools
import re
import socket
import subprocess
import time
import unittest
from urllib.parse import quote, urlencode

import harness
from harness import get_json, mock, testapp

RETRIED, HEDGED = 1, 2
_keys = itertools.count()


class RetrySuite:
    transport = None

    @classmethod
    def setUpClass(cls):
        cls.m = mock()       # no origin options: per-call policies
        cls.tight = mock()   # an origin with a budget of one retry in flight
        cls.p95 = mock()     # an origin whose latencies only one test records
        env = {"FANOUT_TRANSPORT": cls.transport}
        cls.app = testapp("--log-level", "debug", "--origin",
                          f"http://127.0.0.1:{cls.tight.port},retries=1,budget-percent=1,"
                          "budget-min=1", env=env)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.app.stop()
        finally:
            for m in (cls.m, cls.tight, cls.p95):
                m.stop()

    def key(self):
        return f"{self.transport}-{self._testMethodName[5:40]}-{next(_keys)}"

    def url(self, m=None, **q):
        return f"http://127.0.0.1:{(m or self.m).port}/delay?" + urlencode(q)

    def calls(self, url, **params):
        status, j = get_json(self.app.port, f"/resilient?url={quote(url, safe='')}&"
                             + urlencode(params))
        self.assertEqual(status, 200, j)
        return j["calls"]

    def call(self, url, **params):
        return self.calls(url, **params)[0]

    def seen(self, key, m=None):
        """How many requests of `key` reached the mock."""
        return get_json((m or self.m).port, "/stats")[1]["keys"].get(key, 0)

    def cancelled(self, m=None):
        return get_json((m or self.m).port, "/stats")[1]["cancelled"]

    def wait_cancelled(self, want, m=None, within=3.0):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and self.cancelled(m) < want:
            time.sleep(0.02)
        return self.cancelled(m)

    def outcome(self, c):
        return c["error"], c["status"], c["attempts"], c["flags"]

    def assert_reset_retried(self, c, k):
        """A call whose first request was reset before any byte got its
        answer from a second request. libcurl itself resends a request whose
        reused connection died before any byte (no option turns that off):
        on curl the policy's retry may then not be needed."""
        self.assertEqual(self.seen(k), 2)
        if self.transport == "curl" and c["attempts"] == 1:
            self.assertEqual(self.outcome(c), ("ok", 200, 1, 0))
        else:
            self.assertEqual(self.outcome(c), ("ok", 200, 2, RETRIED))

    # ---- what is retried

    def test_a_retry_after_a_reset_succeeds(self):
        k = self.key()
        c = self.call(self.url(key=k, fail="reset", fail_first=1), retries=2)
        self.assert_reset_retried(c, k)

    def test_retries_are_off_unless_a_call_or_its_origin_sets_them(self):
        k = self.key()
        c = self.call(self.url(key=k, fail=503, fail_first=1))
        self.assertEqual(self.outcome(c), ("ok", 503, 1, 0))
        self.assertEqual(self.seen(k), 1)

    def test_an_origins_policy_applies_unless_the_call_has_its_own(self):
        # The tight origin sets retries=1; a call's own policy replaces it.
        k = self.key()
        c = self.call(self.url(self.tight, key=k, fail=503, fail_first=1))
        self.assertEqual(self.outcome(c), ("ok", 200, 2, RETRIED))
        k = self.key()
        c = self.call(self.url(self.tight, key=k, fail=503, fail_first=1), retries=0)
        self.assertEqual(self.outcome(c), ("ok", 503, 1, 0))
        self.assertEqual(self.seen(k, self.tight), 1)

    def test_502_503_and_504_are_retried_and_500_is_not(self):
        for status in (502, 503, 504):
            k = self.key()
            c = self.call(self.url(key=k, fail=status, fail_first=1), retries=1)
            self.assertEqual(self.outcome(c), ("ok", 200, 2, RETRIED), status)
            self.assertEqual(self.seen(k), 2)
        k = self.key()
        c = self.call(self.url(key=k, fail=500, fail_first=1), retries=1)
        self.assertEqual(self.outcome(c), ("ok", 500, 1, 0))
        self.assertEqual(self.seen(k), 1)

    def test_the_retried_statuses_can_be_set(self):
        k = self.key()
        c = self.call(self.url(key=k, fail=500, fail_first=1), retries=1, retry_on="500:429")
        self.assertEqual(self.outcome(c), ("ok", 200, 2, RETRIED))
        k = self.key()
        c = self.call(self.url(key=k, fail=503, fail_first=1), retries=1, retry_on="500:429")
        self.assertEqual(self.outcome(c), ("ok", 503, 1, 0))
        # "none": only failures to connect or resets are retried.
        k = self.key()
        c = self.call(self.url(key=k, fail=503, fail_first=1), retries=1, retry_on="none")
        self.assertEqual(self.outcome(c), ("ok", 503, 1, 0))
        k = self.key()
        c = self.call(self.url(key=k, fail="reset", fail_first=1), retries=1, retry_on="none")
        self.assert_reset_retried(c, k)

    def test_a_reset_after_the_response_began_is_not_retried(self):
        k = self.key()
        c = self.call(self.url(key=k, fail="reset_mid", fail_first=1), retries=2)
        self.assertEqual((c["error"], c["attempts"], c["flags"]), ("protocol", 1, 0))
        self.assertEqual(self.seen(k), 1)

    def test_a_refused_connection_is_retried_until_no_retry_is_left(self):
        c = self.call(f"http://127.0.0.1:{harness.closed_port()}/x", retries=2, base=1, cap=5)
        self.assertEqual(self.outcome(c), ("refused", 0, 3, RETRIED))

    def test_a_non_idempotent_call_is_retried_only_when_it_opts_in(self):
        k = self.key()
        c = self.call(self.url(key=k, fail=503, fail_first=1), retries=2, method="POST")
        self.assertEqual(self.outcome(c), ("ok", 503, 1, 0))
        self.assertEqual(self.seen(k), 1)
        c = self.call(self.url(key=k, fail=503, fail_first=1), retries=2, method="POST",
                      non_idempotent=1)
        self.assertEqual(self.outcome(c), ("ok", 200, 1, 0))  # the key's second request
        k = self.key()
        c = self.call(self.url(key=k, fail=503, fail_first=1), retries=2, method="POST",
                      non_idempotent=1)
        self.assertEqual(self.outcome(c), ("ok", 200, 2, RETRIED))
        self.assertEqual(self.seen(k), 2)
        # PUT and DELETE are idempotent.
        for method in ("PUT", "DELETE"):
            k = self.key()
            c = self.call(self.url(key=k, fail=503, fail_first=1), retries=1, method=method)
            self.assertEqual(self.outcome(c), ("ok", 200, 2, RETRIED), method)

    def test_more_than_ten_retries_are_refused_before_anything_is_sent(self):
        k = self.key()
        c = self.call(self.url(key=k), retries=11, name="greedy")
        self.assertEqual((c["error"], c["attempts"]), ("invalid", 0))
        self.app.wait_log(r"call greedy: max_retries 11 is more than 10")
        self.assertEqual(self.seen(k), 0)

    # ---- backoff and timeouts

    def test_the_backoff_is_jittered_and_bounded_by_its_cap(self):
        # Uncapped, three backoffs from a base of 1 s would wait 3.5 s on
        # average; capped at 80 ms, each waits 0 to 80 ms, drawn at random
        # for each retry of each call (the log says how long).
        base, cap = 1000, 80
        k = self.key()
        cs = self.calls(self.url(key=k, fail=503, fail_first=12), n=3, retries=3, base=base,
                        cap=cap)
        self.assertEqual([self.outcome(c) for c in cs], [("ok", 503, 4, RETRIED)] * 3)
        self.assertEqual(self.seen(k), 12)
        self.assertLess(max(c["duration"] for c in cs) * 1000 / base, 0.6, cs)
        waits = [int(m.group(1)) for m in self.app.wait_log(
            "key=" + re.escape(k) + r"&[^ ]*: try \d failed \(ok, status 503\); retry \d in (\d+) ms", count=9)]
        self.assertEqual(len(waits), 9)
        self.assertLessEqual(max(waits), cap)
        self.assertGreater(len(set(waits)), 3, waits)

    def test_the_backoff_base_defaults_to_25_ms_and_its_cap_to_250_ms(self):
        # Ten retries of a failing call: with the defaults, the waits are at
        # most 25, 50, 100, 200 and then 250 ms each (2.075 s in all).
        k = self.key()
        c = self.call(self.url(key=k, fail=503, fail_first=11), retries=10)
        self.assertEqual(self.outcome(c), ("ok", 503, 11, RETRIED))
        self.assertLess(c["duration"] / 2.075, 1.2)

    def test_retry_after_is_honoured_up_to_the_cap(self):
        k = self.key()
        c = self.call(self.url(key=k, fail=503, fail_first=1, retry_after=1), retries=1,
                      cap=3000)
        self.assertEqual(self.outcome(c), ("ok", 200, 2, RETRIED))
        self.assertGreater(c["duration"] / 1.0, 0.95)
        # Longer than the cap: not retried, and at once.
        k = self.key()
        c = self.call(self.url(key=k, fail=503, fail_first=1, retry_after=2), retries=1,
                      cap=1000)
        self.assertEqual(self.outcome(c), ("ok", 503, 1, 0))
        self.assertLess(c["duration"] / 2.0, 0.25)

    def test_a_try_past_its_per_try_timeout_is_retried(self):
        k = self.key()
        c = self.call(self.url(key=k, tail_first=1, tail_ms=3000), retries=1,
                      try_timeout=300)
        self.assertEqual(self.outcome(c), ("ok", 200, 2, RETRIED))
        self.assertLess(c["duration"] / 3.0, 0.4)
        self.assertEqual(self.seen(k), 2)

    def test_without_a_per_try_timeout_a_try_has_the_whole_call_timeout(self):
        # The default per-try timeout is what is left of the total: the slow
        # first try uses all of it, and no retry is left time for.
        k = self.key()
        c = self.call(self.url(key=k, tail_first=1, tail_ms=3000), retries=2, timeout=400)
        self.assertEqual((c["error"], c["attempts"], c["flags"]), ("timeout", 1, 0))
        self.assertGreater(c["duration"] / 0.4, 0.95)
        self.assertEqual(self.seen(k), 1)

    def test_the_total_timeout_counts_every_try_and_every_wait(self):
        # Each try times out after 200 ms and the call after 700: the fourth
        # try has what is left, and the call ends at its total timeout.
        k = self.key()
        c = self.call(self.url(key=k, tail_first=100, tail_ms=5000), retries=10, base=1, cap=1,
                      try_timeout=200, timeout=700)
        self.assertEqual((c["error"], c["attempts"], c["flags"]), ("timeout", 4, RETRIED))
        self.assertGreater(c["duration"] / 0.7, 0.95)
        self.assertLess(c["duration"] / 0.7, 1.3)
        self.assertEqual(self.seen(k), 4)

    # ---- the budget

    def test_the_default_budget_is_20_percent_of_the_calls_in_flight_or_3(self):
        # Ten calls fail together: 20 % of 10 is 2, less than 3, so three
        # retries go out and seven calls end with their first failure.
        k = self.key()
        cs = self.calls(self.url(key=k, ms=300, fail=503, fail_first=10), n=10, retries=1)
        retried = [c for c in cs if c["flags"] & RETRIED]
        self.assertEqual(len(retried), 3, cs)
        self.assertEqual(self.seen(k), 13)
        self.assertTrue(all(self.outcome(c) == ("ok", 200, 2, RETRIED) for c in retried), cs)
        self.app.wait_log(r"no retry: the retry budget of http://127.0.0.1:%d is spent "
                          r"\(3 retries and hedges in flight of 3 allowed for \d+ calls\)"
                          % self.m.port)

    def test_an_exhausted_budget_stops_retries_and_counts_them(self):
        # The origin allows one retry in flight (--origin ...,budget-min=1,
        # budget-percent=1) and sets retries=1 for its calls.
        k = self.key()
        cs = self.calls(self.url(self.tight, key=k, ms=300, fail=503, fail_first=100), n=10)
        self.assertEqual(sum(c["attempts"] for c in cs), 11, cs)
        self.assertEqual(len([c for c in cs if c["flags"] & RETRIED]), 1, cs)
        self.assertEqual(self.seen(k, self.tight), 11)
        lines = self.app.wait_log(r"no retry: the retry budget of http://127.0.0.1:%d is spent "
                                  r"\(1 retries and hedges in flight of 1 allowed for \d+ calls"
                                  r"\); (\d+) refused in this worker" % self.tight.port, count=9)
        self.assertGreaterEqual(int(lines[-1].group(1)), 9)

    # ---- hedged calls

    def test_a_hedge_wins_against_a_slow_first_try_whose_connection_closes(self):
        tail = 3.0
        k = self.key()
        before = self.cancelled()
        c = self.call(self.url(key=k, tail_first=1, tail_ms=int(tail * 1000)), hedge_after=100)
        self.assertEqual(self.outcome(c), ("ok", 200, 2, HEDGED))
        self.assertLess(c["duration"] / tail, 0.2)
        self.assertEqual(self.seen(k), 2)
        # The loser was cancelled through its transport: its connection
        # closed, the mock saw its client go away before its delay ended.
        self.assertEqual(self.wait_cancelled(before + 1), before + 1)

    def test_a_try_faster_than_the_hedge_delay_is_not_hedged(self):
        k = self.key()
        c = self.call(self.url(key=k, ms=10), hedge_after=1000)
        self.assertEqual(self.outcome(c), ("ok", 200, 1, 0))
        self.assertEqual(self.seen(k), 1)

    def test_a_policy_that_only_hedges_never_retries(self):
        # A failure that is retried under a policy with retries (503, a
        # refused connection) ends the call at once when it has none.
        k = self.key()
        c = self.call(self.url(key=k, fail=503, fail_rate=1), hedge_after=1000, timeout=2000)
        self.assertEqual(self.outcome(c), ("ok", 503, 1, 0))
        self.assertEqual(self.seen(k), 1)
        c = self.call("http://127.0.0.1:9/", hedge_after=1000, timeout=2000)
        self.assertEqual(self.outcome(c), ("refused", 0, 1, 0))

    def test_a_non_idempotent_call_is_not_hedged(self):
        tail = 0.6
        k = self.key()
        c = self.call(self.url(key=k, tail_first=1, tail_ms=int(tail * 1000)), hedge_after=50,
                      method="POST")
        self.assertEqual(self.outcome(c), ("ok", 200, 1, 0))
        self.assertGreater(c["duration"] / tail, 0.95)

    def test_hedges_draw_on_the_retry_budget(self):
        # One retry or hedge in flight at the origin: of five slow calls,
        # one is hedged.
        k = self.key()
        cs = self.calls(self.url(self.tight, key=k, ms=500), n=5, hedge_after=50)
        self.assertEqual(sorted(c["attempts"] for c in cs), [1, 1, 1, 1, 2], cs)
        self.assertEqual(len([c for c in cs if c["flags"] & HEDGED]), 1, cs)
        self.assertEqual(self.seen(k, self.tight), 6)
        self.app.wait_log(r"no hedge: the retry budget of http://127.0.0.1:%d is spent"
                          % self.tight.port)

    def test_an_adaptive_hedge_waits_for_the_origins_p95(self):
        tail = 1.0
        # Before 20 latencies are known, a p95 hedge is not sent.
        k = self.key()
        c = self.call(self.url(self.p95, key=k, ms=20, tail_first=1, tail_ms=int(tail * 1000)),
                      hedge="p95")
        self.assertEqual(self.outcome(c), ("ok", 200, 1, 0))
        # 30 calls of 20 ms teach the worker the origin's p95 (about 20 ms).
        for c in self.calls(self.url(self.p95, key=self.key(), ms=20), n=30, hedge="p95"):
            self.assertEqual(c["error"], "ok")
        k = self.key()
        c = self.call(self.url(self.p95, key=k, ms=20, tail_first=1, tail_ms=int(tail * 1000)),
                      hedge="p95")
        self.assertEqual(self.outcome(c), ("ok", 200, 2, HEDGED))
        self.assertLess(c["duration"] / tail, 0.3)

    # ---- cancellation: nothing outlives its call

    def disconnect_after(self, path, seconds):
        with harness.connect(self.app.port) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            time.sleep(seconds)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")

    def test_a_request_cancelled_in_backoff_sends_no_late_retry(self):
        k = self.key()
        url = self.url(key=k, fail=503, fail_first=1, retry_after=1)
        path = f"/resilient?url={quote(url, safe='')}&retries=1&cap=5000"
        self.disconnect_after(path, 0.3)  # in the 1 s wait Retry-After asked for
        self.app.wait_log("key=" + k + r"&[^ ]* failed: operation cancelled", timeout=5)
        time.sleep(1.2)  # past the end of the backoff
        self.assertEqual(self.seen(k), 1)
        self.assertEqual(get_json(self.app.port, "/resilient?url=" + quote(self.url(), safe=""))
                         [0], 200)

    def test_a_request_cancelled_before_its_hedge_sends_none(self):
        k = self.key()
        before = self.cancelled()
        url = self.url(key=k, tail_first=1, tail_ms=1500)
        path = f"/resilient?url={quote(url, safe='')}&hedge_after=400"
        self.disconnect_after(path, 0.15)
        self.app.wait_log("key=" + k + r"&[^ ]* failed: operation cancelled", timeout=5)
        self.assertEqual(self.wait_cancelled(before + 1), before + 1)  # the first try closed
        time.sleep(0.4)  # past the hedge's delay
        self.assertEqual(self.seen(k), 1)

    def test_a_request_cancelled_while_hedged_cancels_both_tries(self):
        k = self.key()
        before = self.cancelled()
        url = self.url(key=k, ms=1500)
        path = f"/resilient?url={quote(url, safe='')}&hedge_after=100"
        self.disconnect_after(path, 0.3)
        self.app.wait_log("key=" + k + r"&[^ ]* failed: operation cancelled", timeout=5)
        self.assertEqual(self.wait_cancelled(before + 2), before + 2)
        self.assertEqual(self.seen(k), 2)


class LeanTransport(RetrySuite, unittest.TestCase):
    transport = "lean"


class CurlTransport(RetrySuite, unittest.TestCase):
    transport = "curl"


class OriginFlags(unittest.TestCase):
    def refused(self, item, log):
        p = subprocess.run([harness.TESTAPP, "--workers", "0", "--port", "0", "--origin",
                            "http://127.0.0.1:9," + item], capture_output=True, text=True,
                           timeout=10)
        self.assertNotEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stderr, log)

    def test_bad_retry_items_of_origin_are_refused_at_start(self):
        self.refused("retries=11", r"--origin retries")
        self.refused("budget-percent=101", r"--origin budget-percent")
        self.refused("retry-on=99", r"retry-on=99: expected up to 7 statuses")
        self.refused("retry-on=502:x", r"retry-on=502:x: expected")
        self.refused("hedge=sometimes", r"'hedge=sometimes'")
        self.refused("breaker-error-percent=200", r"--origin breaker-error-percent")


class OriginState(unittest.TestCase):
    """max_origins: the origins a worker keeps retry, hedge and breaker state
    for; a call to one more is tried once, with a warning."""

    def resilient(self, app, url, **params):
        status, j = get_json(app.port, f"/resilient?url={quote(url, safe='')}&"
                             + urlencode(params))
        self.assertEqual(status, 200, j)
        return j["calls"][0]

    def test_a_call_to_an_origin_beyond_max_origins_is_tried_once(self):
        a, b = mock(), mock()
        app = testapp("--max-origins", "1")
        try:
            for m, tries in ((a, 2), (b, 1), (a, 2)):
                k = f"beyond-{m.port}-{tries}-{next(_keys)}"
                c = self.resilient(app, f"http://127.0.0.1:{m.port}/delay?key={k}&fail=503"
                                   "&fail_first=1", retries=2)
                self.assertEqual((c["status"], c["attempts"]), (200 if tries == 2 else 503,
                                                                tries), c)
                self.assertEqual(get_json(m.port, "/stats")[1]["keys"].get(k), tries)
            app.wait_log(rf"calls to http://127\.0\.0\.1:{b.port} are tried once, unhedged "
                         r"and without a breaker: the worker keeps state for 1 origins already "
                         r"\(max_origins\)")
        finally:
            app.stop()
            a.stop()
            b.stop()

    def test_a_worker_keeps_state_for_4096_origins_by_default(self):
        # 4,097 origins that refuse at once: 127.0.x.y port 9, all loopback.
        app = testapp()
        try:
            origins = [f"http://127.0.{i // 250}.{i % 250 + 1}:9/" for i in range(4097)]
            conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
            for i, url in enumerate(origins):
                conn.request("GET", f"/resilient?hedge_after=100&url={quote(url, safe='')}")
                r = conn.getresponse()
                self.assertEqual(r.status, 200, r.read())
                r.read()
                if i == 4095:
                    self.assertNotIn("are tried once", app.log())
            conn.close()
            app.wait_log(r"calls to http://127\.0\.16\.97:9 are tried once.*keeps state for "
                         r"4096 origins already")
        finally:
            app.stop()


if __name__ == "__main__":
    harness.main()
