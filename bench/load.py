"""Load runs with wrk (and S6's paced client), with the server's CPU and RSS read around
and during them."""
import http.client
import re
import subprocess
import threading
import time
import urllib.parse

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(value, unit):
    return float(value) * _UNITS[unit]


def parse_wrk(out):
    """Figures of a `wrk --latency` report; latencies in ms, None if no request completed.
    wrk's "timeout" errors are answers that came later than --timeout."""
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    res = {"requests": requests,
           "rps": float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1)),
           "p50": None, "p99": None, "socket_errors": 0, "timeouts": 0, "non2xx": 0}
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        connect, read, write, res["timeouts"] = map(int, sock.groups())
        res["socket_errors"] = connect + read + write
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    res["errors"] = res["socket_errors"] + res["timeouts"] + res["non2xx"]
    for pct, value, unit in re.findall(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M):
        if requests > res["timeouts"]:  # else the histogram is empty
            res["p" + pct] = _ms(value, unit)
    return res


def paced(url, clients, seconds, think_ms, timeout=5, on_tick=None):
    """S6's load: `clients` keep-alive connections, each waiting think_ms
    after every answer before its next request, for `seconds`; the figures
    of parse_wrk() (latencies in ms). Not wrk with a delay() script: its p99
    of such a run was bimodal from run to run (56 or 300-650 ms against the
    same server, whose access log said 56 ms each time), so S6 measures with
    this client, the same for every stack. A latency runs from just before
    the request is sent to the last byte of its answer; answers that come
    after the run's end are not counted, as wrk does not count them."""
    parts = urllib.parse.urlsplit(url)
    target = parts.path + ("?" + parts.query if parts.query else "")
    start = time.monotonic()
    end = start + seconds
    lock = threading.Lock()
    lat, errs = [], {"socket": 0, "timeouts": 0, "non2xx": 0}

    def client():
        conn = None
        while time.monotonic() < end:
            if conn is None:
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
            t0 = time.monotonic()
            kind = None
            try:
                conn.request("GET", target)
                r = conn.getresponse()
                r.read()
                if not 200 <= r.status < 400:
                    kind = "non2xx"
            except TimeoutError:
                kind = "timeouts"
            except (OSError, http.client.HTTPException):
                kind = "socket"
            t1 = time.monotonic()
            if kind in ("timeouts", "socket"):
                conn.close()
                conn = None
            if t1 <= end:
                with lock:
                    if kind:
                        errs[kind] += 1
                    if kind != "timeouts" and kind != "socket":
                        lat.append((t1 - t0) * 1000)
            time.sleep(think_ms / 1000)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    while time.monotonic() < end:
        if on_tick:
            on_tick()
        time.sleep(0.1)
    for t in threads:
        t.join(timeout + 30)
    lat.sort()
    n = len(lat)
    pct = (lambda q: lat[min(n - 1, int(n * q))]) if n else (lambda q: None)
    errors = errs["socket"] + errs["timeouts"] + errs["non2xx"]
    return {"requests": n, "rps": n / seconds,  # answered, non-2xx included, as wrk counts
            "p50": pct(0.50), "p99": pct(0.99), "p999": pct(0.999),
            "socket_errors": errs["socket"], "timeouts": errs["timeouts"],
            "non2xx": errs["non2xx"], "errors": errors}


def wrk(url, clients, seconds, timeout=5, on_tick=None):
    """Run wrk for `seconds`; on_tick() is called every 100 ms while it runs."""
    cmd = ["wrk", "--latency", "-t", str(min(2, clients)), "-c", str(clients),
           "-d", f"{seconds}s", "--timeout", f"{timeout}s"]
    cmd.append(url)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + seconds + timeout + 30
    try:
        while proc.poll() is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"wrk overran its {seconds} s run: {' '.join(cmd)}")
            if on_tick:
                on_tick()
            time.sleep(0.1)
        out = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    if proc.returncode != 0 or "requests in" not in out:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {out.strip()[-300:]}")
    return parse_wrk(out)


def settle(url, clients, timeout):
    """`clients` requests sent at the same moment, each waited for. wrk ends a
    run by closing its connections with requests in flight, and a stack that
    cancels their upstream calls (fanout does) closes those upstream
    connections too. With a delay in `url`, every call of these requests is
    in flight at once, so every stack refills its pool to the load with
    requests that finish, and the measured run starts as a running service's."""
    parts = urllib.parse.urlsplit(url)
    barrier = threading.Barrier(clients)

    def one():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        try:
            conn.connect()
            barrier.wait(timeout)
            conn.request("GET", parts.path + "?" + parts.query)
            conn.getresponse().read()
        except (OSError, threading.BrokenBarrierError, http.client.HTTPException):
            pass  # a stack that cannot take it shows in the measured run
        finally:
            conn.close()

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def measure(server, path, clients, seconds, timeout=5, warm=0, upstream=None, settle_path=None,
            think_ms=None):
    """wrk against server+path, with the CPU µs per completed request (all,
    and the user-space part) and the peak RSS (sampled every 100 ms) of the
    server's processes.

    warm > 0: first the same load for `warm` seconds, then a wait until the
    server is idle again, then settle() with settle_path (default: path),
    so that the measured run finds its pools, stacks and caches as a
    running service has them, and no queue left behind.
    upstream: an object whose accepted() reads the upstream's count of the
    connections it accepted (each read is one more): the connections opened
    to it during the measured run are reported, total and per 1,000 requests;
    if it also has requests() (the requests it handled, each read one more),
    the upstream requests made during the run are reported too.
    think_ms: the measured run is paced() instead of wrk's (S6); the
    warm-up is wrk's either way."""
    idle_wait = None
    if warm:
        wrk(server.url + path, clients, warm, timeout)
        server.wait_idle()
        settle(server.url + (settle_path or path), clients, timeout)
        idle_wait = server.wait_idle()
    accepted0 = upstream.accepted() if upstream else None
    counts_requests = hasattr(upstream, "requests")
    requests0 = upstream.requests() if counts_requests else None
    cpu0, idle_rss, user0 = server.stats()
    peak = [idle_rss]

    def sample():
        peak[0] = max(peak[0], server.stats()[1])

    if think_ms is not None:
        res = paced(server.url + path, clients, seconds, think_ms, timeout, on_tick=sample)
    else:
        res = wrk(server.url + path, clients, seconds, timeout, on_tick=sample)
    cpu1, _, user1 = server.stats()
    server.check_alive()
    n = res["requests"]
    per = (lambda secs: secs * 1e6 / n) if n else (lambda secs: None)
    res.update(clients=clients, cpu_us=per(cpu1 - cpu0), user_us=per(user1 - user0),
               kernel_us=per(cpu1 - cpu0 - (user1 - user0)),
               idle_rss=idle_rss, peak_rss=peak[0],
               kib_per_req=(peak[0] - idle_rss) / 1024 / clients,
               warmed=bool(warm), idle_wait=idle_wait, conns=None, conns_per_1k=None)
    if upstream:
        # The second read counts itself too: it is not the stack's.
        res["conns"] = conns = upstream.accepted() - accepted0 - 1
        res["conns_per_1k"] = conns * 1000 / n if n else None
    if counts_requests:
        # Two reads of the upstream's own count after requests0: accepted()'s and this one.
        res["upstream_requests"] = upstream.requests() - requests0 - 2
    return res
