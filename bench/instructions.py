"""The instruction-count guard: fanout-peer's user-space instructions per
aggregated S2 request (n=4, ms=0), counted by callgrind, against the
baseline committed in bench/baseline.json. Instruction counts barely move
from run to run, unlike time on a shared machine, so a change that makes
the request path heavier shows here at once.

    python3 bench/instructions.py [--peer P] [--mock M] [--build-type T]
                                  [--sanitized 0|1] [--update REASON]

It fails (exit 1) when the figure is more than the baseline's tolerance
(10 %) above it, skips (exit 77) in a sanitizer build or a build type other
than the baseline's, and with --update REASON writes the figure as the new
baseline (a deliberate commit: say why in REASON and in its message).

The load is deterministic: CLIENTS keep-alive connections in lock step
(each round sends one request on every connection, then reads every
answer), WARM rounds before callgrind counts, ROUNDS counted. The mock
upstream runs natively; only the peer is under valgrind.
"""
import argparse
import datetime
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BASELINE = os.path.join(HERE, "baseline.json")
PATH = "/fanout?n=4&ms=0"
CLIENTS, WARM, ROUNDS = 4, 50, 100
SKIP = 77  # ctest's SKIP_RETURN_CODE


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_answer(port, proc, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"instructions: {what} exited with code {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", PATH if what == "the peer" else "/delay?ms=0")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"instructions: {what} did not answer within {timeout} s")


def rounds(port, n):
    """n lock-step rounds on CLIENTS keep-alive connections; every answer must be 200."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(CLIENTS)]
    try:
        for _ in range(n):
            for c in conns:
                c.request("GET", PATH)
            for c in conns:
                r = c.getresponse()
                body = r.read()
                if r.status != 200:
                    sys.exit(f"instructions: {PATH} answered {r.status}: {body[:200]!r}")
    finally:
        for c in conns:
            c.close()


def callgrind_control(*args):
    out = subprocess.run(["callgrind_control", *args], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        sys.exit(f"instructions: callgrind_control {' '.join(args)} failed: {out.stderr.strip()}")


def total_instructions(path):
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    sys.exit(f"instructions: no totals in {path}")


def measure(peer, mock):
    """Instructions per aggregated request of `peer` against `mock`."""
    tmp = tempfile.mkdtemp(prefix="fanout-instr-")
    procs = []
    try:
        up, port = free_port(), free_port()
        procs.append(subprocess.Popen(
            [mock, "mock", "--workers", "0", "--port", str(up), "--access-log", "off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        wait_answer(up, procs[-1], "the mock")
        log = open(os.path.join(tmp, "peer.log"), "w")
        procs.append(subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={tmp}/cg.%p", peer, "--port", str(port),
             "--upstream", f"http://127.0.0.1:{up}", "--workers", "0", "--access-log", "off"],
            stdout=log, stderr=log, start_new_session=True))
        vg = procs[-1]
        wait_answer(port, vg, "the peer")
        rounds(port, WARM)
        callgrind_control("-i", "on", str(vg.pid))
        rounds(port, ROUNDS)
        callgrind_control("-d", str(vg.pid))
        # The dump is the counts since instrumentation went on: the rounds
        # above and the worker's timers meanwhile (the Date refresh).
        dumps = []
        deadline = time.monotonic() + 30
        while not dumps and time.monotonic() < deadline:
            dumps = [p for p in glob.glob(f"{tmp}/cg.{vg.pid}*")
                     if not p.endswith(str(vg.pid)) and os.path.getsize(p)]
            time.sleep(0.2)
        if not dumps:
            sys.exit("instructions: callgrind wrote no dump")
        time.sleep(0.5)  # let the writer finish the file
        return total_instructions(sorted(dumps)[-1]) / (CLIENTS * ROUNDS)
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peer", default=os.environ.get("FANOUT_PEER")
                   or os.path.join(REPO, "build/bench/fanout-peer"))
    p.add_argument("--mock", default=os.environ.get("FANOUT_BIN")
                   or os.path.join(REPO, "build/fanout"))
    p.add_argument("--build-type", default="RelWithDebInfo",
                   help="the build's CMAKE_BUILD_TYPE (the baseline is for one type)")
    p.add_argument("--sanitized", default="0", help="1 in a sanitizer build: skipped")
    p.add_argument("--update", metavar="REASON", help="write the figure as the new baseline")
    args = p.parse_args()
    with open(BASELINE) as f:
        base = json.load(f)
    if args.sanitized == "1":
        print("instructions: skipped: a sanitizer build's instruction counts say nothing "
              "about the normal build's (the guard runs in the normal build)")
        sys.exit(SKIP)
    if args.build_type != base["build_type"] and not args.update:
        print(f"instructions: skipped: the baseline is for a {base['build_type']} build, "
              f"this one is {args.build_type or 'of no type'}")
        sys.exit(SKIP)
    for tool in ("valgrind", "callgrind_control"):
        if not shutil.which(tool):
            sys.exit(f"instructions: needs {tool} (apt-get install valgrind; scripts/deps.sh --test)")
    for path in (args.peer, args.mock):
        if not os.access(path, os.X_OK):
            sys.exit(f"instructions: {path} is missing: build first (bash scripts/build.sh)")
    figure = measure(args.peer, args.mock)
    limit = base["instructions_per_request"] * (1 + base["tolerance"])
    print(f"instructions: {figure:,.0f} per aggregated request ({PATH}, {CLIENTS} clients x "
          f"{ROUNDS} rounds after {WARM}); baseline {base['instructions_per_request']:,}, "
          f"limit {limit:,.0f} (+{base['tolerance']:.0%})")
    if args.update:
        base.update(instructions_per_request=round(figure), build_type=args.build_type,
                    measured=f"{datetime.date.today()}", reason=args.update)
        with open(BASELINE, "w") as f:
            json.dump(base, f, indent=2, ensure_ascii=False)
            f.write("\n")
        print(f"instructions: {BASELINE} updated; commit it with the reason")
        return
    if figure > limit:
        sys.exit(f"instructions: FAIL: {figure:,.0f} is {figure / base['instructions_per_request'] - 1:+.1%} "
                 f"over the baseline. Find what grew (bash bench/profile.sh instructions), or, if "
                 f"the cost is meant, re-baseline in a commit that says why: "
                 f"python3 bench/instructions.py --update 'REASON'")
    if figure < base["instructions_per_request"] * (1 - base["tolerance"]):
        print(f"instructions: {1 - figure / base['instructions_per_request']:.0%} below the "
              "baseline: lower it (--update REASON) so that the guard holds the gain")


if __name__ == "__main__":
    main()
