"""A real redis-server for the tests: started on a free loopback port in a
temporary directory, stopped (and its directory removed) at the end; and a
small RESP client to look at it from the side."""
import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

# Every process the tests start, stopped at exit whatever happened (a
# setUpClass that failed runs no tearDownClass).
_started = []


@atexit.register
def _stop_all():
    for p in _started:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait()


def spawn(argv):
    """Popen(argv) with no output, stopped at exit if still running."""
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _started.append(p)
    return p


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Redis:
    """redis-server on 127.0.0.1:port, with no persistence. `args` are more
    redis-server options (e.g. "--requirepass", "pw")."""

    def __init__(self, *args, port=None, auth=None):
        """auth: the (user, password) or (password,) that command() sends."""
        self.port = port or free_port()
        self.auth = auth
        self.args = list(args)
        self.dir = tempfile.mkdtemp(prefix="fanout-redis-")
        self.proc = None
        self.start()

    def start(self):
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir,
                "--logfile", os.path.join(self.dir, "redis.log"), *self.args]
        self.proc = spawn(argv)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.command("PING") in ("PONG", b"PONG"):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def url(self, user="", password=None, db=0):
        auth = ""
        if user or password:
            auth = f"{user}{':' + password if password else ''}@"
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def command(self, *args, db=0):
        """Sends one command on a new connection; returns its reply (bytes,
        int, list, None), or raises RuntimeError for an error reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            f = s.makefile("rb")
            pre = []
            if self.auth:
                pre.append(("AUTH", *self.auth))
            if db:
                pre.append(("SELECT", str(db)))
            for cmd in pre + [args]:
                s.sendall(encode(cmd))
            for _ in pre:
                read_reply(f)
            r = read_reply(f)
            return r.decode() if isinstance(r, bytes) and args[0] == "PING" else r

    def pause(self):
        """SIGSTOP: Redis keeps its connections but answers nothing."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def read_reply(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [read_reply(f) for _ in range(n)]
    raise OSError(f"bad reply {line!r}")
