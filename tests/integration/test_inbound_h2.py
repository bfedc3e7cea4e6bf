"""fanout serving HTTP/2 (h2 chosen by ALPN on a TLS listener): curl --http2
and h2load as clients, and a small hand-written frame client (the stdlib has
no HTTP/2) for what they cannot send: RST_STREAM cancelling a stream's
upstream calls, the settings the server advertises and the limits behind
them (concurrent streams, header list, body), and the protections (rapid
reset, an HPACK bomb, a CONTINUATION flood) each ending the connection with
GOAWAY and a log line while the server goes on serving others; a graceful
stop's GOAWAY with a stream in progress finishing."""
import json
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
import unittest
from urllib.parse import quote

import harness
from harness import testapp
from test_inbound_tls import Pkis, tls_args
from test_stream import streamapp

CURL = shutil.which("curl")
H2LOAD = shutil.which("h2load")

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0, 1, 3, 4, 6, 7, 8, 9)
END_STREAM, END_HEADERS, ACK = 1, 4, 1
NO_ERROR, CANCEL, REFUSED_STREAM, ENHANCE_YOUR_CALM = 0, 8, 7, 11
MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_HEADER_LIST_SIZE = 3, 4, 6


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + \
        struct.pack(">I", stream) + payload


def hpack_int(value, prefix_bits, first):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name, value, index=False):
    """A literal header field with a literal name (RFC 7541 6.2), no
    Huffman; with `index`, added to the dynamic table."""
    name, value = name.encode(), value.encode()
    return bytes([0x40 if index else 0x00]) + hpack_int(len(name), 7, 0) + name + \
        hpack_int(len(value), 7, 0) + value


def request_block(path, method="GET", extra=()):
    block = literal(":method", method) + literal(":scheme", "https") + \
        literal(":path", path) + literal(":authority", "localhost")
    for n, v in extra:
        block += literal(n, v)
    return block


class H2:
    """A raw HTTP/2 client connection over TLS."""

    def __init__(self, port, pki, timeout=10):
        ctx = ssl.create_default_context(cafile=pki.path("ca.crt"))
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "h2"
        self.buf = b""
        self.settings = {}
        self.stash = {}  # frames of streams not asked for yet
        self.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0))

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def get(self, stream, path, method="GET", body=None, extra=()):
        flags = END_HEADERS | (0 if body is not None else END_STREAM)
        self.send(frame(HEADERS, flags, stream, request_block(path, method, extra)))
        if body is not None:
            self.send(frame(DATA, END_STREAM, stream, body))

    def read_frame(self):
        """The next frame (kind, flags, stream, payload), or None at the
        connection's end. SETTINGS are recorded and acknowledged."""
        while True:
            while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
                try:
                    data = self.sock.recv(65536)
                except (ConnectionResetError, ssl.SSLError):
                    data = b""
                if not data:
                    return None
                self.buf += data
            n = int.from_bytes(self.buf[:3], "big")
            kind, flags = self.buf[3], self.buf[4]
            stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
            if kind == SETTINGS and not flags & ACK:
                for i in range(0, len(payload), 6):
                    ident, value = struct.unpack(">HI", payload[i:i + 6])
                    self.settings[ident] = value
                self.send(frame(SETTINGS, ACK, 0))
                continue
            return kind, flags, stream, payload

    def until(self, pred):
        """Frames until pred(frame) is true: (that frame, those before)."""
        seen = []
        while True:
            f = self.read_frame()
            if f is None or pred(f):
                return f, seen
            seen.append(f)

    def response(self, stream):
        """(status, body) of `stream` (the status from the first bytes of
        a literal or indexed :status: 200 is index 8)."""
        body, status = b"", None
        while True:
            waiting = self.stash.get(stream)
            f = waiting.pop(0) if waiting else self.read_frame()
            if f is None:
                return status, body
            kind, flags, sid, payload = f
            if sid != stream:
                if sid:
                    self.stash.setdefault(sid, []).append(f)
                continue
            if kind == HEADERS and status is None:
                status = decode_status(payload)
            elif kind == DATA:
                body += payload
            elif kind == RST_STREAM:
                return status, body
            if kind in (HEADERS, DATA) and flags & END_STREAM:
                return status, body

    def goaway(self):
        """The error code of the GOAWAY received before the end, or None."""
        f, _ = self.until(lambda f: f[0] == GOAWAY)
        return None if f is None else struct.unpack(">II", f[3][:8])[1] & 0xFFFFFFFF


