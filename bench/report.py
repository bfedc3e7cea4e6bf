"""The report: markdown tables with fanout/peer ratios, the targets, the
machine and the versions of every stack, and a gnuplot chart."""
import datetime
import os
import platform
import socket
import subprocess

import procs

PY = ["python3", "python3-httpx"]
PACKAGES = {
    "flask-sync": PY + ["python3-flask", "gunicorn"],
    "flask-gthread": PY + ["python3-flask", "gunicorn"],
    "flask-async": PY + ["python3-flask", "python3-asgiref", "gunicorn"],
    "quart": PY + ["python3-quart", "python3-hypercorn", "python3-uvloop"],
    "aiohttp": ["python3", "python3-aiohttp", "python3-uvloop", "gunicorn"],
    "go": ["golang-go"],
    "node": ["nodejs"],
    "nginx-lua": ["nginx", "libnginx-mod-http-lua", "lua-cjson"],
    "tools": ["wrk", "gnuplot-nox"],
}
MIB = 1 / 2**20

# Per table: title, columns (header, scenario, key, digits, scale), ratio columns.
# "conns/1k": connections the upstream accepted during the measured run per
# 1,000 aggregated requests; a stack whose pool is sized for the load opens
# its connections once, so this is near 0 after the warm-up.
TABLES = [
    ("S1, the seed: n=2, ms=200,100 (ideal p50 = 200 ms; c=200 after a warm-up; floor = "
     "the upstream alone just before; over floor = c=200 minus it)",
     [("c=1 p50 ms", "S1c1", "p50", 1, 1), ("c=1 p99 ms", "S1c1", "p99", 1, 1),
      ("c=200 req/s", "S1c200", "rps", 0, 1), ("c=200 p50 ms", "S1c200", "p50", 1, 1),
      ("c=200 p99 ms", "S1c200", "p99", 1, 1), ("floor p50", "S1floor", "p50", 1, 1),
      ("floor p99", "S1floor", "p99", 1, 1), ("p50 over floor", "S1c200", "p50_over", 2, 1),
      ("p99 over floor", "S1c200", "p99_over", 1, 1), ("c=200 errors", "S1c200", "errors", 0, 1),
      ("c=200 conns/1k", "S1c200", "conns_per_1k", 1, 1)],
     [("p50", "S1c200", "p50"), ("p99", "S1c200", "p99"),
      ("p99 over floor", "S1c200", "p99_over")]),
    ("S2, throughput: n=4, ms=0, 64 clients (after a warm-up)",
     [("req/s", "S2", "rps", 0, 1), ("p50 ms", "S2", "p50", 2, 1), ("p99 ms", "S2", "p99", 2, 1),
      ("errors", "S2", "errors", 0, 1), ("CPU µs/req", "S2", "cpu_us", 1, 1),
      ("user µs", "S2", "user_us", 1, 1), ("kernel µs", "S2", "kernel_us", 1, 1),
      ("conns/1k", "S2", "conns_per_1k", 1, 1)],
     [("req/s", "S2", "rps"), ("CPU", "S2", "cpu_us")]),
    ("S3, memory: n=2, ms=1000, {s3_clients} clients",
     [("req/s", "S3", "rps", 0, 1), ("p50 ms", "S3", "p50", 0, 1), ("p99 ms", "S3", "p99", 0, 1),
      ("errors", "S3", "errors", 0, 1), ("of which unanswered", "S3", "unanswered", 0, 1),
      ("idle RSS MiB", "S3", "idle_rss", 1, MIB),
      ("peak RSS MiB", "S3", "peak_rss", 1, MIB), ("KiB/in-flight", "S3", "kib_per_req", 1, 1),
      ("upstream conns", "S3", "conns", 0, 1)],
     [("KiB", "S3", "kib_per_req")]),
    ("S5, scaling: S2 with 1 and 2 workers",
     [("W=1 req/s", "S2", "rps", 0, 1), ("W=2 req/s", "S5", "rps", 0, 1),
      ("W=2/W=1", "S5", "speedup", 2, 1), ("W=2 CPU µs/req", "S5", "cpu_us", 1, 1),
      ("W=2 conns/1k", "S5", "conns_per_1k", 1, 1)],
     [("W=2 req/s", "S5", "rps")]),
    ("S2 over https (nginx + Lua mock with TLS): HTTP/2 and HTTP/1.1",
     [("h2 req/s", "S2h2", "rps", 0, 1), ("h2 CPU µs/req", "S2h2", "cpu_us", 1, 1),
      ("h2 user µs", "S2h2", "user_us", 1, 1), ("h2 conns/1k", "S2h2", "conns_per_1k", 1, 1),
      ("h2 errors", "S2h2", "errors", 0, 1),
      ("h1 req/s", "S2h1", "rps", 0, 1), ("h1 CPU µs/req", "S2h1", "cpu_us", 1, 1),
      ("h1 user µs", "S2h1", "user_us", 1, 1), ("h1 conns/1k", "S2h1", "conns_per_1k", 1, 1),
      ("h1 errors", "S2h1", "errors", 0, 1)],
     [("h2 CPU", "S2h2", "cpu_us"), ("h1 CPU", "S2h1", "cpu_us")]),
]
# Tables whose scenarios only some stacks run list only those stacks.
ONLY_THOSE_WHO_RAN = {"S2h2", "S2h1"}


