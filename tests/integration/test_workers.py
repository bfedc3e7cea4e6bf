"""The process model of fan_main(): a master and its workers, restarts,
graceful stop, zero-downtime reload and immediate stop, under load, through
the real test app over real sockets."""
import collections
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from harness import SAN_MARKERS, TESTAPP

Attempt = collections.namedtuple("Attempt", "started ended outcome response")


def attempt(port, path, timeout=20):
    """One GET on a fresh connection. The outcome is "ok" for a whole 200
    answer, "refused" when the connection was not accepted, else what went
    wrong (the request was accepted and failed)."""
    started = time.monotonic()
    try:
        s = harness.connect(port, timeout)
    except ConnectionRefusedError:
        return Attempt(started, time.monotonic(), "refused", None)
    except OSError as e:  # reset during the handshake: accepted, then dropped
        return Attempt(started, time.monotonic(), f"failed to connect: {e!r}", None)
    try:
        with s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            r = harness.Reader(s).read()
        outcome = "ok" if r.status == 200 else f"status {r.status}"
        return Attempt(started, time.monotonic(), outcome, r)
    except (OSError, ValueError) as e:
        return Attempt(started, time.monotonic(), f"failed: {e!r}", None)


class Load:
    """`threads` clients sending `path` in a loop, each on a fresh connection,
    until stopped, until `seconds` passed, or (with until_refused) until the
    server refuses them. Every attempt is recorded."""

    def __init__(self, port, path, threads=4, seconds=20, until_refused=False):
        self.port, self.path, self.until_refused = port, path, until_refused
        self.results = []
        self._stop = threading.Event()
        self._deadline = time.monotonic() + seconds
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self):
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            a = attempt(self.port, self.path)
            self.results.append(a)
            if a.outcome == "refused" and self.until_refused:
                return

    def stop(self):
        self._stop.set()
        self.join()

    def join(self):
        for t in self._threads:
            t.join()

    def failed(self, allowed=("ok",)):
        return [a for a in self.results if a.outcome not in allowed]


