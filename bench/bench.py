"""fanout benchmark harness: every scenario on every stack, against one mock upstream.

Run through bench/run.sh, which installs the Debian packages this needs.
Standard library only; see bench/README.md for what each figure means.
"""
import argparse
import os
import resource
import shutil
import signal
import sys
import tempfile
import time

import procs
import report
from load import measure, wrk
from procs import Server, ServerError

STACKS = ["fanout", "flask-sync", "flask-gthread", "flask-async", "quart",
          "aiohttp", "go", "node", "nginx-lua"]
UPSTREAMS = ["nginx-lua", "fanout"]
SMOKE_PEER = "nginx-lua"
S1 = "/fanout?n=2&ms=200,100"
S2 = "/fanout?n=4&ms=0"
S3 = "/fanout?n=2&ms=1000"
S3_TIMEOUT = 3  # seconds: an S3 request not answered by then is an error

# Seconds of load per scenario, and clients in S3, per mode.
MODES = {
    "full": dict(probe=10, s1=15, s2=10, s3=15, s5=10, s3_clients=5000),
    "quick": dict(probe=2, s1=2, s2=2, s3=5, s5=2, s3_clients=1000),
    "smoke": dict(probe=1, s1=1, s2=1, s3=2, s5=1, s3_clients=200),
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="short runs (< 3 min in all)")
    g.add_argument("--smoke", action="store_true", help=f"fanout and {SMOKE_PEER} only, ~10 s")
    p.add_argument("--only", help="comma-separated stacks: " + ",".join(STACKS))
    p.add_argument("--out", help="results folder (default bench/results; a temp dir for --smoke)")
    args = p.parse_args()
    args.mode = "quick" if args.quick else "smoke" if args.smoke else "full"
    args.stacks = ["fanout", SMOKE_PEER] if args.smoke else STACKS
    if args.only:
        args.stacks = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = set(args.stacks) - set(STACKS)
        if unknown:
            p.error(f"unknown stack(s): {', '.join(sorted(unknown))}")
    return args


def check_upstream(server):
    """The /delay contract: JSON {"value": float in [0,1)} after ms milliseconds."""
    for ms in (0, 50):
        status, body, ctype, secs = procs.get_json(f"{server.url}/delay?ms={ms}")
        value = body.get("value") if isinstance(body, dict) else None
        if status != 200 or not isinstance(value, float) or not 0 <= value < 1:
            raise ServerError(f"/delay?ms={ms} answered {status} {body!r}")
        if "application/json" not in ctype or secs < ms / 1000:
            raise ServerError(f"/delay?ms={ms}: type {ctype!r}, {secs * 1000:.0f} ms")


def start_upstream(name, tmp):
    server = Server("upstream", name, tmp)
    try:
        server.wait_ready("/delay?ms=0", timeout=15)
        check_upstream(server)
    except ServerError as e:
        server.stop()
        raise ServerError(f"{e}; log: {server.log_tail()}") from None
    return server


def probe_upstream(name, tmp, seconds):
    """Start an upstream, check it, measure its capacity and CPU µs per exchange."""
    try:
        server = start_upstream(name, tmp)
    except ServerError as e:
        return None, {"name": name, "error": str(e)}
    try:
        res = measure(server, "/delay?ms=0", 64, seconds)
        # Every load ends with clients leaving mid-delay: the upstream must survive that.
        wrk(server.url + "/delay?ms=100", 256, 1)
        time.sleep(0.2)
        server.check_alive()
        check_upstream(server)
    except (ServerError, RuntimeError) as e:
        server.stop()
        return None, {"name": name, "error": str(e)}
    res["name"] = name
    print(f"upstream {name}: {res['rps']:.0f} req/s, {res['cpu_us']:.1f} µs CPU per exchange",
          flush=True)
    return server, res


class Upstream:
    """The upstream in use, started again if a load killed it."""

    def __init__(self, name, server, tmp):
        self.name, self.server, self.tmp, self.crashes = name, server, tmp, []

    def ensure(self):
        try:
            self.server.check_alive()
            return self.server
        except ServerError as e:
            self.crashes.append(str(e))
            print(f"upstream {self.name} died ({e}); starting it again", flush=True)
        try:
            self.server = start_upstream(self.name, self.tmp)
        except ServerError as e:
            raise SystemExit(f"bench: upstream {self.name} could not start again: {e}")
        return self.server


