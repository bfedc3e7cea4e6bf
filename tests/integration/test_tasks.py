"""Child tasks, the per-request store and offloaded blocking work, through
the real task app and mock upstream over real sockets."""
import os
import resource
import threading
import time
import unittest
from urllib.parse import quote

import harness
from harness import get_json, request

TASKAPP = os.environ.get("FANOUT_TASKAPP", "build/tests/taskapp")


def raise_fd_limit():
    """1000 connections need more descriptors than the usual soft limit; the
    servers started afterwards inherit the raised limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


raise_fd_limit()


def taskapp(*args):
    return harness.Server([TASKAPP, *args], "taskapp")


class Tasks(harness.AppWithMock):
    @classmethod
    def make_app(cls):
        return taskapp()

    def test_1000_concurrent_requests_each_see_only_their_own_store(self):
        # 1000 connections, every request sent before any answer is read: all
        # are in flight in the one worker at once (each sleeps 300 ms there).
        t0 = time.monotonic()
        request(self.app.port, "GET", "/ids?id=alone&ms=300")
        one = time.monotonic() - t0
        socks = [harness.connect(self.app.port) for _ in range(1000)]
        t0 = time.monotonic()
        for i, s in enumerate(socks):
            s.sendall(f"GET /ids?id=req-{i}&ms=300 HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        replies = [harness.Reader(s).read() for s in socks]
        elapsed = time.monotonic() - t0
        for s in socks:
            s.close()
        for i, r in enumerate(replies):
            self.assertEqual((r.status, r.json()["id"]), (200, f"req-{i}"))
        # All at once take about one request's time; in batches of a third
        # or fewer they would take three times as long.
        self.assertLess(elapsed / one, 3)

    def test_a_running_task_and_call_report_a_state_error_not_a_result(self):
        url = quote(self.mock.url("/delay?ms=20"), safe="")
        status, j = get_json(self.app.port, f"/running?url={url}")
        self.assertEqual(status, 200)
        self.assertEqual(j, {"task_before": "state", "call_before": "state", "done_before": False,
                             "task_after": "ok", "call_after": "ok"})

    def test_a_task_awaits_calls_in_sequence_while_its_sibling_runs(self):
        t0 = time.monotonic()
        request(self.mock.port, "GET", "/delay?ms=200")
        one = time.monotonic() - t0  # the baseline: one 200 ms call
        base = quote(self.mock.url(""), safe="")
        status, j = get_json(self.app.port, f"/sequence?base={base}")
        self.assertEqual((status, j["error"]), (200, "ok"))
        self.assertGreater(j["token"], 0)
        # token (100 ms) then data (100 ms) beside a 200 ms sibling: about one
        # 200 ms call, not two.
        self.assertLess(j["elapsed"] / one, 1.5)
        # The lower bound is the delays themselves (the baseline also counts
        # the test's own connect, which a loaded machine makes longer).
        self.assertGreater(j["elapsed"] / 0.2, 0.95)

    def test_fail_fast_gather_cancels_the_siblings_upstream_calls(self):
        before = self.stats()["cancelled"]
        url = quote(self.mock.url("/delay?ms=5000"), safe="")
        status, j = get_json(self.app.port, f"/gather?n=3&policy=fail_fast&fail_ms=100&url={url}")
        self.assertEqual(status, 200)
        self.assertEqual(j["error"], "protocol")
        self.assertEqual(j["results"], ["cancelled"] * 3)
        self.assertLess(j["elapsed"] / 5.0, 0.2)
        self.assertEqual(self.wait_cancelled(before + 3), before + 3)

    def test_gather_all_collects_every_result(self):
        url = quote(self.mock.url("/delay?ms=300"), safe="")
        status, j = get_json(self.app.port, f"/gather?n=3&policy=all&fail_ms=50&url={url}")
        self.assertEqual(j["error"], "protocol")  # the failing task's result
        self.assertEqual(j["results"], ["ok"] * 3)  # siblings ran to the end
        self.assertGreater(j["elapsed"] / 0.3, 0.95)

    def test_a_task_timeout_cancels_its_call(self):
        before = self.stats()["cancelled"]
        url = quote(self.mock.url("/delay?ms=5000"), safe="")
        status, j = get_json(self.app.port, f"/task-timeout?timeout=200&url={url}")
        self.assertEqual((j["error"], j["why"]), ("cancelled", "timeout"))
        self.assertLess(j["elapsed"] / 0.2, 1.5)
        self.assertEqual(self.wait_cancelled(before + 1), before + 1)

    def test_tasks_are_awaited_in_completion_order(self):
        status, j = get_json(self.app.port, "/as-completed")
        self.assertEqual(j["order"], [100, 200, 300])

    def test_blocking_work_does_not_delay_other_requests(self):
        out = {}

        def slow():
            out["blocking"] = get_json(self.app.port, "/blocking?ms=1000")[1]

        def quick():
            t0 = time.monotonic()
            self.assertEqual(request(self.app.port, "GET", "/quick").status, 200)
            return time.monotonic() - t0

        alone = quick()
        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.1)
        during = quick()
        t.join()
        self.assertEqual(out["blocking"]["error"], "ok")
        self.assertGreater(out["blocking"]["elapsed"] / 1.0, 0.95)
        # Held behind the blocking work, it would wait most of that work's time.
        self.assertLess((during - alone) / out["blocking"]["elapsed"], 0.5)

    def test_client_leaving_cancels_child_tasks_calls(self):
        before = self.stats()["cancelled"]
        url = quote(self.mock.url("/delay?ms=5000"), safe="")
        s = harness.connect(self.app.port)
        s.sendall(f"GET /gather?n=2&policy=all&fail_ms=4000&url={url} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        time.sleep(0.3)
        s.close()
        self.assertEqual(self.wait_cancelled(before + 2), before + 2)


if __name__ == "__main__":
    harness.main()
