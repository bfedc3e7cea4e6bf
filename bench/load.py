"""Load runs with wrk, with the server's CPU and RSS read around and during them."""
import re
import subprocess
import time

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


def wrk(url, clients, seconds, timeout=5, on_tick=None):
    """Run wrk for `seconds`; on_tick() is called every 100 ms while it runs."""
    cmd = ["wrk", "--latency", "-t", str(min(2, clients)), "-c", str(clients),
           "-d", f"{seconds}s", "--timeout", f"{timeout}s", url]
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


def measure(server, path, clients, seconds, timeout=5):
    """wrk against server+path, with the CPU µs per completed request and the
    peak RSS (sampled every 100 ms) of the server's processes."""
    cpu0, idle_rss = server.stats()
    peak = [idle_rss]

    def sample():
        peak[0] = max(peak[0], server.stats()[1])

    res = wrk(server.url + path, clients, seconds, timeout, on_tick=sample)
    cpu1, _ = server.stats()
    server.check_alive()
    cpu_us = (cpu1 - cpu0) * 1e6 / res["requests"] if res["requests"] else None
    res.update(clients=clients, cpu_us=cpu_us,
               idle_rss=idle_rss, peak_rss=peak[0],
               kib_per_req=(peak[0] - idle_rss) / 1024 / clients)
    return res
