#!/usr/bin/env python3
"""Scenario S6, the tail: fanout with and without hedged calls.

Each request makes k=4 concurrent calls to `fanout mock`, whose calls take
5 ms except 1 % that take 1,000 ms more (the mock's tail_p/tail_ms), under
64 clients. A request waits for its slowest call, so about 4 % of them would
take a second without hedging. For each variant, wrk (with a Lua script for
p99.9) reports p50, p99 and p99.9, and the mock's /stats counts the upstream
requests that were really made: the extra ones are what hedging cost.

    python3 bench/s6_tail.py [--seconds 20] [--clients 64] [--out FILE.md]

Uses build/bench/fanout-peer (FANOUT_PEER) and build/fanout (FANOUT_BIN),
one worker each, and wrk. Other stacks are not run here: none of the peers
hedges, so their tail is the "without" line's (see bench/README.md).
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from procs import free_port  # noqa: E402

K, MS, TAIL_P, TAIL_MS = 4, 5, 0.01, 1000

LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("S6 %d %d %.3f %.3f %.3f %.3f\\n", summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000))
end
"""

VARIANTS = [
    ("fanout, no hedging", []),
    ("fanout, hedge after the origin's p95 (hedge=p95)", ["hedge=p95"]),
    ("fanout, hedge after 50 ms (hedge-after-ms=50)", ["hedge-after-ms=50"]),
    ("fanout, hedge after 100 ms (hedge-after-ms=100)", ["hedge-after-ms=100"]),
    ("fanout, hedge=p95 with a budget of 64 (budget-min=64)", ["hedge=p95", "budget-min=64"]),
]

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url):
    with _opener.open(url, timeout=10) as r:
        return json.loads(r.read())


def start(argv, port):
    """Starts a server and waits until `port` takes connections."""
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p
        except OSError:
            if p.poll() is not None:
                break
            time.sleep(0.05)
    p.kill()
    raise RuntimeError(f"{' '.join(argv)} did not start")


def run_variant(peer, mock_port, items, clients, seconds, lua):
    port = free_port()
    origin = f"http://127.0.0.1:{mock_port}"
    argv = [peer, "--port", str(port), "--upstream", origin, "--workers", "1",
            "--access-log", "off"]
    if items:
        argv += ["--origin", ",".join([origin] + items)]
    p = start(argv, port)
    try:
        # The upstream query rides in the peer's ms parameter, which the peer
        # copies into each call's URL: /delay?ms=5&tail_p=0.01&tail_ms=1000.
        ms = f"{MS}&tail_p={TAIL_P}&tail_ms={TAIL_MS}"
        path = f"/fanout?n={K}&ms={quote(ms, safe='')}"
        warm = ["wrk", "-t", "2", "-c", str(clients), "-d", "3s", "--timeout", "5s",
                f"http://127.0.0.1:{port}{path}"]
        subprocess.run(warm, capture_output=True, check=True)  # and the p95 is learnt
        get(f"http://127.0.0.1:{mock_port}/stats?reset=1")
        cmd = ["wrk", "-t", "2", "-c", str(clients), "-d", f"{seconds}s", "--timeout", "5s",
               "-s", lua, f"http://127.0.0.1:{port}{path}"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        upstream = get(f"http://127.0.0.1:{mock_port}/stats")["requests"]
    finally:
        p.terminate()
        p.wait(20)
    m = re.search(r"^S6 (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+)$", out, re.M)
    if not m:
        raise RuntimeError(f"no S6 line in wrk's output:\n{out}")
    n, errors = int(m.group(1)), int(m.group(2))
    p50, p99, p999, pmax = map(float, m.groups()[2:])
    # Requests wrk counted as done, times k, against what reached the mock
    # (requests still in flight at the end of the run count on both sides).
    extra = 100.0 * (upstream - n * K) / (n * K) if n else float("nan")
    return {"requests": n, "errors": errors, "p50": p50, "p99": p99, "p999": p999,
            "max": pmax, "upstream": upstream, "extra": extra, "rps": n / seconds}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--out")
    args = ap.parse_args()
    peer = os.environ.get("FANOUT_PEER", os.path.join(REPO, "build/bench/fanout-peer"))
    fanout = os.environ.get("FANOUT_BIN", os.path.join(REPO, "build/fanout"))
    for b in (peer, fanout):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} is not built")
    mock_port = free_port()
    mock = start([fanout, "mock", "--port", str(mock_port), "--workers", "0",
                  "--access-log", "off"], mock_port)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA)
        lua = f.name
    rows = []
    try:
        for name, items in VARIANTS:
            rows.append((name, run_variant(peer, mock_port, items, args.clients, args.seconds,
                                           lua)))
    finally:
        os.unlink(lua)
        mock.terminate()
        mock.wait(20)
    base = rows[0][1]["p99"]
    lines = [f"S6: k={K} calls of {MS} ms, {TAIL_P:.0%} of them {TAIL_MS} ms more, "
             f"{args.clients} clients, {args.seconds} s per variant, one fanout worker.",
             "",
             "| stack | requests/s | p50 ms | p99 ms | p99.9 ms | p99 / p99 without | "
             "extra upstream requests | errors |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | "
                     f"{r['p999']:.1f} | {r['p99'] / base:.3f} | {r['extra']:+.1f} % | "
                     f"{r['errors']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