def fmt(value, digits=0, scale=1):
    return "–" if value is None else f"{value * scale:,.{digits}f}"


def not_run(result):
    return result.get("error", "").startswith("not run")


def figure(result, scenario, key):
    return result.get(scenario, {}).get(key)


def ratio(a, b):
    if a is None or not b:
        return "–"
    r = a / b
    return f"{r:,.0f}" if r >= 100 else f"{r:.2f}" if r >= 0.01 else f"{r:.4f}"


def md_table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"
                    for row in rows]


def scenario_table(title, columns, ratios, results, cfg):
    fan = next((r for r in results if r["name"] == "fanout"), {})
    headers = ["stack"] + [c[0] for c in columns] + [f"fanout/peer {r[0]}" for r in ratios]
    rows = []
    scenarios = {c[1] for c in columns}
    if scenarios <= ONLY_THOSE_WHO_RAN:
        results = [r for r in results if scenarios & set(r) or r.get("phase_errors")]
        if not results:
            return []
    for res in results:
        if not_run(res):
            rows.append([res["name"], res["error"]] + [""] * (len(headers) - 2))
            continue
        row = [res["name"]] + [
            "failed (see Failures)" if s in res.get("phase_errors", {})
            else fmt(figure(res, s, k), d, m) for _, s, k, d, m in columns]
        row += ["–" if res is fan else ratio(figure(fan, s, k), figure(res, s, k))
                for _, s, k in ratios]
        rows.append(row)
    return ["", "## " + title.format(**cfg), ""] + md_table(headers, rows)


S6_ROWS = [("S6", ""), ("S6p95", ", hedge after the origin's p95 (`hedge=p95`)"),
           ("S6h50", ", hedge after 50 ms (`hedge-after-ms=50`)")]


def s6_table(results):
    """Every stack without hedging, and fanout's hedged variants, with
    fanout's p99 ratios against its own run without hedging."""
    fan = next((r for r in results if r["name"] == "fanout"), {})
    base = figure(fan, "S6", "p99")
    rows = []
    for res in results:
        for key, label in S6_ROWS:
            if key == "S6" and key in res.get("phase_errors", {}):
                rows.append([res["name"], "failed (see Failures)"] + [""] * 8)
            f = res.get(key)
            if not f:
                continue
            rows.append([res["name"] + label, fmt(f["think_ms"]), fmt(f["rps"]),
                         fmt(f["p50"], 1), fmt(f["p99"], 1), fmt(f.get("p999"), 1),
                         ratio(f["p99"], base) if res is fan else "–",
                         "–" if f.get("extra_pct") is None else f"{f['extra_pct']:+.1f} %",
                         fmt(f["errors"])])
    if not rows:
        return []
    return ["", "## S6, the tail: n=4, ms=5, 1 % of upstream requests 1,000 ms slower, "
            "64 clients paced (each waits `wait ms` after every answer)", ""] + md_table(
        ["stack", "wait ms", "req/s", "p50 ms", "p99 ms", "p99.9 ms",
         "p99 / fanout's without hedging", "extra upstream requests", "errors"], rows)


