#!/usr/bin/env python3
"""Reads bench/work/spawn.json (hyperfine --export-json) and meta.json (what
bench/spawn.sh ran), prints a table of medians and the ccos-jail ratios, and
writes bench/work/spawn.md, a snippet for a README.

usage: report.py [WORKDIR]      (default: bench/work beside this file)
"""

import json
import os
import statistics
import sys

FLOOR = "true"  # /bin/true through the same wrapper as the jails
ORDER = ["ccos-jail", "ccos-jail, dynamic", "bwrap", "crun", "crun, no cgroup", "unshare", "true", "true, bare"]
WHAT = {
    "ccos-jail": "ccos-jail run -- /bin/true, default profile; statically linked (jail/build-static.sh)",
    "ccos-jail, dynamic": "the same, dynamically linked, as `cargo build` makes it",
    "bwrap": "bwrap --unshare-all, ro binds, --proc, --dev, --tmpfs /tmp, --cap-drop ALL, seccomp denylist",
    "crun": "crun run of an equivalent OCI bundle (cgroupfs: a cgroup in every v1 hierarchy)",
    "crun, no cgroup": "the same, crun --cgroup-manager=disabled",
    "unshare": "unshare --user --map-root-user --pid --fork --mount --net --uts --ipc --cgroup /bin/true",
    "true": "/bin/true (floor: wrapper + exec)",
    "true, bare": "/bin/true, no wrapper (the wrapper's own cost is the gap to `true`)",
}


def quantile(xs, q):
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0]
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def load(work):
    with open(os.path.join(work, "spawn.json")) as fh:
        results = json.load(fh)["results"]
    meta = {}
    path = os.path.join(work, "meta.json")
    if os.path.exists(path):
        with open(path) as fh:
            meta = json.load(fh)
    rows = {}
    for r in results:
        ms = [t * 1000 for t in r["times"]]
        rows[r["command"]] = {
            "n": len(ms),
            "median": statistics.median(ms),
            "p10": quantile(ms, 0.10),
            "p90": quantile(ms, 0.90),
            "min": min(ms),
            "mean": statistics.fmean(ms),
            "user": r.get("user", 0) * 1000,
            "system": r.get("system", 0) * 1000,
        }
    return rows, meta


def phases(work):
    """Median ms of each phase of ccos-jail's --report-json timings."""
    folder = os.path.join(work, "phases")
    if not os.path.isdir(folder):
        return []
    runs = []
    for name in os.listdir(folder):
        with open(os.path.join(folder, name)) as fh:
            runs.append(json.load(fh)["timings"])
    if not runs:
        return []
    keys = ["network_ms", "profile_ms", "cgroup_ms", "clone_ms", "setup_ms", "run_ms", "teardown_ms"]
    what = {
        "network_ms": "make the network namespace (the clone inherits it)",
        "profile_ms": "beside network, on a second thread: load the profile; its seccomp filter from the disk cache",
        "cgroup_ms": "beside network, after profile: find and open the cgroup root (v1: the group is made during setup)",
        "clone_ms": "plan the root, open bind sources, take an id range (v2: make the group)",
        "setup_ms": "clone3 (new namespaces) to the program's execve: root, cgroup, privileges, seccomp",
        "run_ms": "/bin/true itself, and the jail's namespaces going away",
        "teardown_ms": "reap, read and remove the cgroup",
    }
    rows = []
    for k in keys:
        values = [r[k] for r in runs if r.get(k) is not None]
        if values:
            rows.append((k[:-3], statistics.median(values), what[k], len(runs)))
    return rows