def choose_upstream(tmp, seconds):
    """Probe every candidate; keep the cheapest per exchange running, stop the others."""
    probed = [probe_upstream(name, tmp, seconds) for name in UPSTREAMS]
    for _, res in probed:
        if "error" in res:
            print(f"upstream {res['name']}: not used: {res['error']}", flush=True)
    ok = [(s, r) for s, r in probed if s]
    if not ok:
        raise SystemExit("bench: no upstream could run")
    best = min(ok, key=lambda sr: sr[1]["cpu_us"])
    for server, _ in ok:
        if server is not best[0]:
            server.stop()
    print(f"upstream in use: {best[1]['name']} at {best[0].url}", flush=True)
    return Upstream(best[1]["name"], best[0], tmp), [r for _, r in probed]


def check_peer(server):
    """The /fanout contract: {"sum": float, "n": n}, calls concurrent, delays per call."""
    status, body, _, _ = procs.get_json(server.url + "/fanout?n=3&ms=0")
    if status != 200 or not isinstance(body, dict) or body.get("n") != 3 \
            or not isinstance(body.get("sum"), float) or not 0 <= body["sum"] < 3:
        raise ServerError(f"/fanout?n=3&ms=0 answered {status} {body!r}")
    status, body, _, secs = procs.get_json(server.url + "/fanout?n=2&ms=300,100")
    if status != 200 or not 0.3 <= secs < 0.38:
        raise ServerError(f"/fanout?n=2&ms=300,100: {status} in {secs * 1000:.0f} ms "
                          "(expected 300 ms: calls concurrent, one delay each)")


def start_peer(name, tmp, upstream, workers):
    server = Server("peers", name, tmp, UPSTREAM=upstream.ensure().url, WORKERS=workers,
                    BENCH_CACHE=os.path.join(tmp, "cache"))
    try:
        server.wait_ready("/fanout?n=1&ms=0", timeout=60)
        check_peer(server)
    except ServerError as e:
        server.stop()
        raise ServerError(f"{e}; log: {server.log_tail()}") from None
    return server


def measure_s3(server, clients, seconds):
    """S3 with its errors: wrk counts an answer later than the timeout T, never a
    missing one. Clients answered within T each get at least floor((D - 1) / T)
    answers in D seconds (1 s left for connecting): what falls short is unanswered."""
    res = measure(server, S3, clients, seconds, timeout=S3_TIMEOUT)
    expected = clients * int((seconds - 1) // S3_TIMEOUT)
    on_time = res["requests"] - res["timeouts"] - res["non2xx"]
    res["unanswered"] = max(0, expected - on_time)
    res["errors"] += res["unanswered"]
    return res


def run_stack(name, tmp, upstream, cfg):
    """All scenarios on one stack, each on a fresh server: a load can leave a
    queue of requests behind it (S1 at 200 clients on one sync worker)."""
    res = {"name": name}
    runs = [("S1", 1, lambda srv: {"S1c1": measure(srv, S1, 1, cfg["s1"], timeout=30),
                                   "S1c200": measure(srv, S1, 200, cfg["s1"], timeout=30)}),
            ("S2", 1, lambda srv: {"S2": measure(srv, S2, 64, cfg["s2"], timeout=30)}),
            ("S3", 1, lambda srv: {"S3": measure_s3(srv, cfg["s3_clients"], cfg["s3"])}),
            ("S5", 2, lambda srv: {"S5": measure(srv, S2, 64, cfg["s5"], timeout=30)})]
    for phase, workers, run in runs:
        srv = None
        try:
            srv = start_peer(name, tmp, upstream, workers)
            with srv:
                res.update(run(srv))
        except (ServerError, RuntimeError) as e:
            never = srv is None and phase == "S1"
            res["error"] = ("not run: " if never else f"failed in {phase}: ") + str(e)
            print(f"{name}: {res['error']}", flush=True)
            return res
    return res


def main():
    args = parse_args()
    cfg = MODES[args.mode]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 2 * cfg["s3_clients"] + 1000:
        print(f"bench: warning: open-files limit {hard} is low for S3", file=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = tempfile.mkdtemp(prefix="fanout-bench-")
    started = time.monotonic()
    try:
        upstream, probes = choose_upstream(tmp, cfg["probe"])
        results = []
        for name in args.stacks:
            print(f"--- {name}", flush=True)
            results.append(run_stack(name, tmp, upstream, cfg))
        upstream.server.stop()
        out = args.out or (tmp + "-out" if args.smoke else os.path.join(procs.HERE, "results"))
        md = report.write(out, args.mode, cfg, probes, results, upstream,
                          time.monotonic() - started)
        print(md)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.smoke and not any("S2" in r for r in results):
        sys.exit("bench: smoke run measured no stack")


if __name__ == "__main__":
    main()