def children(pid):
    """The pids of a process's children (its workers)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(p) for p in f.read().split()}


def wait_until(predicate, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def gone(pid):
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        return True


def pid_of(r):
    return r.json()["pid"]


class WorkersCase(unittest.TestCase):
    """Starts a test app per test; stopping it (a clean exit 0 with no
    sanitizer report) is part of every test that does not stop it itself."""

    def start(self, *args, reload_file=None):
        old = os.environ.get("FANOUT_TEST_RELOAD_FILE")
        if reload_file:
            os.environ["FANOUT_TEST_RELOAD_FILE"] = reload_file
        try:
            srv = harness.testapp(*args)
        finally:
            if reload_file:
                if old is None:
                    del os.environ["FANOUT_TEST_RELOAD_FILE"]
                else:
                    os.environ["FANOUT_TEST_RELOAD_FILE"] = old
        self.addCleanup(lambda: srv.proc.poll() is not None or srv.stop(check=False))
        wait_until(lambda: len(children(srv.proc.pid)) >= 1, what="workers")
        return srv

    def reload_file(self, text):
        fd, path = tempfile.mkstemp(prefix="fanout-reload-")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.addCleanup(lambda: os.path.exists(path) and os.unlink(path))
        return path


class Workers(WorkersCase):
    def test_n_workers_serve_on_the_port_the_master_announced_once(self):
        srv = self.start("--workers", "2")
        workers = children(srv.proc.pid)
        self.assertEqual(len(workers), 2)
        pids = {pid_of(harness.request(srv.port, "GET", "/pid")) for _ in range(40)}
        self.assertEqual(pids, workers)  # both serve, the master does not
        self.assertEqual(len(srv.wait_log(r"listening on http://")), 1)
        self.assertEqual(srv.stop(), 0)

    def test_a_killed_worker_is_restarted_and_only_its_requests_in_flight_fail(self):
        srv = self.start("--workers", "2")
        before = children(srv.proc.pid)
        victim = min(before)
        load = Load(srv.port, "/pid?ms=200", threads=4)
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: gone(victim), what="the killed worker to be reaped")
        t_gone = time.monotonic()
        wait_until(lambda: len(children(srv.proc.pid) - before) == 1, what="a new worker")
        new = (children(srv.proc.pid) - before).pop()
        wait_until(lambda: any(a.outcome == "ok" and pid_of(a.response) == new
                               for a in load.results), what="the new worker to serve")
        load.stop()
        failed = load.failed()
        self.assertLessEqual(len(failed), 4)  # at most one in flight per client
        self.assertTrue(all(a.started < t_gone for a in failed), failed)
        served_after = [a for a in load.results if a.started > t_gone and a.outcome == "ok"]
        self.assertGreater(len(served_after), 0)
        self.assertNotIn(victim, {pid_of(a.response) for a in served_after})
        srv.wait_log(rf"worker {victim} was killed by signal 9 .*; restarting it")
        self.assertEqual(srv.stop(), 0)

    def test_workers_that_keep_dying_quickly_are_restarted_after_a_growing_delay(self):
        srv = self.start("--workers", "1")
        killed = set()
        for _ in range(8):
            wait_until(lambda: children(srv.proc.pid) - killed, what="a restarted worker")
            pid = (children(srv.proc.pid) - killed).pop()
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
            wait_until(lambda: gone(pid), what="the killed worker to be reaped")
            if "restarting it in 1.0 s" in srv.log():
                break
        delays = [float(m.group(1)) for m in
                  srv.wait_log(r"restarting it in ([\d.]+) s \(workers keep dying quickly\)", 2)]
        self.assertEqual(delays[:2], [0.5, 1.0])  # doubling
        t_dead = time.monotonic()
        wait_until(lambda: children(srv.proc.pid) - killed, what="the delayed restart")
        self.assertGreaterEqual((time.monotonic() - t_dead) / delays[1], 0.8)
        wait_until(lambda: attempt(srv.port, "/pid").outcome == "ok", what="serving again")
        self.assertEqual(srv.stop(), 0)

    def test_a_taken_port_fails_to_start_with_or_without_workers(self):
        with socket.socket() as taken:  # no SO_REUSEPORT
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            for workers in ("0", "2"):
                p = subprocess.run([TESTAPP, "--workers", workers, "--port", str(port), "--host",
                                    "127.0.0.1"], capture_output=True, text=True, timeout=30)
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertIn("address already in use", p.stderr.lower())
                self.assertFalse([m for m in SAN_MARKERS if m in p.stderr], p.stderr)


class GracefulStop(WorkersCase):
    def test_sigterm_under_load_answers_every_accepted_request_and_exits_0(self):
        srv = self.start("--workers", "2")
        load = Load(srv.port, "/sleep?ms=500", threads=4, until_refused=True)
        time.sleep(0.8)  # every client has a request in flight
        t_term = time.monotonic()
        self.assertEqual(srv.stop(), 0)  # SIGTERM; a clean exit, no sanitizer report
        stopped_in = time.monotonic() - t_term
        load.join()
        self.assertEqual(load.failed(allowed=("ok", "refused")), [])
        in_flight = [a for a in load.results if a.started < t_term < a.ended and a.outcome == "ok"]
        self.assertGreaterEqual(len(in_flight), 3)
        answered_while_draining = [a for a in in_flight if a.ended > t_term + 0.1]
        self.assertTrue(answered_while_draining)
        for a in answered_while_draining:
            self.assertEqual(a.response.header("Connection"), "close")
            self.assertEqual(a.response.json()["error"], "ok")  # slept in full
        self.assertLess(stopped_in / 30, 0.5)  # well within the graceful timeout
        self.assertEqual(load.results[-1].outcome, "refused")

    def test_sigquit_stops_at_once_cancelling_the_requests_in_flight(self):
        srv = self.start("--workers", "2")
        results = []
        clients = [threading.Thread(target=lambda: results.append(
            attempt(srv.port, "/sleep?ms=5000"))) for _ in range(3)]
        for t in clients:
            t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGQUIT)
        srv.proc.wait(20)
        elapsed = time.monotonic() - t0
        for t in clients:
            t.join()
        self.assertLess(elapsed / 5.0, 0.5)
        self.assertEqual([a.outcome for a in results if a.outcome == "ok"], [])
        self.assertEqual(len(results), 3)
        self.assertEqual(srv.stop(), 0)  # exit 0, no sanitizer report


    def test_sigterm_repeated_until_the_process_exits_still_exits_0(self):
        # A second SIGTERM (a supervisor's retry, an impatient operator) may
        # come at any moment of the stop, also while the process ends.
        for workers in ("1", "0"):
            for _ in range(5):
                srv = harness.testapp("--workers", workers)
                harness.get_json(srv.port, "/pid")
                while srv.proc.poll() is None:
                    try:
                        os.kill(srv.proc.pid, signal.SIGTERM)
                    except ProcessLookupError:  # exited, not yet waited for
                        break
                self.assertEqual(srv.stop(), 0, workers)

class Reload(WorkersCase):
    def test_sighup_under_load_fails_no_request_and_serves_the_new_setting(self):
        path = self.reload_file("v2\n")
        srv = self.start("--workers", "2", "--set", "greeting=v1", reload_file=path)
        first = children(srv.proc.pid)
        load = Load(srv.port, "/pid", threads=4)
        time.sleep(0.3)
        for gen in (2, 3, 4):
            with open(path, "w") as f:
                f.write(f"v{gen}\n")
            srv.proc.send_signal(signal.SIGHUP)
            srv.wait_log(rf"reloaded: generation {gen} serves")
            srv.wait_log(rf"\(generation {gen - 1}\) stopped", count=2)
            t_reloaded = time.monotonic()
            wait_until(lambda: len([a for a in load.results if a.started > t_reloaded]) >= 20,
                       what="requests after the reload")
        load.stop()
        self.assertEqual(load.failed(), [])  # refused or reset included
        after = [a for a in load.results if a.started > t_reloaded]
        self.assertEqual({a.response.json()["greeting"] for a in after}, {"v4"})
        self.assertEqual({pid_of(a.response) for a in after}, children(srv.proc.pid))
        self.assertFalse(first & children(srv.proc.pid))
        self.assertEqual(load.results[0].response.json()["greeting"], "v1")
        self.assertEqual(srv.stop(), 0)

    def test_a_failing_reload_hook_keeps_the_old_workers_serving(self):
        path = self.reload_file("")  # empty: the hook fails
        srv = self.start("--workers", "2", "--set", "greeting=v1", reload_file=path)
        workers = children(srv.proc.pid)
        load = Load(srv.port, "/pid", threads=2)
        time.sleep(0.2)
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_log(r"reload failed: the reload hook returned -1")
        t_failed = time.monotonic()
        wait_until(lambda: len([a for a in load.results if a.started > t_failed]) >= 20,
                   what="requests after the failed reload")
        load.stop()
        self.assertEqual(load.failed(), [])
        self.assertEqual(children(srv.proc.pid), workers)
        self.assertEqual({a.response.json()["greeting"] for a in load.results}, {"v1"})
        self.assertLessEqual({pid_of(a.response) for a in load.results}, workers)
        # Once the configuration is fixed, the next SIGHUP reloads.
        with open(path, "w") as f:
            f.write("v2\n")
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_log(r"reloaded: generation 2 serves")
        self.assertEqual(harness.request(srv.port, "GET", "/pid").json()["greeting"], "v2")
        self.assertEqual(srv.stop(), 0)


if __name__ == "__main__":
    harness.main()
