"""Iterating over headers with every value of a repeated one: the request's
(fan_req_header_next), the response's set so far (fan_resp_header_next) and
an upstream response's (fan_call_header_next), the last on both transports
against a raw-socket upstream that writes its answers byte for byte."""
import os
import socket
import threading
import unittest
from urllib.parse import quote

import harness
from harness import connect, get_json, Reader, testapp

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "app.json")

# The upstream's answers, by path.
ANSWERS = {
    "/cookies": b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Mid: m\r\n"
                b"Set-Cookie: b=2; Path=/\r\nset-cookie: c=3; HttpOnly\r\nX-Pad:  p q \t\r\n"
                b"Content-Length: 2\r\n\r\nok",
    "/trailer": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"2\r\nok\r\n0\r\nX-Trailer: t\r\n\r\n",
    "/interim": b"HTTP/1.1 100 Continue\r\nX-Early: 1\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nX-Late: 2\r\nContent-Length: 0\r\n\r\n",
}


class RawUpstream:
    """Answers each request with ANSWERS[path], on kept-alive connections."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        # Keep-alive, as the answers do not say "Connection: close": closing
        # after each answer raced with a client reusing the connection
        # (curl then failed the next call with a receive error).
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                path = head.split(b" ", 2)[1].decode()
                conn.sendall(ANSWERS[path])
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.sock.close()


def raw_request(port, head):
    """Sends `head` (the request line and header lines, without the blank
    line) on a fresh connection; returns the Response."""
    with connect(port) as s:
        s.sendall(head.encode("latin-1") + b"\r\n\r\n")
        return Reader(s).read()


class RequestHeaders(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.app = testapp("--config", CONFIG)

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()

    def test_request_headers_come_in_the_order_received_with_every_repeat(self):
        r = raw_request(self.app.port, "GET /req/headers HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n"
                                       "x-b: two\r\nX-A: 3\r\nCookie: a=1\r\nCookie: b=2\r\n"
                                       "X-Pad:   v w  ")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["headers"],
                         [["Host", "t"], ["X-A", "1"], ["x-b", "two"], ["X-A", "3"],
                          ["Cookie", "a=1"], ["Cookie", "b=2"], ["X-Pad", "v w"]])

    def test_request_trailers_are_not_among_the_headers(self):
        with connect(self.app.port) as s:
            s.sendall(b"POST /req/headers HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                      b"\r\n1\r\nx\r\n0\r\nX-Trailer: t\r\n\r\n")
            r = Reader(s).read()
        self.assertEqual(r.json()["headers"], [["Host", "t"], ["Transfer-Encoding", "chunked"]])

    def test_response_headers_set_so_far_include_each_cookie_line(self):
        status, j = get_json(self.app.port, "/resp/headers")
        self.assertEqual(status, 200, j)
        self.assertEqual(j["headers"], [["X-One", "1"], ["Set-Cookie", "a=1"],
                                        ["Set-Cookie", "b=2; Path=/; HttpOnly"], ["X-Two", "2"]])

    def test_the_session_cookie_is_sent_but_never_listed(self):
        # It is added after the after-request hooks, once the session is final.
        r = raw_request(self.app.port, "GET /resp/headers?session=1 HTTP/1.1\r\nHost: t")
        j = r.json()
        self.assertEqual(j["session"], "ok", j)
        self.assertEqual([v for k, v in j["headers"] if k == "Set-Cookie"],
                         ["a=1", "b=2; Path=/; HttpOnly"])
        sent = [v for k, v in r.headers if k.lower() == "set-cookie"]
        self.assertEqual(sent[:2], ["a=1", "b=2; Path=/; HttpOnly"])
        self.assertEqual(len(sent), 3, r.headers)
        self.assertTrue(sent[2].startswith("fanout_session="), sent)


class UpstreamHeaderSuite(harness.TransportSuite):
    @classmethod
    def make_upstream(cls):
        return RawUpstream()

    def fetch(self, path):
        url = quote(self.upstream.url(path), safe="")
        status, j = get_json(self.app.port, f"/fetch?url={url}")
        self.assertEqual(status, 200, j)
        self.assertEqual((j["error"], j["status"]), ("ok", 200), j)
        return j

    def test_every_set_cookie_line_of_an_upstream_response_is_kept_in_order(self):
        j = self.fetch("/cookies")
        self.assertEqual(j["headers"], [["Set-Cookie", "a=1"], ["X-Mid", "m"],
                                        ["Set-Cookie", "b=2; Path=/"],
                                        ["set-cookie", "c=3; HttpOnly"], ["X-Pad", "p q"],
                                        ["Content-Length", "2"]])

    def test_the_trailers_of_a_chunked_response_follow_its_headers(self):
        j = self.fetch("/trailer")
        self.assertEqual(j["headers"], [["Transfer-Encoding", "chunked"], ["X-Trailer", "t"]])

    def test_the_headers_of_an_interim_response_are_dropped(self):
        j = self.fetch("/interim")
        self.assertEqual(j["headers"], [["X-Late", "2"], ["Content-Length", "0"]])


class LeanTransport(UpstreamHeaderSuite, unittest.TestCase):
    transport = "lean"


class CurlTransport(UpstreamHeaderSuite, unittest.TestCase):
    transport = "curl"


if __name__ == "__main__":
    harness.main()
