"""The Redis client on the worker's loop, against a real redis-server:
commands from handlers and tasks, the key prefix, AUTH and SELECT from the
URL (the password never in the log), cancellation (a cancelled waiter never
gets a late reply), command and connect timeouts, the bound on commands in
flight, and reconnecting with backoff after Redis went away."""
import os
import socket
import threading
import time
import unittest
import urllib.parse

import harness
import redisd

REDISAPP = os.environ.get("FANOUT_REDISAPP", "build/tests/redisapp")


def app(*args):
    return harness.Server([REDISAPP, "--workers", "0", *args], "redisapp")


def cmd(port, words, timeout=30):
    q = urllib.parse.urlencode({"args": words})
    return harness.get_json(port, f"/redis/cmd?{q}", timeout=timeout)[1]


class RedisClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = redisd.Redis()
        cls.app = app("--redis", cls.redis.url(), "--set", "redis.prefix=t1:",
                      "--set", "redis.command_timeout_ms=5000")

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()
        cls.redis.close()

    def test_a_handler_sets_and_gets_a_key_under_the_prefix(self):
        self.assertEqual(cmd(self.app.port, "SET @greeting hello")["reply"], "OK")
        self.assertEqual(cmd(self.app.port, "GET @greeting")["reply"], "hello")
        self.assertEqual(self.redis.command("GET", "t1:greeting"), b"hello")
        self.assertIsNone(self.redis.command("GET", "greeting"))

    def test_replies_of_every_kind_come_back(self):
        cmd(self.app.port, "DEL @list")
        self.assertEqual(cmd(self.app.port, "RPUSH @list a b c")["reply"], 3)
        self.assertEqual(cmd(self.app.port, "LRANGE @list 0 -1")["reply"], ["a", "b", "c"])
        self.assertIsNone(cmd(self.app.port, "GET @missing")["reply"])
        err = cmd(self.app.port, "INCR @list")
        self.assertEqual(err["rc"], "ok")
        self.assertIn("WRONGTYPE", err["reply"]["error"])

    def test_a_cancelled_waiter_never_receives_the_late_reply(self):
        # The BLPOP blocks the connection for 1 s; its task is cancelled
        # after 100 ms. A value pushed meanwhile from another connection is
        # popped by Redis, and its reply reaches nobody: the handler's GET,
        # queued behind it, gets its own reply.
        self.redis.command("SET", "t1:mine", "the-get-reply")
        self.redis.command("DEL", "t1:q")

        def push_later():
            time.sleep(0.4)
            self.redis.command("RPUSH", "t1:q", "late-reply")

        pusher = threading.Thread(target=push_later)
        pusher.start()
        _, j = harness.get_json(self.app.port,
                                "/redis/cancel?key=q&block_s=1&cancel_ms=100&get=mine")
        pusher.join()
        self.assertEqual(j["blpop"], "cancelled")
        self.assertIsNone(j["blpop_reply"])
        self.assertEqual(j["get_rc"], "ok")
        self.assertEqual(j["get"], "the-get-reply")
        self.assertEqual(self.redis.command("LLEN", "t1:q"), 0)  # Redis did pop it
        # And the connection is still in order for later commands.
        self.assertEqual(cmd(self.app.port, "GET @mine")["reply"], "the-get-reply")

    def test_a_client_that_leaves_cancels_its_command_and_the_worker_goes_on(self):
        self.redis.command("DEL", "t1:q2")
        s = harness.connect(self.app.port)
        s.sendall(b"GET /redis/cmd?args=BLPOP%20%40q2%201 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        s.close()
        time.sleep(0.1)
        self.redis.command("RPUSH", "t1:q2", "nobody")
        self.assertEqual(cmd(self.app.port, "PING")["reply"], "PONG")
        self.assertEqual(cmd(self.app.port, "ECHO x")["reply"], "x")


class RedisConnection(unittest.TestCase):
    def setUp(self):
        self.redis = None

    def tearDown(self):
        if self.redis:
            self.redis.close()

    def test_user_password_and_database_come_from_the_url_and_the_password_is_never_logged(self):
        self.redis = redisd.Redis("--user", "svc", "on", ">s3cret-pw", "~*", "+@all",
                                  "--user", "default", "off", auth=("svc", "s3cret-pw"))
        a = app("--redis", self.redis.url("svc", "s3cret-pw", db=3), "--set", "redis.prefix=")
        try:
            self.assertEqual(cmd(a.port, "SET k in-db-3")["reply"], "OK")
            a.wait_log(r"redis redis://svc:\*\*\*@127\.0\.0\.1:\d+/3: connected")
        finally:
            a.stop()
        with socket.create_connection(("127.0.0.1", self.redis.port)) as s:
            f = s.makefile("rb")
            s.sendall(redisd.encode(("AUTH", "svc", "s3cret-pw")) + redisd.encode(("SELECT", "3"))
                      + redisd.encode(("GET", "k")))
            redisd.read_reply(f), redisd.read_reply(f)
            self.assertEqual(redisd.read_reply(f), b"in-db-3")
        # A wrong password: refused, said in the log, the password in it never.
        b = app("--redis", self.redis.url("svc", "wrong-pw"), "--log-level", "debug")
        try:
            self.assertEqual(cmd(b.port, "PING")["rc"], "refused")
            b.wait_log(r"redis redis://svc:\*\*\*@.*cannot connect.*(WRONGPASS|invalid)")
        finally:
            b.stop()
        for server in (a, b):
            self.assertNotIn("s3cret-pw", server.log())
            self.assertNotIn("wrong-pw", server.log())

    def test_a_host_name_is_looked_up_and_the_first_commands_wait_for_the_connection(self):
        self.redis = redisd.Redis()
        a = app("--redis", f"redis://localhost:{self.redis.port}/2")
        try:
            # Four at once on a new connection: all wait for the lookup and
            # the connect, then go in order.
            socks = []
            for i in range(4):
                s = harness.connect(a.port)
                s.sendall(f"GET /redis/cmd?args=RPUSH%20%40order%20{i} HTTP/1.1\r\nHost: x\r\n\r\n"
                          .encode())
                socks.append(s)
            for s in socks:
                self.assertEqual(harness.Reader(s).read().json()["rc"], "ok")
                s.close()
            self.assertEqual(sorted(self.redis.command("LRANGE", "fanout:order", "0", "-1", db=2)),
                             [b"0", b"1", b"2", b"3"])
            a.wait_log(r"redis redis://localhost:\d+/2: connected")
        finally:
            a.stop()

    def test_a_bad_url_is_refused_at_start(self):
        import subprocess
        p = subprocess.run([REDISAPP, "--workers", "0", "--redis", "http://x"],
                           capture_output=True, text=True, timeout=10)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("--redis: expected redis://", p.stderr)

    def test_a_command_not_answered_in_time_fails_and_redis_back_is_used_again(self):
        self.redis = redisd.Redis()
        a = app("--redis", self.redis.url(), "--set", "redis.command_timeout_ms=300",
                "--set", "redis.backoff_max_ms=200")
        try:
            self.assertEqual(cmd(a.port, "PING")["reply"], "PONG")
            self.redis.pause()
            t0 = time.monotonic()
            self.assertEqual(cmd(a.port, "PING")["rc"], "timeout")
            took = time.monotonic() - t0
            # Down: the next commands fail at once until the backoff passed.
            t1 = time.monotonic()
            self.assertIn(cmd(a.port, "PING")["rc"], ("refused", "timeout"))
            self.assertLess(time.monotonic() - t1, took)
            a.wait_log(r"redis .*connection lost \(a command was not answered in time\)")
            self.redis.resume()
            deadline = time.monotonic() + 5
            while cmd(a.port, "PING")["rc"] != "ok":
                self.assertLess(time.monotonic(), deadline, a.log())
                time.sleep(0.05)
            a.wait_log(r"redis .*: connected again")
        finally:
            a.stop()

    def test_redis_killed_fails_fast_and_a_new_redis_on_the_port_is_found(self):
        self.redis = redisd.Redis()
        a = app("--redis", self.redis.url(), "--set", "redis.backoff_max_ms=200")
        try:
            self.assertEqual(cmd(a.port, "SET @k 1")["reply"], "OK")
            self.redis.stop()
            rcs = [cmd(a.port, "GET @k")["rc"] for _ in range(5)]
            self.assertTrue(all(rc in ("refused", "io") for rc in rcs), rcs)
            self.redis.start()
            deadline = time.monotonic() + 5
            while cmd(a.port, "SET @k 2")["rc"] != "ok":
                self.assertLess(time.monotonic(), deadline, a.log())
                time.sleep(0.05)
            self.assertEqual(cmd(a.port, "GET @k")["reply"], "2")
        finally:
            a.stop()

    def test_a_redis_that_accepts_and_never_answers_is_a_connect_timeout(self):
        mute = socket.socket()
        mute.bind(("127.0.0.1", 0))
        mute.listen(16)
        port = mute.getsockname()[1]
        a = app("--redis", f"redis://127.0.0.1:{port}", "--set", "redis.connect_timeout_ms=200",
                "--set", "redis.command_timeout_ms=10000")
        try:
            t0 = time.monotonic()
            self.assertEqual(cmd(a.port, "PING")["rc"], "timeout")
            # The connect's 200 ms, not the command's 10 s.
            self.assertLess((time.monotonic() - t0) / 10.0, 0.5)
            a.wait_log(r"cannot connect \(connect timed out\)")
        finally:
            a.stop()
            mute.close()

    def test_commands_beyond_max_in_flight_are_refused_at_once(self):
        self.redis = redisd.Redis()
        a = app("--redis", self.redis.url(), "--set", "redis.max_in_flight=2",
                "--set", "redis.command_timeout_ms=10000")
        try:
            self.redis.command("DEL", "fanout:w")
            self.assertEqual(cmd(a.port, "PING")["reply"], "PONG")
            socks = []
            for _ in range(2):
                s = harness.connect(a.port)
                s.sendall(b"GET /redis/cmd?args=BLPOP%20%40w%202 HTTP/1.1\r\nHost: x\r\n\r\n")
                socks.append(s)
            time.sleep(0.3)
            t0 = time.monotonic()
            self.assertEqual(cmd(a.port, "PING")["rc"], "busy")
            # At once: not after the 2 s the commands in flight block for.
            self.assertLess((time.monotonic() - t0) / 2.0, 0.5)
            self.redis.command("RPUSH", "fanout:w", "1", "2")
            for s in socks:
                r = harness.Reader(s).read()
                self.assertEqual(r.status, 200)
                s.close()
            self.assertEqual(cmd(a.port, "PING")["reply"], "PONG")
        finally:
            a.stop()


if __name__ == "__main__":
    harness.main()
