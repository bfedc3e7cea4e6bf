"""Awaiting other libuv clients through wakers (fan_waker_new, fan_suspend,
fan_wake) and per-task cleanups (fan_task_defer), driven through the real
suspend app (one serving process) over real sockets. In the ASan build every
server must also stop with no leak and no sanitizer report."""
import os
import re
import signal
import socket
import threading
import time
import unittest

import harness
from harness import get_json, request

# The longest operation the test app waits on (10 s timers): "at once" is a
# small fraction of it.
LONG_S = 10.0

SUSPENDAPP = os.environ.get("FANOUT_SUSPENDAPP", "build/tests/suspendapp")


def suspendapp(*args):
    return harness.Server([SUSPENDAPP, "--workers", "0", *args], "suspendapp")


def reset(s):
    """Closes the socket with a reset, as a client that goes away does."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    s.close()


class Wakers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.app = suspendapp()

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()

    def counters(self):
        status, j = get_json(self.app.port, "/counters")
        self.assertEqual(status, 200)
        return j

    def tag(self, name):
        return f"{name}-{time.monotonic_ns()}"

    def leave_while_suspended(self, path):
        """Sends `path`, leaves 100 ms later, and returns the seconds until
        the request's access-log line (written when its memory is freed)."""
        s = harness.connect(self.app.port)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        time.sleep(0.1)
        t0 = time.monotonic()
        reset(s)
        self.app.wait_log(r"access .* GET " + re.escape(path.split("?")[0]) + " ", timeout=5)
        return time.monotonic() - t0

    def test_a_handler_awaits_a_uv_timer(self):
        status, j = get_json(self.app.port, "/timer?ms=200")
        self.assertEqual(status, 200)
        self.assertTrue(j["fired"])
        self.assertGreaterEqual(j["elapsed"] / 0.2, 0.95)
        self.assertLess(j["elapsed"] / 0.2, 2.0)

    def test_concurrent_requests_waiting_on_uv_timers_finish_together(self):
        n, results = 10, []

        def one():
            results.append(get_json(self.app.port, "/timer?ms=200"))

        threads = [threading.Thread(target=one) for _ in range(n)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        self.assertEqual([status for status, _ in results], [200] * n)
        self.assertTrue(all(j["fired"] for _, j in results))
        self.assertLess(elapsed / (n * 0.2), 0.3)

    def test_two_tasks_suspended_at_once_both_wake(self):
        status, j = get_json(self.app.port, "/two?ms=200")
        self.assertEqual(status, 200)
        self.assertEqual(j["error"], "ok")
        self.assertTrue(j["a"] and j["b"])
        # Both waited together: about 200 ms, not 400.
        self.assertGreaterEqual(j["elapsed"] / 0.2, 0.95)
        self.assertLess(j["elapsed"] / 0.4, 0.75)

    def test_a_waker_woken_within_the_call_that_starts_the_operation(self):
        status, j = get_json(self.app.port, "/early?mode=sync")
        self.assertEqual((status, j["error"]), (200, "ok"))
        self.assertLess(j["waited"], 0.01)

    def test_a_waker_woken_while_its_task_awaits_something_else(self):
        status, j = get_json(self.app.port, "/early?mode=elsewhere")
        self.assertEqual((status, j["error"]), (200, "ok"))
        self.assertTrue(j["fired"])
        self.assertLess(j["waited"], 0.01)

    def test_client_leaving_while_suspended_stops_the_timer_and_frees_the_request(self):
        before = self.counters()
        took = self.leave_while_suspended(f"/timer/{self.tag('leave')}?ms=10000")
        # Freed at once, not when the 10 s timer would have fired.
        self.assertLess(took / LONG_S, 0.2)
        after = self.counters()
        self.assertEqual(after["cancels"] - before["cancels"], 1)
        self.assertEqual(after["closed"] - before["closed"], 1)
        self.assertEqual(after["fired"], before["fired"])
        self.assertEqual(request(self.app.port, "GET", "/timer?ms=1").status, 200)

    def test_on_cancel_may_wake_the_waker_itself(self):
        took = self.leave_while_suspended(f"/forever/{self.tag('forever')}")
        self.assertLess(took / LONG_S, 0.2)

    def test_a_waker_never_suspended_on_is_cancelled_when_its_handler_returns(self):
        before = self.counters()
        path = f"/never/{self.tag('never')}"
        t0 = time.monotonic()
        r = request(self.app.port, "GET", path + "?ms=10000")
        self.assertEqual((r.status, r.body), (200, b"answered"))
        self.app.wait_log(r"access .* GET " + re.escape(path) + " ", timeout=5)
        self.assertLess((time.monotonic() - t0) / LONG_S, 0.2)  # not the 10 s wait
        self.app.wait_log(r"GET /never/:tag: a handler returned before its waker was woken")
        after = self.counters()
        self.assertEqual(after["cancels"] - before["cancels"], 1)
        self.assertEqual(after["closed"] - before["closed"], 1)

    def test_cleanups_of_a_child_that_returned_run_last_first_before_its_await_returns(self):
        status, j = get_json(self.app.port, "/defer?mode=normal")
        self.assertEqual(status, 200)
        self.assertEqual((j["order"], j["result"]), ("CBA", "ok"))

    def test_cleanups_of_a_cancelled_child_run_before_its_await_returns(self):
        status, j = get_json(self.app.port, "/defer?mode=cancel")
        self.assertEqual(status, 200)
        self.assertEqual((j["order"], j["result"]), ("CBA", "cancelled"))
        # Cancelled 50 ms in: its 10 s timer was stopped.
        self.assertLess(j["elapsed"] / LONG_S, 0.1)

    def test_cleanups_of_a_child_run_when_the_client_leaves(self):
        before = self.counters()
        took = self.leave_while_suspended(f"/defer/{self.tag('defer')}?mode=wait")
        self.assertLess(took / LONG_S, 0.2)
        self.assertEqual(self.counters()["task_defers"] - before["task_defers"], 3)

    def test_the_handlers_task_cleanups_run_when_it_ends_before_the_requests(self):
        tag = self.tag("main")
        self.assertEqual(request(self.app.port, "GET", f"/defer-main/{tag}").status, 200)
        self.app.wait_log(r"request cleanup " + re.escape(tag) + "$")
        lines = self.app.lines
        at = lambda pattern: next(i for i, l in enumerate(lines) if re.search(pattern, l))
        task, access = at(r"task cleanup " + re.escape(tag) + "$"), at(r"access .*" + re.escape(tag))
        self.assertLess(task, access)  # the task ended before the request was freed
        self.assertLess(access, at(r"request cleanup " + re.escape(tag) + "$"))


class Lifetimes(unittest.TestCase):
    """The memory an operation writes may live in the waiting task's frame:
    the stack is not released before the waker was woken."""

    @classmethod
    def setUpClass(cls):
        cls.app = suspendapp()

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()

    def check_frame_intact(self, ms):
        """A request with the same frame shape: are its buffers untouched
        after `ms`?"""
        status, j = get_json(self.app.port, f"/frame?mode=check&ms={ms}")
        self.assertEqual(status, 200)
        return j

    def test_a_handler_that_returns_before_its_waker_keeps_its_stack_until_woken(self):
        for i in range(20):
            r = request(self.app.port, "GET", "/frame?mode=leave&ms=100")
            self.assertEqual((r.status, r.body), (200, b"answered"))
            # On a reused stack, the timer would fire into this one's frame.
            j = self.check_frame_intact(200)
            self.assertTrue(j["intact"], f"round {i}: {j['bad']} bytes overwritten")
        self.app.wait_log(r"GET /frame: a handler returned before its waker was woken")

    def test_a_cancelled_suspend_returns_only_once_woken(self):
        tag = f"/frame/work-{time.monotonic_ns()}"
        with harness.connect(self.app.port) as s:
            s.sendall(f"GET {tag}?mode=work&ms=300 HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            time.sleep(0.05)  # the work runs on the thread pool: uv_cancel fails
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        # Had fan_suspend() returned at the cancel, this request would get the
        # released stack, and the work would write into its buffer.
        j = self.check_frame_intact(400)
        self.assertTrue(j["intact"], f"{j['bad']} bytes overwritten")
        self.app.wait_log(r"frame work: cancelled, the work had ended$")
        # The request was freed once the work ended, not at the cancel.
        m = self.app.wait_log(r"access .* GET " + re.escape(tag) + r" \d+ ([\d.]+) ms", timeout=5)
        self.assertGreaterEqual(float(m[0].group(1)), 290)


class OtherCancellations(unittest.TestCase):
    """The request's deadline and SIGQUIT while a task is suspended."""

    def test_a_deadline_while_suspended_stops_the_timer_and_answers_504(self):
        app = suspendapp("--request-timeout-ms", "100")
        try:
            t0 = time.monotonic()
            r = request(app.port, "GET", "/timer?ms=5000")
            elapsed = time.monotonic() - t0
            self.assertEqual(r.status, 504)
            self.assertEqual(r.json()["error"], "timeout")
            # At the 100 ms deadline, not the 5 s timer.
            self.assertLess(elapsed / 5.0, 0.2)
            status, j = get_json(app.port, "/counters")
            self.assertEqual((j["cancels"], j["closed"], j["fired"]), (1, 1, 0))
        finally:
            app.stop()

    def test_sigquit_while_suspended_stops_at_once_and_cleanly(self):
        app = suspendapp()
        with harness.connect(app.port) as s:
            s.sendall(b"GET /defer?mode=wait HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(0.1)
            t0 = time.monotonic()
            app.proc.send_signal(signal.SIGQUIT)
            self.assertEqual(app.proc.wait(10), 0)
            self.assertLess((time.monotonic() - t0) / LONG_S, 0.3)  # not the 10 s wait
        app.stop()  # no sanitizer report, no leak

    def test_a_graceful_stop_lets_a_suspended_request_finish(self):
        app = suspendapp()
        with harness.connect(app.port) as s:
            s.sendall(b"GET /timer?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(0.1)
            app.proc.send_signal(signal.SIGTERM)
            r = harness.Reader(s).read()
            self.assertEqual(r.status, 200)
            self.assertTrue(r.json()["fired"])
            self.assertEqual(app.proc.wait(10), 0)
        app.stop()


if __name__ == "__main__":
    harness.main()
