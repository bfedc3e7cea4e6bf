"""`fanout serve`: endpoints of a gateway file against the mock upstream,
over real sockets. Templates of params, query and headers (escaped in
URLs), fixed and forwarded headers, JSON bodies; a backend starts the moment
its inputs are there (a chain does not wait for an unrelated slow call, and
an independent call is not delayed); for_each under a concurrency limit and
in batches, joined back in order with null for a missing or failed item;
status rules (partial 200, 502, 504, 4xx passed on) and the endpoint's
timeout cutting each call's; shaping; NDJSON and SSE streams; the debug
plan and timing."""
import http.server
import json
import signal
import threading
import time

from gwharness import GatewayCase, stream
from harness import connect, main

SLOW = 400  # ms: the slowest call of the timing cases; ratios are taken of it


def ep(path, *backends, **extra):
    return {"path": path, "backends": list(backends), **extra}


class Gateway(GatewayCase):
    @classmethod
    def config(cls, up):
        return {"debug": True, "endpoints": [
            ep("/seed",
               {"name": "a", "url": up + f"/a?ms={SLOW}", "select": ["value"]},
               {"name": "b", "url": up + f"/b?ms={SLOW // 2}", "select": ["value"]}),
            ep("/echo/:id",
               {"name": "e", "url": up + "/e?echo=1&id={params.id}&q={query.q}&h={header.X-In}",
                "headers": {"X-Fixed": "yes", "X-Id": "{params.id}"},
                "forward_headers": ["Authorization"], "extract": "echo"}),
            ep("/post/:id",
               {"name": "u", "url": up + "/u?items=2"},
               {"name": "p", "method": "POST", "url": up + "/p?echo=1",
                "body": {"id": "{params.id}", "first": "{u.items[0]}", "n": "{u.items[1].id}",
                         "text": "id={params.id}", "fixed": [1, True, None]},
                "extract": "echo"}, method="POST"),
            ep("/chain",
               {"name": "slow", "url": up + f"/slow?ms={SLOW}"},
               {"name": "indep", "url": up + "/indep?ms=0"},
               {"name": "first", "url": up + f"/first?ms={SLOW // 4}&items=1"},
               {"name": "second", "url": up + f"/second?ms={SLOW // 4}&v={{first.items[0].id}}"}),
            ep("/each",
               {"name": "list", "url": up + "/list?items=100"},
               {"name": "detail", "url": up + f"/detail?ms={SLOW // 8}&echo=1&id={{item}}",
                "for_each": "list.items[*].id", "concurrency": 10, "max_items": 100,
                "select": ["echo.query.id"]}),
            ep("/each-fail",
               {"name": "list", "url": up + "/list?ids=200,503,200,404,x"},
               {"name": "detail", "url": up + "/detail?status={item.id}", "for_each": "list.items[*]",
                "as": "got", "extract": "value"}),
            ep("/each-scalars",
               {"name": "ids", "method": "POST", "url": up + "/ids?echo=1",
                "body": {"ids": [3, 1, 2]}, "extract": "echo.body"},
               {"name": "n", "url": up + "/n?echo=1&v={item}", "for_each": "ids.echo.body.ids[*]",
                "extract": "echo.query.v"}),
            ep("/batch",
               {"name": "list", "url": up + "/list?ids=a,b,c,d,e"},
               {"name": "more", "url": up + "/more?key=batch&drop=c", "for_each": "list.items[*].id",
                "batch": {"param": "ids", "max": 2, "results": "items", "match": "id"},
                "as": "more", "select": ["id"]}),
            ep("/too-many",
               {"name": "list", "url": up + "/list?items=6"},
               {"name": "d", "url": up + "/d?id={item}", "for_each": "list.items[*].id",
                "max_items": 5, "required": False}),
            ep("/batch-field",
               {"name": "list", "url": up + "/list?items=5"},
               {"name": "b", "method": "POST", "url": up + "/b?echo=1&key=bfield",
                "body": {"fixed": 1}, "for_each": "list.items[*].id",
                "batch": {"field": "ids", "max": 3, "results": "echo.body.ids"}}),
            ep("/retry",
               {"name": "r", "url": up + "/r?fail_first=2&key=retry&fail=503",
                "retries": {"max": 2, "base_ms": 1, "cap_ms": 5}}),
            ep("/noretry",
               {"name": "r", "url": up + "/r?fail_first=2&key=noretry&fail=503"}),
            ep("/hedge",
               {"name": "h", "url": up + f"/h?tail_first=1&tail_ms={SLOW * 5}&key=hedge",
                "hedge": {"after_ms": SLOW // 8}}),
            ep("/cached",
               {"name": "c", "url": up + "/c?key=cached", "cache": {"ttl_ms": 60000}}),
            ep("/flight",
               {"name": "f", "url": up + f"/f?ms={SLOW // 2}&key=flight", "single_flight": True}),
            ep("/partial",
               {"name": "ok", "url": up + "/ok"},
               {"name": "down", "url": up + "/down?fail=503&fail_rate=1", "required": False},
               {"name": "after", "url": up + "/after?v={down.value}", "required": False}),
            ep("/fail",
               {"name": "ok", "url": up + f"/ok?ms={SLOW}"},
               {"name": "down", "url": up + "/down?fail=503&fail_rate=1"}),
            ep("/timeout",
               {"name": "fast", "url": up + "/fast"},
               {"name": "slow", "url": up + f"/slow?ms={SLOW * 10}", "timeout_ms": SLOW}),
            ep("/cut",
               {"name": "a", "url": up + f"/a?ms={SLOW // 2}&items=1"},
               {"name": "b", "url": up + f"/b?ms={SLOW * 10}&v={{a.items[0].id}}",
                "timeout_ms": 60000}, timeout_ms=SLOW),
            ep("/notfound",
               {"name": "miss", "url": up + "/m?status=404", "pass_4xx": True}),
            ep("/notfound-plain",
               {"name": "miss", "url": up + "/m?status=404"}),
            ep("/missing",
               {"name": "a", "url": up + "/a"},
               {"name": "b", "url": up + "/b?v={a.nope}", "required": False}),
            ep("/shape",
               {"name": "a", "url": up + "/a?echo=1&x=1&y=2&z=3", "extract": "echo.query",
                "remove": ["z"], "rename": {"x": "ex"}},
               {"name": "m1", "url": up + "/m1?items=1", "merge": True},
               {"name": "m2", "url": up + "/m2?echo=1", "merge": True, "remove": ["echo"]}),
            ep("/template",
               {"name": "a", "url": up + "/a?echo=1&x=7", "extract": "echo.query"},
               {"name": "b", "url": up + "/b?items=2", "required": False},
               response={"x": "{a.x}", "second": "{b.items[1].id}", "label": "x is {a.x}",
                         "nested": {"all": "{a}"}}),
            ep("/stream",
               {"name": "slow", "url": up + f"/slow?ms={SLOW}", "select": ["value"]},
               {"name": "fast", "url": up + "/fast?ms=0", "select": ["value"]},
               {"name": "down", "url": up + "/down?fail=500&fail_rate=1", "required": False},
               stream="ndjson"),
            ep("/sse",
               {"name": "slow", "url": up + f"/slow?ms={SLOW // 2}"},
               {"name": "fast", "url": up + "/fast?ms=0"}, stream="sse"),
            ep("/sse-fail",
               {"name": "down", "url": up + "/down?fail=500&fail_rate=1"}, stream="sse"),
        ]}

    def test_calls_run_at_once_answered_in_the_slowest_time(self):
        self.get("/seed")  # warm connections
        r = self.get("/seed")
        self.assertEqual(r.status, 200)
        body = r.json()
        self.assertEqual(set(body), {"a", "b"})
        self.assertIsInstance(body["a"]["value"], float)
        ratio = r.elapsed / (SLOW / 1000)
        self.assertTrue(0.95 < ratio < 1.4, ratio)  # not 1.5, the sum

    def test_values_are_escaped_in_urls(self):
        r = self.get("/echo/a%20b..%3Fc%26d?q=x%26fail%3D500%23y", headers=[("X-In", "1&2")])
        self.assertEqual(r.status, 200, r.body)
        q = r.json()["e"]["query"]
        self.assertEqual((q["id"], q["q"], q["h"]), ("a b..?c&d", "x&fail=500#y", "1&2"))
        self.assertNotIn("fail", q)

    def test_an_escaped_slash_stays_inside_its_path_parameter(self):
        r = self.get("/echo/a%2Fb%2f%2Fc")  # matched on the raw path, decoded then
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["e"]["query"]["id"], "a/b//c")
        h = {k.lower(): v for k, v in r.json()["e"]["headers"].items()}
        self.assertEqual(h["x-id"], "a/b//c")
        self.assertEqual(self.get("/echo/a/b").status, 404)  # a real '/' splits
        self.assertEqual(self.get("/ech%6F/x%2Fy").json()["e"]["query"]["id"], "x/y")

    def test_headers_fixed_templated_and_forwarded_by_allow_list(self):
        r = self.get("/echo/7", headers=[("Authorization", "Bearer t"), ("X-Secret", "s")])
        h = {k.lower(): v for k, v in r.json()["e"]["headers"].items()}
        self.assertEqual((h["x-fixed"], h["x-id"], h["authorization"]), ("yes", "7", "Bearer t"))
        self.assertNotIn("x-secret", h)

    def test_json_body_template_keeps_types(self):
        r = self.get("/post/42", method="POST")
        self.assertEqual(r.status, 200, r.body)
        e = r.json()["p"]
        self.assertEqual(e["method"], "POST")
        self.assertEqual(e["body"]["id"], "42")
        self.assertEqual(e["body"]["first"]["id"], 1)
        self.assertEqual(e["body"]["n"], 2)
        self.assertEqual(e["body"]["text"], "id=42")
        self.assertEqual(e["body"]["fixed"], [1, True, None])
        self.assertEqual(self.get("/post/42").status, 405)

    def test_a_chain_runs_beside_an_unrelated_slow_call(self):
        r = self.get("/chain", headers=[("Fanout-Debug", "timing")])
        self.assertEqual(r.status, 200, r.body)
        t = r.json()["_fanout"]["timing"]
        slow = t["slow"]["duration_ms"]
        # the independent call and the chain's head start at once ...
        self.assertLess(t["indep"]["start_ms"], 0.1 * slow)
        self.assertLess(t["first"]["start_ms"], 0.1 * slow)
        # ... and the chain's second step starts when the first ends, not the slow call
        end_first = t["first"]["start_ms"] + t["first"]["duration_ms"]
        self.assertLess(t["second"]["start_ms"] - end_first, 0.1 * slow)
        self.assertLess(t["second"]["start_ms"], 0.5 * slow)
        self.assertTrue(0.95 < r.elapsed / (SLOW / 1000) < 1.4, r.elapsed)

    def test_for_each_of_100_items_under_a_concurrency_limit_of_10(self):
        self.stats(reset=True)
        r = self.get("/each")
        self.assertEqual(r.status, 200, r.body)
        items = r.json()["list"]["items"]
        self.assertEqual([i["id"] for i in items], list(range(1, 101)))
        self.assertEqual([i["detail"]["echo"]["query"]["id"] for i in items],
                         [str(k) for k in range(1, 101)])
        s = self.stats()
        self.assertEqual(s["peak_in_flight"], 10)
        self.assertEqual(s["paths"]["/detail"], 100)
        # 10 waves of 10 calls, not one wave of 100
        self.assertGreater(r.elapsed / (SLOW / 8000), 9)

    def test_for_each_joins_null_for_failed_and_missing_items(self):
        r = self.get("/each-fail")
        self.assertEqual(r.status, 200, r.body)
        body = r.json()
        got = [i["got"] for i in body["list"]["items"]]
        self.assertIsInstance(got[0], float)
        self.assertEqual(got[1], None)
        self.assertIsInstance(got[2], float)
        self.assertEqual((got[3], got[4]), (None, None))
        errs = {(e["item"], e["error"], e.get("status")) for e in body["_fanout"]["errors"]}
        self.assertEqual(errs, {(1, "status", 503), (3, "status", 404), (4, "status", 400)})
        self.assertEqual(r.header("Fanout-Partial"), "detail")

    def test_for_each_over_values_that_are_not_objects(self):
        r = self.get("/each-scalars")
        self.assertEqual(r.status, 200, r.body)
        body = r.json()
        self.assertEqual(body["ids"], {"ids": [3, 1, 2]})
        self.assertEqual(body["n"], ["3", "1", "2"])  # in the items' order, under its name

    def test_max_items_bounds_a_for_each(self):
        self.stats(reset=True)
        r = self.get("/too-many")
        self.assertEqual(r.status, 200, r.body)
        e = r.json()["_fanout"]["errors"][0]
        self.assertEqual((e["backend"], e["error"]), ("d", "too_many_items"))
        self.assertIn("6 items, more than max_items (5)", e["message"])
        self.assertNotIn("/d", self.stats()["paths"])

    def test_head_is_served_by_a_get_endpoint(self):
        r = self.get("/seed", method="HEAD")
        self.assertEqual((r.status, r.body), (200, b""))

    def test_batches_keep_order_and_null_for_an_unknown_id(self):
        self.stats(reset=True)
        r = self.get("/batch")
        self.assertEqual(r.status, 200, r.body)
        items = r.json()["list"]["items"]
        self.assertEqual([i["id"] for i in items], list("abcde"))
        self.assertEqual([i["more"] and i["more"]["id"] for i in items],
                         ["a", "b", None, "d", "e"])
        self.assertEqual(self.stats()["keys"]["batch"], 3)  # 2 + 2 + 1 ids

    def test_batches_into_a_body_field_joined_by_position(self):
        self.stats(reset=True)
        r = self.get("/batch-field")
        self.assertEqual(r.status, 200, r.body)
        # the echo gives back each call's ids: result k of a call is its k-th id
        self.assertEqual([i["b"] for i in r.json()["list"]["items"]], [1, 2, 3, 4, 5])
        self.assertEqual(self.stats()["keys"]["bfield"], 2)

    def test_retries(self):
        self.stats(reset=True)
        r = self.get("/retry", headers=[("Fanout-Debug", "timing")])
        self.assertEqual(r.status, 200, r.body)
        t = r.json()["_fanout"]["timing"]["r"]
        self.assertEqual((t["calls"], t["attempts"], t.get("retried")), (1, 3, True))
        self.assertEqual(self.stats()["keys"]["retry"], 3)
        r = self.get("/noretry")
        self.assertEqual((r.status, r.json()["upstream_status"]), (502, 503))

    def test_a_hedge_answers_a_slow_first_try(self):
        self.stats(reset=True)
        r = self.get("/hedge", headers=[("Fanout-Debug", "timing")])
        self.assertEqual(r.status, 200, r.body)
        t = r.json()["_fanout"]["timing"]["h"]
        self.assertEqual((t["attempts"], t.get("hedged")), (2, True))
        self.assertLess(r.elapsed, 0.5 * SLOW * 5 / 1000)  # not the slow first try's time
        plan = self.get("/hedge", headers=[("Fanout-Debug", "plan")]).json()
        self.assertEqual(plan["backends"][0]["hedge"], {"after_ms": SLOW // 8, "p95": False})

    def test_a_cached_backend_is_called_once(self):
        self.stats(reset=True)
        first = self.get("/cached", headers=[("Fanout-Debug", "timing")])
        second = self.get("/cached", headers=[("Fanout-Debug", "timing")])
        self.assertEqual((first.status, second.status), (200, 200))
        self.assertEqual(first.json()["c"], second.json()["c"])
        t = second.json()["_fanout"]["timing"]["c"]
        self.assertEqual((t["attempts"], t.get("cached")), (0, True))
        self.assertEqual(self.stats()["keys"]["cached"], 1)

    def test_single_flight_shares_one_call(self):
        self.stats(reset=True)
        out = []
        threads = [threading.Thread(target=lambda: out.append(self.get("/flight")))
                   for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([r.status for r in out], [200] * 5)
        self.assertEqual(len({r.body for r in out}), 1)
        self.assertLess(self.stats()["keys"]["flight"], 5)

    def test_an_optional_failure_is_a_partial_200(self):
        r = self.get("/partial")
        self.assertEqual(r.status, 200, r.body)
        body = r.json()
        self.assertIn("ok", body)
        self.assertNotIn("down", body)
        self.assertEqual(r.header("Fanout-Partial"), "down,after")
        errs = body["_fanout"]["errors"]
        self.assertEqual(errs[0], {"backend": "down", "error": "status", "status": 503})
        self.assertEqual(errs[1]["backend"], "after")
        self.assertEqual(errs[1]["error"], "dependency")

    def test_a_required_failure_is_a_502_at_once(self):
        r = self.get("/fail")
        self.assertEqual(r.status, 502, r.body)
        body = r.json()
        self.assertEqual((body["backend"], body["kind"], body["upstream_status"]),
                         ("down", "status", 503))
        self.assertEqual(r.header("Fanout-Failed"), "down")
        self.assertLess(r.elapsed, 0.5 * SLOW / 1000)  # the slow one is not awaited

    def test_a_timeout_is_a_504(self):
        r = self.get("/timeout")
        self.assertEqual(r.status, 504, r.body)
        self.assertEqual((r.json()["backend"], r.json()["kind"]), ("slow", "timeout"))
        self.assertTrue(0.9 < r.elapsed / (SLOW / 1000) < 1.6, r.elapsed)

    def test_the_endpoint_timeout_cuts_each_call(self):
        r = self.get("/cut")
        self.assertEqual(r.status, 504, r.body)
        self.assertEqual(r.json()["backend"], "b")
        self.assertTrue(0.9 < r.elapsed / (SLOW / 1000) < 1.6, r.elapsed)

    def test_a_4xx_is_passed_through_when_asked(self):
        r = self.get("/notfound")
        self.assertEqual(r.status, 404)
        self.assertIsInstance(r.json()["value"], float)  # the upstream's own body
        self.assertEqual(r.header("Fanout-Failed"), "miss")
        r = self.get("/notfound-plain")
        self.assertEqual(r.status, 502)
        self.assertEqual(r.json()["upstream_status"], 404)

    def test_a_missing_input_fails_its_backend(self):
        r = self.get("/missing")
        self.assertEqual(r.status, 200)
        e = r.json()["_fanout"]["errors"][0]
        self.assertEqual((e["backend"], e["error"]), ("b", "missing_input"))
        self.assertIn("{a.nope}", e["message"])

    def test_shaping_and_merge_collisions(self):
        r = self.get("/shape")
        self.assertEqual(r.status, 200, r.body)
        body = r.json()
        self.assertEqual(body["a"], {"ex": "1", "y": "2", "echo": "1"})
        self.assertEqual(body["items"][0]["id"], 1)  # merged from m1
        # both merged backends have "value": the first in the file keeps it
        self.assertEqual(body["_fanout"]["collisions"],
                         [{"key": "value", "kept": "m1", "dropped": "m2"}])

    def test_response_template(self):
        r = self.get("/template")
        self.assertEqual(r.status, 200, r.body)
        body = r.json()
        self.assertEqual(body["x"], "7")
        self.assertEqual(body["second"], 2)
        self.assertEqual(body["label"], "x is 7")
        self.assertEqual(body["nested"]["all"]["x"], "7")

    def test_ndjson_parts_as_they_complete(self):
        status, headers, body, times = stream(self.gw.port, "/stream")
        elapsed = times[-1][0]
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "application/x-ndjson")
        lines = [json.loads(l) for l in body.decode().splitlines()]
        self.assertEqual({l.get("backend") for l in lines[:2]}, {"fast", "down"})
        self.assertEqual(lines[2]["backend"], "slow")
        self.assertIsInstance(lines[2]["data"]["value"], float)
        self.assertEqual(lines[3]["_fanout"]["status"], 200)
        self.assertEqual(lines[3]["_fanout"]["errors"][0]["backend"], "down")
        self.assertTrue(0.95 < elapsed / (SLOW / 1000) < 1.4, elapsed)

    def test_ndjson_parts_arrive_before_the_slow_one(self):
        with connect(self.gw.port) as s:
            t0 = time.monotonic()
            s.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
            buf = b""
            while b"fast" not in buf:
                buf += s.recv(65536)
            self.assertLess(time.monotonic() - t0, 0.5 * SLOW / 1000)

    def test_sse_events_are_named_after_backends(self):
        status, headers, body, _ = stream(self.gw.port, "/sse")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "text/event-stream")
        events = [b.split("\n")[0] for b in body.decode().strip().split("\n\n")]
        self.assertEqual(events, ["event: fast", "event: slow", "event: summary"])
        _, _, body, _ = stream(self.gw.port, "/sse-fail")
        last = body.decode().strip().split("\n\n")[-1]
        self.assertIn("event: summary", last)
        self.assertIn('"status":502', last)
        self.assertIn('"failed":"down"', last)

    def test_debug_plan_is_a_dry_run(self):
        self.stats(reset=True)
        r = self.get("/echo/9?q=a+b".replace("+", "%20"), headers=[("Fanout-Debug", "plan")])
        self.assertEqual(r.status, 200)
        plan = r.json()
        self.assertEqual(plan["path"], "/echo/:id")
        self.assertEqual(plan["params"], {"id": "9"})
        self.assertEqual(plan["backends"][0]["name"], "e")
        self.assertEqual(plan["backends"][0]["request_url"],
                         self.up + "/e?echo=1&id=9&q=a%20b&h=")
        r = self.get("/chain", headers=[("Fanout-Debug", "plan")])
        urls = {b["name"]: b.get("request_url") for b in r.json()["backends"]}
        self.assertEqual(urls["second"], None)  # it waits for "first"
        self.assertEqual(urls["indep"], self.up + "/indep?ms=0")
        self.assertEqual(self.stats()["requests"], 0)
        self.assertEqual(self.get("/echo/9", headers=[("Fanout-Debug", "x")]).status, 400)

    def test_debug_timing(self):
        r = self.get("/partial", headers=[("Fanout-Debug", "timing")])
        t = r.json()["_fanout"]["timing"]
        self.assertEqual(t["ok"]["outcome"], "ok")
        self.assertEqual(t["down"]["outcome"], "status")
        self.assertEqual(t["after"]["outcome"], "dependency")
        self.assertEqual((t["ok"]["calls"], t["ok"]["attempts"]), (1, 1))
        self.assertEqual((t["after"]["calls"], t["after"]["attempts"]), (0, 0))

    def test_routes(self):
        self.assertEqual(self.get("/nope").status, 404)
        self.assertEqual(self.get("/echo").status, 404)
        r = self.get("/seed", method="DELETE")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("Allow"), "GET")


class RequestTimeout(GatewayCase):
    """An endpoint's timeout_ms replaces the server's request timeout."""
    serve_args = ("--workers", "0", "--request-timeout-ms", str(SLOW // 2))

    @classmethod
    def config(cls, up):
        return {"endpoints": [ep("/", {"name": "a", "url": up + f"/a?ms={SLOW}"},
                                 timeout_ms=SLOW * 3),
                              ep("/short", {"name": "a", "url": up + f"/a?ms={SLOW * 3}"},
                                 timeout_ms=SLOW)]}

    def test_the_endpoint_timeout_governs(self):
        self.assertEqual(self.get("/").status, 200)
        r = self.get("/short")
        self.assertEqual((r.status, r.json()["backend"]), (504, "a"))
        self.assertTrue(0.9 < r.elapsed / (SLOW / 1000) < 1.6, r.elapsed)


class Breaker(GatewayCase):
    """A backend's breaker is its origin's: it opens after its failures,
    then the origin's calls fail at once with circuit_open, for every
    backend of that origin; a reload that drops it gives the origin back
    its command line's options."""
    serve_args = ("--workers", "0")

    @classmethod
    def config(cls, up):
        return {"endpoints": [
            ep("/a", {"name": "a", "url": up + "/a?fail=503&fail_rate=1",
                      "breaker": {"failures": 2, "cooldown_ms": 60000}}),
            ep("/b", {"name": "b", "url": up + "/b"})]}

    def test_the_breaker_opens_for_every_backend_of_its_origin(self):
        self.stats(reset=True)
        for _ in range(2):
            r = self.get("/a")
            self.assertEqual((r.status, r.json()["kind"]), (502, "status"), r.body)
        self.gw.wait_log(r"circuit breaker of http://127\.0\.0\.1:\d+ opened: 2 consecutive "
                         r"failures")
        r = self.get("/a")
        self.assertEqual((r.status, r.json()["kind"]), (502, "circuit_open"), r.body)
        r = self.get("/b")  # another backend, the same origin
        self.assertEqual((r.status, r.json()["kind"]), (502, "circuit_open"), r.body)
        self.assertEqual(self.stats()["requests"], 2)
        # Without the breaker in the file, the origin's calls go out again.
        with open(self.path, "w") as f:
            json.dump({"endpoints": [ep("/b", {"name": "b", "url": self.up + "/b"})]}, f)
        self.gw.proc.send_signal(signal.SIGHUP)
        self.gw.wait_log(r"reloaded: 1 endpoint")
        self.assertEqual(self.get("/b").status, 200)
        self.assertEqual(self.stats()["requests"], 3)


class Bodies(GatewayCase):
    """Upstream bodies that are not JSON are errors: every backend's body is
    parsed by jansson (fan_call_json()), whether or not anything reads it,
    so the verdicts are jansson's, and each value in the answer is jansson's
    text of the parsed value."""
    BODIES = {"/text": b"hello", "/trunc": b'{"a": 1', "/utf8": b'{"a": "\xff"}',
              "/ok": b'{"a": [1, 2.5e3, "x\\u00e9\xc3\xa9", true, null], "b": {}}',
              "/scalar": b"42",
              "/sel": b'{"a": 1, "b": {"c": [1, 2]}, "z": 0, "a": 2}',
              "/escaped": b'{"\\u0061": 5, "b": 1}', "/deep": b"[" * 2048 + b"]" * 2048,
              "/spaced": b'{ "v" : 1.50,\n "s": "\\u00e9\\/", "n": [1E2, -0] }\r\n',
              "/dups": b'{"a": 1, "b": {"c": 1, "c": 2}, "a": 3}', "/nul": b"[1\x00]",
              "/chained": b'{"id": 7}'}
    BAD = [b"", b" ", b"{", b"[1,]", b'{"a":01}', b'{"a":1.}', b'{"a":-}', b'{"a":1e}',
           b'["\\u12"]', b'["a\tb"]', b'["\\x"]', b"[1] x", b"[tru]", b'{"a" 1}', b"{1:2}",
           b"[" * 2049 + b"]" * 2049, b'["\xc0\xaf"]', b'["\xed\xa0\x80"]', b'["\xf4\x90\x80\x80"]',
           b"[nul]", b'{"a":1,}', b'["\\ud800"]', b'["\\udc00"]', b'["\\u0000"]',
           b'["\\ud800\\u0041"]', b"[1e400]", b"[123456789012345678901234567890]"]
    GOOD = [b" [1, -0.5e+3, 1E2, 0] ", b'{"a": {"b": [[], {}]}, "c": "\\" \\/ \\b"}',
            b'["\xf0\x9f\x98\x80", "\xe2\x82\xac"]', b"[" * 900 + b"]" * 900,
            b'{"a": [{"b": [1, {"c": {}}]}], "d": []}', b'["\\ud83d\\ude00"]']

    @classmethod
    def setUpClass(cls):
        bodies = dict(cls.BODIES)
        bodies.update({f"/bad{i}": b for i, b in enumerate(cls.BAD)})
        bodies.update({f"/good{i}": b for i, b in enumerate(cls.GOOD)})

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = bodies[self.path.partition("?")[0]]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        cls.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=cls.http.serve_forever, daemon=True).start()
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.http.shutdown()

    @classmethod
    def config(cls, up):
        raw = f"http://127.0.0.1:{cls.http.server_address[1]}"
        return {"endpoints": [ep("/", *[{"name": n, "url": raw + path, "required": n == "ok"}
                                        for n, path in (("ok", "/ok"), ("text", "/text"),
                                                        ("trunc", "/trunc"), ("utf8", "/utf8"),
                                                        ("scalar", "/scalar"))],
                                 {"name": "parsed", "url": raw + "/text", "required": False,
                                  "select": ["a"]},
                                 {"name": "sel", "url": raw + "/sel",
                                  "select": ["b", "a", "missing"]},
                                 {"name": "esc", "url": raw + "/escaped", "select": ["a"]},
                                 {"name": "badsel", "url": raw + "/trunc", "required": False,
                                  "select": ["a"]}),
                              ep("/many", *[{"name": f"bad{i}", "url": raw + f"/bad{i}",
                                             "required": False} for i in range(len(cls.BAD))],
                                 *[{"name": f"good{i}", "url": raw + f"/good{i}"}
                                   for i in range(len(cls.GOOD))]),
                              ep("/deep", {"name": "deep", "url": raw + "/deep"}),
                              ep("/as-it-came", {"name": "spaced", "url": raw + "/spaced"},
                                 {"name": "dups", "url": raw + "/dups"},
                                 {"name": "nul", "url": raw + "/nul"},
                                 {"name": "down", "url": raw + "/text", "required": False},
                                 {"name": "chained", "url": raw + "/chained"},
                                 {"name": "after", "url": raw + "/spaced?id={chained.id}",
                                  "required": False})]}

    def test_bodies_that_are_not_json_are_errors(self):
        r = self.get("/")
        self.assertEqual(r.status, 200, r.body)
        body = r.json()
        self.assertEqual(body["ok"], json.loads(self.BODIES["/ok"]))
        errs = {e["backend"]: e["error"] for e in body["_fanout"]["errors"]}
        self.assertEqual(errs, {n: "not_json" for n in ("text", "trunc", "utf8", "scalar",
                                                         "parsed", "badsel")})

    def test_the_verdicts_are_jansson_s(self):
        r = self.get("/many")
        self.assertEqual(r.status, 200, r.body)
        body = r.json()
        for i, b in enumerate(self.GOOD):
            self.assertEqual(body[f"good{i}"], json.loads(b), b)
        r = self.get("/deep")  # as deep as jansson goes (too deep for Python's json)
        self.assertEqual(r.body, b'{"deep":' + self.BODIES["/deep"] + b"}")
        errs = {e["backend"] for e in body["_fanout"]["errors"]}
        self.assertEqual(errs, {f"bad{i}" for i in range(len(self.BAD))})

    def test_a_whole_result_is_its_body_as_it_came_when_that_says_the_same(self):
        r = self.get("/as-it-came")
        self.assertEqual(r.status, 200, r.body)
        # unshaped, under its name: the body's own text, spacing and spelling kept
        self.assertIn(b'"spaced":' + self.BODIES["/spaced"] + b',', r.body)
        # a key twice: jansson's parse (the last value wins) and jansson's text,
        # so that the answer does not carry both
        self.assertIn(b'"dups":{"a":3,"b":{"c":2}}', r.body)
        # a NUL byte jansson let through after a literal is not passed on
        self.assertIn(b'"nul":[1]', r.body)
        self.assertNotIn(b"\x00", r.body)
        body = r.json()
        self.assertEqual(list(body), ["spaced", "dups", "nul", "chained", "after", "_fanout"])
        self.assertEqual(body["spaced"], {"v": 1.5, "s": "\u00e9/", "n": [100.0, 0]})
        self.assertEqual(body["_fanout"]["errors"][0]["backend"], "down")
        self.assertEqual(body["chained"], {"id": 7})  # read by "after" too
        self.assertEqual(body["after"], body["spaced"])

    def test_a_select_of_members_is_written_by_jansson(self):
        r = self.get("/")
        # in the select's order, a repeated key's last value (jansson's parse), an
        # absent one left out, in jansson's compact text; a key written with an
        # escape is the same key once parsed
        self.assertIn(b'"sel":{"b":{"c":[1,2]},"a":2}', r.body)
        self.assertEqual(r.json()["esc"], {"a": 5})


if __name__ == "__main__":
    main()
