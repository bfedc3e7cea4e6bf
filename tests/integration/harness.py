"""Test harness: starts fanout binaries on free ports, talks raw HTTP/1.1
over sockets, and checks at teardown that the process stopped cleanly on
SIGTERM with no sanitizer report (leaks included)."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

BIN = os.environ.get("FANOUT_BIN", "build/fanout")
TESTAPP = os.environ.get("FANOUT_TESTAPP", "build/tests/testapp")
SANITIZED = os.environ.get("FANOUT_SANITIZED") == "1"
SAN_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


class Server:
    """A fanout process listening on a free port (read from its log)."""

    def __init__(self, argv, name="server", env=None, host="127.0.0.1"):
        """env: variables added to this process's environment, if any."""
        self.name = name
        self.argv = argv + ["--port", "0", "--host", host]
        self.proc = subprocess.Popen(self.argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     text=True, errors="replace",
                                     env={**os.environ, **env} if env else None)
        self.lines = []
        self.port = None
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(10):
            self.stop(check=False)
            raise RuntimeError(f"{name} did not start: {self.log()}")

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            m = re.search(r"listening on https?://[^ ]*:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                self._ready.set()
        self._ready.set()

    def log(self):
        return "\n".join(self.lines)

    def wait_log(self, pattern, count=1, timeout=10):
        """Waits until `count` log lines match the regex `pattern`; returns
        the matches, or raises AssertionError with the log on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in (re.search(pattern, l) for l in list(self.lines)) if m]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {count} lines match {pattern!r}\n{self.log()}")
            time.sleep(0.02)

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self, check=True):
        """SIGTERM, then wait; returns the exit code. With check, fails on a
        non-zero exit or a sanitizer report."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} did not stop on SIGTERM\n{self.log()}")
        self._reader.join(5)
        self.proc.stderr.close()
        if check:
            text = self.log()
            for marker in SAN_MARKERS:
                if marker in text:
                    raise AssertionError(f"{self.name}: sanitizer report\n{text}")
            if self.proc.returncode != 0:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}\n{text}")
        return self.proc.returncode


def worker_pid(port):
    """The pid of the process that serves `port` (the testapp's /pid)."""
    status, j = get_json(port, "/pid", timeout=10)
    assert status == 200, status
    return j["pid"]


def rss_kib(pid):
    """The resident set size of process `pid`, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def closed_port():
    """A loopback port with nothing listening on it."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def silent_listener(test, host="127.0.0.1"):
    """A port on `host` that drops SYNs, for connect timeouts: a listener
    whose accept queue is full (closed with the test). Skips the test when
    the kernel answers anyway."""
    hole = socket.socket()
    test.addCleanup(hole.close)
    hole.bind((host, 0))
    hole.listen(0)
    port = hole.getsockname()[1]
    for _ in range(2):
        c = socket.socket()
        test.addCleanup(c.close)
        c.settimeout(0.5)
        try:
            c.connect((host, port))
        except OSError:
            pass
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        probe.connect((host, port))
        test.skipTest("the kernel did not drop SYNs to a full accept queue")
    except socket.timeout:
        pass
    finally:
        probe.close()
    return port


def workers_or(default, args):
    """`args` with --workers `default` first, unless they give --workers."""
    if any(a == "--workers" or str(a).startswith("--workers=") for a in args):
        return args
    return ("--workers", default, *args)


def testapp(*args, env=None, host="127.0.0.1"):
    # fan_main() now forks one worker per CPU by default; suites written for
    # one serving process (limits are per worker) get one worker under the
    # master, unless they choose.
    return Server([TESTAPP, *workers_or("1", args)], "testapp", env=env, host=host)


def mock(*args):
    # The mock and the demo serve as fan_main() does too; the suites written
    # for them count on one process (the mock's counters, the demo's log),
    # as they were before --workers: in the process itself, unless chosen.
    return Server([BIN, "mock", *workers_or("0", args)], "mock")


def demo(*args):
    return Server([BIN, "demo", *workers_or("0", args)], "demo")


class Response:
    def __init__(self, status, reason, headers, body):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)


def connect(port, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Reader:
    """Reads HTTP/1.1 responses from a socket, one after another."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed")
        self.buf += data

    def read(self, head_request=False):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        _, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        headers = [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:]]
        resp = Response(int(status), reason, headers, b"")
        if int(status) < 200 or head_request or int(status) in (204, 304):
            return resp
        n = int(resp.header("Content-Length") or 0)
        while len(self.buf) < n:
            self._fill()
        resp.body, self.buf = self.buf[:n], self.buf[n:]
        return resp

    def closed(self, timeout=5):
        """True if the peer closes the connection (EOF or reset) in time."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


def request(port, method="GET", path="/", headers=(), body=b"", timeout=30):
    """One request on a fresh connection; returns the Response."""
    with connect(port, timeout) as s:
        hdrs = "".join(f"{k}: {v}\r\n" for k, v in headers)
        if body and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
            hdrs += f"Content-Length: {len(body)}\r\n"
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: t\r\n{hdrs}\r\n".encode() + body)
        return Reader(s).read(head_request=(method == "HEAD"))


class TransportSuite:
    """A mixin for suites run once per upstream transport: cls.upstream (made
    by the subclass's make_upstream(), with a close()) and the test app
    (cls.app, run with app_args and FANOUT_TRANSPORT=cls.transport), both
    stopped at the end. Subclasses per transport set `transport`."""
    transport = None
    app_args = ()

    @classmethod
    def make_upstream(cls):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        cls.upstream = cls.make_upstream()
        cls.app = testapp(*cls.app_args, env={"FANOUT_TRANSPORT": cls.transport})

    @classmethod
    def tearDownClass(cls):
        try:
            cls.app.stop()
        finally:
            cls.upstream.close()


class AppSuite(unittest.TestCase):
    """A test case with the test app (cls.app, run with app_args), stopped
    at the end."""
    app_args = ()

    @classmethod
    def setUpClass(cls):
        cls.app = testapp(*cls.app_args)

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()


class AppWithMock(unittest.TestCase):
    """A test case with a mock upstream (cls.mock) and an app under test
    (cls.app, made by the subclass's make_app()), both stopped cleanly."""

    @classmethod
    def make_app(cls):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        cls.mock = mock()
        cls.app = cls.make_app()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.app.stop()
        finally:
            cls.mock.stop()

    def stats(self):
        """The mock's counters: requests, completed, cancelled, in_flight."""
        return get_json(self.mock.port, "/stats")[1]

    def wait_cancelled(self, want, within=2.0):
        """The mock's cancelled count once it reaches `want`, or after
        `within` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and self.stats()["cancelled"] < want:
            time.sleep(0.05)
        return self.stats()["cancelled"]


def get_json(port, path, timeout=30):
    r = request(port, "GET", path, timeout=timeout)
    return r.status, r.json()


def main():
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