def s7_table(results):
    fan = next((r for r in results if r["name"] == "fanout"), {})
    s2, s7 = fan.get("S2"), fan.get("S7")
    if not s7:
        return []
    rows = [[what, fmt(f["rps"]), fmt(f["p50"], 2), fmt(f["p99"], 2), fmt(f["errors"]),
             fmt(f["cpu_us"], 1), fmt(f["user_us"], 1), fmt(f["conns_per_1k"], 1),
             ratio(f["cpu_us"], s2 and s2["cpu_us"])]
            for what, f in (("fanout, the C handler (S2)", s2), ("fanout serve, a gateway file",
                                                                  s7)) if f]
    return ["", "## S7, the gateway: S2's 4 calls from a gateway file "
            "(bench/peers/fanout-gateway) beside the C handler", ""] + md_table(
        ["server", "req/s", "p50 ms", "p99 ms", "errors", "CPU µs/req", "user µs", "conns/1k",
         "CPU / the handler's"], rows)


def s6_targets(fan):
    base = figure(fan, "S6", "p99")
    lines = []
    for key, label in S6_ROWS[1:]:
        f = fan.get(key)
        if not f or base is None or f["p99"] is None or f.get("extra_pct") is None:
            continue
        extra = f["extra_pct"] - (figure(fan, "S6", "extra_pct") or 0)
        ok = f["p99"] <= 0.1 * base and extra <= 5
        lines.append(f"- S6 p99 with hedging ≤ 0.1 × without, for ≤ 5 % extra upstream "
                     f"requests{label}: **{'PASS' if ok else 'FAIL'}** (p99 {f['p99']:.1f} vs "
                     f"{base:.1f} ms, ratio {f['p99'] / base:.3f}; {extra:+.1f} % requests "
                     "beyond the run without hedging)")
    return lines


def best_peer(results, scenario, key):
    """(name, value) of the lowest figure among the peers that ran it without errors."""
    ok = [(r[scenario][key], r["name"]) for r in results if r["name"] != "fanout"
          and scenario in r and r[scenario]["errors"] == 0 and r[scenario].get(key) is not None]
    return min(ok)[::-1] if ok else (None, None)


def check(label, value, limit, unit=""):
    if value is None or limit is None:
        return f"- {label}: n/a"
    verdict = "PASS" if value <= limit else "FAIL"
    return (f"- {label}: **{verdict}** ({value:,.1f}{unit} vs {limit:,.1f}{unit}, "
            f"ratio {value / limit:.2f})")


