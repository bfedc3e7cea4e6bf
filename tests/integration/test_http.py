"""HTTP/1.1 behaviour of the fanout server, checked over real sockets against
the testapp binary: keep-alive, pipelining, bodies, HEAD, Expect, routing,
URL decoding, limits, timeouts and malformed requests.

Every TestCase class runs its own testapp (with the limits it needs) and
checks at teardown that it stopped cleanly."""
import email.utils
import os
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def req(method, path, headers=(), body=b"", version="HTTP/1.1"):
    """The bytes of one request; Content-Length is added for a body unless a
    length or transfer coding is given."""
    names = [k.lower() for k, _ in headers]
    if body and "content-length" not in names and "transfer-encoding" not in names:
        headers = list(headers) + [("Content-Length", len(body))]
    hdrs = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return f"{method} {path} {version}\r\nHost: t\r\n{hdrs}\r\n".encode() + body


def worker_pid(port):
    """The pid of the process serving `port` (retried while it answers 503
    because a previous test's connections still count)."""
    deadline = time.monotonic() + 5
    while True:
        status, j = harness.get_json(port, "/pid", timeout=10)
        if status != 503 or time.monotonic() > deadline:
            return j.get("pid")
        time.sleep(0.05)


def chunked(*parts, ext=b""):
    """A chunked body: one chunk per part (each with extension `ext`), then
    the last chunk."""
    return b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext, p) for p in parts) + b"0\r\n\r\n"


class ServerCase(unittest.TestCase):
    """Starts one testapp with `args` for the class; stops it afterwards,
    asserting a clean exit and that the worker which served the first request
    served them all (a crashed worker is restarted by the master)."""
    args = ()

    @classmethod
    def setUpClass(cls):
        cls.server = harness.testapp(*cls.args)
        cls.port = cls.server.port
        cls.pid = worker_pid(cls.port)

    @classmethod
    def tearDownClass(cls):
        try:
            pid = worker_pid(cls.port)
        except OSError:
            pid = None
        cls.server.stop()
        if pid != cls.pid:
            raise AssertionError(f"worker {cls.pid} did not last (now {pid})\n{cls.server.log()}")

    def open(self, timeout=10):
        """A new connection and its Reader, closed when the test ends."""
        s = harness.connect(self.port, timeout)
        self.addCleanup(s.close)
        return s, harness.Reader(s)

    def exchange(self, data, head_request=False):
        """Sends raw bytes on a new connection; returns (response, reader)."""
        s, rd = self.open()
        s.sendall(data)
        return rd.read(head_request), rd

    def send_apart(self, first, second):
        """Sends `first`, then `second` in a segment of its own once the
        server has read the first; returns (response, reader)."""
        s, rd = self.open()
        s.sendall(first)
        time.sleep(0.05)
        try:
            s.sendall(second)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed on the first part already
        return rd.read(), rd

    def assertServes(self):
        """The same worker still answers a normal request on a new
        connection."""
        r = harness.request(self.port, "GET", "/pid", timeout=10)
        self.assertEqual((r.status, r.json()["pid"]), (200, self.pid), "worker replaced")

    def assertJsonError(self, r, status):
        self.assertEqual(r.status, status)
        self.assertEqual(r.header("Content-Type"), "application/json")
        body = r.json()
        self.assertEqual(body["status"], status)
        self.assertIsInstance(body["error"], str)

    def assertAnsweredAndClosed(self, data, status):
        """`data` gets a JSON `status` error with Connection: close, the
        connection is closed, and the server goes on serving."""
        r, rd = self.exchange(data)
        self.assertJsonError(r, status)
        self.assertEqual(r.header("Connection"), "close")
        self.assertTrue(rd.closed(), "connection left open")
        self.assertServes()


