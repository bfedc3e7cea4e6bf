"""Sessions kept in Redis (session.store "redis") and the rate limiter
(ratelimit.*), on one instance against a real redis-server: what the
cookie holds, the hash and its TTL, logging out, forged cookies, 429 with
Retry-After, keys by header, and the declared policies when Redis is down."""
import base64
import os
import time
import unittest
import urllib.parse

import harness
import redisd

REDISAPP = os.environ.get("FANOUT_REDISAPP", "build/tests/redisapp")
SECRETS = 'session.secrets=["s3cr3t-for-tests"]'


def app(redis, *args):
    return harness.Server([REDISAPP, "--workers", "0", "--redis", redis.url(),
                           "--set", "redis.prefix=tiers:", "--set", SECRETS,
                           "--set", "redis.backoff_max_ms=100", *args], "redisapp")


def cookie_of(resp):
    v = resp.header("Set-Cookie")
    return v.split(";", 1)[0] if v else None


def get(port, path, cookie=None, headers=()):
    h = list(headers) + ([("Cookie", cookie)] if cookie else [])
    return harness.request(port, "GET", path, headers=h)


def q(**kw):
    return urllib.parse.urlencode(kw)


class RedisSessions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = redisd.Redis()
        cls.app = app(cls.redis, "--set", "session.store=redis", "--set", "session.max_age=600",
                      "--set", "session.redis_down=503")

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()
        cls.redis.close()

    def login(self, value="ann"):
        r = get(self.app.port, "/session/set?" + q(key="user", value=value))
        self.assertEqual(r.status, 200, r.body)
        return cookie_of(r)

    def test_the_cookie_holds_a_signed_random_id_and_the_values_are_a_hash_with_a_ttl(self):
        cookie = self.login("ann-secret-value")
        name, value = cookie.split("=", 1)
        self.assertEqual(name, "fanout_session")
        payload = base64.urlsafe_b64decode(value.split(".")[0] + "==").decode()
        self.assertEqual(len(base64.urlsafe_b64decode(payload + "=")), 20)  # 160 bits
        self.assertNotIn("ann", value)
        key = f"tiers:session:{payload}"
        self.assertEqual(self.redis.command("HGET", key, "user"), b"ann-secret-value")
        self.assertTrue(590 <= self.redis.command("TTL", key) <= 600)
        r = get(self.app.port, "/session/get?key=user", cookie)
        self.assertEqual(r.json()["value"], "ann-secret-value")
        self.assertIsNone(r.header("Set-Cookie"))  # reading changes nothing
        # Two sessions never share an id.
        self.assertNotEqual(self.login(), cookie)

    def test_logging_out_deletes_the_hash_and_the_cookie(self):
        cookie = self.login()
        payload = base64.urlsafe_b64decode(cookie.split("=", 1)[1].split(".")[0] + "==").decode()
        r = get(self.app.port, "/session/clear", cookie)
        self.assertEqual(r.status, 200)
        self.assertIn("Max-Age=0", r.header("Set-Cookie"))
        self.assertEqual(self.redis.command("EXISTS", f"tiers:session:{payload}"), 0)
        # The old cookie, replayed, finds nothing.
        self.assertIsNone(get(self.app.port, "/session/get?key=user", cookie).json()["value"])

    def test_a_forged_cookie_is_an_empty_session_with_a_warning(self):
        cookie = self.login()
        name, value = cookie.split("=", 1)
        parts = value.split(".")
        forged = base64.urlsafe_b64encode(b"A" * 27).decode().rstrip("=")
        r = get(self.app.port, "/session/get?key=user", f"{name}={forged}.{parts[1]}.{parts[2]}")
        self.assertIsNone(r.json()["value"])
        self.app.wait_log(r"session cookie ignored: .*signature")

    def test_redis_down_answers_503_to_a_request_with_a_session_and_serves_the_others(self):
        cookie = self.login()
        self.redis.stop()
        try:
            r = get(self.app.port, "/session/get?key=user", cookie)
            self.assertEqual(r.status, 503)
            self.assertEqual(r.json()["error"], "session store unavailable")
            self.app.wait_log(r"sessions unavailable \(reading it in Redis: .*answered 503")
            self.assertEqual(get(self.app.port, "/session/get?key=user").status, 200)
            # Writing a new session fails: the handler is told.
            self.assertEqual(get(self.app.port, "/session/set?" + q(key="a", value="b")).status,
                             500)
        finally:
            self.redis.start()
        deadline = time.monotonic() + 5
        while get(self.app.port, "/session/get?key=user", cookie).status != 200:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        # Redis restarted empty: the session is gone, the request is served.
        self.assertIsNone(get(self.app.port, "/session/get?key=user", cookie).json()["value"])


