"""The logs: the access log (one line per request, with its upstream calls),
--log-format json, --log-file and --access-log, and reopening the files on
SIGUSR1 for log rotation, with and without a master."""
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import unittest
from urllib.parse import quote
import urllib.parse

import harness
from harness import TESTAPP, closed_port, request, testapp

ACCESS = (r"access \[(\d+)\] (\S+) (\S+) (\S+) (\d+) ([\d.]+) ms (\d+) B "
          r"calls=(\d+) failed=(\d+) trace=[0-9a-f]{32}$")


def fetch_path(url):
    return "/fetch?url=" + urllib.parse.quote(url, safe="")


def access_lines(lines, method, path):
    """The parsed text access lines of `method` `path`."""
    found = []
    for line in lines:
        m = re.search(ACCESS, line)
        if m and m.group(3) == method and m.group(4) == path:
            found.append(m)
    return found


def wait_file(path, pattern, timeout=10):
    """The lines of the file at `path` once one matches `pattern`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, errors="replace") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            lines = []
        if any(re.search(pattern, l) for l in lines):
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: no line matches {pattern!r}:\n" + "\n".join(lines))
        time.sleep(0.02)


def read_lines(path):
    with open(path, errors="replace") as f:
        return f.read().splitlines()


class AccessLogText(harness.AppSuite):
    def wait_access(self, method, path, want=lambda m: True):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = [m for m in access_lines(list(self.app.lines), method, path) if want(m)]
            if found:
                return found[-1]
            time.sleep(0.02)
        raise AssertionError(f"no access line for {method} {path}\n{self.app.log()}")

    def test_a_request_without_calls(self):
        r = request(self.app.port, "POST", "/echo?q=1", body=b"hello")
        self.assertEqual(r.status, 200)
        m = self.wait_access("POST", "/echo")
        self.assertEqual(m.group(2), "127.0.0.1")
        self.assertEqual(m.group(5), "200")
        self.assertGreater(int(m.group(7)), len(r.body))  # the head counts too
        self.assertEqual((m.group(8), m.group(9)), ("0", "0"))

    def test_an_unrouted_path_logs_its_status(self):
        r = request(self.app.port, "GET", "/no/such/route")
        m = self.wait_access("GET", "/no/such/route")
        self.assertEqual(int(m.group(5)), r.status)
        self.assertEqual(r.status, 404)

    def test_a_failed_call_is_counted(self):
        path = fetch_path(f"http://127.0.0.1:{closed_port()}/x")
        r = request(self.app.port, "GET", path)
        m = self.wait_access("GET", "/fetch")
        self.assertEqual(int(m.group(5)), r.status)
        self.assertEqual((m.group(8), m.group(9)), ("1", "1"))

    def test_a_successful_call_is_counted(self):
        path = fetch_path(f"http://127.0.0.1:{self.app.port}/echo")
        r = request(self.app.port, "GET", path)
        self.assertEqual(r.status, 200, r.body)
        m = self.wait_access("GET", "/fetch", lambda m: m.group(9) == "0")
        self.assertEqual((m.group(8), m.group(9)), ("1", "0"))
        self.assertGreaterEqual(float(m.group(6)), 0)


class TextFormat(unittest.TestCase):
    def test_input_in_a_message_cannot_forge_a_line(self):
        # A call's name comes from the request here; the debug line that
        # names the call must not break into two lines at its LF.
        app = testapp("--log-level", "debug")
        try:
            url = quote(f"http://127.0.0.1:{closed_port()}/x", safe="")
            request(app.port, "GET", f"/fetch?url={url}&name=api%0a2026-01-01T00:00:00Z%20error%20forged")
            app.wait_log(r"access .* GET /fetch ")
            self.assertFalse([l for l in app.lines if l.startswith("2026-01-01T00:00:00Z")], app.log())
            self.assertTrue([l for l in app.lines if "api?2026-01-01T00:00:00Z error forged" in l],
                            app.log())
        finally:
            app.stop()


class JsonFormat(unittest.TestCase):
    def test_every_line_is_a_json_object(self):
        app = testapp("--log-format", "json")
        try:
            path = fetch_path(f"http://127.0.0.1:{closed_port()}/x")
            request(app.port, "GET", path)
            app.wait_log(r'"level":"access"')
        finally:
            app.stop()
        entries = [json.loads(l) for l in app.lines]
        for e in entries:
            self.assertIn("time", e)
            self.assertIn("pid", e)
            self.assertIn(e["level"], ("debug", "info", "warn", "error", "access"))
        self.assertTrue(any("listening on" in e.get("msg", "") for e in entries))
        access = [e for e in entries if e["level"] == "access"]
        self.assertEqual(len(access), 1, app.log())
        a = access[0]
        self.assertEqual((a["method"], a["path"], a["calls"], a["failed"]), ("GET", "/fetch", 1, 1))
        self.assertEqual(a["client"], "127.0.0.1")
        self.assertIsInstance(a["status"], int)
        self.assertIsInstance(a["duration_ms"], float)
        self.assertGreater(a["bytes"], 0)
        self.assertRegex(a["trace_id"], "^[0-9a-f]{32}$")

    def test_a_bad_format_is_refused(self):
        p = subprocess.run([TESTAPP, "--log-format", "xml"], capture_output=True, text=True,
                           timeout=20)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("--log-format: expected text or json", p.stderr)


class Files(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.err = os.path.join(self.dir.name, "error.log")
        self.acc = os.path.join(self.dir.name, "access.log")

    def tearDown(self):
        self.dir.cleanup()

    def test_log_file_and_access_log_off(self):
        app = testapp("--log-file", self.err, "--access-log", "off")
        try:
            request(app.port, "GET", "/echo")
            wait_file(self.err, r"master starting 1 workers")
            # "listening on" goes to stderr as well, for whoever watches it
            self.assertTrue(any("listening on" in l for l in read_lines(self.err)))
        finally:
            app.stop()
        lines = read_lines(self.err)
        self.assertTrue(any("master stopped" in l for l in lines), lines)
        self.assertFalse([l for l in app.lines if " access " in l or "master stopped" in l],
                         app.log())

    def rotate(self, workers):
        app = testapp("--workers", str(workers), "--log-file", self.err, "--access-log", self.acc)
        try:
            request(app.port, "GET", "/echo")
            wait_file(self.acc, r" GET /echo 200 ")
            os.rename(self.acc, self.acc + ".1")
            os.rename(self.err, self.err + ".1")
            os.kill(app.proc.pid, signal.SIGUSR1)
            # the worker (or the single process) reopened: its line is new
            wait_file(self.err, r"received SIGUSR1: log files reopened$")
            if workers:
                wait_file(self.err, r"received SIGUSR1: log files reopened, forwarding")
            request(app.port, "DELETE", "/echo")
            wait_file(self.acc, r" DELETE /echo 200 ")
        finally:
            app.stop()
        old = read_lines(self.acc + ".1")
        self.assertTrue([l for l in old if " GET /echo " in l], old)
        self.assertFalse([l for l in old if " DELETE /echo " in l], old)
        self.assertFalse([l for l in read_lines(self.acc) if " GET /echo " in l])
        self.assertTrue(any("received SIGTERM" in l for l in read_lines(self.err)))

    def test_sigusr1_reopens_the_files_of_master_and_workers(self):
        self.rotate(workers=2)

    def test_sigusr1_reopens_the_files_without_a_master(self):
        self.rotate(workers=0)


if __name__ == "__main__":
    harness.main()