class KeepAlive(ServerCase):
    def test_several_requests_share_one_connection(self):
        s, rd = self.open()
        for i in range(5):
            s.sendall(req("GET", f"/users/{i}"))
            r = rd.read()
            self.assertEqual((r.status, r.json()), (200, {"id": str(i)}))
            self.assertIsNone(r.header("Connection"))
        self.assertFalse(rd.closed(0.2))

    def test_http10_without_keep_alive_gets_connection_close_and_is_closed(self):
        r, rd = self.exchange(req("GET", "/users/1", version="HTTP/1.0"))
        self.assertEqual((r.status, r.json()), (200, {"id": "1"}))
        self.assertEqual(r.header("Connection"), "close")
        self.assertTrue(rd.closed())

    def test_http10_with_keep_alive_stays_open(self):
        s, rd = self.open()
        for i in range(2):
            s.sendall(req("GET", f"/users/{i}", [("Connection", "keep-alive")], version="HTTP/1.0"))
            r = rd.read()
            self.assertEqual((r.status, r.json()), (200, {"id": str(i)}))
            self.assertEqual(r.header("Connection").lower(), "keep-alive")
        self.assertFalse(rd.closed(0.2))

    def test_connection_close_from_http11_client_is_answered_then_closed(self):
        r, rd = self.exchange(req("GET", "/users/1", [("Connection", "close")]))
        self.assertEqual((r.status, r.json()), (200, {"id": "1"}))
        self.assertEqual(r.header("Connection"), "close")
        self.assertTrue(rd.closed())


class Pipelining(ServerCase):
    def test_pipelined_requests_are_answered_in_order(self):
        s, rd = self.open()
        s.sendall(req("GET", "/sleep?ms=200") + req("GET", "/users/1") + req("GET", "/nowhere")
                  + req("POST", "/echo", body=b"hello") + req("GET", "/users/2"))
        first = rd.read()
        self.assertEqual(first.status, 200)
        self.assertEqual(first.json()["error"], "ok")
        self.assertGreater(first.json()["slept"], 0.1)
        self.assertEqual(rd.read().json(), {"id": "1"})
        self.assertEqual(rd.read().status, 404)
        self.assertEqual(rd.read().json()["body"], "hello")
        self.assertEqual(rd.read().json(), {"id": "2"})
        self.assertFalse(rd.closed(0.2))

    def test_pipelined_request_after_connection_close_is_not_answered(self):
        s, rd = self.open()
        s.sendall(req("GET", "/users/1", [("Connection", "close")]) + req("GET", "/users/2"))
        self.assertEqual(rd.read().json(), {"id": "1"})
        self.assertTrue(rd.closed())
        self.assertEqual(rd.buf, b"")


class RequestBodies(ServerCase):
    def test_content_length_body_is_received_whole(self):
        r, _ = self.exchange(req("POST", "/echo", body=b"name=value&x=1"))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["body"], "name=value&x=1")
        self.assertEqual(r.json()["body_len"], 14)

    def test_chunked_body_with_extensions_is_reassembled(self):
        body = chunked(b"Hello, ", b"chunked", b" world", ext=b";name=value")
        r, _ = self.exchange(req("POST", "/echo", [("Transfer-Encoding", "chunked")], body))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["body"], "Hello, chunked world")

    def test_chunked_body_split_across_writes_is_reassembled(self):
        s, rd = self.open()
        data = req("POST", "/echo", [("Transfer-Encoding", "chunked")], chunked(b"abc", b"defgh"))
        for i in range(0, len(data), 7):
            s.sendall(data[i:i + 7])
            time.sleep(0.005)
        self.assertEqual(rd.read().json()["body"], "abcdefgh")

    def test_chunk_terminator_cut_across_reads_is_accepted(self):
        head = req("POST", "/echo", [("Transfer-Encoding", "chunked")])
        for first, second in ((b"abc\r", b"\n0\r\n\r\n"), (b"abc", b"\r\n0\r\n\r\n"),
                              (b"ab", b"c\r\n0\r\n\r\n")):
            with self.subTest(first=first, second=second):
                r, rd = self.send_apart(head + b"3\r\n" + first, second)
                self.assertEqual((r.status, r.json()["body"]), (200, "abc"))
                self.assertFalse(rd.closed(0.1))

    def test_head_sent_one_byte_at_a_time_is_read_whole(self):
        # Every piece of the target, header names and values arrives in a
        # read of its own: each must be put back together.
        s, rd = self.open()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = req("POST", "/echo?q=alpha&alpha=one&h=x-long-name",
                   [("X-Long-Name", "a value with spaces"), ("Content-Length", 3)], b"xyz")
        for i in range(len(data)):
            s.sendall(data[i:i + 1])
            time.sleep(0.001)
        j = rd.read().json()
        self.assertEqual((j["path"], j["values"], j["body"]), ("/echo", {"alpha": "one"}, "xyz"))
        self.assertEqual(j["headers"], {"x-long-name": "a value with spaces"})

    def test_empty_body_is_received_as_empty(self):
        for headers in ([("Content-Length", 0)], [("Transfer-Encoding", "chunked")]):
            with self.subTest(headers=headers):
                body = chunked() if headers[0][0] == "Transfer-Encoding" else b""
                r, _ = self.exchange(req("POST", "/echo", headers, body))
                self.assertEqual(r.status, 200)
                self.assertEqual((r.json()["body"], r.json()["body_len"]), ("", 0))


