"""The layers of src/ point one way. Each folder is a layer; a file may use
its own layer and the layers below it, never one above it nor one beside
it (http, client and redis sit side by side, and none uses another):

    core < coro < runtime < {http, client, redis} < task < app < server

"Uses" is checked twice: the #include "X/..." lines of every file under
src/, and the calls and data the compiled objects take from each other
(`nm` of the library's objects: a symbol a file needs is charged to the
layer of the file that defines it). Prints every violation and a closing
line; exits non-zero if there is one.

usage: check_layers.py SRC_DIR OBJECT_DIR"""
import os
import re
import subprocess
import sys

# Layer name -> rank; layers of equal rank sit side by side.
RANK = {"core": 0, "coro": 1, "runtime": 2, "http": 3, "client": 3, "redis": 3, "task": 4, "app": 5,
        "server": 6}


def may_use(user, used):
    return user == used or RANK[used] < RANK[user]


def include_violations(src):
    found = []
    for layer in sorted(os.listdir(src)):
        if layer not in RANK:
            found.append(f"src/{layer}: a folder that is no layer (add it to RANK)")
            continue
        for name in sorted(os.listdir(os.path.join(src, layer))):
            path = os.path.join(src, layer, name)
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    m = re.match(r'\s*#\s*include\s+"([a-z_]+)/', line)
                    if m and m.group(1) in RANK and not may_use(layer, m.group(1)):
                        found.append(f"src/{layer}/{name}:{n}: includes {m.group(1)}/")
    return found


def nm(path, *flags):
    out = subprocess.run(["nm", *flags, path], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def object_layers(objdir):
    """(layer, object path) for every object under OBJECT_DIR/<layer>/."""
    objs = []
    for layer in sorted(os.listdir(objdir)):
        d = os.path.join(objdir, layer)
        if layer in RANK and os.path.isdir(d):
            objs += [(layer, os.path.join(d, f)) for f in sorted(os.listdir(d)) if f.endswith(".o")]
    return objs


def symbol_violations(objdir):
    objs = object_layers(objdir)
    if not objs:
        return [f"{objdir}: no objects (build first)"]
    owner = {}
    for layer, obj in objs:
        for line in nm(obj, "--defined-only"):
            parts = line.split()
            if len(parts) == 3 and parts[1] in "TDBRtdbr" and parts[1].isupper():
                owner[parts[2]] = (layer, os.path.basename(obj))
    found = []
    for layer, obj in objs:
        for line in nm(obj, "--undefined-only"):
            sym = line.split()[-1]
            if sym in owner and not may_use(layer, owner[sym][0]):
                found.append(f"src/{layer}/{os.path.basename(obj)[:-2]}: uses {sym} "
                             f"of src/{owner[sym][0]}/{owner[sym][1][:-2]}")
    return found


def main():
    src, objdir = sys.argv[1], sys.argv[2]
    found = include_violations(src) + symbol_violations(objdir)
    for v in found:
        print(v)
    print(f"{0 if found else 1} passed, {1 if found else 0} failed "
          f"({len(found)} layer violations)")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
