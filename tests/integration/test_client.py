"""The upstream client, run twice: once on the lean HTTP/1.1 transport and
once on curl. Each faulty upstream behaviour is a path of a small raw-socket
server, so the bytes on the wire are exactly what the test says."""
import json
import os
import socket
import struct
import subprocess
import threading
import time
import unittest
from urllib.parse import quote

import harness
from harness import get_json, testapp

BODY = b'{"value": 0.5}'


def respond(conn, head, body=b""):
    conn.sendall(head.encode() + body)


CHUNK = b"%x\r\n%s" % (len(BODY), BODY)  # one chunk of BODY, without its CRLF
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(BODY)

# Responses sent in two parts, the second once the client has read the first
# (TCP_NODELAY and a pause): path -> (first, second).
TWO_PARTS = {
    "/chunk-end-bad": (CHUNKED_HEAD + CHUNK + b"XX0\r\n\r\n", b""),
    "/chunk-end-bad-after-cr": (CHUNKED_HEAD + CHUNK + b"\r", b"X0\r\n\r\n"),
    "/chunk-end-bad-next-read": (CHUNKED_HEAD + CHUNK, b"XX0\r\n\r\n"),
    "/chunk-end-after-cr": (CHUNKED_HEAD + CHUNK + b"\r", b"\n0\r\n\r\n"),
    "/chunk-end-next-read": (CHUNKED_HEAD + CHUNK, b"\r\n0\r\n\r\n"),
    "/fold": (OK_HEAD + b"X-A: a\r\n b\r\n\r\n" + BODY, b""),
    "/name-space": (OK_HEAD + b"X-A : a\r\n\r\n" + BODY, b""),
    "/name-not-token": (OK_HEAD + b"X(A): a\r\n\r\n" + BODY, b""),
    "/fold-tab": (OK_HEAD + b"X-A: a\r\n\tb\r\n\r\n" + BODY, b""),
    "/fold-empty-value": (OK_HEAD + b"X-A:\r\n b\r\n\r\n" + BODY, b""),
    "/fold-next-read": (OK_HEAD + b"X-A: a\r\n", b" b\r\n\r\n" + BODY),
    "/fold-in-trailer": (CHUNKED_HEAD + CHUNK + b"\r\n0\r\nX-T: a\r\n b\r\n\r\n", b""),
}


# Paths whose request body the server never reads: a big body then fills
# the socket's buffers and the client's write stays queued.
UNREAD_BODY = ("/early", "/no-read")
EARLY_HOLD = 1.0  # seconds /early keeps its connection after answering