class Head(ServerCase):
    def test_head_has_the_headers_of_get_and_no_body(self):
        s, rd = self.open()
        s.sendall(req("GET", "/users/abc"))
        get = rd.read()
        s.sendall(req("HEAD", "/users/abc") + req("GET", "/users/next"))
        head = rd.read(head_request=True)
        self.assertEqual(head.status, 200)
        for name in ("Content-Length", "Content-Type"):
            self.assertEqual(head.header(name), get.header(name), name)
        self.assertEqual(int(head.header("Content-Length")), len(get.body))
        # No body bytes came with the HEAD answer: the next answer follows.
        self.assertEqual(rd.read().json(), {"id": "next"})

    def test_head_on_a_get_only_route_is_served(self):
        s, rd = self.open()
        s.sendall(req("HEAD", "/big?n=5000") + req("GET", "/users/next"))
        head = rd.read(head_request=True)
        self.assertEqual(head.status, 200)
        self.assertEqual(head.header("Content-Length"), "5000")
        self.assertEqual(rd.read().json(), {"id": "next"})


class ExpectContinue(ServerCase):
    args = ("--max-body-bytes", "1000")

    def test_expect_100_continue_gets_100_before_the_body_is_sent(self):
        s, rd = self.open()
        s.sendall(req("POST", "/echo", [("Content-Length", 5), ("Expect", "100-continue")]))
        interim = rd.read()
        self.assertEqual((interim.status, interim.reason), (100, "Continue"))
        s.sendall(b"hello")
        r = rd.read()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["body"], "hello")

    def test_expect_with_body_over_limit_gets_413_without_100(self):
        s, rd = self.open()
        s.sendall(req("POST", "/echo", [("Content-Length", 5000), ("Expect", "100-continue")]))
        r = rd.read()
        self.assertJsonError(r, 413)
        self.assertTrue(rd.closed())
        self.assertServes()


class StandardHeaders(ServerCase):
    def test_every_response_has_a_date_header(self):
        cases = [req("GET", "/users/1"), req("GET", "/nowhere"), req("POST", "/users/1"),
                 req("GET", "/noreply"), b"BAD\r\n\r\n"]
        for data in cases:
            with self.subTest(request=data[:20]):
                r, _ = self.exchange(data)
                date = r.header("Date")
                self.assertIsNotNone(date)
                self.assertRegex(date, r"^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$")
                when = email.utils.parsedate_to_datetime(date).timestamp()
                self.assertLess(abs(when - time.time()), 300)

    def test_json_replies_have_a_json_content_type(self):
        for path in ("/users/1", "/echo", "/nowhere", "/noreply"):
            with self.subTest(path=path):
                r = harness.request(self.port, "GET", path)
                self.assertEqual(r.header("Content-Type"), "application/json")
                r.json()


