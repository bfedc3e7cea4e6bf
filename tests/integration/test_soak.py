"""Soak: 200,000 fan-out requests (4 upstream calls each) through wrk, and
the worker's memory after warm-up does not grow by 5 % or more."""
import os
import re
import shutil
import subprocess
import unittest
from urllib.parse import quote

import harness

TOTAL = 200_000
WARMUP = 20_000


def wrk_requests(url, seconds, clients=64):
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    done = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return done, (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0)


@unittest.skipIf(harness.SANITIZED, "sanitizers keep freed memory in quarantine: RSS says nothing")
@unittest.skipIf(shutil.which("wrk") is None, "wrk is not installed")
class Soak(harness.AppWithMock):
    @classmethod
    def make_app(cls):
        return harness.testapp("--access-log", "off")

    def load(self, url, want):
        """Runs wrk in 5 s rounds until `want` requests were answered."""
        done = errors = 0
        while done < want:
            n, e = wrk_requests(url, 5)
            done, errors = done + n, errors + e
        return done, errors

    def test_200k_fanout_requests_do_not_grow_the_workers_memory(self):
        upstream = quote(self.mock.url("/delay?ms=0"), safe="")
        url = self.app.url(f"/fanout?n=4&url={upstream}")
        pid = harness.worker_pid(self.app.port)
        done, errors = self.load(url, WARMUP)
        warm = harness.rss_kib(pid)
        more, more_errors = self.load(url, TOTAL - done)
        after = harness.rss_kib(pid)
        print(f"soak: {done + more} requests, RSS {warm} KiB after warm-up, {after} KiB after")
        self.assertEqual(errors + more_errors, 0)
        self.assertEqual(harness.worker_pid(self.app.port), pid)  # no restart in between
        self.assertLess(after / warm, 1.05)


if __name__ == "__main__":
    harness.main()
