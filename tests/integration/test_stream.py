"""Streamed responses over real sockets, against tests/integration/streamapp.c
and a mock upstream: parts sent as their calls complete, chunked and
close-delimited framing, HEAD, pipelining, SSE and NDJSON, a client that
reads slowly (back-pressure, bounded memory, the write timeout) and one that
leaves mid-stream (its calls cancelled).

Times are ratios of the slow call's delay, never absolute."""
import json
import os
import re
import socket
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

STREAMAPP = os.environ.get("FANOUT_STREAMAPP", "build/tests/streamapp")


def streamapp(*args):
    return harness.Server([STREAMAPP, *harness.workers_or("1", args)], "streamapp")


def get(path, version="1.1", method="GET"):
    return f"{method} {path} HTTP/{version}\r\nHost: t\r\n\r\n".encode()


class Chunks(harness.Reader):
    """Reads a streamed response: its head, then its chunks one by one."""

    def head(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:]]
        return harness.Response(status, "", headers, b"")

    def chunk(self):
        """The next chunk's data, b"" for the last chunk; ConnectionError if
        the connection closes first."""
        while b"\r\n" not in self.buf:
            self._fill()
        size, rest = self.buf.split(b"\r\n", 1)
        n = int(size, 16)
        while len(rest) < n + 2:
            self._fill()
            rest = self.buf.split(b"\r\n", 1)[1]
        assert rest[n:n + 2] == b"\r\n", rest[n:n + 2]
        self.buf = rest[n + 2:]
        return rest[:n]

    def body(self):
        parts = []
        while (c := self.chunk()):
            parts.append(c)
        return parts


def sse_events(text):
    """The events of an SSE stream as dicts of field -> value (data lines
    joined with LF), as the WHATWG parser sees them; comments counted."""
    events, cur, comments = [], {}, 0
    for line in re.split(r"\r\n|\r|\n", text):
        if line == "":
            if cur:
                events.append(cur)
            cur = {}
        elif line.startswith(":"):
            comments += 1
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                cur["data"] = cur["data"] + "\n" + value if "data" in cur else value
            else:
                cur[name] = value
    return events, comments