class Routing(ServerCase):
    def test_route_parameter_is_url_decoded(self):
        self.assertEqual(harness.get_json(self.port, "/users/a%20b"), (200, {"id": "a b"}))
        self.assertEqual(harness.get_json(self.port, "/users/%41"), (200, {"id": "A"}))

    def test_post_route_with_two_parameters_answers_201(self):
        r = harness.request(self.port, "POST", "/users/1/posts/2", body=b"{}")
        self.assertEqual((r.status, r.json()), (201, {"id": "1", "post": "2"}))

    def test_wildcard_captures_the_rest_of_the_path(self):
        self.assertEqual(harness.get_json(self.port, "/files/a/b/c"), (200, {"rest": "a/b/c"}))

    def test_unknown_path_is_404_with_a_json_body(self):
        r = harness.request(self.port, "GET", "/no/such/path")
        self.assertJsonError(r, 404)

    def test_wrong_method_is_405_with_an_allow_header(self):
        r = harness.request(self.port, "DELETE", "/users/1")
        self.assertJsonError(r, 405)
        allowed = {m.strip() for m in r.header("Allow").split(",")}
        self.assertEqual(allowed, {"GET", "HEAD"})

    def test_malformed_escape_in_path_is_400(self):
        r = harness.request(self.port, "GET", "/users/%zz")
        self.assertJsonError(r, 400)
        self.assertServes()


class UrlDecoding(ServerCase):
    def test_query_values_are_url_decoded(self):
        query = "q=a,b,missing,flag&a=x%20y&b=1+2&flag"
        status, j = harness.get_json(self.port, "/echo?" + query)
        self.assertEqual(status, 200)
        self.assertEqual(j["values"], {"a": "x y", "b": "1 2", "missing": None, "flag": ""})
        self.assertEqual((j["path"], j["query"]), ("/echo", query))

    def test_path_is_url_decoded_without_plus_as_space(self):
        self.assertEqual(harness.get_json(self.port, "/users/%41"), (200, {"id": "A"}))
        self.assertEqual(harness.get_json(self.port, "/users/a+b"), (200, {"id": "a+b"}))


class HeadLimits(ServerCase):
    args = ("--max-header-bytes", "2048", "--max-headers", "20")

    def test_head_within_limits_is_served(self):
        headers = [(f"X-H{i}", "v" * 60) for i in range(19)]  # + Host = 20
        r, _ = self.exchange(req("GET", "/echo?h=X-H18", headers))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["headers"], {"X-H18": "v" * 60})

    def test_head_over_max_header_bytes_is_431_and_closed(self):
        self.assertAnsweredAndClosed(req("GET", "/echo", [("X-Big", "v" * 3000)]), 431)

    def test_long_request_target_counts_toward_max_header_bytes(self):
        self.assertAnsweredAndClosed(req("GET", "/echo?x=" + "a" * 3000), 431)

    def test_more_headers_than_max_headers_is_431_and_closed(self):
        headers = [(f"X-H{i}", "v") for i in range(20)]  # + Host = 21
        self.assertAnsweredAndClosed(req("GET", "/echo", headers), 431)


class BodyLimits(ServerCase):
    args = ("--max-body-bytes", "1000")

    def test_body_of_max_body_bytes_is_accepted(self):
        r, _ = self.exchange(req("POST", "/echo", body=b"x" * 1000))
        self.assertEqual((r.status, r.json()["body_len"]), (200, 1000))

    def test_announced_body_over_max_body_bytes_is_413_and_closed(self):
        self.assertAnsweredAndClosed(req("POST", "/echo", [("Content-Length", 1001)]), 413)

    def test_chunked_body_growing_over_max_body_bytes_is_413_and_closed(self):
        body = chunked(*[b"x" * 300] * 4)
        self.assertAnsweredAndClosed(req("POST", "/echo", [("Transfer-Encoding", "chunked")], body), 413)