def ratio(a, b):
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def main():
    work = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "work")
    rows, meta = load(work)
    names = [n for n in ORDER if n in rows] + [n for n in rows if n not in ORDER]
    floor = rows[FLOOR]["median"] if FLOOR in rows else 0.0

    header = ["contender", "median ms", "p10 ms", "p90 ms", "min ms", "minus floor ms", "user+sys ms"]
    table = []
    for n in names:
        r = rows[n]
        net = f"{r['median'] - floor:.2f}" if FLOOR in rows and n not in (FLOOR, "true, bare") else ""
        table.append([n, f"{r['median']:.2f}", f"{r['p10']:.2f}", f"{r['p90']:.2f}",
                      f"{r['min']:.2f}", net, f"{r['user'] + r['system']:.2f}"])

    ratios = []
    for jail in ("ccos-jail", "ccos-jail, dynamic"):
        if jail not in rows:
            continue
        j = rows[jail]["median"]
        for other in ("bwrap", "crun", "crun, no cgroup"):
            if other in rows:
                o = rows[other]["median"]
                ratios.append((f"{jail} / {other}", ratio(j, o), ratio(j - floor, o - floor)))

    # Terminal.
    widths = [max(len(header[i]), *(len(t[i]) for t in table)) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    print()
    print(fmt.format(*header))
    for t in table:
        print(fmt.format(*t))
    print()
    if ratios:
        print("ratio of medians (raw / minus floor):")
        for name, raw, net in ratios:
            print(f"  {name:<37} {raw:>7}  {net:>7}")
    else:
        print("no ccos-jail row: no ratios")
    print()

    breakdown = phases(work)
    if breakdown:
        print(f"where ccos-jail's time goes (median of {breakdown[0][3]} runs, from --report-json):")
        for name, ms, what, _ in breakdown:
            print(f"  {name:<9} {ms:6.2f} ms  {what}")
        print()

    # Markdown snippet.
    v = meta.get("versions", {})
    md = []
    md.append(f"Spawn latency of a jailed `/bin/true`, {meta.get('runs', '?')} runs each in "
              f"{meta.get('rounds', 1)} rounds of rotated order, each round after "
              f"{meta.get('warmup', '?')} warmup runs (hyperfine {v.get('hyperfine', '?')}, `-N`), "
              f"{meta.get('date', '?')}.")
    md.append("")
    md.append(f"Host: {meta.get('cpu', '?')}, {meta.get('cores', '?')} cores, Linux {meta.get('kernel', '?')}; "
              f"bwrap {v.get('bwrap', '?')}, crun {v.get('crun', '?')}, util-linux {v.get('unshare', '?')}, "
              f"ccos-jail {v.get('ccos-jail', '?')}.")
    busy = meta.get("cpu_busy_pct")
    if busy:
        md[-1] += (f" CPUs busy with other work just before/after timing: "
                   f"{busy['before']}%/{busy['after']}%.")
    md.append("")
    md.append("| " + " | ".join(header) + " |")
    md.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for t in table:
        md.append("| " + " | ".join([f"`{t[0]}`"] + t[1:]) + " |")
    md.append("")
    if ratios:
        md.append("| ratio of medians | raw | minus floor |")
        md.append("|---|---:|---:|")
        for name, raw, net in ratios:
            md.append(f"| {name} | {raw} | {net} |")
        md.append("")
    md.append("Floor = `true` (the same `sh -c 'exec \"$@\" 3<\"$0\"'` wrapper every contender runs "
              "through, then `/bin/true`); *minus floor* is the jail's own cost.")
    md.append("")
    for n in names:
        if n in WHAT:
            md.append(f"- `{n}`: {WHAT[n]}")
    md.append("")
    if breakdown:
        md.append(f"Where ccos-jail's time goes (median of {breakdown[0][3]} runs, from `--report-json` timings; "
                  "the process start of ccos-jail itself is not in any phase):")
        md.append("")
        md.append("| phase | median ms | what |")
        md.append("|---|---:|---|")
        for name, ms, what, _ in breakdown:
            md.append(f"| {name} | {ms:.2f} | {what} |")
        md.append("")
    out = os.path.join(work, "spawn.md")
    with open(out, "w") as fh:
        fh.write("\n".join(md))
    print(f"markdown: {out}")


if __name__ == "__main__":
    main()
