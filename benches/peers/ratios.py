#!/usr/bin/env python3
"""The ratios of issue #12 from a peer-kit results directory (hello.jsonl, comet.jsonl).

usage: ratios.py RESULTS_DIR

Each figure is the median over the run's repetitions; a ratio divides mixserve's median by
the peer's, so >= 1.00 means mixserve is ahead (for RSS and CPU, lower is better, and the
ratio is the peer's over ours). Prints a Markdown table.
"""
import json
import os
import statistics
import sys

SCHEDULED = "mixserve-scheduled"
PREFORKED = "mixserve-preforked-2w-scheduled"


def load(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def median(rows, key):
    values = [key(r) for r in rows]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def cpu_s(r):
    return r.get("srv_user_s", 0) + r.get("srv_sys_s", 0)


def per_cpu_s(r):
    cpu = cpu_s(r)
    return r["requests"] / cpu if cpu else None


def hello(rows, peer, setup, conns, key):
    rs = [r for r in rows if r["peer"] == peer and r["setup"] == setup and r["conns"] == conns]
    return median(rs, key)


def comet(rows, peer, key):
    rs = [r for r in rows if r["peer"] == peer and r.get("pass")]
    return median(rs, key)


def fmt(v, unit=""):
    if v is None:
        return "–"
    return f"{v:,.0f}{unit}" if v >= 100 else f"{v:.2f}{unit}"


def ratio(ours, theirs, lower_is_better=False):
    if ours is None or theirs is None or ours == 0 or theirs == 0:
        return "–"
    r = theirs / ours if lower_is_better else ours / theirs
    mark = "" if r >= 1.0 else " (behind)"
    return f"{r:.2f}×{mark}"


def main():
    out = sys.argv[1]
    hello_rows = load(os.path.join(out, "hello.jsonl"))
    comet_rows = load(os.path.join(out, "comet.jsonl"))
    print("| workload | mixserve | tokio+hyper | nginx | may_minihttp | ratio |")
    print("|---|---|---|---|---|---|")
    for setup, conns in (("pinned", 50), ("pinned", 1000)):
        for what, key in (("req/s", lambda r: r["rps"]), ("req per server CPU-s", per_cpu_s)):
            ours = hello(hello_rows, SCHEDULED, setup, conns, key)
            tokio = hello(hello_rows, "tokio-hyper", setup, conns, key)
            nginx = hello(hello_rows, "nginx-1w", setup, conns, key)
            may = hello(hello_rows, "may_minihttp", setup, conns, key)
            print(f"| hello c={conns} {setup}, {what} | scheduled {fmt(ours)} | {fmt(tokio)} "
                  f"| 1w {fmt(nginx)} | {fmt(may)} "
                  f"| {ratio(ours, tokio)} tokio, {ratio(ours, nginx)} nginx-1w |")
    for what, key in (("req/s", lambda r: r["rps"]), ("req per server CPU-s", per_cpu_s)):
        ours = hello(hello_rows, PREFORKED, "shared", 1000, key)
        tokio = hello(hello_rows, "tokio-hyper", "shared", 1000, key)
        nginx = hello(hello_rows, "nginx-2w", "shared", 1000, key)
        may = hello(hello_rows, "may_minihttp", "shared", 1000, key)
        print(f"| hello c=1000 shared, {what} | preforked 2w×scheduled {fmt(ours)} | {fmt(tokio)} "
              f"| 2w {fmt(nginx)} | {fmt(may)} | {ratio(ours, nginx)} nginx-2w |")
    for what, key, unit in (("peak RSS", lambda r: r.get("rss_peak_mib"), " MiB"),
                            ("server user+sys", lambda r: r.get("srv_user_s", 0) + r.get("srv_sys_s", 0), " s")):
        n = next((r.get("n") for r in comet_rows), None)
        ours = comet(comet_rows, SCHEDULED, key)
        tokio = comet(comet_rows, "tokio-hyper", key)
        may = comet(comet_rows, "may_minihttp", key)
        pre = comet(comet_rows, PREFORKED, key)
        print(f"| comet {n or '?'} waiters, {what} | scheduled {fmt(ours, unit)} "
              f"(preforked 2w {fmt(pre, unit)}) | {fmt(tokio, unit)} | – | {fmt(may, unit)} "
              f"| {ratio(ours, tokio, lower_is_better=True)} tokio |")
    failed = [r["peer"] for r in comet_rows if not r.get("pass")]
    errors = [r["peer"] for r in hello_rows
              if any(r.get(k, 0) for k in ("err_connect", "err_read", "err_write", "err_timeout", "err_status"))]
    if failed:
        print(f"\ncomet runs that failed: {', '.join(sorted(set(failed)))}")
    if errors:
        print(f"\nhello runs with errors: {', '.join(sorted(set(errors)))}")


if __name__ == "__main__":
    main()