class HeaderTimeout(ServerCase):
    TIMEOUT = 0.3
    args = ("--header-timeout-ms", "300")

    def assertTimesOut(self, rd, t0):
        r = rd.read()
        elapsed = time.monotonic() - t0
        self.assertJsonError(r, 408)
        self.assertEqual(r.header("Connection"), "close")
        self.assertTrue(rd.closed())
        self.assertGreater(elapsed, 0.8 * self.TIMEOUT)
        self.assertLess(elapsed, self.TIMEOUT + 5)
        self.assertServes()

    def test_partial_head_gets_408_then_close(self):
        s, rd = self.open()
        t0 = time.monotonic()
        s.sendall(b"GET /users/1 HTTP/1.1\r\nHost: t\r\n")
        self.assertTimesOut(rd, t0)

    def test_partial_second_head_on_a_kept_alive_connection_gets_408(self):
        s, rd = self.open()
        s.sendall(req("GET", "/users/1"))
        self.assertEqual(rd.read().status, 200)
        t0 = time.monotonic()
        s.sendall(b"GET /users/2 HTTP/1.1\r\n")
        self.assertTimesOut(rd, t0)


class IdleTimeout(ServerCase):
    TIMEOUT = 0.3
    args = ("--idle-timeout-ms", "300")

    def test_idle_keep_alive_connection_is_closed_without_response(self):
        s, rd = self.open()
        s.sendall(req("GET", "/users/1"))
        self.assertEqual(rd.read().status, 200)
        t0 = time.monotonic()
        self.assertTrue(rd.closed(self.TIMEOUT + 5))
        elapsed = time.monotonic() - t0
        self.assertEqual(rd.buf, b"")
        self.assertGreater(elapsed, 0.8 * self.TIMEOUT)

    def test_new_connection_that_sends_nothing_is_closed_without_response(self):
        s, rd = self.open()
        self.assertTrue(rd.closed(self.TIMEOUT + 5))
        self.assertEqual(rd.buf, b"")

    def test_idle_timer_restarts_after_each_request(self):
        s, rd = self.open()
        for i in range(4):  # 4 * TIMEOUT/2 spans twice the timeout
            s.sendall(req("GET", f"/users/{i}"))
            self.assertEqual(rd.read().json(), {"id": str(i)})
            time.sleep(self.TIMEOUT / 2)
        s.sendall(req("GET", "/users/last"))
        self.assertEqual(rd.read().json(), {"id": "last"})


class ConnectionLimit(ServerCase):
    args = ("--max-connections", "3")

    def open_served(self, n):
        """n open connections, each served once; retried while the server has
        not yet noticed that an earlier test's connections closed."""
        deadline = time.monotonic() + 5
        while True:
            conns = [harness.connect(self.port) for _ in range(n)]
            for s in conns:
                s.sendall(req("GET", "/users/1"))
            statuses = [harness.Reader(s).read().status for s in conns]
            if statuses == [200] * n or time.monotonic() > deadline:
                break
            for s in conns:
                s.close()
            time.sleep(0.05)
        self.assertEqual(statuses, [200] * n)
        for s in conns:
            self.addCleanup(s.close)
        return [(s, harness.Reader(s)) for s in conns]

    def test_connection_over_max_connections_gets_503_and_is_closed(self):
        conns = self.open_served(3)
        s, rd = self.open()
        r = rd.read()
        self.assertJsonError(r, 503)
        self.assertEqual(r.header("Connection"), "close")
        self.assertTrue(rd.closed())
        for s, rd in conns:  # the others go on working
            s.sendall(req("GET", "/users/2"))
            self.assertEqual(rd.read().status, 200)

    def test_a_closed_connection_frees_its_slot(self):
        conns = self.open_served(3)
        conns[0][0].close()
        deadline = time.monotonic() + 5
        while True:  # the server notices the close asynchronously
            r = harness.request(self.port, "GET", "/users/again", timeout=10)
            if r.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(r.status, 200)


class PipelinedClientDisconnects(ServerCase):
    def test_client_closing_after_pipelined_requests_does_not_crash_the_server(self):
        # (A request leaked here shows as a stop that never ends, at teardown.)
        for _ in range(5):
            with harness.connect(self.port) as s:
                s.sendall(req("GET", "/users/1") + req("GET", "/users/2"))
            time.sleep(0.05)
        self.assertServes()


