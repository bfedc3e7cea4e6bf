"""`fanout check`: a gateway file's errors name the file, line and column of
the key or value at fault (unknown keys, wrong types, missing members,
cycles, templates naming an unknown backend, parameter or source, bad
for_each paths, merge collisions the file shows); a good file prints its
plan (backends, dependencies, stages). `fanout serve` refuses a broken
file with the same errors and exit status 1."""
import json
import os
import subprocess
import tempfile
import unittest

from harness import BIN, SAN_MARKERS, main

UP = "http://127.0.0.1:9"


def where(text, needle, nth=0):
    """1-based line and column of the nth occurrence of `needle`."""
    at = -1
    for _ in range(nth + 1):
        at = text.index(needle, at + 1)
    line = text.count("\n", 0, at) + 1
    col = at - (text.rfind("\n", 0, at) + 1) + 1
    return line, col


def endpoint(*backends, **extra):
    return {"endpoints": [{"path": "/x/:id", "backends": list(backends), **extra}]}


class Check(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def write(self, doc):
        text = doc if isinstance(doc, str) else json.dumps(doc, indent=2)
        path = os.path.join(self.dir.name, "gw.json")
        with open(path, "w") as f:
            f.write(text)
        return path, text

    def check(self, doc, *args):
        path, text = self.write(doc)
        p = subprocess.run([BIN, "check", path, *args], capture_output=True, text=True, timeout=30)
        for marker in SAN_MARKERS:  # a leak or a fault on any path of the checks
            self.assertNotIn(marker, p.stderr)
        return p, path, text

    def fails_at(self, doc, needle, message, nth=0):
        """The check fails with `message` at the position of `needle`."""
        p, path, text = self.check(doc)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        line, col = where(text, needle, nth)
        self.assertIn(f"{path}:{line}:{col}: ", p.stderr)
        self.assertIn(message, p.stderr)
        first = [l for l in p.stderr.splitlines() if l.startswith(f"{path}:{line}:{col}: ")]
        self.assertTrue(any(message in l for l in first), p.stderr)
        return p

    def test_a_good_file_prints_its_plan(self):
        p, path, _ = self.check(endpoint(
            {"name": "user", "url": UP + "/u/{params.id}"},
            {"name": "orders", "url": UP + "/o?user={user.id}"},
            {"name": "items", "url": UP + "/i/{item}", "for_each": "orders.list[*].id"},
            {"name": "news", "url": UP + "/n"}))
        self.assertEqual(p.returncode, 0, p.stderr)
        plan = json.loads(p.stdout)
        ep = plan["endpoints"][0]
        self.assertEqual(ep["stages"], [["user", "news"], ["orders"], ["items"]])
        deps = {b["name"]: b["depends_on"] for b in ep["backends"]}
        self.assertEqual(deps, {"user": [], "orders": ["user"], "items": ["orders"], "news": []})
        self.assertEqual(ep["backends"][2]["for_each"]["over"], "orders.list[*].id")

    def test_the_plan_lists_each_origins_breaker_once(self):
        p, _, _ = self.check(endpoint(
            {"name": "a", "url": "http://Example.com/x", "breaker": {"failures": 2}},
            {"name": "b", "url": "http://example.com:80/y?q={params.id}",
             "breaker": {"failures": 2}},
            {"name": "d", "url": "http://user:secret@example.com/w", "breaker": {"failures": 2}},
            {"name": "c", "url": "https://example.com/z",
             "breaker": {"error_percent": 50, "min_calls": 10, "window_ms": 5000,
                         "cooldown_ms": 100}}))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["breakers"], {
            "http://example.com:80": {"failures": 2, "error_percent": 0, "window_ms": 0,
                                      "min_calls": 0, "cooldown_ms": 0},
            "https://example.com:443": {"failures": 0, "error_percent": 50, "window_ms": 5000,
                                        "min_calls": 10, "cooldown_ms": 100}})

    def test_syntax_error_has_line_and_column(self):
        p, path, _ = self.check('{\n  "endpoints": [\n    {"path": "/x",,}\n  ]\n}\n')
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, rf"{path}:3:\d+: ")

    def test_a_syntax_error_quoting_bytes_that_are_not_utf8(self):
        path = os.path.join(self.dir.name, "gw.json")
        with open(path, "wb") as f:
            f.write(b'{"endpoints": ["\\\xc2\x9a"]}')
        p = subprocess.run([BIN, "check", path], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"{path}:1:".encode(), p.stderr)
        self.assertIn(b"invalid escape", p.stderr)
        self.assertIn(b": 1 error", p.stderr)

    def test_a_nul_byte_after_a_literal_ends_promptly(self):
        # jansson loads "[1\0, ...]"; the position index looped on it
        # without end, growing until memory ran out (found by fuzz_gateway).
        path = os.path.join(self.dir.name, "gw.json")
        with open(path, "wb") as f:
            f.write(b'{"a":[1\x00,2.5e3],"=b":{}}')
        p = subprocess.run([BIN, "check", path], capture_output=True, timeout=10)
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"{path}:1:2: a: unknown key".encode(), p.stderr)
        self.assertIn(b": 3 errors", p.stderr)

    def test_duplicate_key_is_refused(self):
        p, path, _ = self.check('{"endpoints": [], "endpoints": []}')
        self.assertEqual(p.returncode, 1)
        self.assertIn("duplicate object key", p.stderr)

    def test_unknown_key_of_a_backend(self):
        self.fails_at(endpoint({"name": "a", "url": UP, "retires": 2}), '"retires"',
                      "unknown key 'retires' in a backend")
        p, _, _ = self.check(endpoint({"name": "a", "url": UP, "retries": {
            "max": 2, "base_ms": 5, "cap_ms": 50, "per_try_timeout_ms": 100, "on": [503, 429],
            "non_idempotent": True}, "hedge": {"after_ms": 20, "p95": True}},
            {"name": "b", "url": UP, "retries": 1, "single_flight": True,
             "cache": {"ttl_ms": 1000, "stale_while_revalidate_ms": 10, "stale_if_error_ms": 10,
                       "vary": ["Accept"]}},
            {"name": "c", "url": UP, "cache": False}))
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_unknown_key_of_an_endpoint_and_the_file(self):
        self.fails_at(endpoint({"name": "a", "url": UP}, pathh="/y"), '"pathh"',
                      "unknown key 'pathh' in a endpoint".replace("a endpoint", "a endpoint"))
        self.fails_at({"endpoints": [{"path": "/", "backends": [{"name": "a", "url": UP}]}],
                       "debgu": True}, '"debgu"', "unknown key 'debgu' in a gateway file")

    def test_wrong_types(self):
        self.fails_at(endpoint({"name": "a", "url": UP, "timeout_ms": "5"}), '"timeout_ms"',
                      "'timeout_ms' must be a whole number from 1 to 3600000, not a string")
        self.fails_at(endpoint({"name": "a", "url": UP, "required": 1}), '"required"',
                      "'required' must be true or false, not an integer")
        self.fails_at(endpoint({"name": "a", "url": 7}), '"url"',
                      "'url' must be a string, not an integer")
        self.fails_at(endpoint({"name": "a", "url": UP, "select": "x"}), '"select"',
                      "'select' must be an array of JSON paths, not a string")
        self.fails_at(endpoint({"name": "a", "url": UP}, stream="chunks"), '"stream"',
                      "'stream' is \"ndjson\" or \"sse\", not \"chunks\"")

    def test_missing_members(self):
        self.fails_at(endpoint({"name": "a"}), '{\n          "name": "a"', "'url' is required")
        self.fails_at({"endpoints": [{"backends": [{"name": "a", "url": UP}]}]}, '{\n      "backends"',
                      "'path' is required")
        self.fails_at({"endpoints": []}, '"endpoints"', "\"endpoints\" must be a non-empty array")

    def test_a_cycle_names_its_backends(self):
        self.fails_at(endpoint({"name": "a", "url": UP + "/{b.x}"},
                               {"name": "b", "url": UP + "/{a.y}"}), '{\n          "name": "a"',
                      "a cycle of dependencies: a -> b -> a")
        self.fails_at(endpoint({"name": "a", "url": UP + "/{a.x}"}), '{\n          "name": "a"',
                      "a cycle of dependencies: a -> a")

    def test_templates_naming_what_is_not_there(self):
        self.fails_at(endpoint({"name": "a", "url": UP + "/{usr.id}"}), '"url"',
                      "template {usr.id}: no backend named 'usr' in endpoint GET /x/:id")
        self.fails_at(endpoint({"name": "a", "url": UP + "/{params.uid}"}), '"url"',
                      "template {params.uid}: the path /x/:id has no parameter ':uid'")
        self.fails_at(endpoint({"name": "a", "url": UP + "/{query}"}), '"url"',
                      "template {query}: query takes one name: {query.NAME}")
        self.fails_at(endpoint({"name": "a", "url": UP + "/{item}"}), '"url"',
                      "{item} is only known in a backend with for_each")
        self.fails_at(endpoint({"name": "a", "url": UP + "/{params.id"}), '"url"',
                      "a '{' without its '}'")
        self.fails_at(endpoint({"name": "a", "url": UP, "headers": {"X-A": "{b.c}"}}), '"X-A"',
                      "template {b.c}: no backend named 'b'")
        self.fails_at(endpoint({"name": "a", "url": UP, "body": {"k": ["{nope}"]}}), '"{nope}"',
                      "template {nope}: no backend named 'nope'")
        self.fails_at(endpoint({"name": "a", "url": UP + "/{a.x[y]}"}), '"url"',
                      "'x[y]' is not a JSON path")

    def test_a_response_field_the_select_leaves_out(self):
        self.fails_at(endpoint({"name": "a", "url": UP, "select": ["id", "name"],
                                "rename": {"name": "full"}},
                               response={"x": "{a.name}"}), '"response"',
                      "template {a.name}: backend 'a' selects only id, full")
        p, _, _ = self.check(endpoint({"name": "a", "url": UP, "select": ["id", "name"],
                                       "rename": {"name": "full"}},
                                      response={"x": "{a.full}", "y": "{a.id}", "z": "{a}"}))
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_for_each_paths(self):
        self.fails_at(endpoint({"name": "a", "url": UP},
                               {"name": "b", "url": UP, "for_each": "c.items[*]"}),
                      '"for_each"', "for_each \"c.items[*]\": no backend named 'c'")
        self.fails_at(endpoint({"name": "a", "url": UP},
                               {"name": "b", "url": UP, "for_each": "a.items"}),
                      '"for_each"', "needs exactly one [*]")
        self.fails_at(endpoint({"name": "a", "url": UP},
                               {"name": "b", "url": UP, "for_each": "a.x[*]",
                                "batch": {"max": 5}}),
                      '"batch"', "a batch names exactly one of \"param\"")
        self.fails_at(endpoint({"name": "a", "url": UP},
                               {"name": "b", "url": UP + "/{item}", "for_each": "a.x[*]",
                                "batch": {"max": 5, "param": "ids"}}),
                      '"batch"', "its templates cannot name {item}")
        self.fails_at(endpoint({"name": "a", "url": UP, "concurrency": 3}),
                      '{\n          "name": "a"', "need 'for_each'")

    def test_names(self):
        self.fails_at(endpoint({"name": "a", "url": UP}, {"name": "a", "url": UP}),
                      '"name"', "the name 'a' is already backends[0]'s", nth=1)
        self.fails_at(endpoint({"name": "query", "url": UP}), '"name"', "a backend's name is")

    def test_merge_collisions_the_file_shows(self):
        self.fails_at(endpoint({"name": "a", "url": UP, "merge": True, "select": ["id", "n"]},
                               {"name": "b", "url": UP, "merge": True, "select": ["id"]}),
                      '"id"', "merged key 'id' collides with backend 'a', which merges it too",
                      nth=1)
        self.fails_at(endpoint({"name": "a", "url": UP, "merge": True, "select": ["b"]},
                               {"name": "b", "url": UP}),
                      '"b"', "merged key 'b' collides with backend 'b'")
        # a rename is what the root sees
        p, _, _ = self.check(endpoint(
            {"name": "a", "url": UP, "merge": True, "select": ["id"], "rename": {"id": "a_id"}},
            {"name": "b", "url": UP, "merge": True, "select": ["id"]}))
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_urls_and_methods(self):
        self.fails_at(endpoint({"name": "a", "url": "ftp://h/"}), '"url"',
                      "begins with http:// or https://")
        self.fails_at(endpoint({"name": "a", "url": "http://{query.host}/"}), '"url"',
                      "the scheme and host of a url are written out")
        self.fails_at(endpoint({"name": "a", "url": UP, "method": "GE T"}), '"method"',
                      "is not an HTTP method")

    def test_the_other_messages(self):
        a = {"name": "a", "url": UP}
        cases = [
            ({"endpoints": [{"path": "/", "backends": [a]}], "debug": 1}, '"debug"',
             "'debug' must be true or false"),
            ([1], "[", "the file must hold a JSON object"),
            ({"endpoints": [7]}, "7", "an endpoint is an object, not an integer"),
            (endpoint("x"), '"x"', "a backend is an object, not a string"),
            ({"endpoints": [{"path": "x", "backends": [a]}]}, '"path"', "a path begins with '/'"),
            ({"endpoints": [{"path": "/a//b", "backends": [a]}]}, '"path"', "an empty segment"),
            ({"endpoints": [{"path": "/:a/:a", "backends": [a]}]}, '"path"', "names ':a' twice"),
            ({"endpoints": [{"path": "/", "backends": [a]}, {"path": "/", "backends": [a]}]},
             '"path"', "GET / is already endpoints[0]", 1),
            ({"endpoints": [{"path": "/", "method": "G T", "backends": [a]}]}, '"method"',
             "\"G T\" is not an HTTP method"),
            ({"endpoints": [{"path": "/"}]}, '{\n      "path"', "'backends' must be an array of 1 to 64"),
            (endpoint(a, response=[1]), '"response"', "'response' is the answer's template: an object"),
            (endpoint({"name": "a", "url": UP, "headers": []}), '"headers"',
             "'headers' must be an object"),
            (endpoint({"name": "a", "url": UP, "headers": {"X A": "v"}}), '"X A"',
             "a header needs a token name and a string value"),
            (endpoint({"name": "a", "url": UP, "forward_headers": "X"}), '"forward_headers"',
             "'forward_headers' must be an array"),
            (endpoint({"name": "a", "url": UP, "forward_headers": ["X Y"]}), '"X Y"',
             "a header name is a token"),
            (endpoint({"name": "a", "url": UP, "rename": {"x": 1}}), '"x"',
             "rename maps a JSON path ending in a member to its new name"),
            (endpoint({"name": "a", "url": UP, "rename": []}), '"rename"', "'rename' must be an object"),
            (endpoint({"name": "a", "url": UP, "extract": "a..b"}), '"extract"',
             "expected a JSON path"),
            (endpoint({"name": "a", "url": UP, "select": ["[x]"]}), '"[x]"', "expected a JSON path"),
            (endpoint(a, {"name": "b", "url": UP, "for_each": "a"}), '"for_each"',
             "for_each is \"backend.path[*]\""),
            (endpoint(a, {"name": "b", "url": UP, "for_each": "a.x[*]", "merge": True}), '"merge"',
             "cannot merge"),
            (endpoint(a, {"name": "b", "url": UP, "for_each": "a.x[*]", "batch": 3}), '"batch"',
             "'batch' must be an object"),
            (endpoint(a, {"name": "b", "url": UP, "for_each": "a.x[*]",
                          "batch": {"param": "ids"}}), '"batch"', "'max' is required"),
            (endpoint(a, {"name": "b", "url": UP, "for_each": "a.x[*]", "body": [1],
                          "batch": {"field": "ids", "max": 2}}), '"batch"',
             "a batch \"field\" needs a body that is an object"),
            (endpoint(a, {"name": "b", "url": UP, "for_each": "a.x[*]",
                          "batch": {"param": "ids", "max": 2, "results": 5}}), '"results"',
             "expected a JSON path"),
            (endpoint(a, {"name": "b", "url": UP, "for_each": "a.x[*]",
                          "batch": {"param": "ids", "max": 2, "size": 5}}), '"size"',
             "unknown key 'size' in a batch"),
            (endpoint({"name": "a", "url": UP + "/}"}), '"url"', "a '}' without its '{'"),
            (endpoint({"name": "a", "url": UP + "/{}"}), '"url"', "a reference starts with"),
            (endpoint({"name": "a", "url": UP, "cache": 1}), '"cache"',
             "'cache' is true, false or an object with \"ttl_ms\""),
            (endpoint({"name": "a", "url": UP, "cache": {"ttl": 5}}), '"ttl"',
             "unknown key 'ttl' in a cache"),
            (endpoint({"name": "a", "url": UP, "cache": {"vary": ["A B"]}}), '"vary"',
             "a header name is a token"),
            (endpoint({"name": "a", "url": UP, "single_flight": "yes"}), '"single_flight"',
             "'single_flight' must be true or false"),
            (endpoint({"name": "a", "url": UP, "breaker": 5}), '"breaker"',
             "'breaker' is an object: {\"failures\": N} and/or {\"error_percent\": P}"),
            (endpoint({"name": "a", "url": UP, "breaker": {"window_ms": 5}}), '"breaker"',
             "a breaker opens on \"failures\" in a row or an \"error_percent\": set one"),
            (endpoint({"name": "a", "url": UP, "breaker": {"failures": 2, "after": 1}}),
             '"after"', "unknown key 'after' in a breaker"),
            (endpoint({"name": "a", "url": UP, "breaker": {"error_percent": 101}}),
             '"error_percent"', "'error_percent' must be a whole number from 1 to 100"),
            (endpoint({"name": "a", "url": "http://Example.com/x", "breaker": {"failures": 2}},
                      {"name": "b", "url": "http://example.com:80/y", "breaker": {"failures": 3}}),
             '"breaker"', "the breaker of http://example.com:80 is set otherwise at "
             "endpoints[0].backends[0].breaker: a breaker is its origin's", 1),
            (endpoint({"name": "a", "url": UP, "retries": 11}), '"retries"',
             "'max' must be a whole number from 0 to 10"),
            (endpoint({"name": "a", "url": UP, "retries": "2"}), '"retries"',
             "'retries' is a number of retries (0 to 10) or an object"),
            (endpoint({"name": "a", "url": UP, "retries": {"max": 2, "jitter": 1}}), '"jitter"',
             "unknown key 'jitter' in a retries"),
            (endpoint({"name": "a", "url": UP, "retries": {"on": [200]}}), '"on"',
             "a status to retry is from 400 to 599"),
            (endpoint({"name": "a", "url": UP, "hedge": 5}), '"hedge"',
             "'hedge' is an object"),
            (endpoint({"name": "a", "url": UP, "hedge": {"after_ms": 0}}), '"after_ms"',
             "'after_ms' must be a whole number from 1 to 3600000"),
        ]
        for doc, needle, message, *nth in cases:
            with self.subTest(message=message):
                self.fails_at(doc, needle, message, *nth)

    def test_every_error_is_reported(self):
        p, path, _ = self.check(endpoint({"name": "a", "url": UP, "x1": 1, "x2": 2},
                                         {"name": "b", "url": UP, "timeout_ms": -1}))
        self.assertEqual(p.returncode, 1)
        self.assertIn("unknown key 'x1'", p.stderr)
        self.assertIn("unknown key 'x2'", p.stderr)
        self.assertIn("'timeout_ms' must be", p.stderr)
        self.assertIn(f"fanout: {path}: 3 errors", p.stderr)

    def test_serve_refuses_a_broken_file(self):
        path, _ = self.write(endpoint({"name": "a", "url": UP, "retires": 2}))
        p = subprocess.run([BIN, "serve", path, "--workers", "0", "--port", "0"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("unknown key 'retires'", p.stderr)
        p = subprocess.run([BIN, "serve", "--workers", "0"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 2)
        p = subprocess.run([BIN, "check", os.path.join(self.dir.name, "none.json")],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot read it", p.stderr)


if __name__ == "__main__":
    main()
