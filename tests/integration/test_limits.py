"""Limits under hostile clients, over real sockets against the testapp: a
client that never reads a large response (--write-timeout-ms), thousands of
idle keep-alive connections (memory per connection), and slowloris clients
trickling their request heads (--header-timeout-ms).

Times are asserted as multiples of the configured timeouts, with wide
margins: these tests check behaviour, not speed."""
import os
import resource
import select
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def get(path):
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


def timed_request(port, path="/pid"):
    """(status, seconds) of one request on a fresh connection."""
    t0 = time.monotonic()
    r = harness.request(port, "GET", path, timeout=10)
    return r.status, time.monotonic() - t0


class LimitCase(unittest.TestCase):
    """One testapp with `args` for the class, stopped cleanly afterwards
    (which also checks the sanitizer's report, leaks included)."""
    args = ()

    @classmethod
    def setUpClass(cls):
        cls.server = harness.testapp(*cls.args)
        cls.port = cls.server.port
        cls.pid = harness.worker_pid(cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def assertServes(self):
        status, _ = timed_request(self.port)
        self.assertEqual(status, 200)
        self.assertEqual(harness.worker_pid(self.port), self.pid, "worker replaced")


class SlowReader(LimitCase):
    TIMEOUT_MS = 500
    SIZE = 50_000_000
    args = ("--write-timeout-ms", str(TIMEOUT_MS))

    def test_client_that_never_reads_is_closed_and_its_memory_released(self):
        for _ in range(3):  # warm up: the worker's steady state
            self.assertServes()
        before = harness.rss_kib(self.pid)
        s = socket.socket()
        self.addCleanup(s.close)
        # A small receive window: the response stays in the server.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", self.port))
        t0 = time.monotonic()
        s.sendall(get(f"/big?n={self.SIZE}"))
        # While the write is stuck, other clients are served.
        answered = 0
        peak = before
        while time.monotonic() - t0 < self.TIMEOUT_MS / 1000 * 0.6:
            status, _ = timed_request(self.port)
            answered += status == 200
            peak = max(peak, harness.rss_kib(self.pid))
        self.assertGreater(answered, 0)
        self.server.wait_log(r"response not taken by the client within 500 ms", timeout=10)
        elapsed = time.monotonic() - t0
        ratio = elapsed / (self.TIMEOUT_MS / 1000)
        print(f"\n  slow reader closed after {elapsed:.2f} s ({ratio:.1f}x the write timeout);"
              f" RSS {before} KiB before, {peak} KiB peak", file=sys.stderr)
        self.assertGreater(ratio, 0.8)
        self.assertLess(ratio, 6)
        self.assertTrue(harness.Reader(s).closed(10), "connection left open")
        # The response lived in the worker while it was stuck...
        self.assertGreater(peak - before, self.SIZE // 1024 // 2)
        # ...and is released with the connection. (ASan's quarantine keeps
        # freed memory mapped: only the normal build can show it.)
        after = before
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            after = harness.rss_kib(self.pid)
            if after - before < 8 * 1024:
                break
            time.sleep(0.05)
        print(f"  RSS after the close: {after} KiB", file=sys.stderr)
        if not harness.SANITIZED:
            self.assertLess(after - before, 8 * 1024, "response memory not released")
        self.assertServes()

    def test_a_reader_that_keeps_up_is_not_cut(self):
        # Slower than the write timeout in total, but never stuck for it:
        # the timeout bounds one write, which this client completes.
        n = 4_000_000
        with harness.connect(self.port) as s:
            s.sendall(get(f"/big?n={n}"))
            r = harness.Reader(s).read()
        self.assertEqual((r.status, len(r.body)), (200, n))


class IdleConnections(LimitCase):
    COUNT = 5000
    args = ("--max-connections", "20000", "--idle-timeout-ms", "60000")

    @classmethod
    def setUpClass(cls):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 16384 if hard == resource.RLIM_INFINITY else min(hard, 16384)
        if soft < want:  # the server inherits it
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        super().setUpClass()

    def test_thousands_of_idle_keep_alive_connections_cost_little(self):
        for _ in range(3):
            self.assertServes()
        before = harness.rss_kib(self.pid)
        socks = []
        try:
            batch = 250
            for start in range(0, self.COUNT, batch):
                group = [harness.connect(self.port) for _ in range(batch)]
                socks += group
                for s in group:
                    s.sendall(get("/pid"))
                for s in group:
                    r = harness.Reader(s).read()
                    self.assertEqual(r.status, 200)
                    self.assertIsNone(r.header("Connection"))  # kept open
            time.sleep(0.2)
            after = harness.rss_kib(self.pid)
            per_conn = (after - before) * 1024 / self.COUNT
            print(f"\n  {self.COUNT} idle connections: RSS {before} -> {after} KiB,"
                  f" {per_conn:.0f} bytes per connection", file=sys.stderr)
            self.assertServes()
            self.assertLess(per_conn, 32 * 1024)
            # Still open: nothing was closed behind our back.
            ready, _, _ = select.select(socks[:500], [], [], 0)
            self.assertEqual(ready, [])
        finally:
            for s in socks:
                s.close()


class TrickledHead(LimitCase):
    """The header timeout runs from a request's first byte: reads do not
    re-arm it, or a client could trickle its head forever."""
    TIMEOUT_MS = 1000
    TICK = 0.05
    args = ("--header-timeout-ms", str(TIMEOUT_MS))

    def test_trickled_head_does_not_extend_the_header_timeout(self):
        timeout = self.TIMEOUT_MS / 1000
        s = harness.connect(self.port)
        self.addCleanup(s.close)
        t0 = time.monotonic()
        s.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\n")
        # A header line every TICK for three timeouts, until the answer comes.
        # A timer re-armed by each read would answer one timeout after the
        # trickle stopped: at four timeouts.
        s.settimeout(self.TICK)
        i = 0
        while time.monotonic() - t0 < 3 * timeout:
            try:
                s.sendall(b"X-%d: v\r\n" % i)
                if s.recv(1, socket.MSG_PEEK):
                    break
            except socket.timeout:
                pass
            except OSError:
                break
            i += 1
        s.settimeout(10)
        rd = harness.Reader(s)
        r = rd.read()
        ratio = (time.monotonic() - t0) / timeout
        print(f"\n  answered after {ratio:.2f}x the header timeout, {i} lines sent",
              file=sys.stderr)
        self.assertEqual(r.status, 408)
        self.assertEqual(r.header("Connection"), "close")
        self.assertTrue(rd.closed())
        self.assertGreaterEqual(ratio, 0.9)
        self.assertLessEqual(ratio, 1.5)
        self.assertServes()


class Slowloris(LimitCase):
    COUNT = 500
    TIMEOUT_MS = 1000
    TICK = 0.2
    args = ("--header-timeout-ms", str(TIMEOUT_MS))

    def trickle(self, socks, started, done, stop):
        """Sends one byte on every open socket each TICK; records when each
        socket got its answer (all of it, up to EOF) in done[i]."""
        poller = select.poll()
        index = {s.fileno(): i for i, s in enumerate(socks)}
        for s in socks:
            poller.register(s, select.POLLIN)
        answers = [b""] * len(socks)
        next_tick = time.monotonic() + self.TICK
        while len(done) < len(socks) and not stop.is_set():
            wait = max(0, next_tick - time.monotonic())
            for fd, _ in poller.poll(wait * 1000):
                i = index[fd]
                try:
                    data = socks[i].recv(65536)
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
                answers[i] += data
                if not data:
                    done[i] = (time.monotonic() - started[i], answers[i])
                    poller.unregister(fd)
            if time.monotonic() >= next_tick:
                next_tick += self.TICK
                for i, s in enumerate(socks):
                    if i not in done:
                        try:
                            s.send(b"a")
                        except OSError:
                            pass  # closed: its EOF is read above

    def test_trickled_heads_do_not_block_others_and_get_408(self):
        socks = [harness.connect(self.port) for _ in range(self.COUNT)]
        self.addCleanup(lambda: [s.close() for s in socks])
        started = []
        for s in socks:
            started.append(time.monotonic())
            s.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        done, stop = {}, threading.Event()
        t = threading.Thread(target=self.trickle, args=(socks, started, done, stop))
        t.start()
        try:
            times = []
            for _ in range(20):
                status, secs = timed_request(self.port)
                self.assertEqual(status, 200)
                times.append(secs)
            t.join(self.TIMEOUT_MS / 1000 * 8)
        finally:
            stop.set()
            t.join()
        timeout = self.TIMEOUT_MS / 1000
        print(f"\n  normal requests during the trickle: slowest {max(times) * 1000:.0f} ms;"
              f" {len(done)}/{self.COUNT} slowloris closed", file=sys.stderr)
        self.assertLess(max(times), timeout / 2)
        self.assertEqual(len(done), self.COUNT)
        ratios = sorted(secs / timeout for secs, _ in done.values())
        print(f"  closed after {ratios[0]:.2f}x to {ratios[-1]:.2f}x the header timeout",
              file=sys.stderr)
        self.assertGreater(ratios[0], 0.8)
        self.assertLess(ratios[-1], 5)
        for _, answer in done.values():
            self.assertTrue(answer.startswith(b"HTTP/1.1 408 "), answer[:80])
            self.assertIn(b"Connection: close\r\n", answer)
        self.assertServes()


if __name__ == "__main__":
    harness.main()