class UpgradeRequests(ServerCase):
    def test_upgrade_request_is_answered_and_what_follows_does_not_crash_the_server(self):
        s, rd = self.open()
        s.sendall(req("GET", "/users/1", [("Connection", "Upgrade"), ("Upgrade", "websocket")]))
        first = rd.read()
        self.assertEqual((first.status, first.json()), (200, {"id": "1"}))
        s.sendall(req("GET", "/users/2"))
        try:
            second = rd.read()
        except ConnectionError:
            second = None
        self.assertServes()  # still running
        if second is None:  # it may close the connection, if it said so
            self.assertEqual(first.header("Connection"), "close")
        else:  # or go on with HTTP/1.1
            self.assertEqual(second.json(), {"id": "2"})


class MalformedRequests(ServerCase):
    def test_content_length_with_chunked_is_rejected(self):
        self.assertAnsweredAndClosed(req("POST", "/echo", [("Content-Length", 3), (
            "Transfer-Encoding", "chunked")], chunked(b"abc")), 400)

    def test_two_different_content_lengths_are_rejected(self):
        self.assertAnsweredAndClosed(req("POST", "/echo", [("Content-Length", 3), (
            "Content-Length", 4)], b"abcd"), 400)

    def test_non_numeric_content_length_is_rejected(self):
        self.assertAnsweredAndClosed(req("POST", "/echo", [("Content-Length", "abc")]), 400)

    def test_bad_chunk_size_is_rejected(self):
        self.assertAnsweredAndClosed(req("POST", "/echo", [("Transfer-Encoding", "chunked")],
                                         b"zz\r\nabc\r\n0\r\n\r\n"), 400)

    def test_chunk_data_not_followed_by_crlf_is_rejected(self):
        for after in (b"XX", b"\rX", b"X\n", b"\n\r"):
            with self.subTest(after=after):
                self.assertAnsweredAndClosed(req("POST", "/echo", [("Transfer-Encoding", "chunked")],
                                                 b"3\r\nabc" + after + b"0\r\n\r\n"), 400)

    def test_chunk_terminator_cut_across_reads_is_checked(self):
        # The bytes after a chunk's data arrive in the next read: half of
        # them (a CR at the end of one read) or both.
        head = req("POST", "/echo", [("Transfer-Encoding", "chunked")])
        for first, second in ((b"abc\r", b"X0\r\n\r\n"), (b"abc", b"XX0\r\n\r\n"),
                              (b"abc", b"\rX0\r\n\r\n")):
            with self.subTest(first=first, second=second):
                r, rd = self.send_apart(head + b"3\r\n" + first, second)
                self.assertJsonError(r, 400)
                self.assertEqual(r.header("Connection"), "close")
                self.assertTrue(rd.closed(), "connection left open")
        self.assertServes()

    def test_obs_fold_right_after_the_request_line_is_rejected(self):
        for ws in (b" ", b"\t"):
            with self.subTest(ws=ws):
                self.assertAnsweredAndClosed(
                    b"GET /echo HTTP/1.1\r\n" + ws + b"X-A: 1\r\nHost: t\r\n\r\n", 400)

    def test_obs_fold_after_a_header_is_rejected(self):
        # A line that begins with SP or HT continues the header before it
        # (RFC 9112 5.2): after a value, after an empty value, before the
        # blank line, and in a trailer.
        for lines in (b"X-A: a\r\n b\r\n", b"X-A: a\r\n\tb\r\n", b"X-A:\r\n b\r\n",
                      b"X-A: a\r\n b\r\nX-B: c\r\n", b"X-A:\r\n \r\n"):
            with self.subTest(lines=lines):
                self.assertAnsweredAndClosed(b"GET /echo HTTP/1.1\r\nHost: t\r\n" + lines + b"\r\n",
                                             400)
        for trailer in (b"X-T: a\r\n b\r\n", b" X-T: a\r\n"):
            with self.subTest(trailer=trailer):
                self.assertAnsweredAndClosed(req("POST", "/echo", [("Transfer-Encoding", "chunked")],
                                                 b"3\r\nabc\r\n0\r\n" + trailer + b"\r\n"), 400)

    def test_obs_fold_cut_across_reads_is_rejected(self):
        for first, second in ((b"X-A: a\r\n", b" b\r\n\r\n"), (b"X-A: a\r", b"\n b\r\n\r\n"),
                              (b"X-A:\r\n", b" b\r\n\r\n"), (b"X-A:", b"\r\n \r\n\r\n")):
            with self.subTest(first=first, second=second):
                r, rd = self.send_apart(b"GET /echo HTTP/1.1\r\nHost: t\r\n" + first, second)
                self.assertJsonError(r, 400)
                self.assertTrue(rd.closed(), "connection left open")

    def test_control_character_in_header_name_is_rejected(self):
        for name in ("Bad\x00Header", "Bad\x01Header", "Bad\x7fHeader"):
            with self.subTest(name=name):
                self.assertAnsweredAndClosed(req("GET", "/echo", [(name, "x")]), 400)

    def test_bare_cr_in_header_value_is_rejected(self):
        self.assertAnsweredAndClosed(req("GET", "/echo", [("X-A", "a\rb")]), 400)

    def test_garbage_request_line_is_rejected(self):
        self.assertAnsweredAndClosed(b"HELLO\r\n\r\n", 400)

    def test_invalid_method_token_is_rejected(self):
        for method in ("G@T", "GET\x01"):
            with self.subTest(method=method):
                self.assertAnsweredAndClosed(req(method, "/echo"), 400)

    def test_unknown_http_version_is_rejected(self):
        self.assertAnsweredAndClosed(req("GET", "/echo", version="HTTP/3.7"), 400)

    def test_http11_request_without_host_is_rejected(self):
        self.assertAnsweredAndClosed(b"GET /echo HTTP/1.1\r\nX-A: 1\r\n\r\n", 400)

    def test_two_host_headers_are_rejected(self):
        self.assertAnsweredAndClosed(req("GET", "/echo", [("Host", "other")]), 400)

    def test_space_before_the_colon_is_rejected(self):
        self.assertAnsweredAndClosed(req("GET", "/echo", [("X-A ", "x")]), 400)

    def test_trailers_are_not_merged_into_the_headers(self):
        s, rd = self.open()
        s.sendall(req("POST", "/echo?h=X-Late", [("Transfer-Encoding", "chunked")],
                      b"3\r\nabc\r\n0\r\nX-Late: sneaky\r\n\r\n"))
        r = rd.read()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["body"], "abc")
        self.assertIsNone(r.json()["headers"]["X-Late"])


