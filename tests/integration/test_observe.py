"""Observability through the real server: Server-Timing, W3C Trace Context,
the Prometheus metrics of the admin listener summed over 2 workers, the
waterfall page rendered in headless Chromium, and redaction."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

import http.server
import json

import harness
from harness import get_json, request

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def admin_port(server):
    m = server.wait_log(r"admin listener on http://([^ :]+):(\d+)")[0]
    return m.group(1), int(m.group(2))


def server_timing(resp):
    """[(name, dur, desc)] of the response's Server-Timing header."""
    out = []
    for entry in (resp.header("Server-Timing") or "").split(","):
        parts = [p.strip() for p in entry.split(";")]
        if not parts[0]:
            continue
        params = dict(p.split("=", 1) for p in parts[1:])
        out.append((parts[0], float(params.get("dur", "nan")), params.get("desc")))
    return out


def scrape(port, token=None):
    headers = [("Authorization", f"Bearer {token}")] if token else []
    r = request(port, "GET", "/metrics", headers=headers)
    assert r.status == 200, (r.status, r.body)
    return r.body.decode()


def sample(text, name, **labels):
    """The value of the series `name` whose labels include `labels`, summed
    over the matching series."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


class Observe(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mock = harness.mock()
        cls.logdir = tempfile.mkdtemp()
        cls.access = os.path.join(cls.logdir, "access.log")
        cls.app = harness.testapp("--workers", "2", "--admin-port", "0", "--access-log",
                                  cls.access)
        cls.admin_host, cls.admin = admin_port(cls.app)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.app.stop()
        finally:
            cls.mock.stop()
            shutil.rmtree(cls.logdir, ignore_errors=True)

    def mock_url(self, path):
        return f"http://127.0.0.1:{self.mock.port}{path}"

    def fanout(self, url, n=2, url2=None, n2=0, headers=()):
        q = {"url": url, "n": n}
        if url2:
            q.update(url2=url2, n2=n2)
        return request(self.app.port, "GET", "/fanout?" + urllib.parse.urlencode(q), headers)

    def fetch_self(self, headers=(), **q):
        """/fetch of the app's own /req/headers: the call's request headers."""
        q = {"url": f"http://127.0.0.1:{self.app.port}/req/headers", **q}
        r = request(self.app.port, "GET", "/fetch?" + urllib.parse.urlencode(q), headers)
        self.assertEqual(r.status, 200, r.body)
        import json
        return r, dict(json.loads(r.json()["body"])["headers"])

    # Server-Timing

    def test_server_timing_has_an_entry_per_call_and_the_handler(self):
        r = self.fanout(self.mock_url("/a?ms=20"), n=2, url2=self.mock_url("/b?ms=150"), n2=1)
        self.assertEqual(r.status, 200, r.body)
        st = server_timing(r)
        self.assertEqual([e[0] for e in st],
                         [f"127.0.0.1_{self.mock.port}_a"] * 2 + [f"127.0.0.1_{self.mock.port}_b",
                                                                   "handler"])
        a, b, handler = st[0][1], st[2][1], st[3][1]
        self.assertGreater(b / a, 1.5)  # the 150 ms call against the 20 ms ones
        self.assertLessEqual(b, handler)
        self.assertGreater(b / handler, 0.5)  # concurrent: the handler took about the slowest

    def test_a_failed_call_is_marked_with_its_error(self):
        r = self.fanout(f"http://127.0.0.1:{harness.closed_port()}/x", n=1)
        st = server_timing(r)
        self.assertEqual(st[0][2], "refused", st)
        self.assertEqual(st[-1][0], "handler")

    def test_a_response_without_calls_has_the_handler_entry(self):
        r = request(self.app.port, "GET", "/pid")
        self.assertEqual([e[0] for e in server_timing(r)], ["handler"])

    # Trace Context

    def test_a_valid_traceparent_is_continued_with_a_new_span_per_call(self):
        _, h1 = self.fetch_self([("traceparent", TP), ("tracestate", "vendor=opaque,b=2")])
        _, h2 = self.fetch_self([("traceparent", TP)])
        for h in (h1, h2):
            ver, trace, span, flags = h["traceparent"].split("-")
            self.assertEqual((ver, trace, flags), ("00", "0af7651916cd43dd8448eb211c80319c", "01"))
            self.assertNotEqual(span, "b7ad6b7169203331")
            self.assertRegex(span, "^[0-9a-f]{16}$")
        self.assertNotEqual(h1["traceparent"], h2["traceparent"])
        self.assertEqual(h1["tracestate"], "vendor=opaque,b=2")
        self.assertNotIn("tracestate", h2)
        self.assertIn("GET /fetch", self.app_access_line("0af7651916cd43dd8448eb211c80319c"))

    def test_without_traceparent_a_trace_starts(self):
        _, h1 = self.fetch_self()
        _, h2 = self.fetch_self()
        t1, t2 = h1["traceparent"].split("-")[1], h2["traceparent"].split("-")[1]
        self.assertRegex(t1, "^[0-9a-f]{32}$")
        self.assertNotEqual(t1, t2)
        self.assertIn("GET /fetch", self.app_access_line(t1))

    def test_a_bad_traceparent_starts_a_new_trace(self):
        bad = [
            TP.upper(),
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            TP + "-extra",
            TP[:-1],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331_01",
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
        ]
        for value in bad:
            _, h = self.fetch_self([("traceparent", value), ("tracestate", "a=1")])
            self.assertNotIn("0af7651916cd43dd8448eb211c80319c", h["traceparent"], value)
            self.assertNotIn("tracestate", h, value)
        _, h = self.fetch_self([("traceparent", TP), ("traceparent", TP)])
        self.assertNotIn("0af7651916cd43dd8448eb211c80319c", h["traceparent"])
        # A later version may carry more fields after its own.
        _, h = self.fetch_self([("traceparent", "01" + TP[2:] + "-more")])
        self.assertIn("0af7651916cd43dd8448eb211c80319c", h["traceparent"])

    def test_a_caller_traceparent_is_left_as_it_is(self):
        mine = "00-11111111111111111111111111111111-2222222222222222-00"
        _, h = self.fetch_self([("traceparent", TP)], header=f"traceparent: {mine}")
        self.assertEqual(h["traceparent"], mine)

    def app_access_line(self, trace, what="GET /fetch", timeout=5):
        """The access log's line of `what` with trace id `trace`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.access) as f:
                for line in f:
                    if f"trace={trace}" in line and what in line:
                        return line
            time.sleep(0.05)
        self.fail(f"no access line with trace={trace}")

    # Metrics

    def test_a_scrape_under_load_sees_every_worker(self):
        before = scrape(self.admin)
        route = dict(http_request_method="GET", http_route="/fanout",
                     http_response_status_code="200")
        addr = dict(server_address=f"127.0.0.1:{self.mock.port}", http_response_status_code="200")
        base_req = sample(before, "http_server_request_duration_seconds_count", **route)
        base_call = sample(before, "http_client_request_duration_seconds_count", **addr)
        sent, errors, pids = 120, [], set()
        lock = threading.Lock()
        scrapes = []

        def client(k):
            for i in range(k):
                r = self.fanout(self.mock_url("/load?ms=5"), n=3)
                if r.status != 200:
                    errors.append(r.status)
            with lock:
                pids.add(harness.worker_pid(self.app.port))

        def scraper():
            for _ in range(5):  # scrapes during the load must parse and count up
                scrapes.append(sample(scrape(self.admin), "http_server_request_duration_seconds_count",
                                      **route))
                time.sleep(0.05)

        threads = [threading.Thread(target=client, args=(sent // 8,)) for _ in range(8)]
        threads.append(threading.Thread(target=scraper))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(scrapes, sorted(scrapes))
        # Any worker answers the scrape, and each answer has both workers' counts.
        seen = set()
        for _ in range(12):
            text = scrape(self.admin)
            self.assertEqual(sample(text, "http_server_request_duration_seconds_count", **route)
                             - base_req, sent)
            self.assertEqual(sample(text, "http_client_request_duration_seconds_count", **addr)
                             - base_call, 3 * sent)
            self.assertEqual(sample(text, "http_server_active_requests"), 0)
        # The load was served by both workers (the access log's pids).
        with open(self.access) as f:
            seen = {m.group(1) for m in re.finditer(r"access \[(\d+)\] \S+ GET /fanout ", f.read())}
        self.assertGreaterEqual(len(seen), 2, "the load reached one worker only")
        buckets = [sample(text, "http_server_request_duration_seconds_bucket", le=le, **route)
                   for le in ("0.005", "0.01", "0.025", "+Inf")]
        self.assertEqual(buckets, sorted(buckets))  # cumulative
        self.assertIn('fanout_build_info{version="', text)

    def test_a_restarted_worker_keeps_its_counts(self):
        route = dict(http_request_method="GET", http_route="/pid")
        victim = harness.worker_pid(self.app.port)
        for _ in range(20):
            request(self.app.port, "GET", "/pid")
        time.sleep(0.2)  # every /pid ended: the access log has them
        with open(self.access) as f:
            served = len(re.findall(rf"access \[{victim}\] \S+ GET /pid ", f.read()))
        self.assertGreater(served, 0, "the victim served no /pid")
        before = scrape(self.admin)
        n = sample(before, "http_server_request_duration_seconds_count", **route)
        restarts = sample(before, "fanout_worker_restarts_total")
        os.kill(victim, signal.SIGKILL)
        self.app.wait_log(rf"worker {victim} .*restarting it", count=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                after = scrape(self.admin)
                break
            except (ConnectionError, OSError, AssertionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        # The killed worker's lane is kept, and its successor goes on in it.
        self.assertEqual(sample(after, "http_server_request_duration_seconds_count", **route), n)
        self.assertEqual(sample(after, "fanout_worker_restarts_total"), restarts + 1)
        for _ in range(4):
            request(self.app.port, "GET", "/pid")
        time.sleep(0.1)
        self.assertEqual(sample(scrape(self.admin), "http_server_request_duration_seconds_count",
                                **route), n + 4)

    def test_failed_calls_are_counted_by_error_kind(self):
        port = harness.closed_port()
        before = scrape(self.admin)
        for _ in range(3):
            self.fanout(f"http://127.0.0.1:{port}/x", n=1)
        after = scrape(self.admin)
        key = dict(server_address=f"127.0.0.1:{port}", error_type="refused")
        self.assertEqual(sample(after, "http_client_request_duration_seconds_count", **key)
                         - sample(before, "http_client_request_duration_seconds_count", **key), 3)


    def test_cache_hits_and_misses_are_counted(self):
        # Each of the 2 workers has its own cache: the first call of the
        # key in each misses, every other call hits.
        url = self.mock_url(f"/delay?ms=0&key=obs-cache-{time.monotonic()}")
        before = scrape(self.admin)
        for _ in range(6):
            r = request(self.app.port, "GET", "/fetch?" + urllib.parse.urlencode(
                {"url": url, "cache": 1, "ttl": 60000}))
            self.assertEqual(r.status, 200, r.body)
        after = scrape(self.admin)
        hits = sample(after, "fanout_cache_hits_total") - sample(before, "fanout_cache_hits_total")
        misses = (sample(after, "fanout_cache_misses_total")
                  - sample(before, "fanout_cache_misses_total"))
        self.assertIn("# TYPE fanout_cache_misses_total counter", after)
        self.assertIn(misses, (1, 2))
        self.assertEqual(hits + misses, 6)

    def test_series_a_route_and_an_origin_remember_keep_methods_and_statuses_apart(self):
        # A route's handler and an origin remember the series they counted
        # last: requests that alternate methods, and calls that alternate
        # statuses, must each land in their own series all the same.
        methods = ("GET", "POST")
        statuses = ("200", "404")
        addr = f"127.0.0.1:{self.mock.port}"

        def counts(text):
            return ([sample(text, "http_server_request_duration_seconds_count",
                            http_request_method=m, http_route="/echo",
                            http_response_status_code="200") for m in methods] +
                    [sample(text, "http_client_request_duration_seconds_count",
                            server_address=addr, http_response_status_code=s)
                     for s in statuses])

        before = counts(scrape(self.admin))
        for _ in range(3):
            for m in methods:
                self.assertEqual(request(self.app.port, m, "/echo", body=b"x").status, 200)
            # Calls of one request to one origin: it lives while they run.
            r = self.fanout(self.mock_url("/delay?ms=0&status=200"), n=4,
                            url2=self.mock_url("/delay?ms=1&status=404"), n2=4)
            self.assertIn(r.status, (200, 502), r.body)
        after = counts(scrape(self.admin))
        self.assertEqual([a - b for a, b in zip(after, before)], [3, 3, 12, 12])
    def test_retries_the_budget_refused_are_counted(self):
        # 10 calls fail at once: the budget (3 in flight, the minimum) lets
        # some retry; every call tried once was refused by it.
        before = scrape(self.admin)
        url = self.mock_url(f"/delay?key=obs-b-{time.monotonic()}&fail=503&fail_rate=1")
        q = urllib.parse.urlencode({"url": url, "n": 10, "retries": 1, "base": 50})
        r = request(self.app.port, "GET", "/resilient?" + q)
        self.assertEqual(r.status, 200, r.body)
        once = sum(1 for c in r.json()["calls"] if c["attempts"] == 1)
        self.assertGreaterEqual(once, 1, r.body)
        after = scrape(self.admin)
        self.assertEqual(sample(after, "fanout_retry_budget_refusals_total")
                         - sample(before, "fanout_retry_budget_refusals_total"), once)

    def test_retries_and_hedges_are_counted_and_drawn(self):
        before = scrape(self.admin)
        tp = "00-77777777777777777777777777777777-b7ad6b7169203331-01"
        retried = self.mock_url(f"/delay?key=obs-r-{time.monotonic()}&fail=503&fail_first=1")
        hedged = self.mock_url(f"/delay?key=obs-h-{time.monotonic()}&ms=1&tail_first=1"
                               f"&tail_ms=400")
        out = []
        for url, params in ((retried, {"retries": 2, "base": 1}),
                            (hedged, {"retries": 1, "hedge_after": 30})):
            q = urllib.parse.urlencode({"url": url, **params})
            r = request(self.app.port, "GET", "/resilient?" + q, [("traceparent", tp)])
            self.assertEqual(r.status, 200, r.body)
            out += r.json()["calls"]
        self.assertEqual(out[0]["flags"] & 1, 1, out)  # RETRIED
        self.assertEqual(out[1]["flags"] & 2, 2, out)  # HEDGED
        after = scrape(self.admin)
        self.assertEqual(sample(after, "fanout_call_retries_total")
                         - sample(before, "fanout_call_retries_total"), 1)
        self.assertEqual(sample(after, "fanout_call_hedges_total")
                         - sample(before, "fanout_call_hedges_total"), 1)
        _, j = get_json(self.admin, "/waterfall.json")
        recs = [r for r in j["recent"] if r["trace_id"] == "77777777777777777777777777777777"]
        calls = sorted((c for r in recs for c in r["calls"]), key=lambda c: c["hedges"])
        self.assertEqual([(c["attempts"], c["hedges"]) for c in calls], [(2, 0), (2, 1)])
        page = request(self.admin, "GET", "/waterfall").body.decode()
        self.assertIn("retries 1", page)
        self.assertIn("hedges 1", page)

    def test_admin_listener_binds_loopback_and_serves_no_other_path(self):
        self.assertEqual(self.admin_host, "127.0.0.1")
        self.assertEqual(request(self.admin, "GET", "/").status, 404)
        self.assertEqual(request(self.admin, "POST", "/metrics").status, 405)

    # The waterfall

    def test_waterfall_json_has_the_calls_in_start_order(self):
        tp = "00-aaaabbbbccccddddeeeeffff00001111-b7ad6b7169203331-01"
        self.fanout(self.mock_url("/first?ms=30"), n=2, url2=self.mock_url("/second?ms=10"), n2=1,
                    headers=[("traceparent", tp)])
        _, j = get_json(self.admin, "/waterfall.json")
        rec = next(r for r in j["recent"] if r["trace_id"] == "aaaabbbbccccddddeeeeffff00001111")
        names = [c["name"] for c in rec["calls"]]
        base = f"http://127.0.0.1:{self.mock.port}"
        self.assertEqual(names, [f"{base}/first?ms=REDACTED"] * 2 + [f"{base}/second?ms=REDACTED"])
        self.assertEqual(rec["route"], "/fanout")
        self.assertTrue(all(c["status"] == 200 for c in rec["calls"]))
        starts = [c["start_ms"] for c in rec["calls"]]
        self.assertEqual(starts, sorted(starts))

    @unittest.skipUnless(shutil.which("chromium"), "chromium is not installed (deps.sh --test)")
    def test_waterfall_renders_in_chromium_with_a_bar_per_call(self):
        tp = "00-12341234123412341234123412341234-b7ad6b7169203331-01"
        bad = harness.closed_port()
        self.fanout(self.mock_url("/one?ms=20"), n=3, url2=f"http://127.0.0.1:{bad}/down", n2=2,
                    headers=[("traceparent", tp)])
        dom = render(f"http://127.0.0.1:{self.admin}/waterfall")
        m = re.search(r'<div class="req"[^>]*data-trace="12341234123412341234123412341234".*?</svg>',
                      dom, re.S)
        self.assertIsNotNone(m, dom[:2000])
        bars = re.findall(r'<rect class="bar (\w+)" data-name="([^"]*)" data-status="(\d+)" '
                          r'data-error="(\w*)"', m.group(0))
        self.assertEqual(len(bars), 5)
        self.assertEqual([b[1].split("/")[-1] for b in bars], ["one?ms=REDACTED"] * 3 + ["down"] * 2)
        self.assertEqual([b[0] for b in bars], ["ok"] * 3 + ["err"] * 2)
        self.assertEqual([b[3] for b in bars], [""] * 3 + ["refused"] * 2)

    # Redaction

    def test_secrets_appear_nowhere_on_the_admin_listener(self):
        secret_q, secret_h, secret_c = "QSECRET4242", "HSECRET4242", "CSECRET4242"
        path = ("/fanout?" + urllib.parse.urlencode(
            {"url": self.mock_url(f"/r?key={secret_q}&ms=1"), "n": 1, "token": secret_q}))
        r = request(self.app.port, "GET", path, headers=[
            ("Authorization", f"Bearer {secret_h}"), ("Cookie", f"session={secret_c}"),
            ("X-Api-Key", secret_h)])
        self.assertEqual(r.status, 200)
        self.assertNotIn(secret_q, r.header("Server-Timing"))
        # The request is recorded when it ends, which may be just after its
        # answer reached us: wait for it to be on the page.
        shown = "/fanout?url=REDACTED&amp;n=REDACTED&amp;token=REDACTED"
        deadline = time.monotonic() + 5
        while True:
            pages = [request(self.admin, "GET", p).body.decode()
                     for p in ("/metrics", "/waterfall", "/waterfall.json")]
            if shown in pages[1] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertIn(shown, pages[1])
        for page in pages:
            for s in (secret_q, secret_h, secret_c):
                self.assertNotIn(s, page)
        time.sleep(0.2)
        with open(self.access) as f:
            log = f.read()
        for s in (secret_q, secret_h, secret_c):
            self.assertNotIn(s, log)


def render(url):
    """The DOM of `url` as headless Chromium builds it."""
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"chromium failed: {out.stderr[-2000:]}")
    return out.stdout


class Settings(unittest.TestCase):
    """The settings turn each part off, and the token guards the admin listener."""

    def test_everything_off(self):
        app = harness.testapp("--server-timing", "off", "--trace-context", "off", "--metrics",
                              "off", "--admin-port", "0")
        try:
            port = admin_port(app)[1]
            q = urllib.parse.urlencode({"url": f"http://127.0.0.1:{app.port}/req/headers"})
            r = request(app.port, "GET", "/fetch?" + q, [("traceparent", TP)])
            import json
            headers = dict(json.loads(r.json()["body"])["headers"])
            self.assertIsNone(r.header("Server-Timing"))
            self.assertNotIn("traceparent", headers)
            text = scrape(port)
            self.assertNotIn("http_server_request_duration_seconds_count", text)
        finally:
            app.stop()

    def test_token_and_series_cap(self):
        app = harness.testapp("--admin-port", "0", "--admin-token", "s3cret",
                              "--metrics-max-series", "2")
        try:
            port = admin_port(app)[1]
            for p in ("/pid", "/client", "/echo", "/echo", "/users/7", "/users/8"):
                request(app.port, "GET", p)
            self.assertEqual(request(port, "GET", "/metrics").status, 401)
            self.assertEqual(request(port, "GET", "/waterfall",
                                     [("Authorization", "Bearer wrong")]).status, 401)
            text = scrape(port, "s3cret")
            counts = [l for l in text.splitlines()
                      if l.startswith("http_server_request_duration_seconds_count")]
            self.assertEqual(len(counts), 3, counts)  # 2 series and the overflow one
            self.assertEqual(sample(text, "http_server_request_duration_seconds_count"), 6)
            self.assertEqual(sample(text, "http_server_request_duration_seconds_count",
                                    otel_metric_overflow="true"), 4)
        finally:
            app.stop()

    def test_bad_settings_exit_2(self):
        for args in (["--server-timing", "maybe"], ["--admin-port", "70000"],
                     ["--metrics-max-series", "100001"], ["--admin-token", ""]):
            out = subprocess.run([harness.TESTAPP, *args], capture_output=True, text=True,
                                 timeout=10)
            self.assertEqual(out.returncode, 2, (args, out.stderr))
            self.assertIn(args[0], out.stderr)


class Streamed(unittest.TestCase):
    def test_a_streamed_head_lists_the_calls_ended_before_it(self):
        demo = harness.demo()
        try:
            out = {}

            def get(name, path):
                out[name] = request(demo.port, "GET", path, timeout=30)

            threads = [threading.Thread(target=get, args=("reply", "/")),
                       threading.Thread(target=get, args=("stream", "/?stream=ndjson"))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            # A reply's head follows both calls; a stream's head goes out
            # before its calls end, so it has the handler alone.
            self.assertEqual([e[0] for e in server_timing(out["reply"])],
                             ["api_a", "api_b", "handler"])
            st = server_timing(out["stream"])
            self.assertEqual([e[0] for e in st], ["handler"])
            self.assertLess(st[0][1], server_timing(out["reply"])[-1][1] / 10)
        finally:
            demo.stop()


class Collector:
    """An OTLP/HTTP JSON collector: keeps the bodies POSTed to /v1/traces;
    answers `status`."""

    def __init__(self, status=200):
        outer = self
        self.bodies, self.status = [], status

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers["Content-Length"])
                body = self.rfile.read(n)
                if self.path == "/v1/traces" and \
                        self.headers["Content-Type"] == "application/json":
                    outer.bodies.append(json.loads(body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self):
        out = []
        for b in self.bodies:
            (rs,) = b["resourceSpans"]
            self.check_resource(rs)
            for ss in rs["scopeSpans"]:
                out += ss["spans"]
        return out

    @staticmethod
    def check_resource(rs):
        attrs = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
        assert attrs["service.name"] == {"stringValue": "fanout"}, attrs

    def wait(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.spans()) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.spans()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def attrs(span):
    return {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}


class Otlp(unittest.TestCase):
    def test_spans_of_a_request_and_its_calls(self):
        col = Collector()
        up = harness.mock()
        app = harness.testapp("--otlp-endpoint", f"http://127.0.0.1:{col.port}/v1/traces")
        try:
            q = urllib.parse.urlencode({"url": f"http://127.0.0.1:{up.port}/s?ms=5&k=SECRETQ",
                                        "n": 2, "url2": f"http://127.0.0.1:{harness.closed_port()}/x",
                                        "n2": 1})
            r = request(app.port, "GET", "/fanout?" + q, [("traceparent", TP)])
            self.assertEqual(r.status, 502)
            spans = col.wait(4)
            self.assertEqual(len(spans), 4, spans)
            server = [s for s in spans if s["kind"] == 2]
            calls = [s for s in spans if s["kind"] == 3]
            self.assertEqual((len(server), len(calls)), (1, 3))
            (sv,) = server
            self.assertEqual(sv["traceId"], "0af7651916cd43dd8448eb211c80319c")
            self.assertEqual(sv["parentSpanId"], "b7ad6b7169203331")
            self.assertRegex(sv["spanId"], "^[0-9a-f]{16}$")
            self.assertEqual(sv["name"], "GET /fanout")
            a = attrs(sv)
            self.assertEqual((a["http.request.method"], a["http.route"],
                              a["http.response.status_code"]), ("GET", "/fanout", "502"))
            self.assertEqual(a["url.path"], "/fanout")
            ids = {sv["spanId"]}
            for c in calls:
                self.assertEqual(c["traceId"], sv["traceId"])
                self.assertEqual(c["parentSpanId"], sv["spanId"])
                self.assertNotIn(c["spanId"], ids)
                ids.add(c["spanId"])
                self.assertLessEqual(int(sv["startTimeUnixNano"]), int(c["startTimeUnixNano"]))
                self.assertLessEqual(int(c["startTimeUnixNano"]), int(c["endTimeUnixNano"]))
                self.assertLessEqual(int(c["endTimeUnixNano"]), int(sv["endTimeUnixNano"]))
            ok = [attrs(c) for c in calls if c["status"]["code"] == 0]
            bad = [attrs(c) for c in calls if c["status"]["code"] == 2]
            self.assertEqual(len(ok), 2)
            self.assertEqual(ok[0]["url.full"], f"http://127.0.0.1:{up.port}/s?ms=REDACTED&k=REDACTED")
            self.assertEqual(ok[0]["http.response.status_code"], "200")
            self.assertEqual(ok[0]["server.address"], f"127.0.0.1:{up.port}")
            self.assertEqual(bad[0]["error.type"], "refused")
            self.assertNotIn("SECRETQ", json.dumps(col.bodies))
        finally:
            app.stop()
            up.stop()
            col.close()

    def test_a_refusing_collector_and_a_full_queue_are_counted(self):
        col = Collector(status=503)
        app = harness.testapp("--otlp-endpoint", f"http://127.0.0.1:{col.port}",
                              "--otlp-max-queued-spans", "3", "--admin-port", "0")
        try:
            admin = admin_port(app)[1]
            for _ in range(5):  # 5 spans at once: 3 queued, 2 dropped at once
                request(app.port, "GET", "/pid")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                text = scrape(admin)
                if sample(text, "fanout_spans_dropped_total") >= 5:
                    break
                time.sleep(0.1)
            self.assertEqual(sample(text, "fanout_spans_dropped_total"), 5)
            self.assertEqual(sample(text, "fanout_spans_exported_total"), 0)
            self.assertEqual(len(col.bodies), 1)  # the 3 queued were sent, and refused
            self.assertEqual(len(col.spans()), 3)
        finally:
            app.stop()
            col.close()

    def test_a_bad_endpoint_is_refused(self):
        for url in ("https://127.0.0.1:1/v1/traces", "127.0.0.1:4318", "http://"):
            out = subprocess.run([harness.TESTAPP, "--otlp-endpoint", url], capture_output=True,
                                 text=True, timeout=10)
            self.assertIn(out.returncode, (1, 2), (url, out.stderr))
            self.assertIn("--otlp-endpoint", out.stderr)


if __name__ == "__main__":
    harness.main()
