"""The examples, run as a user would: examples/dashboard against the mock,
examples/await_libuv on its own."""
import json
import os
import re
import socket
import tempfile
import threading
import time
import unittest

import harness
from harness import request

EXAMPLES = os.environ.get("FANOUT_EXAMPLES", "build/examples")


class Dashboard(harness.AppWithMock):
    """Profile, token-then-orders and recommendations, concurrently."""

    @classmethod
    def make_app(cls):
        base = f"http://127.0.0.1:{cls.mock.port}"
        cls.config = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump({
            "dashboard": {
                "profile_url": f"{base}/delay?ms=300",
                "token_url": f"{base}/delay?ms=100",
                "orders_url": f"{base}/delay?ms=200",
                "recommendations_url": f"{base}/delay?ms=250",
                "optional_timeout_ms": 1000,
            },
            "session": {"secrets": ["test-secret-0123456789-0123456789"], "secure": False},
        }, cls.config)
        cls.config.close()
        return cls.dashboard()

    @classmethod
    def dashboard(cls, **env):
        """The example with the test's config file; env overrides a key."""
        return harness.Server([f"{EXAMPLES}/dashboard", "--workers", "0", "--config",
                               cls.config.name], "dashboard", env=env)

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        os.unlink(cls.config.name)

    def login(self, port=None):
        r = request(port or self.app.port, "GET", "/login?user=alice")
        self.assertEqual(r.status, 200)
        cookie = r.header("Set-Cookie").split(";")[0]
        return [("Cookie", cookie)]

    def test_without_a_session_the_dashboard_asks_to_log_in(self):
        self.assertEqual(request(self.app.port, "GET", "/dashboard").status, 401)

    def test_the_three_branches_run_concurrently(self):
        r = request(self.app.port, "GET", "/dashboard", self.login())
        self.assertEqual(r.status, 200)
        j = r.json()
        self.assertEqual(j["user"], "alice")
        self.assertFalse(j["partial"])
        for part in ("profile", "orders", "recommendations"):
            self.assertIsInstance(j[part]["value"], float)
        # profile 300 ms | token 100 + orders 200 | recommendations 250: about
        # 300 ms in all, against 850 ms one after another.
        self.assertLess(j["elapsed"] / 0.85, 0.5)
        self.assertGreater(j["elapsed"] / 0.3, 0.95)

    def test_a_failing_optional_api_gives_a_partial_answer(self):
        srv = self.dashboard(FANOUT_DASHBOARD_RECOMMENDATIONS_URL=f"http://127.0.0.1:{harness.closed_port()}/")
        try:
            r = request(srv.port, "GET", "/dashboard", self.login(srv.port))
            self.assertEqual(r.status, 200)
            j = r.json()
            self.assertTrue(j["partial"])
            self.assertIsNone(j["recommendations"])
            self.assertIsInstance(j["orders"]["value"], float)
        finally:
            srv.stop()

    def test_a_failing_required_api_is_a_502_and_cancels_the_other(self):
        before = self.stats()["cancelled"]
        srv = self.dashboard(FANOUT_DASHBOARD_TOKEN_URL=f"http://127.0.0.1:{harness.closed_port()}/")
        try:
            r = request(srv.port, "GET", "/dashboard", self.login(srv.port))
            self.assertEqual(r.status, 502)
            self.assertIn("orders", r.json()["error"])
            # The profile call (300 ms) was cancelled when orders failed.
            self.assertGreaterEqual(self.wait_cancelled(before + 1), before + 1)
        finally:
            srv.stop()


def loopback_name():
    """A name that resolves to 127.0.0.1 here: "localhost", or on a machine
    without one (a bare chroot has no /etc/hosts) the numeric address,
    which uv_getaddrinfo() resolves as well."""
    try:
        if any(a[4][0] == "127.0.0.1" for a in socket.getaddrinfo("localhost", None)):
            return "localhost"
    except OSError:
        pass
    return "127.0.0.1"


class AwaitLibuv(unittest.TestCase):
    """A handler that awaits a uv timer, then uv_getaddrinfo, through wakers."""
    host = loopback_name()

    @classmethod
    def setUpClass(cls):
        cls.app = harness.Server([f"{EXAMPLES}/await_libuv", "--workers", "0"], "await_libuv")

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()

    def test_it_waits_on_the_timer_then_resolves_the_host(self):
        r = request(self.app.port, "GET", f"/resolve?host={self.host}&delay_ms=200")
        self.assertEqual(r.status, 200)
        j = r.json()
        self.assertEqual(j["host"], self.host)
        self.assertIn("127.0.0.1", j["addresses"])
        # The timer's 200 ms, then a lookup on loopback: a ratio to the delay.
        self.assertGreaterEqual(j["elapsed"] / 0.2, 0.95)
        self.assertLess(j["elapsed"] / 0.2, 5)

    def test_concurrent_requests_wait_together(self):
        n, statuses = 8, []

        def one():
            path = f"/resolve?host={self.host}&delay_ms=200"
            statuses.append(request(self.app.port, "GET", path).status)

        threads = [threading.Thread(target=one) for _ in range(n)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(statuses, [200] * n)
        self.assertLess((time.monotonic() - t0) / (n * 0.2), 0.3)

    def test_without_a_host_it_answers_400(self):
        self.assertEqual(request(self.app.port, "GET", "/resolve").status, 400)

    def test_a_client_leaving_during_the_timer_frees_the_request_at_once(self):
        s = harness.connect(self.app.port)
        s.sendall(b"GET /resolve?host=localhost&delay_ms=10000 HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        s.close()
        # The access log has no query: this request is the only one answered
        # 500 (cancelled, the handler returned without a reply). Its line is
        # written when its memory is freed: at once, not after 10 s.
        m = self.app.wait_log(r"access .* GET /resolve 500 ([\d.]+) ms", timeout=5)
        self.assertLess(float(m[0].group(1)), 2000)


if __name__ == "__main__":
    harness.main()