class HandlerReplies(ServerCase):
    def test_handler_that_returns_without_reply_gets_500_json(self):
        s, rd = self.open()
        s.sendall(req("GET", "/noreply") + req("GET", "/users/1"))
        self.assertJsonError(rd.read(), 500)
        self.assertEqual(rd.read().json(), {"id": "1"})  # the connection lives on

    def test_large_reply_arrives_whole(self):
        r = harness.request(self.port, "GET", "/big?n=2000000")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Length"), "2000000")
        self.assertEqual(r.body, b"x" * 2000000)


class ClientDisconnects(ServerCase):
    def test_client_closing_right_after_its_request_does_not_crash_the_server(self):
        for path in ("/sleep?ms=50", "/big?n=2000000", "/users/1"):
            with harness.connect(self.port) as s:
                s.sendall(req("GET", path))
        time.sleep(0.1)  # let the sleep end on a cancelled request
        self.assertServes()

    def test_client_resetting_mid_request_does_not_crash_the_server(self):
        for data in (req("GET", "/sleep?ms=50"), b"GET /users/1 HTTP/1.1\r\nHo",
                     req("POST", "/echo", [("Content-Length", 100)], b"part")):
            with harness.connect(self.port) as s:
                s.sendall(data)
                time.sleep(0.01)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(0.1)
        self.assertServes()


if __name__ == "__main__":
    harness.main()