class Stream(harness.AppWithMock):
    @classmethod
    def make_app(cls):
        return streamapp()

    def base(self):
        return urllib.parse.quote(f"http://127.0.0.1:{self.mock.port}", safe="")

    def open(self, path):
        s = harness.connect(self.app.port)
        self.addCleanup(s.close)
        s.sendall(get(path))
        return s, Chunks(s)

    def test_each_part_is_sent_the_moment_its_call_completes(self):
        fast, slow = 200, 1000
        s, r = self.open(f"/fanout?base={self.base()}&fast={fast}&slow={slow}")
        t0 = time.monotonic()
        head = r.head()
        self.assertEqual(head.status, 200)
        self.assertEqual(head.header("Transfer-Encoding"), "chunked")
        self.assertEqual(head.header("Content-Type"), "application/x-ndjson")
        first = json.loads(r.chunk())
        t_first = time.monotonic() - t0
        second = json.loads(r.chunk())
        t_second = time.monotonic() - t0
        summary = json.loads(r.chunk())
        self.assertEqual(r.chunk(), b"")
        self.assertEqual((first["name"], second["name"]), ("fast", "slow"))
        self.assertEqual(summary, {"done": True, "parts": 2})
        # The fast part comes at about fast/slow = 0.2 of the slow delay,
        # well before the slow one; the slow part not before its delay.
        self.assertLess(t_first / (slow / 1000), 0.6, (t_first, t_second))
        self.assertGreater(t_second / (slow / 1000), 0.9, (t_first, t_second))

    def test_a_client_that_leaves_mid_stream_has_its_calls_cancelled(self):
        before = self.stats()["cancelled"]
        s, r = self.open(f"/fanout?base={self.base()}&fast=50&slow=5000")
        r.head()
        self.assertEqual(json.loads(r.chunk())["name"], "fast")
        s.close()
        self.assertEqual(self.wait_cancelled(before + 1, within=3.0), before + 1)

    def test_sse_framing_splits_data_lines_on_lf_cr_and_crlf(self):
        s, r = self.open("/sse")
        head = r.head()
        self.assertEqual(head.header("Content-Type"), "text/event-stream")
        raw = b"".join(r.body()).decode()
        self.assertIn("event: greeting\nid: 1\ndata: one\ndata: two\ndata: three\ndata: four\n\n",
                      raw)
        events, _ = sse_events(raw)
        self.assertEqual(events[0], {"retry": "1500"})
        self.assertEqual(events[1], {"event": "greeting", "id": "1",
                                     "data": "one\ntwo\nthree\nfour"})
        self.assertEqual(events[2], {"data": "last line ends\n"})
        # An event name with a line end is refused, nothing sent.
        self.assertEqual(events[3], {"event": "result", "data": "invalid"})
        self.assertEqual(len(events), 4)

    def test_sse_heartbeats_are_comments_sent_while_the_stream_is_idle(self):
        hb, idle = 100, 550
        s, r = self.open(f"/heartbeat?hb={hb}&idle={idle}")
        r.head()
        parts = r.body()
        events, comments = sse_events(b"".join(parts).decode())
        self.assertIn(b": \n", parts)
        self.assertGreaterEqual(comments, 2, parts)
        self.assertLessEqual(comments, idle // hb, parts)
        self.assertEqual(events, [{"event": "done", "data": ""}])

    def test_ndjson_lines_and_a_handler_that_returns_without_ending(self):
        s, r = self.open("/ndjson?n=4&noend=1")
        head = r.head()
        self.assertEqual(head.header("X-Before"), "set before the head")
        parts = r.body()  # ends with the last chunk all the same
        self.assertEqual([json.loads(p) for p in parts], [{"i": i} for i in range(4)])
        self.assertTrue(all(p.endswith(b"\n") and p.count(b"\n") == 1 for p in parts))
        s.sendall(get("/pid"))  # the connection is kept alive
        self.assertEqual(r.read().status, 200)

    def test_a_pipelined_request_after_a_stream_is_answered_in_order(self):
        s = harness.connect(self.app.port)
        self.addCleanup(s.close)
        s.sendall(get(f"/fanout?base={self.base()}&fast=50&slow=300") + get("/ndjson?n=1"))
        r = Chunks(s)
        self.assertEqual(r.head().status, 200)
        names = [json.loads(p).get("name") for p in r.body()]
        self.assertEqual(names, ["fast", "slow", None])
        self.assertEqual(r.head().header("Content-Type"), "application/x-ndjson")
        self.assertEqual(r.body(), [b'{"i":0}\n'])

    def test_an_http10_client_gets_a_body_ended_by_the_close(self):
        s = harness.connect(self.app.port)
        self.addCleanup(s.close)
        s.sendall(get("/ndjson?n=3", version="1.0"))
        r = Chunks(s)
        head = r.head()
        self.assertIsNone(head.header("Transfer-Encoding"))
        self.assertIsNone(head.header("Content-Length"))
        self.assertEqual(head.header("Connection"), "close")
        self.assertTrue(r.closed())
        self.assertEqual(r.buf, b'{"i":0}\n{"i":1}\n{"i":2}\n')

    def test_head_gets_the_head_only_and_keeps_the_connection(self):
        s = harness.connect(self.app.port)
        self.addCleanup(s.close)
        s.sendall(get("/ndjson", method="HEAD") + get("/pid"))
        r = Chunks(s)
        head = r.read(head_request=True)
        self.assertEqual(head.status, 200)
        self.assertEqual(head.header("Content-Type"), "application/x-ndjson")
        nxt = r.read()  # no body bytes came between the two
        self.assertEqual(nxt.status, 200)
        self.assertIn("pid", nxt.json())

    def test_an_aborted_stream_closes_without_the_last_chunk(self):
        for how in ("abort", "reply"):
            with self.subTest(how=how):
                s, r = self.open(f"/fail?how={how}")
                self.assertEqual(r.head().status, 200)
                self.assertEqual(json.loads(r.chunk()), {"part": "first"})
                with self.assertRaises(ConnectionError):
                    r.chunk()
        self.app.wait_log(r"GET /fail: a reply once the stream's head was sent: the stream "
                          r"is aborted")

    def test_after_request_hooks_run_before_the_head_and_see_the_stream(self):
        s, r = self.open("/ndjson?n=1")
        head = r.head()
        self.assertEqual(head.header("X-Hook"), "status=200 streaming=1")
        self.assertEqual(head.header("X-Accel-Buffering"), "no")
        r.body()
        replaced = harness.request(self.app.port, "GET", "/replaced")
        self.assertEqual(replaced.status, 403)
        self.assertEqual(replaced.json()["error"], "replaced by a hook")
        self.app.wait_log(r"replaced: start state, write state")

    def test_the_access_log_has_the_streams_status_and_bytes(self):
        line = r"GET /sse 200 [\d.]+ ms (\d+) B"
        seen = len([l for l in list(self.app.lines) if re.search(line, l)])
        s = harness.connect(self.app.port)
        self.addCleanup(s.close)
        s.sendall(get("/sse", version="1.0"))
        got = b""
        while (data := s.recv(65536)):
            got += data
        m = self.app.wait_log(line, count=seen + 1)
        self.assertEqual(int(m[seen].group(1)), len(got))


class Demo(unittest.TestCase):
    """fanout demo (the seed's view) with ?stream=ndjson and ?stream=sse."""
    SLOW, FAST = 1000, 200

    @classmethod
    def setUpClass(cls):
        cls.demo = harness.demo("--delay-a", str(cls.SLOW), "--delay-b", str(cls.FAST))

    @classmethod
    def tearDownClass(cls):
        cls.demo.stop()

    def stream(self, mode):
        """[(seconds after the request, part)] of /?stream=mode."""
        s = harness.connect(self.demo.port)
        self.addCleanup(s.close)
        s.sendall(get(f"/?stream={mode}"))
        t0 = time.monotonic()
        r = Chunks(s)
        self.assertEqual(r.head().status, 200)
        parts = []
        while (c := r.chunk()):
            parts.append((time.monotonic() - t0, c.decode()))
        return parts

    def check_timing(self, parts):
        (t_b, _), (t_a, _), _ = parts
        self.assertLess(t_b / (self.SLOW / 1000), 0.6, parts)
        self.assertGreater(t_a / (self.SLOW / 1000), 0.9, parts)

    def test_ndjson_sends_each_apis_result_as_it_completes_then_a_summary(self):
        parts = self.stream("ndjson")
        lines = [json.loads(p) for _, p in parts]
        self.assertEqual([l.get("name") for l in lines], ["api_b", "api_a", None])
        self.assertEqual(set(lines[2]), {"result", "processing_time"})
        self.assertAlmostEqual(lines[2]["result"], lines[0]["value"] + lines[1]["value"])
        self.check_timing(parts)

    def test_sse_sends_the_same_as_events(self):
        parts = self.stream("sse")
        events = [sse_events(p)[0][0] for _, p in parts]
        self.assertEqual([e["event"] for e in events], ["call", "call", "summary"])
        self.assertEqual(json.loads(events[0]["data"])["name"], "api_b")
        self.assertIn("result", json.loads(events[2]["data"]))
        self.check_timing(parts)


class SlowReader(unittest.TestCase):
    """A client that stops reading a large stream: the writer is suspended
    and the server's memory stays bounded; then it reads it all."""
    N, SIZE, QUEUED = 2000, 32768, 65536

    @classmethod
    def setUpClass(cls):
        cls.app = streamapp("--max-stream-queued-bytes", str(cls.QUEUED))
        cls.pid = harness.worker_pid(cls.app.port)

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()

    def progress(self, port=None, slot=0):
        return harness.get_json(port or self.app.port, f"/progress?slot={slot}")[1]

    def settled_progress(self, port=None, slot=0, within=10):
        """/progress once its write count stopped moving for 0.5 s."""
        last, since = None, time.monotonic()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            p = self.progress(port, slot)
            if p != last:
                last, since = p, time.monotonic()
            elif time.monotonic() - since > 0.5:
                return p
            time.sleep(0.1)
        return last

    def stall(self, port, slot):
        """A client of /slow?slot=`slot` on `port` that reads nothing (it
        asks the kernel for a small receive buffer), and the writes the
        handler managed once they stopped moving."""
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(get(f"/slow?n={self.N}&size={self.SIZE}&slot={slot}"))
        p = self.settled_progress(port, slot)
        self.assertFalse(p["done"], p)
        return s, p["writes"]

    def test_max_stream_queued_bytes_is_what_suspends_the_writer(self):
        big = 4 << 20
        other = streamapp("--max-stream-queued-bytes", str(big))
        try:
            s1, small_writes = self.stall(self.app.port, 1)
            s2, big_writes = self.stall(other.port, 1)
            s1.close()  # the handlers end (their writes fail) before the stop
            s2.close()
        finally:
            other.stop()
        print(f"\n  stalled after {small_writes} writes of {self.SIZE} B with a "
              f"{self.QUEUED} B queue, {big_writes} with {big} B", file=sys.stderr)
        # The kernel's buffers are the same for both: the difference is the
        # difference of the limits, in writes.
        self.assertGreaterEqual(big_writes - small_writes, 0.9 * (big - self.QUEUED) / self.SIZE,
                                (small_writes, big_writes))

    def test_a_slow_reader_suspends_the_writer_and_bounds_memory(self):
        for _ in range(3):
            harness.request(self.app.port, "GET", "/pid")
        before = harness.rss_kib(self.pid)
        s, writes = self.stall(self.app.port, 0)
        self.addCleanup(s.close)
        during = harness.rss_kib(self.pid)
        # Suspended long before the end: what it wrote is in the kernel's
        # buffers and the queue, a small part of the whole.
        self.assertLess(writes, self.N // 4)
        total_mib = self.N * self.SIZE // (1 << 20)
        print(f"\n  stalled after {writes} of {self.N} writes; RSS {before} KiB before, "
              f"{during} KiB stalled ({total_mib} MiB streamed)", file=sys.stderr)
        self.assertLess(during - before, 16 * 1024,
                        f"RSS {before} KiB before, {during} KiB while stalled, {total_mib} MiB "
                        "streamed")
        s.settimeout(30)
        received, tail = 0, b""
        while not tail.endswith(b"\r\n0\r\n\r\n"):
            data = s.recv(1 << 20)
            if not data:
                break
            received += len(data)
            tail = (tail + data)[-16:]
        self.assertTrue(tail.endswith(b"\r\n0\r\n\r\n"))
        self.assertGreater(received, self.N * self.SIZE)
        p = self.progress()
        self.assertEqual((p["writes"], p["done"], p["rc"]), (self.N, True, "ok"))


class WriteTimeout(unittest.TestCase):
    """A client that takes nothing for write_timeout_ms is disconnected; the
    suspended writer gets FAN_ECANCELED."""
    TIMEOUT_MS = 300

    @classmethod
    def setUpClass(cls):
        cls.app = streamapp("--write-timeout-ms", str(cls.TIMEOUT_MS))

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()

    def test_the_write_timeout_ends_a_stream_the_client_stopped_reading(self):
        s = socket.socket()
        self.addCleanup(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", self.app.port))
        s.sendall(get("/slow?n=100000&size=32768"))
        deadline = time.monotonic() + 20 * self.TIMEOUT_MS / 1000
        p = {}
        while time.monotonic() < deadline:
            p = harness.get_json(self.app.port, "/progress")[1]
            if p["done"]:
                break
            time.sleep(0.05)
        self.assertEqual((p["done"], p["rc"]), (True, "cancelled"), p)
        self.assertLess(p["writes"], 100000)
        self.app.wait_log(r"response not taken by the client within 300 ms")


if __name__ == "__main__":
    harness.main()