STATIC_STATUS = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}


def decode_status(block):
    """:status, the first field nghttp2 sends: indexed (static table) or a
    literal with the static name index 8 (':status')."""
    b = block[0]
    if b & 0x80:
        return STATIC_STATUS.get(b & 0x7F)
    # literal with incremental indexing (0x40) or without (0x00/0x10), name index 8..14
    value_len = block[1] & 0x7F
    return int(block[2:2 + value_len])


def curl(*args):
    return subprocess.run([CURL, "-sS", "--http2", "--max-time", "20", *args],
                          capture_output=True, timeout=30)


@unittest.skipUnless(CURL and H2LOAD, "needs curl and h2load (scripts/deps.sh --test)")
class Serving(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = Pkis.make()
        cls.mock = harness.mock()
        cls.app = testapp(*tls_args(cls.pki), "--workers", "1", "--max-body-bytes", "65536",
                          "--h2-max-streams", "7", "--h2-window-bytes", "100000",
                          "--max-header-bytes", "4096")

    @classmethod
    def tearDownClass(cls):
        try:
            cls.app.stop()
        finally:
            cls.mock.stop()

    def url(self, path):
        return f"https://localhost:{self.app.port}{path}"

    def test_curl_gets_and_posts_over_http2(self):
        r = curl("-w", "%{http_version}", "--cacert", self.pki.path("ca.crt"),
                 self.url("/users/7"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b'{"id":"7"}2')
        body = "x" * 40000  # beyond one DATA frame
        r = curl("--cacert", self.pki.path("ca.crt"), "-H", "X-Probe: yes", "--data-binary",
                 body, self.url("/echo?h=x-probe"))
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual((j["method"], j["body_len"], j["body"]), ("POST", 40000, body))
        self.assertEqual(j["headers"], {"x-probe": "yes"})

    def test_a_body_over_max_body_bytes_is_413_on_its_stream(self):
        r = curl("--cacert", self.pki.path("ca.crt"), "-o", "/dev/null", "-w", "%{http_code}",
                 "--data-binary", "y" * 70000, self.url("/echo"))
        self.assertEqual(r.stdout, b"413")
        c = H2(self.app.port, self.pki)
        self.addCleanup(c.close)
        c.get(1, "/echo", "POST", b"z" * 1000)
        c.get(3, "/users/3")
        self.assertEqual(c.response(1)[0], 200)
        self.assertEqual(c.response(3), (200, b'{"id":"3"}'))

    def test_h2load_many_streams_over_few_connections(self):
        app = testapp(*tls_args(self.pki), "--workers", "1")  # the default limits
        self.addCleanup(app.stop)
        r = subprocess.run([H2LOAD, "-n", "1000", "-c", "4", "-m", "50",
                            f"https://localhost:{app.port}/users/1"],
                           capture_output=True, timeout=60)
        out = r.stdout.decode()
        self.assertIn("Application protocol: h2", out)
        self.assertIn("status codes: 1000 2xx", out)

    def test_the_settings_carry_the_limits(self):
        c = H2(self.app.port, self.pki)
        self.addCleanup(c.close)
        c.get(1, "/users/1")
        self.assertEqual(c.response(1)[0], 200)
        self.assertEqual(c.settings.get(MAX_CONCURRENT_STREAMS), 7)
        self.assertEqual(c.settings.get(INITIAL_WINDOW_SIZE), 100000)
        self.assertEqual(c.settings.get(MAX_HEADER_LIST_SIZE), 4096)

    def test_a_stream_beyond_max_streams_ends_the_connection(self):
        # nghttp2 takes a stream beyond the acknowledged limit for a protocol
        # error of the connection (RFC 9113 5.1.2 allows it)
        c = H2(self.app.port, self.pki)
        self.addCleanup(c.close)
        c.get(1, "/users/1")
        self.assertEqual(c.response(1)[0], 200)  # our SETTINGS are acknowledged by now
        for i in range(8):
            c.get(3 + 2 * i, "/sleep?ms=400")
        self.assertEqual(c.goaway(), 1)  # PROTOCOL_ERROR
        self.assertIsNone(c.until(lambda f: False)[0])
        self.app.wait_log(r"HTTP/2 client 127\.0\.0\.1: sent GOAWAY \(PROTOCOL_ERROR\)")
        c2 = H2(self.app.port, self.pki)  # 7 at once are served
        self.addCleanup(c2.close)
        c2.get(1, "/users/1")
        self.assertEqual(c2.response(1)[0], 200)
        for i in range(7):
            c2.get(3 + 2 * i, "/sleep?ms=100")
        self.assertEqual([c2.response(3 + 2 * i)[0] for i in range(7)], [200] * 7)

    def test_a_header_list_over_max_header_bytes_is_431(self):
        c = H2(self.app.port, self.pki)
        self.addCleanup(c.close)
        c.get(1, "/users/1", extra=[("x-big", "b" * 5000)])
        self.assertEqual(c.response(1)[0], 431)
        c.get(3, "/users/3")
        self.assertEqual(c.response(3)[0], 200)

    def test_an_error_answered_before_the_body_ends_lets_the_client_finish(self):
        # A content-length over max_body_bytes, the body still to come: the
        # 413 goes out whole; the body the client goes on sending within its
        # window is dropped, and its END_STREAM closes the stream, no reset
        # (curl 7.88 loses an answer whose stream is reset mid-upload).
        c = H2(self.app.port, self.pki)
        self.addCleanup(c.close)
        big = [("content-length", "70000")]
        c.send(frame(HEADERS, END_HEADERS, 5, request_block("/echo", "POST", big)))
        c.send(frame(DATA, 0, 5, b"p" * 10000))
        status, body = c.response(5)
        self.assertEqual(status, 413)
        self.assertEqual(json.loads(body)["status"], 413)
        for off in range(10000, 70000, 15000):
            c.send(frame(DATA, END_STREAM if off + 15000 >= 70000 else 0, 5, b"r" * 15000))
        c.get(7, "/users/7")
        f, seen = c.until(lambda f: f[2] == 7 and f[1] & END_STREAM)
        self.assertIsNotNone(f, "the connection ended")
        self.assertNotIn((RST_STREAM, 5), [(k, sid) for k, _, sid, _ in seen])

    def test_an_error_answers_stream_is_reset_once_its_window_is_spent(self):
        # The client of a 413 that sends all its window allows (100000,
        # --h2-window-bytes) cannot send more: the stream is reset with
        # NO_ERROR (RFC 9113 8.1) rather than left waiting.
        c = H2(self.app.port, self.pki)
        self.addCleanup(c.close)
        big = [("content-length", "200000")]
        c.send(frame(HEADERS, END_HEADERS, 5, request_block("/echo", "POST", big)))
        self.assertEqual(c.response(5)[0], 413)
        for off in range(0, 100000, 16384):
            c.send(frame(DATA, 0, 5, b"d" * min(16384, 100000 - off)))
        f, _ = c.until(lambda f: f[0] in (RST_STREAM, GOAWAY) and f[2] in (0, 5))
        self.assertIsNotNone(f, "the connection ended instead")
        self.assertEqual((f[0], f[2], struct.unpack(">I", f[3])[0]), (RST_STREAM, 5, NO_ERROR))
        c.get(7, "/users/7")
        self.assertEqual(c.response(7), (200, b'{"id":"7"}'))

    def test_rst_stream_cancels_the_streams_upstream_calls(self):
        before = harness.get_json(self.mock.port, "/stats")[1]["cancelled"]
        url = quote(self.mock.url("/delay?ms=5000"), safe="")
        c = H2(self.app.port, self.pki)
        self.addCleanup(c.close)
        c.get(1, f"/fanout?n=3&url={url}")
        time.sleep(0.3)
        c.send(frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL)))
        deadline = time.monotonic() + 2.5  # well before the 5 s delay ends
        while time.monotonic() < deadline:
            stats = harness.get_json(self.mock.port, "/stats")[1]
            if stats["cancelled"] >= before + 3:
                break
            time.sleep(0.05)
        self.assertEqual(stats["cancelled"], before + 3)
        c.get(3, "/users/3")  # the connection goes on
        self.assertEqual(c.response(3), (200, b'{"id":"3"}'))


