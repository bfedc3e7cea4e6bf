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
import upstream as upstreams
from load import measure
from procs import Server, ServerError

STACKS = ["fanout", "flask-sync", "flask-gthread", "flask-async", "quart",
          "aiohttp", "go", "node", "nginx-lua"]
SMOKE_PEER = "nginx-lua"
S1 = "/fanout?n=2&ms=200,100"
S2 = "/fanout?n=4&ms=0"
S2_SETTLE = "/fanout?n=4&ms=100"  # S2's calls, all in flight at once (load.settle())
S3 = "/fanout?n=2&ms=1000"
S3_TIMEOUT = 3  # seconds: an S3 request not answered by then is an error
# S6, the tail: k=4 calls of 5 ms to an upstream (nginx-tail) where 1 % of
# requests take 1,000 ms more, 64 clients. Each client waits S6_THINK_MS
# after every answer, so every variant is held at about the same light load:
# at full speed a stack whose tail is cut serves more and measures its own
# queue instead (closed-loop clients saturate a 2-core machine). A stack
# whose S2 capacity is small gets a longer wait, for half its S2 req/s at
# most: what is measured is the tail, not a queue.
# Every scenario --scenarios can pick (S4, the bound, is always measured).
SCENARIOS = ["S1", "S2", "S3", "S5", "S2h2", "S2h1", "S6", "S7"]
S6 = "/fanout?n=4&ms=5"
S6_K, S6_TAIL_P, S6_TAIL_MS, S6_THINK_MS = 4, 0.01, 1000, 50
# fanout's variants with hedged calls, beside the one without: (key, what,
# the --origin options of the tail upstream)
S6_HEDGES = [("S6p95", "hedge after the origin's p95", "hedge=p95"),
             ("S6h50", "hedge after 50 ms", "hedge-after-ms=50")]

# The https variants of S2 (HTTP/2, HTTP/1.1 to an nginx with TLS) run on these.
TLS_STACKS = ["fanout", "go"]

# Seconds of load per scenario and clients in S3, per mode; warm: seconds of
# the same load before S1 at 200 clients, S2, S5 and the bound, followed by a
# wait until the stack is idle. s1c200: S1 at 200 clients and its floor,
# longer than S1 at 1 client so that the start's bursts do not set the p99
# (bench/README.md, "S1 at 200 clients runs 40 s"). A lean run (the smoke
# test of the harness) skips S1 at 1 client, S1's floor, S5, the https
# variants and the upstream burst.
MODES = {
    "full": dict(probe=10, s1=15, s1c200=40, s2=10, s3=15, s5=10, s6=20, warm=3,
                 s3_clients=5000, lean=False),
    "quick": dict(probe=2, s1=2, s1c200=2, s2=2, s3=4, s5=2, s6=4, warm=1,
                  s3_clients=1000, lean=False),
    "smoke": dict(probe=1, s1=1, s1c200=1, s2=1, s3=2, s5=1, s6=0, warm=1,
                  s3_clients=200, lean=True),
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="short runs (< 3 min in all)")
    g.add_argument("--smoke", action="store_true",
                   help=f"harness test: fanout and {SMOKE_PEER}, S1-S3, ~20-30 s")
    p.add_argument("--only", help="comma-separated stacks: " + ",".join(STACKS))
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help="comma-separated scenarios to run (default: all): " + ",".join(SCENARIOS))
    p.add_argument("--out", help="results folder (default bench/results; a temp dir for --smoke)")
    args = p.parse_args()
    args.mode = "quick" if args.quick else "smoke" if args.smoke else "full"
    args.stacks = ["fanout", SMOKE_PEER] if args.smoke else STACKS
    if args.only:
        args.stacks = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = set(args.stacks) - set(STACKS)
        if unknown:
            p.error(f"unknown stack(s): {', '.join(sorted(unknown))}")
    args.scenarios = {s.strip() for s in args.scenarios.split(",") if s.strip()}
    unknown = args.scenarios - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return args


