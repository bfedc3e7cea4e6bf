"""fanout serving https (--tls-cert, --tls-key): Python's ssl module and
curl as clients over real sockets, with a CA and certificates made here with
the openssl CLI. TLS 1.2 and 1.3, the cipher settings, session resumption
(session IDs and tickets, across workers), keep-alive and big bodies,
cancellation on disconnect, graceful stop, the handshake timeout, failed
handshakes (a refused certificate, an expired one, no shared cipher, bytes
that are not TLS, a plain-text client), bad files at start, and SIGHUP
reloading the certificate, keeping the old one when the file is broken."""
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import warnings
from urllib.parse import quote

import harness
from harness import testapp
from test_stream import Chunks, streamapp
from test_tls import Pki

CURL = shutil.which("curl")


def tls_args(pki, name="good"):
    return ["--tls-cert", pki.path(f"{name}.crt"), "--tls-key", pki.path(f"{name}.key")]


def client_ctx(pki, version=None, ca="ca"):
    ctx = ssl.create_default_context(cafile=pki.path(f"{ca}.crt"))
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def tls_connect(port, ctx, session=None, timeout=10, host="localhost"):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=host, session=session)


def get(sock, path, headers=""):
    """One keep-alive GET over `sock`; returns the harness's Response."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n".encode())
    return harness.Reader(sock).read()


def serial_of(path):
    out = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-serial"],
                         capture_output=True, check=True)
    return out.stdout.decode().strip()


def peer_serial(port, ctx, host="localhost"):
    with tls_connect(port, ctx, host=host) as s:
        der = s.getpeercert(binary_form=True)
        get(s, "/echo")
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der,
                         capture_output=True, check=True)
    return out.stdout.decode().strip()


def closed_without_answer(sock, timeout=5):
    """Whether the server closed `sock` (end of file or reset) without
    sending anything back but TLS alerts; False if it stayed open."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return data == b"" or data[:1] == b"\x15"  # nothing, or an alert record


class Pkis:
    """Certificates shared by the suites: a CA, a good certificate and a
    second one (for reloads), another CA's, an expired one."""
    dir = None

    @classmethod
    def make(cls):
        if cls.dir:
            return cls.pki
        cls.dir = tempfile.mkdtemp(prefix="fanout-inbound-tls-")
        pki = cls.pki = Pki(cls.dir)
        pki.ca("ca")
        pki.ca("other_ca")
        pki.cert("good", "ca")
        pki.cert("second", "ca")
        pki.cert("stranger", "other_ca")
        pki.cert("api", "ca", cn="api.test", san="DNS:api.test,DNS:*.api.test")
        pki.expired("expired", "ca")
        return pki


