"""Lifetimes that C code can rely on: a task's coroutine stack (the
handler's included) is never released or reused while a task it spawned
still runs, and the awaits of child tasks never return while a child they
gave up on could still write into the caller's frame. Driven through the
real task app (one serving process) over real sockets; in the ASan build a
late write into a released stack is also reported (stacks are poisoned
while pooled)."""
import os
import re
import signal
import socket
import time
import unittest

import harness
from harness import get_json, request

TASKAPP = os.environ.get("FANOUT_TASKAPP", "build/tests/taskapp")


class Lifetimes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.Server([TASKAPP, "--workers", "0"], "taskapp")

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()

    def check_frame_intact(self, ms=200):
        """A request whose handler has the same frame shape fills its buffer,
        sleeps past the late writes, and reports whether it is intact."""
        status, j = get_json(self.app.port, f"/frame?mode=check&ms={ms}")
        self.assertEqual(status, 200)
        return j

    def test_a_handler_that_returns_keeps_its_stack_until_its_child_ended(self):
        for i in range(50):
            r = request(self.app.port, "GET", "/frame?mode=spawn&ms=100")
            self.assertEqual((r.status, r.body), (200, b"answered"))
            # Sent right after: on a reused stack its buffer would be where
            # the child is about to write.
            j = self.check_frame_intact(ms=200)
            self.assertTrue(j["intact"], f"round {i}: {j['bad']} bytes overwritten")
        self.assertEqual(request(self.app.port, "GET", "/quick").body, b"ok")
        # The warning names the route, and is rate-limited: 50 in ~10 s are
        # not 50 lines.
        lines = self.app.wait_log(r"GET /frame: .*returned with 1 child task still running")
        self.assertLess(len(lines), 50)

    def disconnect_while_waiting(self, mode):
        tag = f"/frame/{mode}-{time.monotonic_ns()}"
        with harness.connect(self.app.port) as s:
            s.sendall(f"GET {tag}?mode={mode}&ms=150 HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            time.sleep(0.03)  # the children are in their blocking work
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        # The next request would get the released stack if the handler's
        # await had returned before its children ended.
        j = self.check_frame_intact(ms=250)
        self.assertTrue(j["intact"], f"{mode}: {j['bad']} bytes overwritten")
        # The request's memory is freed: its access-log line is written then.
        self.app.wait_log(r"access .* GET " + re.escape(tag) + " ", timeout=5)
        self.assertEqual(request(self.app.port, "GET", "/quick").body, b"ok")

    def test_gather_waits_for_its_cancelled_children_before_it_returns(self):
        self.disconnect_while_waiting("gather")

    def test_task_await_waits_for_its_cancelled_child_before_it_returns(self):
        self.disconnect_while_waiting("await")

    def test_task_await_any_waits_for_its_cancelled_children_before_it_returns(self):
        self.disconnect_while_waiting("any")


class OtherCancellations(unittest.TestCase):
    """The same promise when the request's deadline passes, and at shutdown."""

    def test_a_deadline_lets_gather_return_only_after_its_children(self):
        app = harness.Server([TASKAPP, "--workers", "0", "--request-timeout-ms", "50"], "taskapp")
        try:
            for mode in ("gather", "await", "any"):
                t0 = time.monotonic()
                r = request(app.port, "GET", f"/frame/{mode}?mode={mode}&ms=300")
                elapsed = time.monotonic() - t0
                self.assertEqual((r.status, r.body), (200, b"cancelled"))
                # Answered once the children ended (300 ms), not at the 50 ms
                # deadline.
                self.assertGreater(elapsed / 0.3, 0.9)
                status, j = get_json(app.port, "/frame?mode=check&ms=20")
                self.assertTrue(j["intact"])
        finally:
            app.stop()

    def test_sigquit_while_children_write_into_a_frame_stops_cleanly(self):
        app = harness.Server([TASKAPP, "--workers", "0"], "taskapp")
        with harness.connect(app.port) as s:
            s.sendall(b"GET /frame?mode=gather&ms=200 HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(0.05)
            app.proc.send_signal(signal.SIGQUIT)
            self.assertEqual(app.proc.wait(10), 0)
        app.stop()  # no sanitizer report, no leak

if __name__ == "__main__":
    harness.main()