def check_peer(server, timing):
    """The /fanout contract: {"sum": float, "n": n}; with timing, also that the
    calls run concurrently and each gets its own delay."""
    status, body, _, _ = procs.get_json(server.url + "/fanout?n=3&ms=0")
    if status != 200 or not isinstance(body, dict) or body.get("n") != 3 \
            or not isinstance(body.get("sum"), float) or not 0 <= body["sum"] < 3:
        raise ServerError(f"/fanout?n=3&ms=0 answered {status} {body!r}")
    if not timing:
        return
    # Concurrent calls take 600 ms more than with no delay, sequential ones 800 more;
    # subtracting the no-delay time keeps the check sound on a busy machine.
    _, _, _, base = procs.get_json(server.url + "/fanout?n=2&ms=0,0")
    status, body, _, secs = procs.get_json(server.url + "/fanout?n=2&ms=600,200")
    if status != 200 or secs < 0.6 or secs - base >= 0.7:
        raise ServerError(f"/fanout?n=2&ms=600,200: {status} in {secs * 1000:.0f} ms, "
                          f"{base * 1000:.0f} ms with no delay (expected 600 ms more: "
                          "calls concurrent, one delay each)")


def start_peer(name, tmp, upstream_url, workers, timing, **env):
    server = Server("peers", name, tmp, UPSTREAM=upstream_url, WORKERS=workers,
                    BENCH_CACHE=os.path.join(tmp, "cache"), **env)
    try:
        server.wait_ready("/fanout?n=1&ms=0", timeout=60)
    except ServerError:
        server.stop()
        raise
    try:
        check_peer(server, timing)
    except ServerError as e:
        server.stop()
        raise ServerError(f"{e}; log: {server.log_tail()}") from None
    return server


