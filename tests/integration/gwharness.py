"""Gateway tests' set-up: a mock upstream, a gateway file written for its
port, and `fanout serve` on it."""
import json
import os
import tempfile
import time
import unittest

from harness import BIN, Server, get_json, mock, request


def serve(path, *args):
    """`fanout serve PATH ARGS`, or with a None in ARGS, the path there
    (`fanout serve --config PATH ...`)."""
    args = args or ("--workers", "0")
    argv = [path if a is None else a for a in args] if None in args else [path, *args]
    return Server([BIN, "serve", *argv], "gateway")


class GatewayCase(unittest.TestCase):
    """cls.mock, cls.gw (serving cls.config(up), up being the mock's URL)."""
    serve_args = ()

    @classmethod
    def config(cls, up):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.mock = mock("--max-connections", "20000")
        cls.up = f"http://127.0.0.1:{cls.mock.port}"
        cls.path = os.path.join(cls.dir.name, "gateway.json")
        with open(cls.path, "w") as f:
            json.dump(cls.config(cls.up), f, indent=2)
        try:
            cls.gw = serve(cls.path, *cls.serve_args)
        except Exception:
            cls.mock.stop(check=False)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.gw.stop()
        finally:
            cls.mock.stop()
            cls.dir.cleanup()

    def stats(self, reset=False):
        return get_json(self.mock.port, "/stats" + ("?reset=1" if reset else ""))[1]

    def get(self, path, headers=(), method="GET", body=b""):
        t0 = time.monotonic()
        r = request(self.gw.port, method, path, headers=headers, body=body)
        r.elapsed = time.monotonic() - t0
        return r


def dechunk(data):
    out, rest = b"", data
    while rest:
        size, _, rest = rest.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            break
        out, rest = out + rest[:n], rest[n + 2:]
    return out


def stream(port, path, headers=()):
    """A streamed answer read to its end (Connection: close): status,
    headers (lower-case names), body without the chunked framing, and the
    seconds at which each piece of it arrived."""
    from harness import connect
    with connect(port) as s:
        hdrs = "".join(f"{k}: {v}\r\n" for k, v in headers)
        t0 = time.monotonic()
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{hdrs}\r\n".encode())
        data, times = b"", []
        while True:
            got = s.recv(65536)
            if not got:
                break
            data += got
            times.append((time.monotonic() - t0, len(data)))
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hs = dict((k.strip().lower(), v.strip()) for k, v in (l.split(":", 1) for l in lines[1:]))
    if hs.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return int(lines[0].split(" ")[1]), hs, body, times
