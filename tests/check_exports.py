#!/usr/bin/env python3
"""Checks the dynamic symbols of libfanout.so against include/fanout.h.

Usage: check_exports.py [--nm NM] LIBFANOUT_SO FANOUT_H

The library must export exactly the public API: every defined dynamic symbol
is a fan_* name (never an internal fan__* name nor the bundled llhttp_*), and
every function fanout.h declares with FAN_API is among them. A function
declared in the header without FAN_API is an error as well, since it would
silently be missing from the shared library. Exits 0 when all holds, 1 with
one line per problem otherwise.
"""

import re
import subprocess
import sys


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def header_functions(path):
    """Returns (names declared with FAN_API, names declared without it)."""
    text = strip_comments(open(path, encoding="utf-8").read())
    text = "\n".join(l for l in text.split("\n") if not l.lstrip().startswith("#"))
    exported, bare = set(), set()
    # Top-level statements: split at ';' and '}' (struct and enum bodies hold
    # no function declarations, only fields and constants).
    for stmt in re.split(r"[;{}]", text):
        stmt = " ".join(stmt.split())
        if not stmt or stmt.startswith("typedef"):
            continue
        m = re.search(r"\b(fan_\w+)\s*\(", stmt)
        if not m or "(*" in stmt[: m.start()]:
            continue
        (exported if re.match(r"FAN_API\b", stmt) else bare).add(m.group(1))
    return exported, bare


def dynamic_symbols(nm, lib):
    out = subprocess.run([nm, "-D", "--defined-only", lib], check=True,
                         capture_output=True, text=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        kind, name = parts[-2], parts[-1]
        # Lowercase kinds are local (a coverage build lists its __start_ and
        # __stop_ section symbols so), except u (unique global) and i (ifunc);
        # A is an absolute symbol (_end and friends), neither code nor data.
        if kind == "A" or (kind.islower() and kind not in ("u", "i")):
            continue
        syms[name.split("@")[0]] = kind
    return syms


def main(argv):
    nm = "nm"
    if len(argv) > 2 and argv[1] == "--nm":
        nm = argv[2]
        argv = argv[:1] + argv[3:]
    if len(argv) != 3:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    lib, header = argv[1], argv[2]
    declared, bare = header_functions(header)
    syms = dynamic_symbols(nm, lib)
    problems = []
    if not declared:
        problems.append("no FAN_API declaration found in %s" % header)
    for name in sorted(bare):
        problems.append("declared in fanout.h without FAN_API: %s" % name)
    for name, kind in sorted(syms.items()):
        if name.startswith("llhttp_"):
            problems.append("bundled llhttp symbol exported: %s (%s)" % (name, kind))
        elif name.startswith("fan__"):
            problems.append("internal symbol exported: %s (%s)" % (name, kind))
        elif not name.startswith("fan_"):
            problems.append("foreign symbol exported: %s (%s)" % (name, kind))
        elif name not in declared:
            problems.append("exported but not declared FAN_API in fanout.h: %s (%s)" % (name, kind))
    for name in sorted(declared - set(syms)):
        problems.append("declared FAN_API in fanout.h but not exported: %s" % name)
    for p in problems:
        print(p)
    print("%d symbols exported, %d FAN_API functions declared, %d problems"
          % (len(syms), len(declared), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