def measure_s3(server, clients, seconds, upstream=None):
    """S3 with its errors: wrk counts an answer later than the timeout T, never a
    missing one. Clients answered within T each get at least floor((D - 1) / T)
    answers in D seconds (1 s left for connecting): what falls short is unanswered."""
    res = measure(server, S3, clients, seconds, timeout=S3_TIMEOUT, upstream=upstream)
    expected = clients * int((seconds - 1) // S3_TIMEOUT)
    on_time = res["requests"] - res["timeouts"] - res["non2xx"]
    res["unanswered"] = max(0, expected - on_time)
    res["errors"] += res["unanswered"]
    return res


def phases(cfg, upstream):
    """(phase, workers, run) in order. Each phase gets a fresh server: a load can
    leave a queue of requests behind it (S1 at 200 clients on one sync worker).
    Every run counts the connections the upstream accepted during it."""
    warm, up = cfg["warm"], upstream

    def s1(srv):
        c1 = {} if cfg["lean"] else {
            "S1c1": measure(srv, S1, 1, cfg["s1"], timeout=30, upstream=up)}
        # S1's floor, measured right before this stack's S1 at 200 clients:
        # on a shared machine a floor from another minute is another machine.
        floor = {} if cfg["lean"] else {
            "S1floor": upstreams.s1_floor(up, cfg["s1c200"], warm)}
        return {**c1, **floor, "S1c200": measure(srv, S1, 200, cfg["s1c200"], timeout=30,
                                                 warm=warm, upstream=up)}

    return [("S1", 1, s1),
            ("S2", 1, lambda srv: {"S2": measure(srv, S2, 64, cfg["s2"], timeout=30, warm=warm,
                                                 upstream=up, settle_path=S2_SETTLE)}),
            ("S3", 1, lambda srv: {"S3": measure_s3(srv, cfg["s3_clients"], cfg["s3"], up)}),
            ("S5", 2, lambda srv: {"S5": measure(srv, S2, 64, cfg["s5"], timeout=30, warm=warm,
                                                 upstream=up, settle_path=S2_SETTLE)}),
            ][:3 if cfg["lean"] else 4]


def tls_phases(cfg, tls):
    """S2 over https, one phase per upstream in `tls` (key -> (url, CA file,
    counter)): the stack trusts the CA through CA_FILE."""
    def run(key):
        _, _, counter = tls[key]
        return lambda srv: {key: measure(srv, S2, 64, cfg["s2"], timeout=30, warm=cfg["warm"],
                                         upstream=counter, settle_path=S2_SETTLE)}
    return [(key, 1, run(key)) for key in tls]


def run_s7(tmp, upstream, cfg):
    """S7: S2 through `fanout serve` and a gateway file (bench/peers/
    fanout-gateway), on a fresh server, measured as S2 is."""
    for _ in range(2):
        server = Server("peers", "fanout-gateway", tmp, UPSTREAM=upstream.ensure(), WORKERS=1)
        with server:
            server.wait_ready("/fanout?n=4&ms=0", timeout=60)
            status, body, _, _ = procs.get_json(server.url + "/fanout?n=4&ms=0")
            if status != 200 or not isinstance(body, dict) or sorted(body) != list("abcd"):
                raise ServerError(f"the gateway answered {status} {body!r}")
            figures = {"S7": measure(server, S2, 64, cfg["s2"], timeout=30, warm=cfg["warm"],
                                     upstream=upstream, settle_path=S2_SETTLE)}
        if upstream.healthy():
            return figures
        upstream.replace("failed under the gateway")
    raise ServerError("the upstream failed under the gateway twice")


def s6_think_ms(res):
    """S6's wait between a client's requests for this stack (see S6_THINK_MS)."""
    rps = res.get("S2", {}).get("rps")
    light = 1000 * 64 / (0.5 * rps) if rps else 0
    return max(S6_THINK_MS, round(light))


def run_s6(name, tmp, tail, cfg, res):
    """S6 on a fresh server per variant: (key, figures) pairs. The upstream
    requests each variant made are counted at the tail upstream; the extra
    ones, beyond k per answered request, are what hedging cost (requests
    still in flight at the end of a run count on the upstream's side only:
    at most 64 x 4, the "no hedging" rows show that noise)."""
    server, counter = tail
    think = s6_think_ms(res)
    variants = [("S6", None)]
    if name == "fanout":
        variants += [(key, f"--origin {server.url},{opts}") for key, _, opts in S6_HEDGES]
    out = {}
    for key, args in variants:
        env = {"FANOUT_ARGS": args} if args else {}
        with start_peer(name, tmp, server.url, 1, False, **env) as srv:
            # The warm-up also gives an adaptive hedge its p95.
            f = measure(srv, S6, 64, cfg["s6"], timeout=30, warm=cfg["warm"], upstream=counter,
                        think_ms=think)
        f["think_ms"] = think
        n, up = f["requests"], f.get("upstream_requests")
        f["extra_pct"] = 100.0 * (up - n * S6_K) / (n * S6_K) if n and up is not None else None
        out[key] = f
    return out


def show(figures):
    for key, f in figures.items():
        conns = "" if f["conns"] is None else (
            f", {f['conns']} upstream connections ({f['conns_per_1k'] or 0:.1f} per 1,000)")
        print(f"  {key}: {f['rps']:.0f} req/s, p50 {f['p50'] or 0:.1f} ms, "
              f"p99 {f['p99'] or 0:.1f} ms, {f['errors']} errors, {f['cpu_us'] or 0:.0f} µs "
              f"CPU/req ({f['user_us'] or 0:.0f} user), +{f['kib_per_req']:.1f} KiB RSS/client"
              f"{conns}", flush=True)
    return figures


def run_phase(name, tmp, upstream, workers, timing, run):
    """One phase on a fresh server, run again if the upstream failed under it."""
    for _ in range(2):
        with start_peer(name, tmp, upstream.ensure(), workers, timing) as srv:
            figures = run(srv)
        if upstream.healthy():
            return figures
        upstream.replace(f"failed under {name}")
    raise ServerError("the upstream failed under this stack twice")


def run_tls_phase(name, tmp, tls, key, run):
    """An https variant of S2 on a fresh server: the TLS upstream is not
    replaced (there is one of each kind), so a failure is the stack's."""
    url, ca_file, _ = tls[key]
    with start_peer(name, tmp, url, 1, False, CA_FILE=ca_file) as srv:
        return run(srv)


def run_stack(name, tmp, upstream, cfg, tls, tail, wanted):
    """The scenarios in `wanted` on one stack; a stack that fails stops
    there, with the reason. A failed https variant, S6 or S7 is recorded
    and the next one runs."""
    res = {"name": name}
    for phase, workers, run in phases(cfg, upstream):
        if phase not in wanted:
            continue
        try:
            res.update(show(run_phase(name, tmp, upstream, workers, phase == "S1", run)))
        except (ServerError, RuntimeError) as e:
            measured = len(res) > 1
            res["error"] = (f"failed in {phase}: " if measured else "not run: ") + str(e)
            print(f"{name}: {res['error']}", flush=True)
            return res
    if name == "fanout" and "S7" in wanted and not cfg["lean"]:
        try:
            res.update(show(run_s7(tmp, upstream, cfg)))
        except (ServerError, RuntimeError) as e:
            res.setdefault("phase_errors", {})["S7"] = str(e)
            print(f"{name}: S7 failed: {e}", flush=True)
    if name in TLS_STACKS:
        for phase, _, run in tls_phases(cfg, tls):
            if phase not in wanted:
                continue
            try:
                res.update(show(run_tls_phase(name, tmp, tls, phase, run)))
            except (ServerError, RuntimeError) as e:
                res.setdefault("phase_errors", {})[phase] = str(e)
                print(f"{name}: {phase} failed: {e}", flush=True)
    if tail and "S6" in wanted:
        try:
            res.update(show(run_s6(name, tmp, tail, cfg, res)))
        except (ServerError, RuntimeError) as e:
            res.setdefault("phase_errors", {})["S6"] = str(e)
            print(f"{name}: S6 failed: {e}", flush=True)
    return res


def start_tail_upstream(tmp, cfg):
    """S6's upstream, (server, counter), or None in a lean run or when it
    cannot start."""
    if cfg["lean"] or not cfg["s6"]:
        return None
    try:
        tail = upstreams.start_tail(tmp, S6_TAIL_P, S6_TAIL_MS)
    except ServerError as e:
        print(f"upstream nginx-tail (S6): not run: {e}", flush=True)
        return None
    print(f"upstream nginx-tail for S6: {tail[0].url}", flush=True)
    return tail


def start_tls_upstreams(tmp, lean):
    """The https upstreams of S2's variants: key -> (url, CA file, counter),
    and their servers; none in a lean run or without nginx."""
    tls, servers = {}, []
    if lean:
        return tls, servers
    for key, http2 in (("S2h2", True), ("S2h1", False)):
        try:
            server, url, ca_file, counter = upstreams.start_tls(tmp, http2)
        except ServerError as e:
            print(f"upstream nginx-tls ({key}): not run: {e}", flush=True)
            continue
        servers.append(server)
        tls[key] = (url, ca_file, counter)
        print(f"upstream nginx-tls for {key}: {url}", flush=True)
    return tls, servers


def main():
    args = parse_args()
    cfg = MODES[args.mode]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 2 * cfg["s3_clients"] + 1000:
        print(f"bench: warning: open-files limit {hard} is low for S3", file=sys.stderr)
    # Servers are killed on any way out: Ctrl-C (even if started with SIGINT
    # ignored, as background jobs are), SIGTERM, SIGHUP, or an error.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _: sys.exit(128 + signum))
    tmp = tempfile.mkdtemp(prefix="fanout-bench-")
    run = {"started": time.monotonic(), "load": os.getloadavg()[0]}
    try:
        burst = 0 if cfg["lean"] else 2 * cfg["s3_clients"]
        upstream, probes = upstreams.choose(tmp, cfg["probe"], burst)
        probes.append(upstreams.static_bound(tmp, cfg["probe"], cfg["warm"]))
        tls, tls_servers = start_tls_upstreams(
            tmp, cfg["lean"] or not {"S2h2", "S2h1"} & args.scenarios)
        tail = start_tail_upstream(tmp, cfg) if "S6" in args.scenarios else None
        results = []
        for name in args.stacks:
            print(f"--- {name}", flush=True)
            results.append(run_stack(name, tmp, upstream, cfg, tls, tail, args.scenarios))
        upstream.server.stop()
        for server in tls_servers + ([tail[0]] if tail else []):
            server.stop()
        out = args.out or (tmp + "-out" if args.smoke else os.path.join(procs.HERE, "results"))
        run["seconds"] = time.monotonic() - run["started"]
        md = report.write(out, args.mode, cfg, probes, results, upstream, run)
        print(md)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.smoke and not any("S2" in r for r in results):
        sys.exit("bench: smoke run measured no stack")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("bench: interrupted")
