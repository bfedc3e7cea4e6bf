"""JSON nested deeply, from a client and from an upstream, cannot overflow a
handler's coroutine stack: jansson recurses once per level (up to 2048),
and fanout runs its parses and writes on the loop's own stack. A value
within jansson's depth limit is parsed and written back; a deeper one is
refused as malformed; the worker serves on either way."""
import harness
from harness import main, request

DEPTHS = (100, 1000, 2000)  # 1000 levels overflowed a 64 KiB coroutine stack


class JsonDepth(harness.AppSuite):
    def deep(self, n):
        return b"[" * n + b"]" * n

    def test_a_deep_request_body(self):
        for n in DEPTHS:
            r = request(self.app.port, "POST", "/json/echo", body=self.deep(n),
                        headers=[("Content-Type", "application/json")])
            self.assertEqual((r.status, r.body), (200, self.deep(n)), n)
        r = request(self.app.port, "POST", "/json/echo", body=self.deep(5000),
                    headers=[("Content-Type", "application/json")])
        self.assertEqual(r.status, 400)  # beyond jansson's 2048 levels: malformed

    def test_a_deep_upstream_body(self):
        for n in DEPTHS:
            url = self.app.url(f"/json/deep?n={n}")
            r = request(self.app.port, "GET", "/json/relay?url=" + url)
            self.assertEqual((r.status, r.body), (200, self.deep(n)), n)
        r = request(self.app.port, "GET", "/json/relay?url=" + self.app.url("/json/deep?n=5000"))
        self.assertEqual(r.status, 502)
        self.assertEqual(request(self.app.port, "GET", "/pid").status, 200)


if __name__ == "__main__":
    main()
