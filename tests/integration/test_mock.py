"""`fanout mock`'s faults and counters, which the resilience tests read:
failures of the first N requests of a key or of a share of requests, with
an error status, a reset before any byte (fan_reply_drop()) or a truncated
body; a slow tail; Retry-After and Cache-Control; per-path and per-key
counts, bounded; and the checks of every fault parameter."""
import socket
import time
import unittest

from harness import Reader, connect, get_json, main, mock, request


class MockFaults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mock = mock()

    @classmethod
    def tearDownClass(cls):
        cls.mock.stop()

    def setUp(self):
        get_json(self.mock.port, "/stats?reset=1")

    def stats(self):
        return get_json(self.mock.port, "/stats")[1]

    def get(self, path):
        return request(self.mock.port, "GET", path)

    def test_fail_first_counts_per_key(self):
        got = [self.get("/delay?fail_first=2&key=k1").status for _ in range(4)]
        self.assertEqual(got, [503, 503, 200, 200])
        # another key has its own count; the default key is the path
        self.assertEqual(self.get("/delay?fail_first=1&key=k2").status, 503)
        self.assertEqual(self.get("/other?fail_first=1&fail=502").status, 502)
        self.assertEqual(self.get("/other?fail_first=1&fail=502").status, 200)
        s = self.stats()
        self.assertEqual(s["keys"], {"k1": 4, "k2": 1, "/other": 2})
        self.assertEqual(s["paths"], {"/delay": 5, "/other": 2})
        self.assertEqual((s["requests"], s["failed"], s["completed"]), (7, 4, 3))
        # /stats?reset=1 clears every count
        get_json(self.mock.port, "/stats?reset=1")
        s = self.stats()
        self.assertEqual((s["requests"], s["keys"], s["paths"]), (0, {}, {}))
        self.assertEqual(self.get("/delay?fail_first=2&key=k1").status, 503)

    def test_connections_counts_each_accepted_connection_once(self):
        before = self.stats()["connections"]
        # 3 requests on one keep-alive connection, 2 fresh connections, one
        # connection that sends nothing: 4 accepted, and the reading one
        with connect(self.mock.port) as s:
            reader = Reader(s)
            for _ in range(3):
                s.sendall(b"GET /delay HTTP/1.1\r\nHost: t\r\n\r\n")
                self.assertEqual(reader.read().status, 200)
            for _ in range(2):
                self.assertEqual(self.get("/delay").status, 200)
            with connect(self.mock.port):
                pass
            # /stats?reset=1 clears the requests, not this count
            get_json(self.mock.port, "/stats?reset=1")
        # the kernel queues the connections in order, so the silent one is
        # accepted before this read, which counts itself: 4 + the reset + 1
        self.assertEqual(self.stats()["connections"] - before, 6)

    def test_fail_rate(self):
        self.assertTrue(all(self.get("/r?fail_rate=1").status == 503 for _ in range(5)))
        self.assertTrue(all(self.get("/r?fail_rate=0").status == 200 for _ in range(5)))
        got = [self.get("/r?fail_rate=0.5").status for _ in range(200)]
        fails = got.count(503)
        self.assertTrue(40 < fails < 160, fails)  # binomial(200, 0.5): far inside

    def test_reset_sends_nothing(self):
        with connect(self.mock.port) as s:
            s.sendall(b"GET /delay?fail=reset&fail_rate=1 HTTP/1.1\r\nHost: t\r\n\r\n")
            got = b""
            try:
                while True:
                    data = s.recv(65536)
                    if not data:
                        break
                    got += data
            except ConnectionResetError:
                pass
            self.assertEqual(got, b"")
        self.mock.wait_log(r"GET /delay\S* 444 ")
        # the mock goes on serving
        self.assertEqual(self.get("/delay").status, 200)

    def test_reset_mid_truncates_the_body(self):
        with connect(self.mock.port) as s:
            s.sendall(b"GET /delay?fail=reset_mid&fail_rate=1 HTTP/1.1\r\nHost: t\r\n\r\n")
            r = Reader(s)
            self.assertTrue(r.closed())
            head, _, body = r.buf.partition(b"\r\n\r\n")
            self.assertIn(b"HTTP/1.1 200", head)
            self.assertIn(b"Transfer-Encoding: chunked", head)
            self.assertIn(b'{"value": 0.', body)
            self.assertNotIn(b"\r\n0\r\n\r\n", body)  # no last chunk

    def test_retry_after_and_cache_control(self):
        r = self.get("/delay?fail_rate=1&fail=429&retry_after=7")
        self.assertEqual((r.status, r.header("Retry-After")), (429, "7"))
        r = self.get("/delay?status=503&retry_after=2")
        self.assertEqual((r.status, r.header("Retry-After")), (503, "2"))
        self.assertIsNone(self.get("/delay?retry_after=2").header("Retry-After"))
        r = self.get("/delay?cache_control=max-age%3D60,%20stale-if-error%3D30")
        self.assertEqual(r.header("Cache-Control"), "max-age=60, stale-if-error=30")

    def test_slow_tail(self):
        t = time.monotonic()
        self.get("/delay?tail_p=1&tail_ms=300")
        slow = time.monotonic() - t
        t = time.monotonic()
        self.get("/delay?tail_p=0&tail_ms=300")
        fast = time.monotonic() - t
        self.assertLess(fast / slow, 0.5)

    def test_any_method_and_path(self):
        for method in ("GET", "POST", "PUT", "DELETE"):
            self.assertEqual(request(self.mock.port, method, "/a/b/c", body=b"x").status, 200)
        self.assertEqual(self.stats()["paths"], {"/a/b/c": 4})

    def test_bad_parameters(self):
        for q in ("fail=abc", "fail=99", "fail_rate=2", "fail_rate=x", "tail_p=-1",
                  "fail_first=-1", "tail_ms=x", "retry_after=-2", "cache_control=%0d%0aX:%20y"):
            r = self.get("/delay?" + q)
            self.assertEqual(r.status, 400, q)
            self.assertIn("query parameter", r.json()["error"])
        self.assertEqual(self.stats()["requests"], 0)  # refused requests are not counted

    def test_key_table_is_bounded(self):
        with connect(self.mock.port) as s:
            r = Reader(s)
            for i in range(4100):
                s.sendall(f"GET /k?key=k{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                self.assertEqual(r.read().status, 200)
        s = self.stats()
        self.assertEqual(len(s["keys"]), 4096)
        self.assertEqual(s["requests"], 4100)


if __name__ == "__main__":
    main()