def targets(results, bounds):
    """The targets, PASS/FAIL with the figures. bounds: (static, Lua mock) S4 bounds."""
    fan = next((r for r in results if r["name"] == "fanout"), None)
    if fan is None or not_run(fan):
        why = fan["error"] if fan else "not selected"
        return ["", "## Targets (fanout)", "", f"Not evaluated: fanout {why}."]
    static, lua = bounds
    peer1, over99 = best_peer(results, "S1c200", "p99_over")
    peer2, cpu = best_peer(results, "S2", "cpu_us")
    peer3, kib = best_peer(results, "S3", "kib_per_req")
    s1p50, s1p99 = figure(fan, "S1c200", "p50"), figure(fan, "S1c200", "p99")
    s2cpu, s3kib, s3err = (figure(fan, "S2", "cpu_us"), figure(fan, "S3", "kib_per_req"),
                           figure(fan, "S3", "errors"))
    nginx = next((r for r in results if r["name"] == "nginx-lua"), {})
    floor = fan.get("S1floor")
    lines = ["", "## Targets (fanout)", ""]
    if floor and floor["p50"] is not None and floor["p99"] is not None:
        lines += [
            check("S1 p50 over the floor ≤ 0.5 ms", figure(fan, "S1c200", "p50_over"), 0.5,
                  " ms") + f" (p50 {fmt(s1p50, 1)} ms, the upstream alone {floor['p50']:.1f})",
            check(f"S1 p99 over the floor ≤ 0.5 × best peer's ({peer1})",
                  figure(fan, "S1c200", "p99_over"), over99 and 0.5 * over99, " ms")
            + f" (p99 {fmt(s1p99, 1)} ms, the upstream alone {floor['p99']:.1f})"]
    else:
        lines += ["- S1 against its floor: n/a (the floor is not measured in this mode)"]
    lines += [check(f"S2 CPU ≤ 0.8 × best peer ({peer2})", s2cpu, cpu and 0.8 * cpu, " µs"),
              check("S2 CPU ≤ 1.3 × S4 static bound", s2cpu, static and 1.3 * static, " µs"),
              f"- S2 CPU / S4 Lua-mock bound: {ratio(s2cpu, lua)}; / nginx + Lua peer: "
              f"{ratio(s2cpu, figure(nginx, 'S2', 'cpu_us'))}",
              f"- S3 zero errors: **{'PASS' if s3err == 0 else 'FAIL'}** ({fmt(s3err)} errors)",
              check("S3 ≤ 24 KiB per in-flight request", s3kib, 24, " KiB"),
              check(f"S3 ≤ 0.5 × best peer ({peer3})", s3kib, kib and 0.5 * kib, " KiB")]
    s7 = figure(fan, "S7", "cpu_us")
    lines.append(check("S7 (the gateway) CPU ≤ 1.15 × S2 (the C handler)", s7,
                       s2cpu and 1.15 * s2cpu, " µs"))
    return lines + s6_targets(fan)


def upstream_table(probes, chosen):
    def use(p):
        return "S4 bound only" if p["name"] == "nginx-static" else "in use" * (p["name"] == chosen)
    rows = [[p["name"], f"not used: {p['error']}", "", "", ""] if "error" in p else
            [p["name"], fmt(p["rps"]), fmt(p["cpu_us"], 1), fmt(p["user_us"], 1), use(p)]
            for p in probes]
    return ["", "## Upstream (64 clients, /delay?ms=0)", ""] + md_table(
        ["upstream", "req/s", "CPU µs/exchange", "of which user", ""], rows)


def s4_bound(probes):
    """(static bound, Lua-mock bound) in µs per aggregated S2 request, and the
    section: an S2 request is 1 client exchange and 4 upstream exchanges."""
    def of(name):
        """A probe's CPU per exchange, also from one rejected as an upstream
        for its latency (a busy machine), which the bound does not need."""
        return next((p for p in probes if p["name"] == name and p.get("cpu_us")), None)
    static, lua = of("nginx-static"), of("nginx-lua")
    lines = ["", "## S4, the loopback bound", ""]
    for p, what in ((static, "nginx answering a fixed body (`return 200`, no Lua, no access "
                             "log): the cheapest exchange there is; the S2 target's bound"),
                    (lua, "the nginx + Lua mock upstream (it costs more than a static answer)")):
        if p:
            lines.append(f"- {what}: {p['cpu_us']:.1f} µs CPU per exchange ({p['user_us']:.1f} "
                         f"user); × (4 + 1) = **{5 * p['cpu_us']:.1f} µs** per aggregated request"
                         + (" (from a probe that rejected it as the upstream)" if "error" in p
                            else ""))
        else:
            lines.append(f"- {what}: did not run")
    if static and lua:
        lines.append(f"- Lua mock / static: {lua['cpu_us'] / static['cpu_us']:.2f}")
    return (static and 5 * static["cpu_us"], lua and 5 * lua["cpu_us"]), lines


