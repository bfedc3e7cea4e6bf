"""The examples, run as a user would: examples/dashboard against the mock."""
import json
import os
import tempfile
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


if __name__ == "__main__":
    harness.main()
