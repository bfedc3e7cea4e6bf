"""What Redis adds per request: one instance of the Redis tests' app
(--workers 0) and a local redis-server, wrk -t1 -c32 for 5 s against a
route with no Redis, the same route behind the rate limiter (one EVAL), and
a session read (one HGETALL); prints requests per second and the CPU
microseconds per request of fanout and of redis-server (from /proc), two
runs each. Loopback only, bounded in time.

usage: python3 bench/redis_cost.py [BUILD_DIR]   (default build)"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness  # noqa: E402
import redisd  # noqa: E402

BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "build")
APP = os.path.join(BUILD, "tests", "redisapp")


def cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().split(")")[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def run(redis, args, path, with_session):
    s = harness.Server([APP, "--workers", "0", "--access-log", "off", "--redis", redis.url(),
                        "--set", 'session.secrets=["bench"]', "--set", "session.store=redis",
                        *args], "redisapp")
    cmd = ["wrk", "-t1", "-c32", "-d5s", f"http://127.0.0.1:{s.port}{path}"]
    if with_session:
        r = harness.request(s.port, "GET", "/session/set?key=user&value=ann")
        cmd += ["-H", "Cookie: " + r.header("Set-Cookie").split(";")[0]]
    f0, r0 = cpu_s(s.proc.pid), cpu_s(redis.proc.pid)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    f1, r1 = cpu_s(s.proc.pid), cpu_s(redis.proc.pid)
    s.stop()
    n = int(re.search(r"(\d+) requests in", out).group(1))
    return n / 5, (f1 - f0) / n * 1e6, (r1 - r0) / n * 1e6


def main():
    redis = redisd.Redis()
    try:
        print("| request | req/s | fanout CPU µs | redis-server CPU µs |")
        print("|---|---|---|---|")
        for name, args, path, sess in [
                ("no Redis", [], "/api/ping", False),
                ("rate limiter (EVAL)", ["--set", "ratelimit.rate=1e9",
                                         "--set", "ratelimit.burst=1000000000"], "/api/ping", False),
                ("session read (HGETALL)", [], "/session/get?key=user", True)]:
            for _ in range(2):
                rps, f, r = run(redis, args, path, sess)
                print(f"| {name} | {rps:,.0f} | {f:.1f} | {r:.1f} |")
    finally:
        redis.close()


if __name__ == "__main__":
    main()
