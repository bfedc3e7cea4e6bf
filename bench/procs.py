"""Server processes started by the harness, and their cost read from /proc.

Every server is a bench/<kind>/<name>/run.sh started in a new session, so
its process group (pgid == its pid) holds all its processes: that group is
what gets measured and what gets killed.
"""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
_live = {}  # pgid -> Server, to kill on any exit

# urllib must never go through a proxy: all traffic stays on 127.0.0.1.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerError(Exception):
    """A server could not start, answer or survive; the message says why."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5.0):
    """(status, body bytes, content type, seconds) of one GET; status 0 if no answer."""
    start = time.monotonic()
    try:
        with _opener.open(url, timeout=timeout) as r:
            body, status, ctype = r.read(), r.status, r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        body, status, ctype = e.read(), e.code, e.headers.get("Content-Type", "")
    except (OSError, ValueError):
        return 0, b"", "", time.monotonic() - start
    return status, body, ctype, time.monotonic() - start


def get_json(url, timeout=5.0):
    status, body, ctype, secs = http_get(url, timeout)
    try:
        return status, json.loads(body), ctype, secs
    except ValueError:
        return status, None, ctype, secs


def group_stats(pgid):
    """(CPU seconds, RSS bytes, user CPU seconds) summed over the live
    processes of a group; CPU is user + kernel (utime + stime)."""
    user = kernel = rss = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[2]) == pgid:  # fields[0] is stat's 3rd field (state)
            user += int(fields[11])  # utime
            kernel += int(fields[12])  # stime
            rss += int(fields[21])
    return (user + kernel) / CLK_TCK, rss * PAGE, user / CLK_TCK


def child_env(**extra):
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Server:
    """One running server: bench/<kind>/<name>/run.sh on a free port."""

    def __init__(self, kind, name, tmp, **env):
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = os.path.join(tmp, f"{kind}-{name}-{self.port}")
        os.makedirs(self.dir)
        self.log = os.path.join(self.dir, "server.log")
        script = os.path.join(HERE, kind, name, "run.sh")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["bash", script], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, cwd=self.dir,
                env=child_env(PORT=self.port, BENCH_TMP=self.dir, REPO=REPO, **env))
        _live[self.proc.pid] = self

    def wait_ready(self, probe, timeout):
        """Poll until the server answers any HTTP status on probe."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if http_get(self.url + probe, timeout=1.0)[0]:
                return self
            time.sleep(0.1)
        raise ServerError(f"no answer within {timeout:.0f} s; {self.log_tail()}")

    def check_alive(self):
        code = self.proc.poll()
        if code is not None:
            raise ServerError(f"exited with code {code}: {self.log_tail()}")

    def log_tail(self):
        with open(self.log, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
        return lines[-1][:300] if lines else "(no output)"

    def stats(self):
        """(CPU seconds, RSS bytes, user CPU seconds) of the whole group."""
        return group_stats(self.proc.pid)

    def wait_idle(self, quiet=0.5, timeout=60):
        """Waits until the group spends no CPU for `quiet` seconds (a load
        leaves queues, timers and pools settling behind it); returns the
        seconds waited, or None if it was still busy after `timeout`."""
        start = time.monotonic()
        last, since = self.stats()[0], start
        while time.monotonic() - start < timeout:
            time.sleep(0.1)
            self.check_alive()
            now, cpu = time.monotonic(), self.stats()[0]
            if cpu != last:
                last, since = cpu, now
            elif now - since >= quiet:
                return now - start
        return None

    def stop(self):
        """Kill the whole group: benchmark servers need no graceful shutdown."""
        _live.pop(self.proc.pid, None)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def stop_all():
    for server in list(_live.values()):
        server.stop()
