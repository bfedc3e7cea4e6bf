"""The client's address and port (fan_req_client_addr, fan_req_client_port)
and --trusted-proxies: X-Forwarded-For and Forwarded (RFC 7239) are believed
only from a trusted peer, read from the right, and ignored when malformed.
The access log shows the same address. testapp's /client reports it."""
import json
import re
import socket
import subprocess
import unittest

import harness
from harness import Reader, TESTAPP, testapp


def ask(port, headers=(), host="127.0.0.1", family=socket.AF_INET):
    """GET /client with `headers` on a fresh connection from `host`: the
    JSON answer and the local port of the connection."""
    with socket.socket(family) as s:
        s.settimeout(10)
        s.connect((host, port))
        hdrs = "".join(f"{k}: {v}\r\n" for k, v in headers)
        s.sendall(f"GET /client HTTP/1.1\r\nHost: t\r\n{hdrs}\r\n".encode())
        r = Reader(s).read()
        assert r.status == 200, (r.status, r.body)
        return json.loads(r.body), s.getsockname()[1]


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


SPOOFED = [("X-Forwarded-For", "203.0.113.9"), ("Forwarded", "for=203.0.113.9")]


class NoProxyTrusted(harness.AppSuite):
    def test_the_client_is_the_peer_with_its_port(self):
        j, port = ask(self.app.port)
        self.assertEqual(j, {"addr": "127.0.0.1", "port": port})

    def test_forwarding_headers_are_not_believed_from_an_untrusted_peer(self):
        j, port = ask(self.app.port, SPOOFED)
        self.assertEqual(j, {"addr": "127.0.0.1", "port": port})
        self.app.wait_log(r"access \[\d+\] 127\.0\.0\.1 GET /client 200 ")

    def test_the_access_log_keeps_the_address_of_a_client_that_went_away(self):
        # The address is read once the connection is accepted, not at the end.
        with socket.create_connection(("127.0.0.1", self.app.port)) as s:
            s.sendall(b"GET /sleep?ms=300&gone=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        self.app.wait_log(r"access \[\d+\] 127\.0\.0\.1 GET /sleep 200 ")


class LoopbackTrusted(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.app = testapp("--trusted-proxies", " 127.0.0.1, 10.0.0.0/8", "--log-level", "debug")

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()

    def client(self, *headers):
        return ask(self.app.port, headers)[0]

    def assert_peer(self, *headers, log=None):
        """The headers are ignored: the client is the peer, with its port,
        and one more debug line matches `log`."""
        pattern = r" debug \[\d+\] client address: " + (log or "")
        before = sum(1 for l in list(self.app.lines) if re.search(pattern, l))
        j, port = ask(self.app.port, headers)
        self.assertEqual(j, {"addr": "127.0.0.1", "port": port})
        if log:
            self.app.wait_log(pattern, count=before + 1)

    def test_the_x_forwarded_for_client_is_believed_and_has_no_port(self):
        self.assertEqual(self.client(("X-Forwarded-For", "203.0.113.9")),
                         {"addr": "203.0.113.9", "port": 0})

    def test_the_access_log_shows_the_forwarded_client(self):
        self.client(("X-Forwarded-For", "203.0.113.77"))
        self.app.wait_log(r"access \[\d+\] 203\.0\.113\.77 GET /client 200 ")

    def test_trusted_proxies_in_the_chain_are_walked_past_from_the_right(self):
        self.assertEqual(self.client(("X-Forwarded-For", "1.2.3.4, 10.0.0.1"))["addr"], "1.2.3.4")

    def test_the_right_most_untrusted_address_wins_over_what_the_client_wrote(self):
        # The client wrote "6.6.6.6" and "garbage"; the proxies appended the rest.
        self.assertEqual(self.client(("X-Forwarded-For", "garbage, 6.6.6.6, 1.2.3.4, 10.9.8.7"))
                         ["addr"], "1.2.3.4")

    def test_repeated_x_forwarded_for_lines_are_one_list(self):
        self.assertEqual(self.client(("X-Forwarded-For", "6.6.6.6, 1.2.3.4"),
                                     ("X-Forwarded-For", "10.0.0.1"))["addr"], "1.2.3.4")

    def test_a_chain_of_trusted_addresses_gives_the_left_most(self):
        self.assertEqual(self.client(("X-Forwarded-For", "10.0.0.7, 10.0.0.1"))["addr"],
                         "10.0.0.7")

    def test_an_ipv6_x_forwarded_for_is_written_canonically(self):
        self.assertEqual(self.client(("X-Forwarded-For", "[2001:DB8:0::1]"))["addr"],
                         "2001:db8::1")

    def test_forwarded_gives_the_address_and_the_port(self):
        self.assertEqual(self.client(("Forwarded", 'for="[2001:db8::1]:4711"')),
                         {"addr": "2001:db8::1", "port": 4711})

    def test_forwarded_elements_are_walked_from_the_right(self):
        value = 'for=6.6.6.6, for=192.0.2.60;proto=http;by=203.0.113.43, for="10.0.0.2:8080"'
        self.assertEqual(self.client(("Forwarded", value)), {"addr": "192.0.2.60", "port": 0})

    def test_a_quoted_comma_does_not_split_a_forwarded_element(self):
        self.assertEqual(self.client(("Forwarded", 'for=192.0.2.9;host="a,b"')),
                         {"addr": "192.0.2.9", "port": 0})

    def test_a_forwarded_unknown_client_has_no_address(self):
        self.assertEqual(self.client(("Forwarded", "for=unknown")), {"addr": None, "port": 0})
        self.assertEqual(self.client(("Forwarded", 'for="_hidden:_port"')),
                         {"addr": None, "port": 0})

    def test_both_headers_naming_the_same_client_are_believed(self):
        self.assertEqual(self.client(("X-Forwarded-For", "192.0.2.1"),
                                     ("Forwarded", 'for="192.0.2.1:5000"')),
                         {"addr": "192.0.2.1", "port": 5000})

    def test_both_headers_naming_different_clients_are_ignored(self):
        # One of them came from the client: a proxy appends to one only.
        self.assert_peer(("X-Forwarded-For", "192.0.2.1"), ("Forwarded", "for=192.0.2.2"),
                         log="X-Forwarded-For and Forwarded from trusted proxy 127.0.0.1 name "
                             "different clients: ignored")

    def test_a_malformed_x_forwarded_for_is_ignored_with_a_debug_line(self):
        self.assert_peer(("X-Forwarded-For", "not-an-ip"),
                         log=r"X-Forwarded-For from trusted proxy 127\.0\.0\.1 is malformed at "
                             r"'not-an-ip': ignored")

    def test_garbage_forwarding_headers_leave_the_peer(self):
        for headers in ([("X-Forwarded-For", "1.2.3.4:80")], [("X-Forwarded-For", "1.2.3")],
                        [("X-Forwarded-For", "[1.2.3.4]")], [("Forwarded", "garbage")],
                        [("Forwarded", "for=")], [("Forwarded", "for=1.2.3.4:80")],
                        [("Forwarded", "for=[2001:db8::1]")], [("Forwarded", 'for="[::1')],
                        [("Forwarded", "for=1.2.3.4;for=5.6.7.8")],
                        [("Forwarded", "proto=https")], [("Forwarded", 'for="1.2.3.4:99999"')],
                        [("Forwarded", "for=1.2.3.4 x")]):
            with self.subTest(headers=headers):
                self.assert_peer(*headers, log="[^ ]+ from trusted proxy 127.0.0.1 is malformed")

    def test_a_malformed_header_leaves_the_other_one_believed(self):
        self.assertEqual(self.client(("X-Forwarded-For", "garbage"),
                                     ("Forwarded", "for=192.0.2.3")),
                         {"addr": "192.0.2.3", "port": 0})


class BadTrustedProxies(unittest.TestCase):
    def refused(self, value, why):
        p = subprocess.run([TESTAPP, "--workers", "0", "--port", "0", "--trusted-proxies", value],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(f"trusted proxies: '{value}': {why}", p.stderr)
        for marker in harness.SAN_MARKERS:
            self.assertNotIn(marker, p.stderr)

    def test_an_entry_that_is_not_an_address_is_refused(self):
        self.refused("localhost", "not a numeric IPv4 or IPv6 address")

    def test_a_network_with_host_bits_set_is_refused(self):
        # A typo for /16 would trust a whole /8.
        self.refused("10.1.0.0/8", "the address has bits set beyond its prefix")

    def test_a_prefix_too_long_is_refused(self):
        self.refused("10.0.0.0/33", "the prefix length is too long")


@unittest.skipUnless(has_ipv6_loopback(), "no IPv6 loopback on this machine")
class Ipv6Peer(unittest.TestCase):
    def test_an_ipv6_peer_is_reported_and_can_be_trusted(self):
        app = testapp(host="::1")
        try:
            j, port = ask(app.port, SPOOFED, host="::1", family=socket.AF_INET6)
            self.assertEqual(j, {"addr": "::1", "port": port})
        finally:
            app.stop()
        app = testapp("--trusted-proxies", "::1", host="::1")
        try:
            j, _ = ask(app.port, [("X-Forwarded-For", "2001:db8::7")], host="::1",
                       family=socket.AF_INET6)
            self.assertEqual(j, {"addr": "2001:db8::7", "port": 0})
        finally:
            app.stop()

    def test_an_ipv4_peer_of_a_dual_stack_listener_is_plain_ipv4_and_trusted_as_such(self):
        app = testapp("--trusted-proxies", "127.0.0.1", host="::")
        try:
            j, port = ask(app.port)
            self.assertEqual(j, {"addr": "127.0.0.1", "port": port})
            j, _ = ask(app.port, [("X-Forwarded-For", "203.0.113.5")])
            self.assertEqual(j["addr"], "203.0.113.5")
        finally:
            app.stop()


if __name__ == "__main__":
    harness.main()
