"""https upstreams against a real TLS server: Debian's nginx with HTTP/2,
started on localhost ports with a configuration in a temporary folder, and
a CA and certificates made here with the openssl CLI. It checks what is
verified (chain, host name, validity), mutual TLS, that TLS connections are
reused across requests (nginx's access log counts them) and that calls to an
HTTP/2 origin share one connection."""
import collections
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
from urllib.parse import quote

import harness
from harness import get_json, testapp

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
OPENSSL = shutil.which("openssl")

# Server blocks: name -> (certificate or None for plain http, HTTP/2 on,
# extra directives).
SERVERS = {
    "good": ("good", True, ""),
    "h1": ("good", False, ""),
    "h2": ("good", True, ""),
    "other_ca": ("other_ca", True, ""),
    "wrong_name": ("wrong_name", True, ""),
    "expired": ("expired", True, ""),
    "capped": ("good", False, ""),
    "wide": ("good", False, ""),
    "forced_h1": ("good", True, ""),
    "plain_capped": (None, False, ""),
    "mtls": ("good", True, "ssl_client_certificate @DIR@/ca.crt; ssl_verify_client on;"),
}

CA_CNF = """[ ca ]
default_ca = dflt
[ dflt ]
database = @DIR@/index.txt
new_certs_dir = @DIR@
serial = @DIR@/serial
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[ any ]
commonName = supplied
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pki:
    """A CA, another CA, and certificates, in `dir`."""

    def __init__(self, dir):
        self.dir = dir

    def run(self, *args):
        subprocess.run([OPENSSL, *args], cwd=self.dir, check=True, capture_output=True)

    def ca(self, name):
        self.run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "3",
                 "-subj", f"/CN=fanout test {name}")

    def csr(self, name, cn, san):
        args = ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}"]
        if san:
            args += ["-addext", f"subjectAltName={san}"]
        self.run(*args)

    def cert(self, name, ca, cn="localhost", san="DNS:localhost,IP:127.0.0.1"):
        self.csr(name, cn, san)
        self.run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                 "-CAcreateserial", "-days", "2", "-copy_extensions", "copy", "-out", f"{name}.crt")

    def expired(self, name, ca):
        """A certificate of `ca` valid only in January 2020 (openssl 3.0's
        x509 cannot set a start date: `openssl ca` can)."""
        self.csr(name, "localhost", "DNS:localhost,IP:127.0.0.1")
        with open(os.path.join(self.dir, "ca.cnf"), "w") as f:
            f.write(CA_CNF.replace("@DIR@", self.dir))
        open(os.path.join(self.dir, "index.txt"), "w").close()
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("1000\n")
        self.run("ca", "-batch", "-config", "ca.cnf", "-cert", f"{ca}.crt", "-keyfile",
                 f"{ca}.key", "-startdate", "20200101000000Z", "-enddate", "20200102000000Z",
                 "-in", f"{name}.csr", "-out", f"{name}.crt", "-notext")

    def path(self, name):
        return os.path.join(self.dir, name)


class Nginx:
    """nginx, unprivileged, with one server block per SERVERS entry, each
    on its own port with its own access log of connection, protocol and
    session reuse."""

    def __init__(self, dir):
        self.dir = dir
        self.ports = {name: free_port() for name in SERVERS}
        blocks = []
        for name, (cert, h2, extra) in SERVERS.items():
            tls = f"ssl_certificate {dir}/{cert}.crt; ssl_certificate_key {dir}/{cert}.key;"
            blocks.append(f"""
    server {{
        listen 127.0.0.1:{self.ports[name]}{' ssl' if cert else ''}{' http2' if h2 else ''};
        {tls if cert else ''}
        {extra.replace('@DIR@', dir)}
        access_log {dir}/{name}.log conn;
        location / {{ default_type application/json; return 200 '{{"value": 0.5}}'; }}
    }}""")
        conf = f"""