class HttpsServing(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = Pkis.make()
        cls.mock = harness.mock()
        cls.app = testapp(*tls_args(cls.pki), "--workers", "2")

    @classmethod
    def tearDownClass(cls):
        try:
            cls.app.stop()
        finally:
            cls.mock.stop()

    def test_the_listener_says_https(self):
        self.app.wait_log(r"listening on https://127\.0\.0\.1:\d+ with 2 workers")

    def test_keep_alive_requests_and_a_big_body_over_tls_1_2_and_1_3(self):
        for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                              (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
            with tls_connect(self.app.port, client_ctx(self.pki, version)) as s:
                self.assertEqual(s.version(), name)
                for i in range(3):
                    r = get(s, f"/users/{i}")
                    self.assertEqual((r.status, r.json()), (200, {"id": str(i)}))
                r = get(s, "/big")
                self.assertEqual((r.status, len(r.body)), (200, 1 << 20))

    def test_pipelined_requests_in_one_record_are_answered_in_order(self):
        with tls_connect(self.app.port, client_ctx(self.pki)) as s:
            s.sendall(b"".join(f"GET /users/{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
                               for i in range(20)))
            r = harness.Reader(s)
            self.assertEqual([r.read().json()["id"] for _ in range(20)],
                             [str(i) for i in range(20)])

    def test_tls_1_1_is_refused(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with warnings.catch_warnings():  # deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        with self.assertRaises(ssl.SSLError):
            tls_connect(self.app.port, ctx).close()
        self.app.wait_log(r"TLS handshake from 127\.0\.0\.1 failed: .*(unsupported protocol|"
                          r"version)")

    def test_the_default_ciphers_are_forward_secret_aead(self):
        with tls_connect(self.app.port, client_ctx(self.pki, ssl.TLSVersion.TLSv1_2)) as s:
            cipher = s.cipher()[0]
        self.assertTrue(cipher.startswith("ECDHE-"), cipher)
        self.assertTrue("GCM" in cipher or "CHACHA20" in cipher, cipher)
        ctx = client_ctx(self.pki, ssl.TLSVersion.TLSv1_2)
        ctx.set_ciphers("AES128-SHA")  # RSA key exchange, CBC: not offered
        with self.assertRaises(ssl.SSLError):
            tls_connect(self.app.port, ctx).close()
        self.app.wait_log(r"TLS handshake from 127\.0\.0\.1 failed: .*no shared cipher")

    def test_sessions_resume_with_ids_and_tickets_on_any_worker(self):
        pids = set()
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = client_ctx(self.pki, version)
            with tls_connect(self.app.port, ctx) as s:
                get(s, "/echo")  # TLS 1.3 tickets come after the handshake
                session = s.session
                self.assertFalse(s.session_reused)
            reused = 0
            for _ in range(8):
                with tls_connect(self.app.port, ctx, session=session) as s:
                    pids.add(get(s, "/pid").json()["pid"])
                    reused += s.session_reused
            self.assertEqual(reused, 8, version)
        # The kernel spread the 16 connections on both workers: the ticket
        # keys are the same in each.
        self.assertEqual(len(pids), 2)

    def test_curl_with_http1_1_and_http2_asked(self):
        for flag in ("--http1.1", "--http2"):
            out = subprocess.run(
                [CURL, "-s", flag, "--cacert", self.pki.path("ca.crt"),
                 "-w", "\n%{http_code} %{http_version}", f"https://localhost:{self.app.port}"
                 "/users/7", "--resolve", f"localhost:{self.app.port}:127.0.0.1"],
                capture_output=True, text=True, timeout=20)
            body, status = out.stdout.rsplit("\n", 1)
            # ALPN offers http/1.1 only: curl's --http2 falls back to it.
            self.assertEqual((status, body), ("200 1.1", '{"id":"7"}'), out.stderr)

    def test_a_client_that_refuses_the_certificate_is_logged(self):
        with self.assertRaises(ssl.SSLCertVerificationError):
            tls_connect(self.app.port, client_ctx(self.pki, ca="other_ca")).close()
        self.app.wait_log(r"TLS handshake from 127\.0\.0\.1 failed: .*(unknown ca|bad certificate)")

    def test_bytes_that_are_not_tls_close_the_connection(self):
        s = harness.connect(self.app.port)
        s.sendall(b"\x16\x03\x01\x00\x05hello" + os.urandom(64))
        self.assertTrue(closed_without_answer(s))
        s.close()
        self.app.wait_log(r"TLS handshake from 127\.0\.0\.1 failed")

    def test_a_plain_text_client_gets_400_in_plain_text(self):
        r = harness.request(self.app.port, "GET", "/echo")
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["error"], "plain HTTP request sent to the TLS port")
        self.app.wait_log(r"TLS: plain HTTP request from 127\.0\.0\.1 on the TLS port")

    def test_client_disconnect_cancels_the_upstream_calls(self):
        before = harness.get_json(self.mock.port, "/stats")[1]["cancelled"]
        url = quote(self.mock.url("/delay?ms=5000"), safe="")
        s = tls_connect(self.app.port, client_ctx(self.pki))
        s.sendall(f"GET /fanout?n=3&url={url} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        time.sleep(0.3)
        s.close()
        deadline = time.monotonic() + 2.5  # well before the 5 s delay ends
        while time.monotonic() < deadline:
            stats = harness.get_json(self.mock.port, "/stats")[1]
            if stats["cancelled"] >= before + 3:
                break
            time.sleep(0.05)
        self.assertEqual(stats["cancelled"], before + 3)


class StreamsOverTls(unittest.TestCase):
    """Streamed responses and the limits that bound them, over TLS."""
    TIMEOUT_MS = 300

    @classmethod
    def setUpClass(cls):
        cls.pki = Pkis.make()
        cls.mock = harness.mock()
        cls.app = streamapp(*tls_args(cls.pki), "--write-timeout-ms", str(cls.TIMEOUT_MS))

    @classmethod
    def tearDownClass(cls):
        try:
            cls.app.stop()
        finally:
            cls.mock.stop()

    def tls_json(self, path):
        with tls_connect(self.app.port, client_ctx(self.pki)) as s:
            return get(s, path).json()

    def test_each_part_is_sent_the_moment_its_call_completes(self):
        fast, slow = 200, 1000
        base = quote(f"http://127.0.0.1:{self.mock.port}", safe="")
        s = tls_connect(self.app.port, client_ctx(self.pki))
        self.addCleanup(s.close)
        s.sendall(f"GET /fanout?base={base}&fast={fast}&slow={slow} HTTP/1.1\r\nHost: t\r\n"
                  "\r\n".encode())
        r = Chunks(s)
        t0 = time.monotonic()
        self.assertEqual(r.head().header("Transfer-Encoding"), "chunked")
        first = json.loads(r.chunk())
        t_first = time.monotonic() - t0
        second = json.loads(r.chunk())
        t_second = time.monotonic() - t0
        self.assertEqual(json.loads(r.chunk()), {"done": True, "parts": 2})
        self.assertEqual(r.chunk(), b"")
        self.assertEqual((first["name"], second["name"]), ("fast", "slow"))
        self.assertLess(t_first / (slow / 1000), 0.6, (t_first, t_second))
        self.assertGreater(t_second / (slow / 1000), 0.9, (t_first, t_second))

    def test_the_write_timeout_ends_a_stream_the_client_stopped_reading(self):
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", self.app.port))
        s = client_ctx(self.pki).wrap_socket(raw, server_hostname="localhost")
        self.addCleanup(s.close)
        s.sendall(b"GET /slow?n=100000&size=32768 HTTP/1.1\r\nHost: t\r\n\r\n")
        deadline = time.monotonic() + 20 * self.TIMEOUT_MS / 1000
        p = {}
        while time.monotonic() < deadline:
            p = self.tls_json("/progress")
            if p["done"]:
                break
            time.sleep(0.05)
        self.assertEqual((p["done"], p["rc"]), (True, "cancelled"), p)
        self.assertLess(p["writes"], 100000)
        self.app.wait_log(r"response not taken by the client within 300 ms")


class ConnectionLimit(unittest.TestCase):
    def test_a_tls_connection_past_max_connections_is_closed_with_a_log_line(self):
        pki = Pkis.make()
        app = testapp(*tls_args(pki), "--max-connections", "1")
        try:
            with tls_connect(app.port, client_ctx(pki)) as held:
                self.assertEqual(get(held, "/users/1").status, 200)
                extra = harness.connect(app.port)
                self.assertTrue(closed_without_answer(extra))
                extra.close()
                app.wait_log(r"connection limit \(1\) reached: closing the connection")
                self.assertEqual(get(held, "/users/2").status, 200)
        finally:
            app.stop()

    def test_the_header_limits_apply_over_tls(self):
        pki = Pkis.make()
        app = testapp(*tls_args(pki), "--max-header-bytes", "1024")
        try:
            with tls_connect(app.port, client_ctx(pki)) as s:
                r = get(s, "/echo", f"X-Big: {'a' * 2000}\r\n")
                self.assertEqual(r.status, 431)
                self.assertTrue(harness.Reader(s).closed())
        finally:
            app.stop()


class HandshakeTimeout(unittest.TestCase):
    def test_a_silent_client_is_closed_after_the_handshake_timeout(self):
        pki = Pkis.make()
        app = testapp(*tls_args(pki), "--tls-handshake-timeout-ms", "300",
                      "--idle-timeout-ms", "10000")
        try:
            s = harness.connect(app.port)
            t0 = time.monotonic()
            s.settimeout(10)
            self.assertEqual(s.recv(10), b"")
            elapsed = time.monotonic() - t0
            # At the 300 ms handshake timeout, far from the 10 s idle one.
            self.assertGreater(elapsed / 0.3, 0.8)
            self.assertLess(elapsed / 10, 0.3)
            s.close()
            app.wait_log(r"TLS handshake not completed within 300 ms")
            # Once the handshake is done the idle timeout applies: still open
            # after twice the handshake timeout.
            with tls_connect(app.port, client_ctx(pki)) as t:
                time.sleep(0.6)
                self.assertEqual(get(t, "/users/1").status, 200)
        finally:
            app.stop()


class GracefulStop(unittest.TestCase):
    def test_a_request_in_progress_is_answered_with_connection_close(self):
        pki = Pkis.make()
        app = testapp(*tls_args(pki))
        got = []
        s = tls_connect(app.port, client_ctx(pki))

        def slow():
            got.append(get(s, "/sleep?ms=600"))

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.2)
        app.proc.send_signal(signal.SIGTERM)
        t.join(10)
        self.assertEqual(app.stop(), 0)
        s.close()
        self.assertEqual(got[0].status, 200)
        self.assertEqual(got[0].header("Connection"), "close")


class Reload(unittest.TestCase):
    def test_sighup_loads_the_new_certificate_and_a_broken_one_keeps_the_old(self):
        pki = Pkis.make()
        live = tempfile.mkdtemp(prefix="fanout-tls-reload-")
        cert, key = os.path.join(live, "cert.pem"), os.path.join(live, "key.pem")
        shutil.copy(pki.path("good.crt"), cert)
        shutil.copy(pki.path("good.key"), key)
        greeting = os.path.join(live, "greeting")
        with open(greeting, "w") as f:
            f.write("hello\n")  # what the test app's reload hook reads
        app = testapp("--tls-cert", cert, "--tls-key", key, "--workers", "1",
                      env={"FANOUT_TEST_RELOAD_FILE": greeting})
        ctx = client_ctx(pki)
        try:
            first = peer_serial(app.port, ctx)
            with tls_connect(app.port, ctx) as first_conn:
                get(first_conn, "/echo")  # the TLS 1.3 ticket comes after the handshake
                session = first_conn.session
            # A request in flight on the old generation is finished.
            s = tls_connect(app.port, ctx)
            got = []
            t = threading.Thread(target=lambda: got.append(get(s, "/sleep?ms=800")))
            t.start()
            time.sleep(0.2)
            shutil.copy(pki.path("second.crt"), cert)
            shutil.copy(pki.path("second.key"), key)
            app.proc.send_signal(signal.SIGHUP)
            app.wait_log(r"reloaded: generation 2")
            app.wait_log(r"TLS certificate .* reloaded")
            # The old worker may still take a connection or two while its
            # SIGTERM is on its way (it shares the slot's socket).
            deadline = time.monotonic() + 5
            while (second := peer_serial(app.port, ctx)) == first:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            self.assertNotEqual(first, second)
            self.assertEqual(second, serial_of(pki.path("second.crt")))
            # A ticket from before the reload resumes on the new generation.
            with tls_connect(app.port, ctx, session=session) as resumed:
                self.assertEqual(get(resumed, "/users/3").status, 200)
                self.assertTrue(resumed.session_reused)
            t.join(10)
            s.close()
            self.assertEqual(got[0].status, 200)
            with open(cert, "w") as f:
                f.write("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
            app.proc.send_signal(signal.SIGHUP)
            app.wait_log(r"TLS reload failed: keeping the certificate .* loaded before")
            app.wait_log(r"reloaded: generation 3")
            self.assertEqual(peer_serial(app.port, ctx), second)
        finally:
            app.stop()
            shutil.rmtree(live)


class Sni(unittest.TestCase):
    def test_the_certificate_is_chosen_by_the_name_the_client_asks_for(self):
        pki = Pkis.make()
        greeting = os.path.join(pki.dir, "greeting")
        with open(greeting, "w") as f:
            f.write("hello\n")  # what the test app's reload hook reads
        app = testapp(*tls_args(pki), *tls_args(pki, "api"), "--workers", "1",
                      env={"FANOUT_TEST_RELOAD_FILE": greeting})
        try:
            good, api = serial_of(pki.path("good.crt")), serial_of(pki.path("api.crt"))
            ctx = client_ctx(pki)
            self.assertEqual(peer_serial(app.port, ctx, "localhost"), good)
            self.assertEqual(peer_serial(app.port, ctx, "api.test"), api)
            self.assertEqual(peer_serial(app.port, ctx, "eu.api.test"), api)  # the wildcard
            # A name no certificate has, and no name at all: the first one.
            loose = ssl.create_default_context(cafile=pki.path("ca.crt"))
            loose.check_hostname = False
            self.assertEqual(peer_serial(app.port, loose, "other.test"), good)
            self.assertEqual(peer_serial(app.port, loose, None), good)
            app.proc.send_signal(signal.SIGHUP)  # both load again
            app.wait_log(r"TLS certificate .*good\.crt and the others reloaded")
            app.wait_log(r"reloaded: generation 2")
            self.assertEqual(peer_serial(app.port, ctx, "api.test"), api)
        finally:
            app.stop()


class BadSettings(unittest.TestCase):
    def run_app(self, *args):
        return subprocess.run([harness.TESTAPP, "--port", "0", *args], capture_output=True,
                              text=True, timeout=20)

    def test_bad_files_and_settings_exit_2_with_a_reason(self):
        pki = Pkis.make()
        cases = [
            (["--tls-cert", pki.path("good.crt")], "--tls-cert given without --tls-key"),
            (["--tls-key", pki.path("good.key")], "--tls-key given without --tls-cert"),
            ([*tls_args(pki), "--tls-cert", pki.path("api.crt")],
             "--tls-cert given without --tls-key"),
            (["--tls-cert", pki.path("good.crt"), "--tls-cert", pki.path("api.crt")],
             "--tls-cert given twice before --tls-key"),
            (["--tls-cert", pki.path("nope.crt"), "--tls-key", pki.path("good.key")],
             "nope.crt"),
            (["--tls-cert", pki.path("good.crt"), "--tls-key", pki.path("second.key")],
             "key values mismatch"),
            (["--tls-ciphers", "NOT-A-CIPHER", *tls_args(pki)], "the cipher list"),
            ([*tls_args(pki), "--tls-ciphersuites", "TLS_NOPE"], "TLS 1.3 cipher suites"),
        ]
        for args, want in cases:
            out = self.run_app(*args)
            self.assertEqual(out.returncode, 2, (args, out.stderr))
            self.assertIn(want, out.stderr, args)


class Settings(unittest.TestCase):
    def test_the_cipher_settings_choose_what_is_negotiated(self):
        pki = Pkis.make()
        app = testapp(*tls_args(pki), "--tls-ciphers", "ECDHE-ECDSA-CHACHA20-POLY1305",
                      "--tls-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256")
        try:
            for version, want in ((ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-CHACHA20-POLY1305"),
                                  (ssl.TLSVersion.TLSv1_3, "TLS_CHACHA20_POLY1305_SHA256")):
                with tls_connect(app.port, client_ctx(pki, version)) as s:
                    self.assertEqual(s.cipher()[0], want)
                    self.assertEqual(get(s, "/users/2").status, 200)
        finally:
            app.stop()

    def test_an_expired_certificate_warns_at_start_and_clients_refuse_it(self):
        pki = Pkis.make()
        app = testapp(*tls_args(pki, "expired"))
        try:
            app.wait_log(r"TLS certificate .*expired\.crt has expired")
            with self.assertRaises(ssl.SSLCertVerificationError):
                tls_connect(app.port, client_ctx(pki)).close()
            app.wait_log(r"TLS handshake from 127\.0\.0\.1 failed: .*certificate expired")
        finally:
            app.stop()


def tearDownModule():
    if Pkis.dir:
        shutil.rmtree(Pkis.dir, ignore_errors=True)


if __name__ == "__main__":
    harness.main()