class FaultServer:
    """Accepts connections and answers each request by its path."""

    def __init__(self, host="127.0.0.1", port=0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.requests = []  # (path, method, headers, body) in arrival order
        self.addresses = []  # the local address each request came to, in order
        self.stop = False
        threading.Thread(target=self.accept, daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def accept(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def read_request(self, conn, buf):
        while b"\r\n\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                return None, b""
            buf += data
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = dict(l.split(": ", 1) for l in lines[1:])
        if path in UNREAD_BODY:
            return (method, path, headers, b""), b""
        n = int(headers.get("Content-Length", 0))
        while len(buf) < n:
            buf += conn.recv(65536)
        return (method, path, headers, buf[:n]), buf[n:]

    def serve(self, conn):
        buf = b""
        count = 0
        try:
            while True:
                req, buf = self.read_request(conn, buf)
                if req is None:
                    return
                self.requests.append(req)
                self.addresses.append(conn.getsockname()[0])
                count += 1
                if not self.answer(conn, req, count):
                    return
        except OSError:
            pass
        finally:
            conn.close()

    def answer(self, conn, req, count):
        """Answers; returns False when the connection is to be closed."""
        method, path, headers, body = req
        ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        if path == "/ok":
            respond(conn, ok % len(BODY), BODY)
        elif path == "/echo":
            out = json.dumps({"method": method, "headers": headers, "body": body.decode()}).encode()
            respond(conn, ok % len(out), out)
        elif path == "/length":
            out = json.dumps({"value": len(body)}).encode()
            respond(conn, ok % len(out), out)
        elif path == "/early":
            # The answer before the body (which is never read); the
            # connection stays open until the client gives up on it.
            respond(conn, ok % len(BODY), BODY)
            time.sleep(EARLY_HOLD)
            return False
        elif path == "/no-read":
            time.sleep(2)
            return False
        elif path == "/head":
            respond(conn, "HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n")
        elif path == "/chunked":
            respond(conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b'{"value"', b": 0.5}"):
                conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                time.sleep(0.01)
            conn.sendall(b"0\r\n\r\n")
        elif path in TWO_PARTS:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            first, second = TWO_PARTS[path]
            conn.sendall(first)
            time.sleep(0.05)
            conn.sendall(second)
        elif path == "/dribble":
            # One byte per segment: every header name and value is cut
            # across reads of the client.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for b in (ok % len(BODY)).encode() + BODY:
                conn.sendall(bytes([b]))
                time.sleep(0.001)
        elif path == "/close-delimited":
            respond(conn, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", BODY)
            return False
        elif path == "/continue":
            respond(conn, "HTTP/1.1 100 Continue\r\n\r\n")
            respond(conn, ok % len(BODY), BODY)
        elif path == "/reset-mid-body":
            respond(conn, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", b"x" * 10)
            time.sleep(0.05)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        elif path == "/short-body":
            respond(conn, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", b"x" * 10)
            return False
        elif path == "/garbage":
            respond(conn, "SPDY/9 banana\r\n\r\n")
            return False
        elif path == "/endless-chunked":
            respond(conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                conn.sendall(b"400\r\n" + b"x" * 1024 + b"\r\n")
        elif path == "/header-flood":
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            for i in range(20000):
                conn.sendall(b"X-Flood-%d: %s\r\n" % (i, b"y" * 20))
            conn.sendall(b"Content-Length: 0\r\n\r\n")
        elif path == "/hang":
            time.sleep(10)
            return False
        elif path == "/stale":
            # Keeps the connection after the first answer but drops it, without
            # a word, when the next request arrives on it: the pooled
            # connection a client reuses turns out dead.
            if count > 1:
                return False
            respond(conn, ok % len(BODY), BODY)
        else:
            respond(conn, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        return True

    def close(self):
        self.stop = True
        self.sock.close()


class ClientSuite:
    """The same behaviours for each transport (set by the subclass)."""

    transport = None

    @classmethod
    def setUpClass(cls):
        cls.upstream = FaultServer()
        os.environ["FANOUT_TRANSPORT"] = cls.transport
        try:
            cls.app = testapp()
        finally:
            del os.environ["FANOUT_TRANSPORT"]

    @classmethod
    def tearDownClass(cls):
        try:
            cls.app.stop()
        finally:
            cls.upstream.close()

    def fetch(self, path, **params):
        q = "".join(f"&{k}={quote(str(v), safe='')}" for k, v in params.items())
        status, j = get_json(self.app.port, f"/fetch?url={quote(self.upstream.url(path), safe='')}{q}")
        self.assertEqual(status, 200)
        return j

    def test_content_length_body(self):
        j = self.fetch("/ok")
        self.assertEqual((j["error"], j["status"], j["value"]), ("ok", 200, 0.5))
        self.assertEqual(j["content_type"], "application/json")

    def test_chunked_body(self):
        j = self.fetch("/chunked")
        self.assertEqual((j["error"], j["value"]), ("ok", 0.5))

    def test_response_cut_into_single_bytes(self):
        j = self.fetch("/dribble")
        self.assertEqual((j["error"], j["status"], j["value"]), ("ok", 200, 0.5))
        self.assertEqual(j["content_type"], "application/json")

    def test_close_delimited_body(self):
        j = self.fetch("/close-delimited")
        self.assertEqual((j["error"], j["value"]), ("ok", 0.5))

    def test_interim_100_response_is_skipped(self):
        j = self.fetch("/continue")
        self.assertEqual((j["error"], j["status"], j["value"]), ("ok", 200, 0.5))

    def test_head_response_has_no_body(self):
        j = self.fetch("/head", method="HEAD")
        self.assertEqual((j["error"], j["status"], j["body_len"]), ("ok", 200, 0))

    def test_method_body_and_headers_are_sent(self):
        j = self.fetch("/echo", method="POST", body="a=1&b=2", header="X-Trace: abc")
        sent = json.loads(j["body"])
        self.assertEqual(sent["method"], "POST")
        self.assertEqual(sent["body"], "a=1&b=2")
        self.assertEqual(sent["headers"]["X-Trace"], "abc")
        self.assertEqual(sent["headers"]["Host"], f"127.0.0.1:{self.upstream.port}")

    def test_connections_are_reused(self):
        before = len(self.upstream.requests)
        for _ in range(5):
            self.assertEqual(self.fetch("/ok")["error"], "ok")
        self.assertEqual(len(self.upstream.requests), before + 5)

    def test_stale_pooled_connection_is_retried_once(self):
        self.assertEqual(self.fetch("/stale")["error"], "ok")
        self.assertEqual(self.fetch("/stale")["error"], "ok")

    def test_reset_mid_body_is_an_io_error(self):
        self.assertEqual(self.fetch("/reset-mid-body")["error"], "io")

    def test_short_body_is_a_protocol_error(self):
        self.assertEqual(self.fetch("/short-body")["error"], "protocol")

    def test_garbage_status_line_is_a_protocol_error(self):
        self.assertEqual(self.fetch("/garbage")["error"], "protocol")

    def test_chunk_end_cut_across_reads_is_accepted(self):
        for path in ("/chunk-end-after-cr", "/chunk-end-next-read"):
            with self.subTest(path=path):
                j = self.fetch(path)
                self.assertEqual((j["error"], j["status"], j["value"]), ("ok", 200, 0.5))

    def test_chunk_data_not_followed_by_crlf_is_refused(self):
        for path in ("/chunk-end-bad", "/chunk-end-bad-after-cr", "/chunk-end-bad-next-read"):
            with self.subTest(path=path):
                self.assertEqual(self.fetch(path)["error"], self.BAD_CHUNK_END)

    def test_obs_fold_in_a_response_is_a_protocol_error(self):
        if self.FOLD is None:
            self.skipTest(self.FOLD_WHY)
        for path in ("/fold", "/fold-tab", "/fold-empty-value", "/fold-next-read",
                     "/fold-in-trailer"):
            with self.subTest(path=path):
                self.assertEqual(self.fetch(path)["error"], self.FOLD)

    def test_a_response_header_name_that_is_not_a_token_is_a_protocol_error(self):
        for path in ("/name-space", "/name-not-token"):
            with self.subTest(path=path):
                self.assertEqual(self.fetch(path)["error"], "protocol")

    def test_endless_chunked_body_stops_at_the_limit(self):
        j = self.fetch("/endless-chunked", max=100000)
        self.assertEqual(j["error"], "too_large")

    def test_header_flood_is_too_large(self):
        self.assertEqual(self.fetch("/header-flood")["error"], "too_large")

    def test_hanging_upstream_times_out(self):
        t0 = time.monotonic()
        j = self.fetch("/hang", timeout=300)
        self.assertEqual(j["error"], "timeout")
        self.assertLess((time.monotonic() - t0) / 0.3, 2.0)

    # A body bigger than the socket's buffers: the write that the socket
    # does not take at once is queued, and ends with the call.
    BIG = 16 << 20

    def test_a_body_bigger_than_the_socket_buffers_is_sent_whole(self):
        for _ in range(2):  # the second on the connection the first left
            j = self.fetch("/length", method="POST", bodyn=self.BIG)
            self.assertEqual((j["error"], j["status"], j["value"]), ("ok", 200, self.BIG))

    def test_a_call_that_times_out_while_its_body_is_written_ends_cleanly(self):
        t0 = time.monotonic()
        j = self.fetch("/no-read", method="POST", bodyn=self.BIG, timeout=300)
        self.assertEqual(j["error"], "timeout")
        self.assertLess((time.monotonic() - t0) / 0.3, 2.0)
        self.assertEqual(self.fetch("/ok")["error"], "ok")

    def test_refused_connection(self):
        port = harness.closed_port()
        status, j = get_json(self.app.port, f"/fetch?url={quote(f'http://127.0.0.1:{port}/', safe='')}")
        self.assertEqual(j["error"], "refused")


class NameResolution(unittest.TestCase):
    """The lean transport resolves an upstream's name again once its answer
    is older than --dns-ttl-ms, in the background; 0 resolves it once."""

    @classmethod
    def setUpClass(cls):
        cls.upstream = FaultServer()

    @classmethod
    def tearDownClass(cls):
        cls.upstream.close()

    RESOLVED = "lean: localhost resolves to"

    def calls(self, ttl_ms):
        """Three calls 150 ms apart to the upstream by name; the app, running."""
        try:
            socket.getaddrinfo("localhost", self.upstream.port)
        except socket.gaierror as e:  # a bare chroot has no /etc/hosts
            self.skipTest(f"localhost does not resolve here: {e}")
        app = testapp("--dns-ttl-ms", str(ttl_ms), "--log-level", "debug",
                      env=dict(os.environ, FANOUT_TRANSPORT="lean"))
        self.addCleanup(app.stop)
        url = quote(f"http://localhost:{self.upstream.port}/ok", safe="")
        for _ in range(3):
            status, j = get_json(app.port, f"/fetch?url={url}")
            self.assertEqual((status, j["error"], j["value"]), (200, "ok", 0.5))
            time.sleep(0.15)
        return app

    def test_a_name_is_resolved_again_after_the_ttl(self):
        # The second and third calls find the answer older than 100 ms: each
        # starts a new resolution and goes on with the known address.
        app = self.calls(100)
        app.wait_log(self.RESOLVED, count=3)
        self.assertEqual(app.log().count(self.RESOLVED), 3)

    def test_a_ttl_of_zero_resolves_once(self):
        app = self.calls(0)
        self.assertEqual(app.log().count(self.RESOLVED), 1)

    def app_with_hosts(self, lines, *flags):
        """A lean testapp that sees a hosts file of its own (a private mount
        namespace): the file's path, to rewrite in place, and the app."""
        hosts = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"fanout-hosts-{os.getpid()}")
        with open(hosts, "w") as f:
            f.write(lines)
        self.addCleanup(os.unlink, hosts)
        mount = f"mount --bind {hosts} /etc/hosts"
        probe = subprocess.run(["unshare", "-m", "sh", "-c", mount], capture_output=True)
        if probe.returncode != 0:
            self.skipTest(f"no private mount namespace here: {probe.stderr.decode().strip()}")
        app = harness.Server(
            ["unshare", "-m", "sh", "-c", mount + ' && exec "$0" "$@"', harness.TESTAPP,
             "--workers", "1", "--dns-ttl-ms", "100", "--log-level", "debug", *flags],
            "testapp", env={"FANOUT_TRANSPORT": "lean"})
        self.addCleanup(app.stop)
        return hosts, app

    @staticmethod
    def resolver_order(hosts, name):
        """The first two addresses the resolver gives for `name` with this
        hosts file, in its order (getent ahosts, as getaddrinfo sorts them)."""
        out = subprocess.run(["unshare", "-m", "sh", "-c",
                              f"mount --bind {hosts} /etc/hosts && getent ahosts {name}"],
                             capture_output=True, text=True).stdout.split()
        return out[0], next(a for a in out if a != out[0] and a.startswith("127."))

    def call(self, app, name, port):
        url = quote(f"http://{name}:{port}/ok", safe="")
        status, j = get_json(app.port, f"/fetch?url={url}")
        self.assertEqual((status, j["error"]), (200, "ok"))

    def test_calls_follow_a_name_that_moves(self):
        upstream = FaultServer("0.0.0.0")
        self.addCleanup(upstream.close)
        hosts, app = self.app_with_hosts("127.0.0.1 moving-upstream\n")
        self.call(app, "moving-upstream", upstream.port)
        with open(hosts, "r+") as f:  # in place: the bind mount follows the inode
            f.write("127.0.0.2 moving-upstream\n")
        time.sleep(0.15)
        # This call starts the new lookup and goes to the address known so far.
        self.call(app, "moving-upstream", upstream.port)
        app.wait_log("lean: moving-upstream now resolves to 127.0.0.2")
        # A new connection, to the new address: the old one is not reused.
        self.call(app, "moving-upstream", upstream.port)
        self.assertEqual(upstream.addresses, ["127.0.0.1", "127.0.0.1", "127.0.0.2"])

    def test_a_refused_address_falls_back_to_the_next(self):
        hosts, app = self.app_with_hosts("127.0.0.2 multi-upstream\n127.0.0.3 multi-upstream\n")
        # The upstream listens on the resolver's second address only.
        _, second = self.resolver_order(hosts, "multi-upstream")
        upstream = FaultServer(second)
        self.addCleanup(upstream.close)
        port = upstream.port
        for _ in range(2):
            self.call(app, "multi-upstream", port)
        self.assertEqual(upstream.addresses, [second, second])
        # The first call was refused by the first address; the second call
        # started with the address that worked.
        self.assertEqual(app.log().count("address 1 of 2: connection refused, trying the next"), 1)

    def test_a_silent_address_falls_back_after_the_connect_timeout(self):
        hosts, app = self.app_with_hosts("127.0.0.2 quiet-upstream\n127.0.0.3 quiet-upstream\n",
                                         "--connect-timeout-ms", "300")
        first, second = self.resolver_order(hosts, "quiet-upstream")
        port = harness.silent_listener(self, first)  # the first address drops SYNs
        upstream = FaultServer(second, port)
        self.addCleanup(upstream.close)
        t0 = time.monotonic()
        self.call(app, "quiet-upstream", port)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)  # one connect timeout spent
        self.assertEqual(upstream.addresses, [second])
        self.assertEqual(app.log().count("address 1 of 2: connection timed out, trying the next"), 1)


class LeanTransport(ClientSuite, unittest.TestCase):
    transport = "lean"
    BAD_CHUNK_END = "protocol"
    FOLD = "protocol"

    def test_an_answer_before_the_body_is_read_ends_the_call(self):
        # The response completes the call while its body is still being
        # written: the connection, which cannot take another request, is
        # closed with its write, and the next call does not wait on it (the
        # upstream holds it for EARLY_HOLD s). curl waits for its upload to
        # end first: the call would take its whole timeout, so this is the
        # lean transport's alone.
        j = self.fetch("/early", method="POST", bodyn=self.BIG)
        self.assertEqual((j["error"], j["status"], j["value"]), ("ok", 200, 0.5))
        t0 = time.monotonic()
        self.assertEqual(self.fetch("/ok")["error"], "ok")
        self.assertLess((time.monotonic() - t0) / EARLY_HOLD, 0.5)


class CurlTransport(ClientSuite, unittest.TestCase):
    transport = "curl"
    # curl refuses a bad chunk end with CURLE_RECV_ERROR, which curl.c maps
    # to io.
    BAD_CHUNK_END = "io"
    # curl accepts obs-fold and hands the continuation line to the header
    # callback on its own; call.c refuses it there, as the lean transport
    # does.
    FOLD = "protocol"


if __name__ == "__main__":
    harness.main()