class RedisSessionsDownPolicyNone(unittest.TestCase):
    def test_redis_down_with_policy_none_serves_the_request_without_a_session(self):
        redis = redisd.Redis()
        a = app(redis, "--set", "session.store=redis", "--set", "session.redis_down=none")
        try:
            cookie = cookie_of(get(a.port, "/session/set?" + q(key="user", value="bo")))
            self.assertEqual(get(a.port, "/session/get?key=user", cookie).json()["value"], "bo")
            redis.stop()
            r = get(a.port, "/session/get?key=user", cookie)
            self.assertEqual(r.status, 200)
            self.assertIsNone(r.json()["value"])
            a.wait_log(r"sessions unavailable .*served without a session")
        finally:
            a.stop()
            redis.close()


class RateLimit(unittest.TestCase):
    def setUp(self):
        self.redis = redisd.Redis()
        self.apps = []

    def tearDown(self):
        for a in self.apps:
            a.stop()
        self.redis.close()

    def start(self, *args):
        a = app(self.redis, "--set", "ratelimit.rate=0.5", "--set", "ratelimit.burst=3",
                "--set", 'ratelimit.paths=["/api/"]', *args)
        self.apps.append(a)
        return a

    def test_beyond_the_burst_the_answer_is_429_with_json_and_retry_after(self):
        a = self.start()
        self.assertEqual([get(a.port, "/api/ping").status for _ in range(3)], [200] * 3)
        r = get(a.port, "/api/ping")
        self.assertEqual(r.status, 429)
        j = r.json()
        self.assertEqual(j["error"], "rate limit exceeded")
        self.assertEqual(r.header("Retry-After"), str(j["retry_after"]))
        self.assertIn(j["retry_after"], (1, 2))  # 0.5 tokens/s: one in 2 s at most
        self.assertEqual(get(a.port, "/health").status, 200)  # outside ratelimit.paths
        keys = self.redis.command("KEYS", "tiers:rl:*")
        self.assertEqual(keys, [b"tiers:rl:addr:127.0.0.1"])

    def test_a_header_key_gives_each_client_its_own_bucket(self):
        a = self.start("--set", "ratelimit.key=header:X-Api-Key")
        for key in ("alice", "bob"):
            h = [("X-Api-Key", key)]
            self.assertEqual([get(a.port, "/api/ping", headers=h).status for _ in range(4)],
                             [200, 200, 200, 429])

    def test_redis_down_policies_deny_allow_and_local(self):
        deny = self.start("--set", "ratelimit.redis_down=deny")
        allow = self.start("--set", "ratelimit.redis_down=allow")
        local = self.start("--set", "ratelimit.redis_down=local")
        self.redis.stop()
        r = get(deny.port, "/api/ping")
        self.assertEqual(r.status, 503)
        self.assertEqual(r.json()["error"], "rate limiter unavailable")
        self.assertEqual([get(allow.port, "/api/ping").status for _ in range(5)], [200] * 5)
        self.assertEqual([get(local.port, "/api/ping").status for _ in range(4)],
                         [200, 200, 200, 429])
        for a, policy in ((deny, "deny"), (allow, "allow"), (local, "local")):
            a.wait_log(rf'rate limit: Redis failed .*ratelimit.redis_down is "{policy}"')
        # Redis back: the shared bucket again (a new Redis: a full one).
        self.redis.start()
        deadline = time.monotonic() + 5
        while get(deny.port, "/api/ping").status != 200:
            self.assertLess(time.monotonic(), deadline, deny.log())
            time.sleep(0.05)


if __name__ == "__main__":
    harness.main()
