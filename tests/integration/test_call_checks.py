"""The check of every upstream request, run once per transport: a method
that is not a token, a header line that is not "Name: value" or carries a CR
or LF, a URL with a space or a control byte end the call with FAN_EINVAL and
a log line naming the call, and the upstream receives nothing. The upstream
is a raw-socket server that keeps every byte it was sent."""
import json
import os
import socket
import threading
import time
import unittest
from urllib.parse import quote

import harness
from harness import get_json


class RecordingServer:
    """Counts connections, keeps the bytes received and answers each request
    with its method, target, headers and body as JSON."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.received = b""
        self.requests = []  # (request line, header lines, body bytes), in arrival order
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def url(self, path="/echo"):
        return f"http://127.0.0.1:{self.port}{path}"

    def seen(self):
        """What reached the server so far: (connections, bytes)."""
        with self.lock:
            return self.connections, len(self.received)

    def accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def recv(self, conn):
        data = conn.recv(65536)
        with self.lock:
            self.received += data
        return data

    def serve(self, conn):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = self.recv(conn)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                fields = [l.split(":", 1) for l in lines[1:]]
                headers = {f[0]: f[1].strip() for f in fields if len(f) == 2}
                n = int(headers.get("Content-Length", 0))
                while len(buf) < n:
                    data = self.recv(conn)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:n], buf[n:]
                with self.lock:
                    self.requests.append((lines[0], lines[1:], body))
                out = json.dumps({"request_line": lines[0], "headers": headers,
                                  "header_lines": lines[1:],
                                  "body": body.decode("latin-1")}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(out), out))
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.sock.close()


class CallCheckSuite(harness.TransportSuite):
    @classmethod
    def make_upstream(cls):
        return RecordingServer()

    def fetch(self, url=None, headers=(), **params):
        """One call through the app's /fetch, labelled api_a; its outcome."""
        params = {"url": url or self.upstream.url(), "name": "api_a", **params}
        for i, h in enumerate(headers):
            params["header" if i == 0 else f"header{i + 1}"] = h
        q = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in params.items())
        status, j = get_json(self.app.port, f"/fetch?{q}")
        self.assertEqual(status, 200, j)
        return j

    def assert_refused(self, log, url=None, headers=(), **params):
        """The call ends with "invalid", the log says `log` about it, and the
        upstream saw no connection and no byte."""
        before = self.upstream.seen()
        j = self.fetch(url, headers, **params)
        self.assertEqual(j["error"], "invalid", j)
        self.assertEqual(j["status"], 0)
        self.app.wait_log(r" warn \[\d+\] " + log)
        time.sleep(0.05)  # anything sent would have arrived by now
        self.assertEqual(self.upstream.seen(), before)

    def test_a_valid_call_goes_through(self):
        j = self.fetch(headers=["X-Trace: abc", "X-Empty:"], method="PUT", body="a=1")
        self.assertEqual((j["error"], j["status"]), ("ok", 200), j)
        sent = json.loads(j["body"])
        self.assertEqual(sent["request_line"], "PUT /echo HTTP/1.1")
        self.assertEqual(sent["headers"]["X-Trace"], "abc")
        self.assertEqual(sent["body"], "a=1")

    def test_a_get_with_a_body_is_sent_as_a_get(self):
        j = self.fetch(body='{"q": 1}')
        self.assertEqual((j["error"], j["status"]), ("ok", 200), j)
        sent = json.loads(j["body"])
        self.assertEqual(sent["request_line"], "GET /echo HTTP/1.1")
        self.assertEqual(sent["body"], '{"q": 1}')
        self.assertEqual(sent["headers"]["Content-Length"], "8")

    def test_the_upstream_gets_the_callers_headers_and_only_framing_of_ours(self):
        # The same lines on both transports: curl adds no Accept and no form
        # Content-Type of its own, and an empty value is sent, not dropped;
        # the trace context is ours too (docs/observability.md).
        j = self.fetch(headers=["X-A: 1", "X-Empty:"], method="POST", body="a=1")
        self.assertEqual((j["error"], j["status"]), ("ok", 200), j)
        lines = json.loads(j["body"])["header_lines"]
        names = sorted(l.split(":", 1)[0].lower() for l in lines)
        self.assertEqual(names, ["content-length", "host", "traceparent", "x-a", "x-empty"], lines)
        self.assertIn("X-Empty:", [l.rstrip() for l in lines])

    def test_both_transports_send_the_child_traceparent_and_the_tracestate(self):
        tid = "0af7651916cd43dd8448eb211c80319c"
        q = f"url={quote(self.upstream.url(), safe='')}"
        r = harness.request(self.app.port, "GET", "/fetch?" + q,
                            [("traceparent", f"00-{tid}-b7ad6b7169203331-01"),
                             ("tracestate", "vendor=opaque,b=2")])
        self.assertEqual(r.status, 200, r.body)
        lines = json.loads(r.json()["body"])["header_lines"]
        tp = [l for l in lines if l.lower().startswith("traceparent:")]
        self.assertEqual(len(tp), 1, lines)
        value = tp[0].split(":", 1)[1].strip()
        self.assertRegex(value, rf"^00-{tid}-[0-9a-f]{{16}}-01$")
        self.assertNotIn("b7ad6b7169203331", value)  # the call's own span, not the caller's
        self.assertIn("tracestate: vendor=opaque,b=2", lines)

    def test_the_callers_host_replaces_the_transports(self):
        j = self.fetch(headers=["Host: api.example"])
        self.assertEqual((j["error"], j["status"]), ("ok", 200), j)
        lines = json.loads(j["body"])["header_lines"]
        self.assertEqual([l for l in lines if l.lower().startswith("host:")], ["Host: api.example"])

    def test_a_content_length_of_the_callers_is_refused(self):
        # Two lengths, the caller's and the transport's, would let the
        # upstream read another message than the one sent (smuggling).
        self.assert_refused(r"call api_a: header 1 \(content-length\) is set by the transport",
                            headers=["content-length: 0"], method="POST", body="abc")

    def test_a_transfer_encoding_of_the_callers_is_refused(self):
        self.assert_refused(r"call api_a: header 1 \(Transfer-Encoding\) is set by the transport",
                            headers=["Transfer-Encoding: chunked"], method="POST", body="abc")

    def test_a_method_that_is_not_a_token_is_refused(self):
        self.assert_refused(r'call api_a: method "GE T" is not a token', method="GE T")

    def test_a_method_with_crlf_is_refused(self):
        self.assert_refused(r'call api_a: method "GET /x HTTP/1.1\\r\\nX:" is not a token',
                            method="GET /x HTTP/1.1\r\nX:")

    def test_an_empty_method_is_refused(self):
        self.assert_refused(r'call api_a: method "" is not a token', method="")

    def test_a_header_without_a_colon_is_refused(self):
        self.assert_refused(r"call api_a: header 2 has no ':'", headers=["X-Ok: 1", "X-Trace abc"])

    def test_a_header_name_that_is_not_a_token_is_refused(self):
        self.assert_refused(r'call api_a: header 1 name "X Trace" is not a token',
                            headers=["X Trace: abc"])

    def test_a_header_with_an_empty_name_is_refused(self):
        self.assert_refused(r'call api_a: header 1 name "" is not a token', headers=[": abc"])

    def test_a_cr_in_a_header_value_is_refused(self):
        self.assert_refused(r"call api_a: header 1 \(X-Trace\) has a CR in its value",
                            headers=["X-Trace: a\rb"])

    def test_an_lf_in_a_header_value_is_refused(self):
        self.assert_refused(r"call api_a: header 1 \(X-Trace\) has an LF in its value",
                            headers=["X-Trace: a\nb"])

    def test_a_header_injection_attempt_is_refused(self):
        # curl used to send this as two header lines.
        self.assert_refused(r"call api_a: header 1 \(X\) has a CR in its value",
                            headers=["X: a\r\nEvil: 1"])

    def test_a_url_with_a_space_is_refused(self):
        url = self.upstream.url("/a b")
        self.assert_refused(rf"call api_a: URL has a space at offset {url.index(' ')}\b", url=url)

    def test_a_url_with_a_control_byte_is_refused(self):
        url = self.upstream.url("/a\x01b")
        self.assert_refused(rf"call api_a: URL has byte 0x01 at offset {url.index(chr(1))}\b",
                            url=url)

    def test_a_url_with_del_is_refused(self):
        url = self.upstream.url("/a\x7fb")
        self.assert_refused(rf"call api_a: URL has byte 0x7f at offset {url.index(chr(0x7f))}\b",
                            url=url)

    def test_an_unlabelled_call_is_logged_by_its_url_escaped(self):
        url = self.upstream.url("/a\tb")
        before = self.upstream.seen()
        status, j = get_json(self.app.port, f"/fetch?url={quote(url, safe='')}")
        self.assertEqual(j["error"], "invalid", j)
        # The tab is written as \t: no control byte of a URL reaches the log.
        self.app.wait_log(r" warn \[\d+\] call http://127\.0\.0\.1:\d+/a\\tb: URL has byte 0x09")
        self.assertEqual(self.upstream.seen(), before)

    def test_an_unknown_scheme_is_refused(self):
        self.assert_refused(r"call api_a: the URL is not http:// or https://",
                            url=f"ftp://127.0.0.1:{self.upstream.port}/")


class LeanTransport(CallCheckSuite, unittest.TestCase):
    transport = "lean"


class CurlTransport(CallCheckSuite, unittest.TestCase):
    transport = "curl"


if __name__ == "__main__":
    harness.main()
