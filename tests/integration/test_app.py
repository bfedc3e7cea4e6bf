"""The application context over real sockets: the JSON configuration and
its environment overrides, signed-cookie sessions, before/after-request hooks
and error handlers, and the request and response helpers (testapp's /app/
routes, configured by tests/integration/app.json)."""
import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import harness
from harness import TESTAPP, request, testapp

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "app.json")
NEW_SECRET, OLD_SECRET = json.load(open(CONFIG))["session"]["secrets"]
COOKIE = "fanout_session"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(payload, expires, secret):
    """A session cookie value in the format docs/guide.md documents."""
    p = b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    e = b64(str(expires).encode())
    mac = hmac.new(secret.encode(), f"{p}.{e}".encode(), hashlib.sha256).digest()
    return f"{p}.{e}.{b64(mac)}"


def set_cookies(r):
    return [v for k, v in r.headers if k.lower() == "set-cookie"]


def session_cookie(r):
    """The value of the session's Set-Cookie, or None."""
    for c in set_cookies(r):
        name, _, rest = c.partition("=")
        if name == COOKIE:
            return rest.split(";")[0]
    return None


def get(port, path, headers=()):
    return request(port, "GET", path, headers=headers)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


class Config(unittest.TestCase):
    """A JSON file, FANOUT_* overrides, --set, and a server that refuses to
    start with a bad configuration."""

    def setUp(self):
        self.dir = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.dir)

    def serve(self, *args, env=None):
        srv = testapp(*args, env=env)
        self.addCleanup(srv.stop)
        return srv

    def refuse(self, text, env=None):
        """Starts testapp on a config file with `text`; asserts it exits 1 and
        returns (path, its log)."""
        path = os.path.join(self.dir, "bad.json")
        write(path, text)
        p = subprocess.run([TESTAPP, "--workers", "0", "--config", path, "--port", "0",
                            "--host", "127.0.0.1"], capture_output=True, text=True, timeout=60,
                           env={**os.environ, **(env or {})})
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertNotIn("listening on", p.stderr)
        return path, p.stderr

    def test_a_handler_reads_the_configuration_file_with_types(self):
        srv = self.serve("--config", CONFIG)
        j = get(srv.port, "/app/config").json()
        self.assertEqual(j["greeting"], "from the file")
        self.assertEqual(j["limit"], 42)
        self.assertEqual(j["limit_text"], "42")
        self.assertEqual(j["ratio"], 2.0)        # an integer is a fine double
        self.assertIs(j["debug"], False)         # the declared default
        self.assertEqual(j["tags"], ["a", "b"])

    def test_without_a_file_the_defaults_apply(self):
        srv = self.serve()
        j = get(srv.port, "/app/config").json()
        self.assertEqual((j["greeting"], j["limit"], j["ratio"], j["tags"]), ("hello", 10, 0.5, []))

    def test_an_environment_override_wins_over_the_file(self):
        srv = self.serve("--config", CONFIG, env={"FANOUT_APP_GREETING": "from the env",
                                                  "FANOUT_APP_LIMIT": "7",
                                                  "FANOUT_APP_DEBUG": "yes",
                                                  "FANOUT_APP_TAGS": '["x"]'})
        j = get(srv.port, "/app/config").json()
        self.assertEqual((j["greeting"], j["limit"], j["debug"], j["tags"]),
                         ("from the env", 7, True, ["x"]))
        self.assertEqual(j["ratio"], 2.0)  # not overridden: the file's

    def test_set_wins_over_the_environment_and_plain_settings_still_work(self):
        srv = self.serve("--config", CONFIG, "--set", "app.limit=9", "--set", "plain=as before",
                         env={"FANOUT_APP_LIMIT": "7"})
        j = get(srv.port, "/app/config").json()
        self.assertEqual((j["limit"], j["setting"]), (9, "as before"))

    def test_a_syntax_error_names_the_file_line_and_column(self):
        path, log = self.refuse('{\n  "app": {\n    "limit": 1,\n    "greeting": }\n}\n')
        self.assertIn(f"{path}:4:17: JSON syntax error:", log)

    def test_a_wrong_type_names_the_key_and_both_types(self):
        path, log = self.refuse('{"app": {"limit": "ten"}}')
        self.assertIn(f"{path}: key 'app.limit': expected integer, got string", log)

    def test_an_unknown_key_names_the_key_and_the_file(self):
        path, log = self.refuse('{"app": {"limt": 1}}')
        self.assertIn(f"{path}: unknown key 'app.limt' (not declared by the application)", log)

    def test_a_missing_file_is_refused(self):
        p = subprocess.run([TESTAPP, "--workers", "0", "--config", "/nonexistent/app.json"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("config file /nonexistent/app.json: cannot read it: No such file", p.stderr)

    def test_a_bad_environment_override_is_refused(self):
        _, log = self.refuse('{}', env={"FANOUT_APP_LIMIT": "many"})
        self.assertIn("environment variable FANOUT_APP_LIMIT (key 'app.limit'): expected "
                      "integer, got 'many'", log)

    def test_reload_applies_a_good_file_and_keeps_the_old_one_on_error(self):
        path = os.path.join(self.dir, "app.json")
        shutil.copy(CONFIG, path)
        srv = self.serve("--config", path)
        write(path, '{"app": {"greeting": "reloaded"}}')
        self.assertEqual(get(srv.port, "/app/reload").json()["rc"], "ok")
        self.assertEqual(get(srv.port, "/app/config").json()["greeting"], "reloaded")
        write(path, '{"app": {"greeting": "broken", "limit": true}}')
        j = get(srv.port, "/app/reload").json()
        self.assertEqual(j["rc"], "invalid")
        self.assertIn("key 'app.limit': expected integer, got boolean", j["error"])
        j = get(srv.port, "/app/config").json()
        self.assertEqual((j["greeting"], j["limit"]), ("reloaded", 10))


class Sessions(unittest.TestCase):
    """Signed-cookie sessions, with the secrets of app.json."""

    @classmethod
    def setUpClass(cls):
        cls.srv = testapp("--config", CONFIG)
        cls.port = cls.srv.port

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def session(self, query, cookie=None):
        headers = [("Cookie", f"{COOKIE}={cookie}")] if cookie else []
        return get(self.port, f"/app/session?{query}", headers)

    def test_a_write_sets_the_cookie_and_the_next_request_reads_it(self):
        r = self.session("op=set&key=user&value=alice")
        self.assertEqual(r.json(), {"rc": "ok", "value": "alice"})
        [header] = set_cookies(r)
        self.assertRegex(header, rf"^{COOKIE}=[\w-]+\.[\w-]+\.[\w-]+; Path=/; Max-Age=3600; "
                                 r"Secure; HttpOnly; SameSite=Lax$")
        r = self.session("key=user", session_cookie(r))
        self.assertEqual(r.json(), {"rc": "ok", "value": "alice"})

    def test_a_max_age_of_the_largest_integer_still_gives_a_session_that_reads_back(self):
        # now + max_age overflows a 64-bit integer: the expiry is cut to the
        # latest a cookie can carry instead of wrapping (undefined behaviour,
        # then a negative expiry that no request would accept).
        srv = testapp("--config", CONFIG, "--set", f"session.max_age={2**63 - 1}")
        try:
            r = get(srv.port, "/app/session?op=set&key=user&value=alice")
            self.assertEqual(r.json(), {"rc": "ok", "value": "alice"})
            cookie = session_cookie(r)
            r = get(srv.port, "/app/session?key=user", [("Cookie", f"{COOKIE}={cookie}")])
            self.assertEqual(r.json(), {"rc": "ok", "value": "alice"})
        finally:
            srv.stop()

    def test_reading_the_session_sends_no_cookie(self):
        cookie = session_cookie(self.session("op=set&key=a&value=1"))
        r = self.session("key=a", cookie)
        self.assertEqual(r.json()["value"], "1")
        self.assertEqual(set_cookies(r), [])

    def test_the_cookie_is_signed_in_the_documented_format(self):
        cookie = session_cookie(self.session("op=set&key=user&value=bob"))
        p, e, mac = cookie.split(".")
        pad = lambda s: s + "=" * (-len(s) % 4)
        self.assertEqual(json.loads(base64.urlsafe_b64decode(pad(p))), {"user": "bob"})
        expires = int(base64.urlsafe_b64decode(pad(e)))
        self.assertAlmostEqual(expires, time.time() + 3600, delta=60)
        want = hmac.new(NEW_SECRET.encode(), f"{p}.{e}".encode(), hashlib.sha256).digest()
        self.assertEqual(b64(want), mac)

    def test_a_tampered_cookie_gives_an_empty_session_and_a_warning(self):
        cookie = sign({"user": "alice"}, int(time.time()) + 600, NEW_SECRET)
        forged = b64(b'{"user":"admin"}') + cookie[cookie.index("."):]
        r = self.session("key=user", forged)
        self.assertEqual((r.status, r.json()["value"]), (200, None))
        self.srv.wait_log(r"warn .*GET /app/session: session cookie ignored: bad signature")

    def test_an_expired_cookie_gives_an_empty_session(self):
        r = self.session("key=user", sign({"user": "alice"}, int(time.time()) - 1, NEW_SECRET))
        self.assertEqual((r.status, r.json()["value"]), (200, None))
        self.srv.wait_log(r"session cookie ignored: expired")

    def test_an_oversized_cookie_gives_an_empty_session(self):
        big = sign({"user": "x" * 5000}, int(time.time()) + 600, NEW_SECRET)
        r = self.session("key=user", big)
        self.assertEqual((r.status, r.json()["value"]), (200, None))
        self.srv.wait_log(r"session cookie ignored: larger than session.max_size")

    def test_a_cookie_signed_with_the_old_secret_still_verifies(self):
        r = self.session("key=user", sign({"user": "carol"}, int(time.time()) + 600, OLD_SECRET))
        self.assertEqual(r.json()["value"], "carol")

    def test_a_cookie_signed_with_an_unknown_secret_does_not(self):
        r = self.session("key=user", sign({"user": "eve"}, int(time.time()) + 600, "guess"))
        self.assertIsNone(r.json()["value"])

    def test_a_write_too_large_for_a_cookie_fails_and_changes_nothing(self):
        cookie = session_cookie(self.session("op=set&key=big&value=small"))
        r = self.session("op=set&key=big&size=5000", cookie)
        self.assertEqual(r.json(), {"rc": "too_large", "value": "small"})
        self.assertEqual(set_cookies(r), [])

    def test_delete_and_clear(self):
        cookie = session_cookie(self.session("op=set&key=a&value=1"))
        cookie = session_cookie(self.session("op=set&key=b&value=2", cookie))
        r = self.session("op=delete&key=a", cookie)
        self.assertEqual(r.json()["value"], None)
        r = self.session("key=b", session_cookie(r))
        self.assertEqual(r.json()["value"], "2")
        r = self.session("op=clear&key=b", cookie)
        [header] = set_cookies(r)
        self.assertTrue(header.startswith(f"{COOKIE}=; Path=/; Max-Age=0;"), header)

    def test_a_child_task_reads_config_and_session_and_writes_the_session(self):
        cookie = session_cookie(self.session("op=set&key=user&value=alice"))
        r = get(self.port, "/app/session_task", [("Cookie", f"{COOKIE}={cookie}")])
        self.assertEqual(r.json()["rc"], "ok")
        # The task's write lands in this response's cookie.
        r = self.session("key=from", session_cookie(r))
        greeting = get(self.port, "/app/config").json()["greeting"]
        self.assertEqual(r.json()["value"], f"task:{greeting}:alice")

    def test_deleting_an_absent_key_sends_no_cookie(self):
        self.assertEqual(set_cookies(self.session("op=delete&key=nothing")), [])


class Hooks(unittest.TestCase):
    """Before/after-request hooks and error handlers, and the helpers."""

    @classmethod
    def setUpClass(cls):
        cls.srv = testapp("--config", CONFIG)
        cls.port = cls.srv.port

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_a_before_hook_answers_401_and_the_handler_does_not_run(self):
        r = get(self.port, "/app/private/data")
        self.assertEqual(r.status, 401)
        r = get(self.port, "/app/private/data", [("X-Token", "t"), ("X-Hook-Sleep", "1")])
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["runs"], 1)  # only the authorised request ran it

    def test_hooks_handler_and_error_handler_run_in_the_documented_order(self):
        r = get(self.port, "/app/order")
        self.assertEqual(r.header("X-Hook-Order"), "before1,before2,handler,after1,after2")
        r = get(self.port, "/app/private/data")  # the first hook answers: nothing else runs
        self.assertEqual(r.header("X-Hook-Order"), "before1,after1,after2")
        r = get(self.port, "/app/nothing")       # no route: no before-request hooks
        self.assertEqual(r.header("X-Hook-Order"), "error,after1,after2")

    def test_an_after_hook_adds_a_header_and_can_change_the_status(self):
        r = get(self.port, "/app/config")
        self.assertEqual((r.status, r.header("X-App-After")), (200, "200"))
        r = get(self.port, "/app/config?after_status=202")
        self.assertEqual((r.status, r.header("X-App-After")), (202, "200"))

    def test_an_error_handler_replaces_the_routers_404(self):
        r = get(self.port, "/app/nothing")
        self.assertEqual(r.status, 404)
        self.assertTrue(r.body.startswith(b"custom 404 for /app/nothing (was {"), r.body)
        self.assertEqual(r.header("X-App-After"), "404")  # after-request hooks see it
        r = get(self.port, "/nothing")                    # the handler left this one
        self.assertEqual(r.json()["status"], 404)

    def test_an_error_handler_replaces_the_500_of_a_handler_without_reply(self):
        r = get(self.port, "/app/noreply")
        self.assertEqual(r.status, 500)
        self.assertIn(b"custom 500 for /app/noreply", r.body)

    def test_the_fallback_error_handler_sees_other_statuses(self):
        r = get(self.port, "/app/teapot")
        self.assertEqual(r.status, 418)
        self.assertIn(b"custom 418", r.body)

    def test_cookies_are_read_by_name(self):
        r = get(self.port, "/app/cookie?name=b", [("Cookie", 'a=1; b="two" ;c=3')])
        self.assertEqual(r.json()["value"], "two")
        r = get(self.port, "/app/cookie?name=z", [("Cookie", "a=1")])
        self.assertIsNone(r.json()["value"])

    def test_urlencoded_form_fields(self):
        form = [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")]
        r = request(self.port, "POST", "/app/form", form, b"name=J%C3%B6rg+M&empty")
        self.assertEqual(r.json(), {"name": "J\u00f6rg M", "empty": "", "missing": None})
        r = request(self.port, "POST", "/app/form", [("Content-Type", "text/plain")], b"name=x")
        self.assertIsNone(r.json()["name"])

    def test_a_json_body(self):
        r = request(self.port, "POST", "/app/json", [("Content-Type", "application/json")],
                    b'{"a": [1, 2]}')
        self.assertEqual((r.status, r.json()), (200, {"got": {"a": [1, 2]}}))

    def test_a_malformed_json_body_gets_400_saying_where(self):
        r = request(self.port, "POST", "/app/json", [("Content-Type", "application/json")],
                    b'{"a": 1,\n "b": }')
        self.assertEqual(r.status, 400)
        j = r.json()
        self.assertEqual((j["status"], j["line"]), (400, 2))
        self.assertGreater(j["column"], 0)
        self.assertRegex(j["error"], r"^malformed JSON body: .* at line 2, column \d+$")

    def test_an_empty_or_mistyped_json_body_is_refused(self):
        r = request(self.port, "POST", "/app/json", [("Content-Length", "0")])
        self.assertEqual((r.status, r.json()["error"]), (400, "a JSON body is required"))
        r = request(self.port, "POST", "/app/json", [("Content-Type", "text/plain")], b"{}")
        self.assertEqual(r.status, 415)

    def test_redirect(self):
        r = get(self.port, "/app/redirect?to=/target%3Fa%3D1&status=303")
        self.assertEqual((r.status, r.header("Location")), (303, "/target?a=1"))
        self.assertEqual(get(self.port, "/app/redirect?to=/x&status=200").json()["rc"], "invalid")

    def test_header_injection_is_rejected(self):
        r = get(self.port, "/app/redirect?to=/x%0D%0AX-Evil:%201")
        self.assertEqual((r.status, r.json()["rc"]), (400, "invalid"))
        self.assertIsNone(r.header("X-Evil"))
        r = get(self.port, "/app/setcookie?name=a&value=b&path=/%0D%0AX-Evil:%201")
        self.assertEqual(r.json()["rc"], "invalid")
        self.assertEqual(set_cookies(r), [])
        r = get(self.port, "/app/setcookie?name=a&value=b%3Bc")
        self.assertEqual(r.json()["rc"], "invalid")
        # A header name must be a token: no separators, spaces or bytes >= 0x80.
        for name in ("a(b", "a%20b", "X-A:", "%C3%A9t%C3%A9", "", "a%0D%0AX-Evil"):
            r = get(self.port, f"/app/setheader?name={name}&value=v")
            self.assertEqual(r.json()["rc"], "invalid", name)
        r = get(self.port, "/app/setheader?name=X-Ok!~&value=a%09b%20c")
        self.assertEqual((r.json()["rc"], r.header("X-Ok!~")), ("ok", "a\tb c"))

    def test_set_cookie_attributes(self):
        r = get(self.port, "/app/setcookie?name=k&value=v&path=/p&domain=example.com&max_age=60"
                           "&secure=1&httponly=1&samesite=strict")
        self.assertEqual(r.json()["rc"], "ok")
        self.assertEqual(set_cookies(r), ["k=v; Path=/p; Domain=example.com; Max-Age=60; Secure; "
                                          "HttpOnly; SameSite=Strict"])


if __name__ == "__main__":
    harness.main()
