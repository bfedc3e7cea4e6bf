"""examples/gateway/, run as a user would against `fanout mock` (its port
written into a copy of each file): every file passes `fanout check`;
seed.json answers the seed's two calls of 2 s and 1 s in about 2 s;
users.json and stream.json answer their endpoints."""
import glob
import json
import os
import subprocess
import tempfile
import time
import unittest

from gwharness import serve, stream
from harness import BIN, main, mock, request

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "gateway")


class Examples(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mock = mock()
        cls.dir = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.mock.stop()
        cls.dir.cleanup()

    def copy(self, name):
        with open(os.path.join(EXAMPLES, name)) as f:
            text = f.read().replace("127.0.0.1:8081", f"127.0.0.1:{self.mock.port}")
        path = os.path.join(self.dir.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_every_example_passes_check(self):
        files = sorted(glob.glob(os.path.join(EXAMPLES, "*.json")))
        self.assertGreaterEqual(len(files), 3)
        for f in files:
            p = subprocess.run([BIN, "check", f], capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, f + p.stderr)
            self.assertTrue(json.loads(p.stdout)["endpoints"])

    def test_seed_answers_in_the_slowest_calls_time(self):
        gw = serve(self.copy("seed.json"))
        try:
            request(gw.port, "GET", "/")
            t0 = time.monotonic()
            r = request(gw.port, "GET", "/")
            elapsed = time.monotonic() - t0
        finally:
            gw.stop()
        self.assertEqual(r.status, 200)
        self.assertEqual(set(r.json()), {"a", "b"})
        self.assertTrue(0.95 < elapsed / 2.0 < 1.25, elapsed)  # 2 s, not the 3 s of the sum

    def test_users_and_stream(self):
        gw = serve(self.copy("users.json"))
        try:
            r = request(gw.port, "GET", "/users/42")
            s = request(gw.port, "POST", "/search?q=x", headers=[("X-User", "bob")])
        finally:
            gw.stop()
        self.assertEqual(r.status, 200, r.body)
        body = r.json()
        self.assertEqual(body["user_id"], "42")
        items = body["orders"]["items"]
        self.assertEqual([i["detail"]["order"] for i in items], ["1", "2", "3", "4", "5"])
        self.assertTrue(all(isinstance(i["recommended"]["value"], float) for i in items))
        self.assertIn("value", body["feed"])
        self.assertEqual(s.json()["search"], {"q": "x", "page": 1, "who": "bob"})
        gw = serve(self.copy("stream.json"))
        try:
            status, _, out, _ = stream(gw.port, "/parts")
        finally:
            gw.stop()
        lines = [json.loads(l) for l in out.decode().splitlines()]
        self.assertEqual(status, 200)
        self.assertEqual([l.get("backend") for l in lines[1:3]], ["fast", "slow"])
        self.assertIn("_fanout", lines[-1])


if __name__ == "__main__":
    main()
