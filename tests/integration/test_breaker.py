"""The circuit breaker of an origin (fan_origin_opts.breaker_*, --origin
ORIGIN,breaker-...), run once per transport: it opens at its thresholds,
the mock sees no call while it is open, calls fail at once with
circuit_open, and one half-open probe closes it or opens it again. Each
test has its own mock and app, so that each starts with a closed breaker."""
import socket
import time
import unittest
from urllib.parse import quote, urlencode

import harness
from harness import get_json, mock, testapp

COOLDOWN = 0.5  # seconds, the breaker-cooldown-ms the tests set


class BreakerSuite:
    transport = None

    def start(self, *items):
        self.m = mock()
        self.addCleanup(self.m.stop)
        origin = f"http://127.0.0.1:{self.m.port}"
        self.origin = origin
        self.app = testapp("--log-level", "debug", "--origin", ",".join((origin,) + items),
                           env={"FANOUT_TRANSPORT": self.transport})
        self.addCleanup(self.app.stop)

    def url(self, **q):
        return f"http://127.0.0.1:{self.m.port}/delay?" + urlencode(q)

    def calls(self, n=1, **q):
        status, j = get_json(self.app.port, f"/resilient?n={n}&url="
                             + quote(self.url(**q), safe=""))
        self.assertEqual(status, 200, j)
        return [(c["error"], c["status"]) for c in j["calls"]]

    def fail(self, n=1):
        return self.calls(n, fail=503, fail_first=1000000, key="bad")

    def ok(self, n=1, **q):
        return self.calls(n, key="good", **q)

    def seen(self):
        return get_json(self.m.port, "/stats")[1]["requests"]

    def log_re(self, what):
        return r"circuit breaker of " + self.origin.replace(".", r"\.") + " " + what

    def test_it_opens_after_consecutive_failures_and_the_mock_sees_nothing_while_open(self):
        self.start("breaker-failures=3", f"breaker-cooldown-ms={int(COOLDOWN * 1000)}")
        self.assertEqual(self.fail(), [("ok", 503)])
        self.assertEqual(self.ok(), [("ok", 200)])  # a success resets the count
        self.assertEqual(self.fail() + self.fail(), [("ok", 503)] * 2)
        self.assertEqual(self.fail(), [("ok", 503)])
        self.app.wait_log(self.log_re(r"opened: 3 consecutive failures; calls fail with "
                                      r"circuit_open for 500 ms"))
        before = self.seen()
        t0 = time.monotonic()
        self.assertEqual(self.ok(n=5), [("circuit_open", 0)] * 5)
        self.assertLess((time.monotonic() - t0) / COOLDOWN, 0.5)  # at once
        self.assertEqual(self.seen(), before)

    def test_one_probe_after_the_cooldown_closes_it(self):
        self.start("breaker-failures=2", f"breaker-cooldown-ms={int(COOLDOWN * 1000)}")
        self.fail(n=2)
        self.assertEqual(self.ok(), [("circuit_open", 0)])
        time.sleep(COOLDOWN * 1.2)
        before = self.seen()
        # The probe is under way: the other calls of the moment are refused.
        self.assertEqual(sorted(self.ok(n=3, ms=200)),
                         [("circuit_open", 0)] * 2 + [("ok", 200)])
        self.assertEqual(self.seen(), before + 1)
        self.app.wait_log(self.log_re(r"half-open: call \S+ probes it"))
        self.app.wait_log(self.log_re(r"closed: its probe \S+ succeeded"))
        self.assertEqual(self.ok(n=3), [("ok", 200)] * 3)

    def test_a_failed_probe_opens_it_again(self):
        self.start("breaker-failures=2", f"breaker-cooldown-ms={int(COOLDOWN * 1000)}")
        self.fail(n=2)
        time.sleep(COOLDOWN * 1.2)
        self.assertEqual(self.fail(), [("ok", 503)])
        self.app.wait_log(self.log_re(r"opened: its half-open probe failed"))
        before = self.seen()
        self.assertEqual(self.ok(), [("circuit_open", 0)])
        self.assertEqual(self.seen(), before)
        time.sleep(COOLDOWN * 1.2)
        self.assertEqual(self.ok(), [("ok", 200)])

    def test_a_probe_cancelled_before_its_outcome_lets_the_next_call_probe(self):
        self.start("breaker-failures=1", f"breaker-cooldown-ms={int(COOLDOWN * 1000)}")
        self.fail()
        time.sleep(COOLDOWN * 1.2)
        path = "/resilient?url=" + quote(self.url(ms=3000, key="slow"), safe="")
        with harness.connect(self.app.port) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            self.app.wait_log(self.log_re(r"half-open: call \S+key=slow probes it"))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        self.app.wait_log(r"key=slow failed: operation cancelled")
        self.assertEqual(self.ok(), [("ok", 200)])
        self.app.wait_log(self.log_re(r"closed: its probe \S+key=good succeeded"))

    def test_it_opens_on_an_error_rate_once_the_window_has_its_minimum_of_calls(self):
        self.start("breaker-error-percent=50", "breaker-min-calls=10")
        self.assertEqual(self.ok(n=5), [("ok", 200)] * 5)
        for _ in range(4):
            self.fail()
        self.assertEqual(self.ok(), [("ok", 200)])  # 4 of 10 failed: below 50 %
        self.assertEqual(self.fail(), [("ok", 503)])  # 5 of 11
        self.fail()                                # 6 of 12: 50 %
        self.app.wait_log(self.log_re(r"opened: 6 of the last 12 calls failed \(50 % or more "
                                      r"in 10000 ms\); calls fail with circuit_open for "
                                      r"5000 ms"))
        self.assertEqual(self.ok(), [("circuit_open", 0)])

    def test_the_error_rate_counts_twenty_calls_at_least_by_default(self):
        self.start("breaker-error-percent=50", f"breaker-cooldown-ms={int(COOLDOWN * 1000)}")
        for _ in range(19):
            self.fail()
        self.assertEqual(self.ok(), [("ok", 200)])  # 19 of 20 failed: opens on the next
        self.fail()
        self.app.wait_log(self.log_re(r"opened: 20 of the last 21 calls failed"))
        self.assertEqual(self.ok(), [("circuit_open", 0)])

    def test_failures_outside_the_window_do_not_count(self):
        window = 0.6
        self.start("breaker-error-percent=50", "breaker-min-calls=4",
                   f"breaker-window-ms={int(window * 1000)}")
        self.fail(n=3)
        time.sleep(window * 1.3)
        self.assertEqual(self.ok(), [("ok", 200)])
        self.fail()  # 1 of 2 in the window, fewer than 4 calls
        self.assertEqual(self.ok(), [("ok", 200)])

    def test_there_is_no_breaker_unless_the_origin_sets_one(self):
        self.start("max-connections=100")
        self.fail(n=30)
        self.assertEqual(self.ok(), [("ok", 200)])
        self.assertNotIn("circuit breaker", self.app.log())

    def test_a_retry_is_not_sent_to_an_open_breaker(self):
        self.start("breaker-failures=2", "retries=3", "retry-base-ms=1", "retry-cap-ms=1")
        status, j = get_json(self.app.port, "/resilient?url="
                             + quote(self.url(fail=503, fail_first=100), safe=""))
        c = j["calls"][0]
        self.assertEqual((c["error"], c["status"], c["attempts"]), ("ok", 503, 2))
        self.app.wait_log(r"not retried: its origin's breaker is open")
        self.assertEqual(self.seen(), 2)


class LeanTransport(BreakerSuite, unittest.TestCase):
    transport = "lean"


class CurlTransport(BreakerSuite, unittest.TestCase):
    transport = "curl"


if __name__ == "__main__":
    harness.main()
