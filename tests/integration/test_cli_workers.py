"""`fanout demo` and `fanout mock` serve as fan_main() does: --workers N runs a
master and N workers, --workers 0 one process. With workers, the demo's
built-in mock runs in a process of its own that every worker calls; SIGTERM
to the master stops the workers, then the mock, and the master exits 0."""
import re
import signal
import subprocess
import threading
import unittest

import harness
from harness import get_json, request
from test_workers import children, gone, wait_until


def served_by(srv, path, count):
    """The pids of the access log's first `count` lines for GET `path` (the
    log names no query)."""
    lines = srv.wait_log(rf"access \[(\d+)\] \S+ GET {re.escape(path)} \d", count)
    return [int(m.group(1)) for m in lines[:count]]


class CliCase(unittest.TestCase):
    def start(self, command, *args):
        srv = command(*args)
        self.addCleanup(lambda: srv.proc.poll() is not None or srv.stop(check=False))
        return srv

    def mock_of(self, demo):
        """The pid and base URL the demo logged for its built-in mock."""
        m = demo.wait_log(r"\[(\d+)\] mock upstream API on (http://\S+)")[0]
        return int(m.group(1)), m.group(2)

    def assertStopsCleanly(self, srv, pids):
        self.assertEqual(srv.stop(), 0)  # SIGTERM; exit 0, no sanitizer report
        wait_until(lambda: all(gone(p) for p in pids), what="every process to be gone")


class Demo(CliCase):
    def test_two_workers_answer_and_call_one_mock_then_all_stop_on_sigterm(self):
        srv = self.start(harness.demo, "--workers", "2", "--delay-a", "0", "--delay-b", "0")
        mock_pid, mock_url = self.mock_of(srv)
        processes = children(srv.proc.pid)
        workers = processes - {mock_pid}
        self.assertEqual(len(workers), 2)
        self.assertIn(mock_pid, processes)
        for _ in range(40):
            status, j = get_json(srv.port, "/?format=json")
            self.assertEqual(status, 200, j)
            self.assertEqual({c["url"].split("/delay")[0] for c in j["calls"]}, {mock_url})
        self.assertEqual(set(served_by(srv, "/", 40)), workers)
        self.assertEqual(set(served_by(srv, "/delay", 80)), {mock_pid})
        self.assertEqual(len(srv.wait_log(r"listening on http://")), 1)
        self.assertStopsCleanly(srv, processes)

    def test_sigterm_lets_the_requests_in_flight_finish_their_calls(self):
        srv = self.start(harness.demo, "--workers", "2", "--delay-a", "600", "--delay-b", "300")
        processes = children(srv.proc.pid)
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("r", request(srv.port, "GET", "/")))
        t.start()
        srv.wait_log(r"Start request 2")
        srv.proc.send_signal(signal.SIGTERM)
        t.join()
        # The mock outlives the workers: the calls in flight are answered.
        self.assertEqual(out["r"].status, 200, out["r"].body)
        self.assertRegex(out["r"].body.decode(), r"^Result: \d+\.\d\d; Processing time: ")
        self.assertStopsCleanly(srv, processes)

    def test_killing_the_master_leaves_no_process_behind(self):
        srv = self.start(harness.demo, "--workers", "2")
        processes = children(srv.proc.pid)
        self.assertEqual(len(processes), 3)
        srv.proc.kill()
        srv.proc.wait()
        wait_until(lambda: all(gone(p) for p in processes), what="the workers and the mock")

    def test_no_workers_serves_the_demo_and_its_mock_in_one_process(self):
        srv = self.start(harness.demo, "--workers", "0", "--delay-a", "0", "--delay-b", "0")
        mock_pid, _ = self.mock_of(srv)
        self.assertEqual(mock_pid, srv.proc.pid)
        self.assertEqual(request(srv.port, "GET", "/").status, 200)
        self.assertEqual(children(srv.proc.pid), set())
        self.assertStopsCleanly(srv, {srv.proc.pid})

    def test_help_documents_workers(self):
        out = subprocess.run([harness.BIN, "demo", "--help"], capture_output=True, text=True,
                             timeout=30).stdout
        self.assertIn("--workers N", out)


class Mock(CliCase):
    def test_two_workers_answer_then_stop_on_sigterm(self):
        srv = self.start(harness.mock, "--workers", "2")
        workers = children(srv.proc.pid)
        self.assertEqual(len(workers), 2)
        pids = set()
        for _ in range(40):
            status, j = get_json(srv.port, "/stats")
            self.assertEqual(status, 200)
            pids.add(j["pid"])
        self.assertEqual(pids, workers)  # both serve, the master does not
        status, j = get_json(srv.port, "/delay?ms=0")
        self.assertEqual(status, 200)
        self.assertIsInstance(j["value"], float)
        self.assertStopsCleanly(srv, workers)

    def test_help_documents_workers(self):
        out = subprocess.run([harness.BIN, "mock", "--help"], capture_output=True, text=True,
                             timeout=30).stdout
        self.assertIn("--workers N", out)


if __name__ == "__main__":
    harness.main()
