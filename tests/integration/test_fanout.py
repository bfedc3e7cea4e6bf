"""The seed's fan-out, end to end: concurrent upstream calls through the real
demo and test app, over real sockets, against the real mock upstream."""
import re
import socket
import threading
import time
import unittest

import harness
from harness import demo, get_json, mock, request, testapp


class Seed(unittest.TestCase):
    """`fanout demo`: API A takes 2000 ms, API B 1000 ms, called concurrently."""

    @classmethod
    def setUpClass(cls):
        cls.demo = demo()

    @classmethod
    def tearDownClass(cls):
        cls.demo.stop()

    def test_seed_request_takes_the_slowest_call_not_the_sum(self):
        # The baseline: the two calls one after the other, straight to the
        # demo's mock, measured while the demo's request runs.
        mock_port = int(self.demo.wait_log(r"mock upstream API on http://[^ ]*:(\d+)")[0].group(1))
        sequential = []

        def one_after_the_other():
            for ms in (2000, 1000):
                t = time.monotonic()
                request(mock_port, "GET", f"/delay?ms={ms}")
                sequential.append(time.monotonic() - t)

        baseline = threading.Thread(target=one_after_the_other)
        baseline.start()
        t0 = time.monotonic()
        r = request(self.demo.port, "GET", "/")
        elapsed = time.monotonic() - t0
        baseline.join()
        self.assertEqual(r.status, 200)
        m = re.fullmatch(r"Result: \d+\.\d\d; Processing time: (\d+\.\d\d)", r.body.decode())
        self.assertTrue(m, r.body)
        # As long as the slower call (API A's), not as both: about 2/3 of that.
        for took in (elapsed, float(m.group(1))):
            self.assertGreaterEqual(took / sequential[0], 0.95)
            self.assertLessEqual(took / sum(sequential), 0.8)

    def test_each_call_is_logged_when_it_starts_and_finishes(self):
        before = self.demo.log().count("Finish both requests")
        request(self.demo.port, "GET", "/")
        self.demo.wait_log("Finish both requests", before + 1)
        log = self.demo.log()
        events = re.findall(r"(Start request \d|Finish request \d|Finish both requests)", log)
        self.assertEqual(events[-5:], ["Start request 1", "Start request 2", "Finish request 2",
                                       "Finish request 1", "Finish both requests"])

    def test_json_answer_reports_each_calls_timing(self):
        status, j = get_json(self.demo.port, "/?format=json")
        self.assertEqual(status, 200)
        a, b = j["calls"]
        self.assertEqual((a["name"], b["name"]), ("api_a", "api_b"))
        self.assertAlmostEqual(j["result"], a["value"] + b["value"], places=9)
        # Both started at once; each took its own delay.
        self.assertLess(abs(a["started"] - b["started"]) / a["duration"], 0.05)
        self.assertAlmostEqual(a["duration"] / b["duration"], 2.0, delta=0.1)
        self.assertAlmostEqual(j["processing_time"] / a["duration"], 1.0, delta=0.05)

    def test_100_concurrent_seed_requests_on_one_worker_take_about_one(self):
        t0 = time.monotonic()
        request(self.demo.port, "GET", "/")
        single = time.monotonic() - t0
        results = []

        def one():
            try:
                results.append(request(self.demo.port, "GET", "/", timeout=60).status)
            except OSError as e:
                results.append(repr(e))

        threads = [threading.Thread(target=one) for _ in range(100)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        batch = time.monotonic() - t0
        self.assertEqual(results, [200] * 100)
        self.assertLessEqual(batch / single, 1.5)


class RefusedUpstream(unittest.TestCase):
    def test_demo_answers_502_naming_the_refused_upstream(self):
        d = demo("--api-a", f"http://127.0.0.1:{harness.closed_port()}")
        try:
            r = request(d.port, "GET", "/")
            self.assertEqual(r.status, 502)
            j = r.json()
            self.assertEqual(j["upstream"], "api_a")
            self.assertEqual(j["kind"], "refused")
            self.assertIn("api_a", j["error"])
            d.wait_log("upstream api_a failed")
        finally:
            d.stop()


class Calls(harness.AppWithMock):
    """The client through the test app: error kinds, timeouts, cancellation."""

    @classmethod
    def make_app(cls):
        return testapp()

    def fetch(self, url, **params):
        q = "&".join(f"{k}={v}" for k, v in params.items())
        from urllib.parse import quote
        status, j = get_json(self.app.port, f"/fetch?url={quote(url, safe='')}&{q}")
        self.assertEqual(status, 200)
        return j

    def test_a_response_carries_status_headers_and_body(self):
        j = self.fetch(self.mock.url("/delay?ms=0&status=201"))
        self.assertEqual((j["error"], j["status"]), ("ok", 201))
        self.assertEqual(j["content_type"], "application/json")
        self.assertIsInstance(j["value"], float)

    def test_handler_sees_refused(self):
        j = self.fetch(f"http://127.0.0.1:{harness.closed_port()}/")
        self.assertEqual(j["error"], "refused")
        self.assertEqual(j["status"], 0)

    def test_handler_sees_dns_failure(self):
        self.assertEqual(self.fetch("http://nonexistent.invalid/", timeout=5000)["error"], "dns")

    def test_handler_sees_invalid_url(self):
        self.assertEqual(self.fetch("gopher://x/")["error"], "invalid")

    def test_body_over_the_limit_is_too_large(self):
        j = self.fetch(self.mock.url("/delay?size=100000"), max=1000)
        self.assertEqual(j["error"], "too_large")

    def test_slow_upstream_times_out_within_the_call_timeout(self):
        timeout = 0.4
        t0 = time.monotonic()
        j = self.fetch(self.mock.url("/delay?ms=5000"), timeout=int(timeout * 1000))
        elapsed = time.monotonic() - t0
        self.assertEqual(j["error"], "timeout")
        self.assertGreaterEqual(elapsed / timeout, 0.95)
        self.assertLess(elapsed / timeout, 1.5)

    def test_protocol_error_from_a_garbage_upstream(self):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)

        def garbage():
            c, _ = srv.accept()
            c.recv(65536)
            c.sendall(b"SPDY/9 banana\r\n\r\n")
            c.close()

        srv.settimeout(10)
        t = threading.Thread(target=garbage, daemon=True)
        t.start()
        j = self.fetch(f"http://127.0.0.1:{srv.getsockname()[1]}/")
        t.join()
        srv.close()
        self.assertEqual(j["error"], "protocol")

    def test_calls_run_concurrently_and_complete_in_order(self):
        url = self.mock.url("/delay?ms=300")
        from urllib.parse import quote
        _, one = get_json(self.app.port, f"/fanout?n=1&url={quote(url, safe='')}")
        status, j = get_json(self.app.port, f"/fanout?n=10&url={quote(url, safe='')}")
        self.assertEqual(status, 200)
        self.assertEqual(len(j["finished"]), 10)
        self.assertEqual(j["finished"], sorted(j["finished"]))
        # Ten calls take about as long as one, far from ten in a row.
        self.assertLess(j["elapsed"] / (10 * one["elapsed"]), 0.2)

    def test_a_waiting_request_does_not_block_others(self):
        def twenty_quick_requests():
            t0 = time.monotonic()
            for _ in range(20):
                self.assertEqual(request(self.app.port, "GET", "/echo").status, 200)
            return time.monotonic() - t0

        alone = twenty_quick_requests()
        slow_took = []

        def slow_request():
            t = time.monotonic()
            request(self.app.port, "GET", "/sleep?ms=1000")
            slow_took.append(time.monotonic() - t)

        slow = threading.Thread(target=slow_request)
        slow.start()
        time.sleep(0.1)
        during = twenty_quick_requests()
        slow.join()
        # Held behind the sleep, they would take most of the slow request's
        # time on top of their own.
        self.assertLess((during - alone) / slow_took[0], 0.5)

    def test_client_disconnect_aborts_its_upstream_calls(self):
        from urllib.parse import quote
        before = self.stats()["cancelled"]
        url = quote(self.mock.url("/delay?ms=5000"), safe="")
        s = harness.connect(self.app.port)
        s.sendall(f"GET /fanout?n=3&url={url} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        time.sleep(0.3)
        s.close()
        # Within 2 s: well before the 5 s delay ends.
        self.assertEqual(self.wait_cancelled(before + 3), before + 3)
        self.assertEqual(self.stats()["in_flight"], 0)

    def test_request_deadline_cancels_its_calls(self):
        from urllib.parse import quote
        before = self.stats()["cancelled"]
        url = quote(self.mock.url("/delay?ms=5000"), safe="")
        t0 = time.monotonic()
        status, j = get_json(self.app.port, f"/fanout?n=2&deadline=300&url={url}")
        elapsed = time.monotonic() - t0
        self.assertEqual(status, 502)
        self.assertEqual((j["all"], j["cancelled"]), ("cancelled", "timeout"))
        self.assertLess(elapsed / 0.3, 1.5)
        self.assertEqual(self.wait_cancelled(before + 2), before + 2)


if __name__ == "__main__":
    harness.main()