@unittest.skipUnless(CURL, "needs curl")
class Protections(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = Pkis.make()
        cls.app = testapp(*tls_args(cls.pki), "--workers", "1", "--h2-max-resets", "20",
                          "--max-header-bytes", "4096", "--h2-window-bytes", "65535")

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()

    def others_are_served(self):
        r = curl("--cacert", self.pki.path("ca.crt"),
                 f"https://localhost:{self.app.port}/users/5")
        self.assertEqual(r.stdout, b'{"id":"5"}')

    def test_a_body_many_windows_long_is_received_whole(self):
        # fanout gives the flow-control window back as the body arrives: a
        # body of ten windows (65535, --h2-window-bytes) goes through.
        body = b"0123456789abcdef" * 40960
        r = subprocess.run([CURL, "-sS", "--http2", "--max-time", "20", "--cacert",
                            self.pki.path("ca.crt"), "--data-binary", "@-",
                            f"https://localhost:{self.app.port}/echo"],
                           input=body, capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["body_len"], len(body))
        self.others_are_served()

    def test_rapid_reset_ends_the_connection_with_enhance_your_calm(self):
        c = H2(self.app.port, self.pki)
        self.addCleanup(c.close)
        burst = b""
        for i in range(100):
            sid = 1 + 2 * i
            burst += frame(HEADERS, END_HEADERS | END_STREAM, sid, request_block("/sleep?ms=200"))
            burst += frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL))
        c.send(burst)
        self.assertEqual(c.goaway(), ENHANCE_YOUR_CALM)
        self.assertIsNone(c.until(lambda f: False)[0])  # then closed
        self.app.wait_log(r"HTTP/2 client 127\.0\.0\.1: more stream resets in a second than "
                          r"h2_max_resets \(rapid reset\)")
        self.others_are_served()

    def test_an_hpack_bomb_ends_the_connection(self):
        c = H2(self.app.port, self.pki)
        self.addCleanup(c.close)
        # one 4000-byte header into the dynamic table, then 20 references to it
        block = request_block("/users/1") + literal("x-bomb", "b" * 3900, index=True)
        block += bytes([0x80 | 62]) * 20
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
        self.assertEqual(c.goaway(), ENHANCE_YOUR_CALM)
        self.app.wait_log(r"header list far beyond max_header_bytes \(HPACK bomb\)")
        self.others_are_served()

    def test_a_continuation_flood_ends_the_connection(self):
        c = H2(self.app.port, self.pki)
        self.addCleanup(c.close)
        data = frame(HEADERS, 0, 1, request_block("/users/1"))
        for i in range(50):
            data += frame(CONTINUATION, 0, 1, literal(f"x-c{i}", "v"))
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        code = c.goaway()
        self.assertIsNotNone(code)
        self.assertNotEqual(code, NO_ERROR)
        self.app.wait_log(r"HTTP/2 client 127\.0\.0\.1: sent GOAWAY")
        self.others_are_served()


