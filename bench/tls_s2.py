"""S2 at the edge: the S2 fan-out (/fanout?n=4&ms=0, four upstream calls per
request) served over TLS, with h2load (Debian's nghttp2-client) as the load,
for fanout (--tls-cert/--tls-key) and nginx + Lua (its bench/peers config
with `ssl` on its listener). Prints requests per second, p50 and p99 and the
server's CPU µs per request (user + system of the server's processes, from
/proc, over the measured run).

fanout speaks HTTP/1.1 over TLS only (ALPN http/1.1), so the load is
h2load --h1 for both: each of the -c clients keeps one TLS connection and
sends its requests one at a time. The upstream is `fanout mock` on plain
http (the upstream is not what is measured).

    python3 bench/tls_s2.py [--requests N] [--clients C] [--workers W]
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
S2 = "/fanout?n=4&ms=0"
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not listening")


def tree_cpu(root):
    """User + system seconds of `root` and its live descendants."""
    kids = {}
    stats = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kids.setdefault(int(fields[1]), []).append(int(pid))
        stats[int(pid)] = (int(fields[11]) + int(fields[12])) / TICK
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, 0.0)
        todo += kids.get(pid, [])
    return total


def certs(tmp):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{tmp}/key.pem",
                    "-out", f"{tmp}/cert.pem", "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    return f"{tmp}/cert.pem", f"{tmp}/key.pem"


def start_fanout(port, upstream, workers, cert, key, tmp):
    peer = os.environ.get("FANOUT_PEER", f"{REPO}/build/bench/fanout-peer")
    return subprocess.Popen([peer, "--port", str(port), "--host", "127.0.0.1", "--upstream",
                             upstream, "--workers", str(workers), "--access-log", "off",
                             "--tls-cert", cert, "--tls-key", key],
                            stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/fanout.log", "w"))


def start_fanout_plain(port, upstream, workers, cert, key, tmp):
    """The same peer on plain http, for the cost of TLS alone."""
    peer = os.environ.get("FANOUT_PEER", f"{REPO}/build/bench/fanout-peer")
    return subprocess.Popen([peer, "--port", str(port), "--host", "127.0.0.1", "--upstream",
                             upstream, "--workers", str(workers), "--access-log", "off"],
                            stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/plain.log", "w"))


def start_nginx(port, upstream, workers, cert, key, tmp):
    conf = open(f"{REPO}/bench/peers/nginx-lua/nginx.conf").read()
    conf = (conf.replace("@PORT@", str(port)).replace("@UPSTREAM@", upstream[len("http://"):])
            .replace("@WORKERS@", str(workers)).replace("@DIR@", tmp))
    conf, n = re.subn(r"listen (127\.0\.0\.1:\d+)([^;]*);",
                      rf"listen \1 ssl\2; ssl_certificate {cert}; ssl_certificate_key {key};",
                      conf, count=1)
    if n != 1:
        raise RuntimeError("no listen directive in the nginx-lua config")
    with open(f"{tmp}/nginx.conf", "w") as f:
        f.write(conf)
    return subprocess.Popen(["nginx", "-e", "stderr", "-p", tmp, "-c", f"{tmp}/nginx.conf",
                             "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                            stderr=open(f"{tmp}/nginx.log", "w"))


def h2load(port, requests, clients, scheme="https"):
    out = subprocess.run(["h2load", "--h1", "-n", str(requests), "-c", str(clients), "-t", "1",
                          f"{scheme}://127.0.0.1:{port}{S2}"],
                         capture_output=True, text=True, timeout=600).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    if not done or not rps:
        raise RuntimeError(f"h2load: {out[-500:]}")
    return int(done.group(2)), float(rps.group(1)), out


def measure(name, proc, port, args):
    wait_port(port, proc)
    scheme = "http" if name == "fanout-plain" else "https"
    h2load(port, max(200, args.requests // 10), args.clients, scheme)  # warm-up
    cpu0 = tree_cpu(proc.pid)
    ok, rps, out = h2load(port, args.requests, args.clients, scheme)
    cpu = tree_cpu(proc.pid) - cpu0
    lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    return {"stack": name, "ok": ok, "rps": rps, "cpu_us": cpu * 1e6 / max(ok, 1),
            "mean": lat.group(3) if lat else "?"}


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM if proc.args[0] != "nginx" else signal.SIGQUIT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--only", default="fanout,nginx-lua,fanout-plain",
                   help="fanout-plain: the same peer without TLS, for the cost of TLS")
    args = p.parse_args()
    if not shutil.which("h2load"):
        sys.exit("h2load is missing: apt-get install nghttp2-client (scripts/deps.sh --test)")
    tmp = tempfile.mkdtemp(prefix="fanout-bench-tls-")
    cert, key = certs(tmp)
    up_port = free_port()
    upstream = subprocess.Popen([os.environ.get("FANOUT_BIN", f"{REPO}/build/fanout"), "mock",
                                 "--port", str(up_port), "--host", "127.0.0.1", "--workers",
                                 "1", "--access-log", "off"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        wait_port(up_port, upstream)
        starts = {"fanout": start_fanout, "nginx-lua": start_nginx,
                  "fanout-plain": start_fanout_plain}
        for name in args.only.split(","):
            port = free_port()
            proc = starts[name](port, f"http://127.0.0.1:{up_port}", args.workers, cert, key,
                                tmp)
            try:
                rows.append(measure(name, proc, port, args))
            finally:
                stop(proc)
    finally:
        stop(upstream)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"S2 over TLS (HTTP/1.1, h2load --h1 -c {args.clients} -n {args.requests}), "
          f"{args.workers} worker(s)")
    print(f"{'stack':<10} {'ok':>7} {'req/s':>9} {'mean':>9} {'CPU µs/req':>11}")
    for r in rows:
        print(f"{r['stack']:<10} {r['ok']:>7} {r['rps']:>9.0f} {r['mean']:>9} "
              f"{r['cpu_us']:>11.1f}")


if __name__ == "__main__":
    main()
