"""What a call's options and shorthands put on the wire, run once per
transport: a JSON body (fan_call_opts.json, fan_post_json()), an upstream URL
built from request input with fan_url_escape(), and a call's own connect
timeout. The upstream is test_call_checks' raw-socket server, which keeps
each request's line, header lines and body bytes as they arrived; the
connect timeouts go to a listener that drops SYNs."""
import json
import time
import unittest
from urllib.parse import quote

import harness
from harness import get_json
from test_call_checks import RecordingServer

APP_CONNECT_TIMEOUT = 1.0  # the app's connect_timeout_ms, in seconds


class CallOptsSuite(harness.TransportSuite):
    app_args = ("--connect-timeout-ms", str(int(APP_CONNECT_TIMEOUT * 1000)))

    @classmethod
    def make_upstream(cls):
        return RecordingServer()

    def get(self, path, headers=(), **params):
        """The testapp's answer to `path` with `params` (and ?header=...)."""
        for i, h in enumerate(headers):
            params["header" if i == 0 else f"header{i + 1}"] = h
        q = "&".join(f"{k}={quote(v if isinstance(v, bytes) else str(v), safe='')}"
                     for k, v in params.items())
        status, j = get_json(self.app.port, f"{path}?{q}")
        self.assertEqual(status, 200, j)
        return j

    def last_request(self, j):
        """The request the upstream received for a call that succeeded."""
        self.assertEqual((j["error"], j["status"]), ("ok", 200), j)
        return self.upstream.requests[-1]

    def assert_refused(self, log, path, **params):
        """The call ends with "invalid", the log says `log`, and the upstream
        saw no connection and no byte."""
        before = self.upstream.seen()
        j = self.get(path, name="api_a", **params)
        self.assertEqual((j["error"], j["status"]), ("invalid", 0), j)
        self.app.wait_log(r" warn \[\d+\] call api_a: " + log)
        time.sleep(0.05)  # anything sent would have arrived by now
        self.assertEqual(self.upstream.seen(), before)

    # ---- JSON bodies

    def test_a_json_body_is_sent_compact_with_a_json_content_type(self):
        # Spaces go, member order and UTF-8 stay: the exact compact text.
        j = self.get("/fetch", url=self.upstream.url(), method="PUT",
                     json='{ "name": "caf\u00e9 & co", "n": [1, 2.5, true, null], "o": {} }')
        line, headers, body = self.last_request(j)
        self.assertEqual(line, "PUT /echo HTTP/1.1")
        self.assertEqual(body, '{"name":"caf\u00e9 & co","n":[1,2.5,true,null],"o":{}}'.encode())
        self.assertIn("Content-Type: application/json", headers)
        self.assertIn(f"Content-Length: {len(body)}", headers)
        names = sorted(h.split(":", 1)[0].lower() for h in headers)
        self.assertEqual(names, ["content-length", "content-type", "host", "traceparent"], headers)

    def test_any_json_value_can_be_the_body(self):
        for text in ('"just a string"', "42", "[]", "null"):
            with self.subTest(text=text):
                _, _, body = self.last_request(self.get("/fetch", url=self.upstream.url(),
                                                        method="POST", json=text))
                self.assertEqual(body, text.encode())

    def test_a_json_body_larger_than_an_arena_chunk_is_sent_whole(self):
        doc = {"data": "x" * 9000, "tail": "end"}
        text = json.dumps(doc, separators=(",", ":"))
        _, headers, body = self.last_request(self.get("/fetch", url=self.upstream.url(),
                                                      method="POST", json=text))
        self.assertEqual(body, text.encode())
        self.assertIn(f"Content-Length: {len(text)}", headers)

    def test_the_callers_content_type_is_kept(self):
        j = self.get("/fetch", ["Content-Type: application/vnd.api+json", "X-A: 1"],
                     url=self.upstream.url(), method="POST", json='{"a":1}')
        _, headers, body = self.last_request(j)
        self.assertEqual(body, b'{"a":1}')
        types = [h for h in headers if h.lower().startswith("content-type:")]
        self.assertEqual(types, ["Content-Type: application/vnd.api+json"], headers)

    def test_fan_post_json_posts_the_value_as_json(self):
        j = self.get("/post_json", url=self.upstream.url("/v1/things"),
                     json='{"id": 7, "tags": ["a", "b"]}')
        line, headers, body = self.last_request(j)
        self.assertEqual(line, "POST /v1/things HTTP/1.1")
        self.assertEqual(body, b'{"id":7,"tags":["a","b"]}')
        self.assertIn("Content-Type: application/json", headers)

    def test_a_json_body_together_with_a_body_is_refused(self):
        self.assert_refused(r"both a body and a JSON body", "/fetch", url=self.upstream.url(),
                            method="POST", body="a=1", json='{"a":1}')

    def test_fan_post_json_of_null_is_refused(self):
        # A NULL value (a json_pack() that failed, say) sends nothing.
        before = self.upstream.seen()
        j = self.get("/post_json", url=self.upstream.url())
        self.assertEqual((j["error"], j["status"]), ("invalid", 0), j)
        self.app.wait_log(r" warn \[\d+\] call http://127\.0\.0\.1:\d+/echo: no JSON body")
        time.sleep(0.05)
        self.assertEqual(self.upstream.seen(), before)

    # ---- URLs built from request input

    def test_an_escaped_value_reaches_the_upstream_as_one_path_segment_and_query_value(self):
        value = "a b&c#d/e%f+g?h=i \u00e9-._~"
        enc = "a%20b%26c%23d%2Fe%25f%2Bg%3Fh%3Di%20%C3%A9-._~"
        self.assertEqual(quote(value, safe=""), enc)  # RFC 3986, as Python writes it
        j = self.get("/escaped", base=self.upstream.url("/v1"), value=value)
        line, _, _ = self.last_request(j)
        self.assertEqual(line, f"GET /v1/items/{enc}?q={enc}&n=1 HTTP/1.1")

    def test_every_byte_but_nul_survives_escaping_into_an_upstream_url(self):
        value = bytes(range(1, 256))
        j = self.get("/escaped", base=self.upstream.url(""), value=value)
        line, _, _ = self.last_request(j)
        enc = quote(value, safe="")
        self.assertEqual(line, f"GET /items/{enc}?q={enc}&n=1 HTTP/1.1")

    # ---- connect timeouts

    def connect_to_silence(self, **params):
        """A call to an address that drops SYNs; its outcome."""
        port = harness.silent_listener(self)
        return self.get("/fetch", url=f"http://127.0.0.1:{port}/", **params)

    def test_a_calls_connect_timeout_replaces_the_apps(self):
        own = 0.15
        j = self.connect_to_silence(connect_timeout=int(own * 1000))
        self.assertEqual(j["error"], "timeout", j)
        # About its own timeout, far from the app's (1 s: a ratio above 6).
        self.assertGreaterEqual(j["elapsed"] / own, 0.9, j)
        self.assertLess(j["elapsed"] / own, 3.0, j)

    def test_without_one_the_apps_connect_timeout_applies(self):
        j = self.connect_to_silence()
        self.assertEqual(j["error"], "timeout", j)
        self.assertGreaterEqual(j["elapsed"] / APP_CONNECT_TIMEOUT, 0.9, j)
        self.assertLess(j["elapsed"] / APP_CONNECT_TIMEOUT, 2.0, j)


class LeanTransport(CallOptsSuite, unittest.TestCase):
    transport = "lean"


class CurlTransport(CallOptsSuite, unittest.TestCase):
    transport = "curl"


if __name__ == "__main__":
    harness.main()