@unittest.skipUnless(CURL, "needs curl")
class Streaming(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = Pkis.make()
        cls.app = streamapp(*tls_args(cls.pki))

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()

    def test_a_streamed_response_goes_as_data_frames(self):
        r = curl("-i", "--cacert", self.pki.path("ca.crt"),
                 f"https://localhost:{self.app.port}/ndjson?n=3")
        self.assertEqual(r.returncode, 0, r.stderr)
        head, body = r.stdout.split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/2 200"), head)
        self.assertIn(b"x-before: set before the head", head)
        self.assertEqual([json.loads(x) for x in body.splitlines()],
                         [{"i": 0}, {"i": 1}, {"i": 2}])

    def test_a_big_stream_passes_the_flow_control_windows(self):
        r = curl("--cacert", self.pki.path("ca.crt"), "-o", "/dev/null", "-w", "%{size_download}",
                 f"https://localhost:{self.app.port}/slow?n=64&size=65536")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(int(r.stdout), 64 * 65536)

    def test_an_aborted_stream_is_reset(self):
        c = H2(self.app.port, self.pki)
        self.addCleanup(c.close)
        c.get(1, "/fail")
        f, seen = c.until(lambda f: f[0] == RST_STREAM and f[2] == 1)
        self.assertIsNotNone(f)
        self.assertTrue(any(k == DATA and b"first" in p for k, _, _, p in seen))
        c.get(3, "/pid")
        self.assertEqual(c.response(3)[0], 200)


class Timeouts(unittest.TestCase):
    MS = 300

    @classmethod
    def setUpClass(cls):
        cls.pki = Pkis.make()
        cls.app = streamapp(*tls_args(cls.pki), "--body-timeout-ms", str(cls.MS),
                            "--write-timeout-ms", str(cls.MS))

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()

    def test_a_stream_whose_request_never_ends_is_closed_by_the_body_timeout(self):
        c = H2(self.app.port, self.pki)
        self.addCleanup(c.close)
        t0 = time.monotonic()
        c.send(frame(HEADERS, END_HEADERS, 1, request_block("/pid", "POST")))  # no END_STREAM
        self.assertIsNone(c.until(lambda f: False)[0])
        self.assertLess((time.monotonic() - t0) / (self.MS / 1000), 10)
        self.app.wait_log(r"HTTP/2 request not received in time; closing the connection")

    def test_a_client_that_never_ends_an_answered_stream_is_closed_by_the_body_timeout(self):
        # A 413 answered while the body was still to come, then silence:
        # the stream is still being received, so the body timeout holds.
        c = H2(self.app.port, self.pki)
        self.addCleanup(c.close)
        block = request_block("/pid", "POST", [("content-length", "1000000000")])
        t0 = time.monotonic()
        c.send(frame(HEADERS, END_HEADERS, 1, block))  # no END_STREAM, ever
        f, seen = c.until(lambda f: False)
        self.assertIsNone(f)
        self.assertIn(HEADERS, [k for k, _, sid, _ in seen if sid == 1])
        self.assertLess((time.monotonic() - t0) / (self.MS / 1000), 10)
        self.app.wait_log(r"HTTP/2 request not received in time; closing the connection")

    def test_a_client_that_grants_no_window_is_closed_by_the_write_timeout(self):
        c = H2(self.app.port, self.pki)
        self.addCleanup(c.close)
        # the default 64 KiB windows, never updated: the stream stalls
        c.get(1, "/slow?n=1000&size=65536")
        t0 = time.monotonic()
        self.assertIsNone(c.until(lambda f: False)[0])
        self.assertLess((time.monotonic() - t0) / (self.MS / 1000), 10)
        self.app.wait_log(r"response not taken by the client within 300 ms")


class RequestTimeout(unittest.TestCase):
    def test_the_request_deadline_holds_per_stream(self):
        pki = Pkis.make()
        app = testapp(*tls_args(pki), "--request-timeout-ms", "200")
        self.addCleanup(app.stop)
        c = H2(app.port, pki)
        self.addCleanup(c.close)
        t0 = time.monotonic()
        c.get(1, "/sleep?ms=5000")
        c.get(3, "/users/3")
        self.assertEqual(c.response(3), (200, b'{"id":"3"}'))  # not behind stream 1
        status, body = c.response(1)  # its sleep was cut by the deadline
        self.assertEqual((status, json.loads(body)["error"]), (200, "cancelled"))
        self.assertLess(time.monotonic() - t0, 5000 / 1000 / 2)


class GracefulStop(unittest.TestCase):
    def test_goaway_then_the_open_stream_finishes(self):
        pki = Pkis.make()
        app = testapp(*tls_args(pki))
        c = H2(app.port, pki)
        c.get(1, "/sleep?ms=600")
        time.sleep(0.2)
        app.proc.send_signal(signal.SIGTERM)
        f, _ = c.until(lambda f: f[0] == GOAWAY)
        self.assertIsNotNone(f)
        self.assertEqual(struct.unpack(">II", f[3][:8])[1], NO_ERROR)
        self.assertEqual(c.response(1)[0], 200)
        self.assertIsNone(c.until(lambda f: False)[0])  # then it closes
        c.close()
        self.assertEqual(app.stop(), 0)


if __name__ == "__main__":
    unittest.main()