worker_processes 1;
pid {dir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    log_format conn '$connection $server_protocol $ssl_session_reused $status $request_uri';
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    ssl_session_cache shared:tls:1m;
    keepalive_timeout 120s;
    {''.join(blocks)}
}}
"""
        with open(os.path.join(dir, "nginx.conf"), "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen([NGINX, "-e", "stderr", "-p", dir, "-c",
                                      os.path.join(dir, "nginx.conf"), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        for port in self.ports.values():
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"nginx did not start: {self.proc.stderr.read().decode()}")
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def url(self, name, path="/x", scheme="https"):
        return f"{scheme}://127.0.0.1:{self.ports[name]}{path}"

    def log(self, name):
        """The access log of server `name`: (connection, protocol, reused,
        status, uri) per request. nginx writes each line as it ends."""
        try:
            with open(os.path.join(self.dir, f"{name}.log")) as f:
                return [tuple(l.split()) for l in f if l.strip()]
        except FileNotFoundError:
            return []

    def wait_log(self, name, count, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.log(name)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.log(name)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish the requests
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()


@unittest.skipUnless(OPENSSL and os.path.exists(NGINX), "needs nginx and openssl (deps.sh --test)")
class TlsUpstreams(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="fanout-tls-")
        cls.nginx = cls.app = cls.mtls_app = None
        try:
            pki = cls.pki = Pki(cls.tmp)
            pki.ca("ca")
            pki.ca("other")
            pki.cert("good", "ca")
            pki.cert("other_ca", "other")
            pki.cert("wrong_name", "ca", cn="wrong.example", san="DNS:wrong.example")
            pki.expired("expired", "ca")
            pki.cert("client", "ca", cn="fanout client", san=None)
            cls.nginx = Nginx(cls.tmp)
            cls.app = testapp("--ca-file", pki.path("ca.crt"))
            cls.mtls_app = testapp("--ca-file", pki.path("ca.crt"),
                                   "--client-cert", pki.path("client.crt"),
                                   "--client-key", pki.path("client.key"),
                                   "--origin", cls.nginx.url("wrong_name", "") + ",verify=off",
                                   "--origin", cls.nginx.url("capped", "") + ",max-connections=2",
                                   "--origin", cls.nginx.url("forced_h1", "") + ",http=1.1",
                                   "--origin", cls.nginx.url("plain_capped", "", "http")
                                   + ",max-connections=2")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            for app in (cls.app, cls.mtls_app):
                if app:
                    app.stop()
        finally:
            if cls.nginx:
                cls.nginx.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def fetch(self, app, url, name=None):
        path = "/fetch?url=" + quote(url, safe="")
        if name:
            path += "&name=" + name
        status, j = get_json(app.port, path)
        self.assertEqual(status, 200, j)
        return j

    def assert_tls_failure(self, server, why):
        """A call to `server` ends with "tls", and a warning names the
        upstream and says `why` (curl's words for OpenSSL's reason)."""
        url = self.nginx.url(server, f"/{server}")
        j = self.fetch(self.app, url)
        self.assertEqual((j["error"], j["status"]), ("tls", 0), j)
        line = self.app.wait_log(r"upstream call .*TLS failure: .*")[-1].group(0)
        self.app.wait_log(r"upstream call https://127\.0\.0\.1:%d/%s: TLS failure: .*%s"
                          % (self.nginx.ports[server], server, why))
        self.assertEqual(self.nginx.log(server), [], "no request reached the server")
        return line

    def test_a_certificate_of_the_ca_is_accepted(self):
        j = self.fetch(self.app, self.nginx.url("good"))
        self.assertEqual((j["error"], j["status"], j.get("value")), ("ok", 200, 0.5), j)
        self.assertEqual(self.nginx.wait_log("good", 1)[0][1], "HTTP/2.0")

    def test_a_certificate_of_another_ca_fails_with_tls(self):
        self.assert_tls_failure("other_ca", "unable to get local issuer certificate")

    def test_a_certificate_for_another_host_name_fails_with_tls(self):
        self.assert_tls_failure("wrong_name", "no alternative certificate subject name matches")

    def test_an_expired_certificate_fails_with_tls(self):
        self.assert_tls_failure("expired", "certificate has expired")

    def test_verification_off_for_an_origin_accepts_a_wrong_name_and_warns(self):
        self.mtls_app.wait_log(r"origin https://127\.0\.0\.1:%d: TLS verification is off"
                               % self.nginx.ports["wrong_name"])
        j = self.fetch(self.mtls_app, self.nginx.url("wrong_name", "/unverified"))
        self.assertEqual((j["error"], j["status"]), ("ok", 200), j)

    def test_mutual_tls_succeeds_with_the_client_certificate(self):
        j = self.fetch(self.mtls_app, self.nginx.url("mtls", "/with-cert"))
        self.assertEqual((j["error"], j["status"], j.get("value")), ("ok", 200, 0.5), j)

    def test_mutual_tls_without_a_client_certificate_is_refused(self):
        # nginx completes the handshake and answers 400 ("No required SSL
        # certificate was sent") rather than failing it.
        j = self.fetch(self.app, self.nginx.url("mtls", "/without-cert"))
        self.assertEqual((j["error"], j["status"]), ("ok", 400), j)
        self.assertIn("No required SSL certificate", j.get("body", ""))

    def test_http11_tls_connections_are_reused_across_requests(self):
        url = self.nginx.url("h1", "/reuse")
        for _ in range(100):
            status, j = get_json(self.app.port, "/fanout?n=4&url=" + quote(url, safe=""))
            self.assertEqual((status, j["all"]), (200, "ok"), j)
        lines = self.nginx.wait_log("h1", 400)
        self.assertEqual(len(lines), 400)
        self.assertEqual({l[1] for l in lines}, {"HTTP/1.1"})
        conns = collections.OrderedDict()
        for conn, _, reused, _, _ in lines:
            conns.setdefault(conn, reused)
        per_request = len(conns) / 100
        print(f"\nh1 reuse: {len(lines)} calls over {len(conns)} connections "
              f"({per_request:.2f} new connections per request of 4 calls); "
              f"session resumed on {sum(r == 'r' for r in conns.values())} of them")
        self.assertLess(per_request, 0.25)

    def test_concurrent_calls_to_an_http2_origin_share_one_connection(self):
        url = self.nginx.url("h2", "/multiplex")
        status, j = get_json(self.app.port, "/fanout?n=50&url=" + quote(url, safe=""))
        self.assertEqual((status, j["all"]), (200, "ok"), j)
        lines = self.nginx.wait_log("h2", 50)
        self.assertEqual(len(lines), 50)
        self.assertEqual({l[1] for l in lines}, {"HTTP/2.0"})
        print(f"\nh2: 50 concurrent calls over {len({l[0] for l in lines})} connection(s)")
        self.assertEqual(len({l[0] for l in lines}), 1)

    def test_the_connections_of_a_fan_out_wider_than_4_are_kept(self):
        # curl's default cache kept 4 per transfer in progress: once the
        # calls ended, the connections beyond were closed, and reopened by
        # the next request.
        url = self.nginx.url("wide", "/wide")
        for _ in range(5):
            status, j = get_json(self.app.port, "/fanout?n=8&url=" + quote(url, safe=""))
            self.assertEqual((status, j["all"]), (200, "ok"), j)
        lines = self.nginx.wait_log("wide", 40)
        self.assertEqual(len(lines), 40)
        self.assertEqual(len({l[0] for l in lines}), 8)

    def test_an_origin_capped_at_2_connections_uses_at_most_2(self):
        url = self.nginx.url("capped", "/capped")
        for _ in range(3):
            status, j = get_json(self.mtls_app.port, "/fanout?n=8&url=" + quote(url, safe=""))
            self.assertEqual((status, j["all"]), (200, "ok"), j)
        lines = self.nginx.wait_log("capped", 24)
        self.assertEqual(len(lines), 24)
        self.assertLessEqual(len({l[0] for l in lines}), 2)

    def test_a_plain_http_origin_capped_at_2_connections_uses_at_most_2(self):
        # The lean transport's calls count in the same slots.
        url = self.nginx.url("plain_capped", "/capped", "http")
        for _ in range(3):
            status, j = get_json(self.mtls_app.port, "/fanout?n=8&url=" + quote(url, safe=""))
            self.assertEqual((status, j["all"]), (200, "ok"), j)
        lines = self.nginx.wait_log("plain_capped", 24)
        self.assertEqual(len(lines), 24)
        self.assertLessEqual(len({l[0] for l in lines}), 2)

    def test_an_http2_server_is_spoken_to_in_http11_when_the_origin_says_so(self):
        j = self.fetch(self.mtls_app, self.nginx.url("forced_h1", "/forced"))
        self.assertEqual((j["error"], j["status"]), ("ok", 200), j)
        self.assertEqual([l[1] for l in self.nginx.wait_log("forced_h1", 1)], ["HTTP/1.1"])


class TlsOptions(unittest.TestCase):
    """Bad TLS and origin options stop the program at start with status 2."""

    def exit_status(self, *args):
        p = subprocess.run([harness.TESTAPP, "--workers", "0", "--port", "0", *args],
                           capture_output=True, text=True, timeout=20)
        return p.returncode, p.stderr

    def assert_refused(self, message, *args):
        rc, err = self.exit_status(*args)
        self.assertEqual(rc, 2, err)
        self.assertIn(message, err)

    def test_bad_values_exit_with_status_2(self):
        with tempfile.TemporaryDirectory() as d:
            junk = os.path.join(d, "junk.pem")
            with open(junk, "w") as f:
                f.write("not a certificate\n")
            self.assert_refused("cannot be read", "--ca-file", os.path.join(d, "missing.pem"))
            self.assert_refused("no PEM certificate", "--ca-file", junk)
            self.assert_refused("no PEM certificate", "--client-cert", junk)
            self.assert_refused("no --client-cert FILE given", "--client-key", junk)
            self.assert_refused("no unencrypted PEM private key", "--client-cert", self.cert_only(d))
            self.assert_refused("not http:// or https://", "--origin", "ftp://a")
            self.assert_refused("no path", "--origin", "https://a/x")
            self.assert_refused("expected ORIGIN", "--origin", "https://a,http=3")
            self.assert_refused("whole number", "--origin", "https://a,max-connections=x")
            self.assert_refused("HTTP/2 without TLS (h2c) is not supported",
                                "--origin", "http://a:8080,http=2")
            self.assert_refused("no max-connections with http=2",
                                "--origin", "https://a,http=2,max-connections=2")

    def cert_only(self, d):
        pki = Pki(d)
        pki.ca("ca")
        return pki.path("ca.crt")

    def test_a_key_of_another_certificate_exits_with_status_2(self):
        with tempfile.TemporaryDirectory() as d:
            pki = Pki(d)
            pki.ca("ca")
            pki.cert("a", "ca")
            pki.cert("b", "ca")
            self.assert_refused("does not belong to the client certificate",
                                "--client-cert", pki.path("a.crt"), "--client-key", pki.path("b.key"))
            self.assert_refused("does not belong to the client certificate",
                                "--client-key", pki.path("b.key"), "--client-cert", pki.path("a.crt"))


if __name__ == "__main__":
    harness.main()