def machine():
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor())
    mem = next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    distro = next((line.split("=", 1)[1].strip().strip('"') for line in open("/etc/os-release")
                   if line.startswith("PRETTY_NAME=")), "?")
    return (f"{model}, {os.cpu_count()} cores, {int(mem) / 2**20:.0f} GiB, "
            f"Linux {platform.release()}, {distro}")


def deb_version(pkg):
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "not installed"


FANOUT_BINARIES = (("FANOUT_PEER", "build/bench/fanout-peer"), ("FANOUT_BIN", "build/fanout"))


def fanout_version():
    """The binaries (relative to the repository when they are in it: a
    results file names no machine's paths) and the commit they come from."""
    lines = []
    for env, default in FANOUT_BINARIES:
        path = os.environ.get(env) or os.path.join(procs.REPO, default)
        shown = os.path.relpath(path, procs.REPO)
        if shown.startswith(".."):
            shown = os.path.basename(path)
        if os.path.exists(path):
            when = datetime.datetime.fromtimestamp(os.path.getmtime(path))
            lines.append(f"{shown} (built {when:%Y-%m-%d %H:%M})")
        else:
            lines.append(f"{shown} (missing)")
    try:
        commit = subprocess.run(["git", "-C", procs.REPO, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError:
        commit = ""
    return ", ".join(lines) + (f", commit {commit}" if commit else "")


def versions(names):
    lines = [f"- fanout: {fanout_version()}"] if "fanout" in names else []
    for name in [n for n in names if n in PACKAGES] + ["tools"]:
        pkgs = ", ".join(f"{p} {deb_version(p)}" for p in PACKAGES[name])
        lines.append(f"- {name}: {pkgs}")
    return ["", "## Versions", ""] + lines


CHART = """
set terminal pngcairo size 1500,560 font "sans,10"
set output '{png}'
set datafile missing '?'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set xtics rotate by -35 noenhanced
set key top left noenhanced
set grid ytics
set logscale y
set multiplot layout 1,3 title '{title}' noenhanced
set title 'S1 latency, 200 clients (n=2, ms=200,100)'
set ylabel 'ms (log)'
plot '{dat}' using 2:xtic(1) title 'p50', '' using 3 title 'p99', \
     200 with lines dt 2 lc 'black' title 'ideal 200 ms'
set title 'S2 latency, 64 clients (n=4, ms=0)'
plot '{dat}' using 4:xtic(1) title 'p50', '' using 5 title 'p99'
set title 'S2 CPU per aggregated request'
set key top right
set ylabel 'CPU µs (log)'
plot '{dat}' using 6:xtic(1) title 'CPU µs per request' lc 3{bound}
unset multiplot
"""


def chart(path, results, bound, title):
    """Draw the PNG with gnuplot; returns None or why it could not."""
    def cell(r, s, k):
        v = figure(r, s, k)
        return "?" if v is None else f"{v:.3f}"

    dat = path + ".dat"
    with open(dat, "w") as f:
        for r in results:
            label = r["name"] + (" (not run)" if not_run(r) else "")
            f.write(" ".join([f'"{label}"'] + [cell(r, s, k) for s, k in (
                ("S1c200", "p50"), ("S1c200", "p99"), ("S2", "p50"), ("S2", "p99"),
                ("S2", "cpu_us"))]) + "\n")
    line = f", {bound:.3f} with lines dt 2 lc 'black' title 'S4 static bound'" if bound else ""
    script = CHART.format(png=path, dat=dat, title=title, bound=line)
    try:
        out = subprocess.run(["gnuplot"], input=script, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    finally:
        os.remove(dat)
    return out.stderr.strip()[-300:] if out.returncode else None


def derive(results):
    for r in results:
        if "S2" in r and "S5" in r and r["S2"]["rps"]:
            r["S5"]["speedup"] = r["S5"]["rps"] / r["S2"]["rps"]
        s1, floor = r.get("S1c200"), r.get("S1floor")
        if s1 and floor:
            for key in ("p50", "p99"):
                over = None if s1[key] is None or floor[key] is None else s1[key] - floor[key]
                s1[key + "_over"] = over


def s1_floor(results):
    floors = [r["S1floor"] for r in results if r.get("S1floor", {}).get("p99") is not None]
    if not floors:
        return []
    lo, hi = min(f["p99"] for f in floors), max(f["p99"] for f in floors)
    return ["", "## S1's floor: the upstream alone", "",
            "Before each stack's S1 at 200 clients, wrk sends S1's 200 clients straight to the "
            "upstream's /delay?ms=200 (the slowest S1 call), with the same warm-up. A stack in "
            "front of it adds its own work to this on the same cores: no S1 figure at 200 "
            f"clients can be below it (give or take the noise). Its p99 ranged {lo:.1f}–{hi:.1f} "
            "ms over the run: the load of the machine moves it, which is why each stack is "
            "held against the floor measured just before it."]


def write(out, mode, cfg, probes, results, upstream, run):
    """Write <out>/<date>-<host>[-mode].md and .png; returns the markdown."""
    os.makedirs(out, exist_ok=True)
    now = datetime.datetime.now()
    host = socket.gethostname()
    base = os.path.join(out, f"{now:%Y-%m-%d}-{host}" + ("" if mode == "full" else f"-{mode}"))
    derive(results)
    chosen = upstream.name
    bounds, s4 = s4_bound(probes)
    bound = bounds[0]
    lines = [f"# fanout bench, {now:%Y-%m-%d %H:%M}, {host}", "",
             f"- machine: {machine()}",
             f"- mode: {mode}; seconds of load: S1 {cfg['s1']} (at 200 clients and its floor "
             f"{cfg['s1c200']}), S2 {cfg['s2']}, S3 {cfg['s3']}, S5 {cfg['s5']}, "
             f"S6 {cfg['s6']} per variant; run took {run['seconds']:.0f} s",
             f"- load average (1 min) at start {run['load']:.2f}, at end {os.getloadavg()[0]:.2f}: "
             "anything else running on the machine skews every figure",
             f"- upstream in use: {chosen}; fanout/peer ratios: < 1 is better for "
             "latency, CPU and memory, > 1 is better for req/s",
             f"- warm-up: {cfg['warm']} s of the same load, then a wait until the stack is "
             "idle, before S1 at 200 clients, S2, S5, the https variants and the bounds",
             f"- chart: {os.path.basename(base)}.png"]
    lines += [f"- **upstream replaced during the run**: {why}" for why in upstream.failures]
    lines += upstream_table(probes, chosen)
    for title, columns, ratios in TABLES:
        lines += scenario_table(title, columns, ratios, results, cfg)
    lines += s7_table(results) + s6_table(results)
    lines += s1_floor(results) + s4 + targets(results, bounds)
    failed = [f"- {r['name']}: {r['error']}" for r in results
              if r.get("error", "").startswith("failed")]
    failed += [f"- {r['name']} {key}: {why}" for r in results
               for key, why in r.get("phase_errors", {}).items()]
    lines += (["", "## Failures", ""] + failed if failed else []) + versions(
        [r["name"] for r in results])
    problem = chart(base + ".png", results, bound, f"fanout bench {now:%Y-%m-%d} {host} ({mode})")
    if problem:
        lines += ["", f"Chart not drawn: {problem}"]
    md = "\n".join(lines) + "\n"
    with open(base + ".md", "w") as f:
        f.write(md)
    return md + f"\nwritten: {base}.md" + ("" if problem else f", {base}.png")
