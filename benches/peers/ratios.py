#!/usr/bin/env python3
"""The ratios of issue #12 from a peer-kit results directory (hello.jsonl, comet.jsonl).

usage: ratios.py RESULTS_DIR     (QUIET_STEAL=0.03 in the environment sets the threshold)

Each figure is the median over the run's repetitions; a ratio divides mixserve's median by
the peer's, so >= 1.00 means mixserve is ahead (for RSS and CPU, lower is better, and the
ratio is the peer's over ours). Prints a Markdown table over all samples.

When the run left a steal.log (compare.sh samples /proc/stat's steal column beside the hello
runs), each hello sample is charged with the share of CPU time the hypervisor stole during
its wrk window (the window ends at the mtime of the sample's wrk log and lasts duration_s).
A second table then takes its medians over the quiet samples only, those with a share at or
below QUIET_STEAL; stolen time slows every server, so a sample taken while the host was busy
measures the host, not the server. The share of every sample is listed below the tables.

Last, each ratio again from pairs: the kit runs every server once per repetition, one after
the other, so mixserve's sample and a peer's in the same repetition were taken minutes
apart at most. For each pair the ratio of the two, then the median of those ratios, how
many pairs mixserve won, and a 90 % bootstrap interval of the ratio of medians (the
repetitions resampled with replacement, a fixed seed): an interval that straddles 1.00
says this run cannot tell the two servers apart.
"""
import bisect
import random
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


def load_steal(path):
    """(times, steal ticks, total ticks) from compare.sh's sampler, or None."""
    if not os.path.exists(path):
        return None
    times, steal, total = [], [], []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                times.append(float(parts[0]))
                steal.append(int(parts[1]))
                total.append(int(parts[2]))
    return (times, steal, total) if len(times) >= 2 else None


def at(series, times, t):
    """A cumulative counter linearly interpolated at time t, or None outside the samples."""
    i = bisect.bisect_left(times, t)
    if i == 0 or i >= len(times):
        return None
    t0, t1 = times[i - 1], times[i]
    return series[i - 1] + (series[i] - series[i - 1]) * (t - t0) / (t1 - t0)


def steal_share(out, samples, row):
    """The share of CPU time stolen during one hello sample's wrk window, or None."""
    log = os.path.join(out, "logs", f"wrk.{row['peer']}.{row['setup']}.c{row['conns']}.r{row['rep']}.txt")
    if samples is None or not os.path.exists(log):
        return None
    times, steal, total = samples
    end = os.path.getmtime(log)
    start = end - row.get("duration_s", 0)
    s0, s1 = at(steal, times, start), at(steal, times, end)
    t0, t1 = at(total, times, start), at(total, times, end)
    if None in (s0, s1, t0, t1) or t1 <= t0:
        return None
    return (s1 - s0) / (t1 - t0)


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
    samples = load_steal(os.path.join(out, "steal.log"))
    for row in hello_rows:
        row["steal"] = steal_share(out, samples, row)
    if samples is None:
        table(hello_rows, comet_rows)
    else:
        threshold = float(os.environ.get("QUIET_STEAL", "0.03"))
        quiet = [r for r in hello_rows if r["steal"] is not None and r["steal"] <= threshold]
        print("All samples:\n")
        table(hello_rows, comet_rows)
        print(f"\nQuiet samples only (hypervisor steal <= {threshold:.0%} of CPU time; "
              f"{len(quiet)} of {len(hello_rows)} hello samples):\n")
        table(quiet, comet_rows, counts=True)
        print("\nSteal per hello sample, in repetition order:\n")
        steal_listing(hello_rows)
    print("\nPaired by repetition (req/s):\n")
    paired(hello_rows)
    problems(hello_rows, comet_rows)


def steal_listing(rows):
    keys = sorted({(r["setup"], r["conns"], r["peer"]) for r in rows})
    for setup, conns, peer in keys:
        rs = sorted((r for r in rows if (r["setup"], r["conns"], r["peer"]) == (setup, conns, peer)),
                    key=lambda r: r["rep"])
        shares = " ".join("?" if r["steal"] is None else f"{r['steal']:.0%}" for r in rs)
        print(f"- {setup} c={conns} {peer}: {shares}")


PAIRS = (
    (SCHEDULED, "tokio-hyper", "pinned", 50), (SCHEDULED, "nginx-1w", "pinned", 50),
    (SCHEDULED, "tokio-hyper", "pinned", 1000), (SCHEDULED, "nginx-1w", "pinned", 1000),
    (PREFORKED, "nginx-2w", "shared", 1000),
)


def paired(rows, resamples=2000):
    print("| row | pairs | mixserve won | median of pair ratios | ratio of medians, 90 % interval |")
    print("|---|---|---|---|---|")
    for ours, peer, setup, conns in PAIRS:
        by_rep = {}
        for r in rows:
            if r["setup"] == setup and r["conns"] == conns and r["peer"] in (ours, peer) and r["rps"]:
                by_rep.setdefault(r["rep"], {})[r["peer"]] = r["rps"]
        pairs = [(v[ours], v[peer]) for _, v in sorted(by_rep.items()) if ours in v and peer in v]
        if not pairs:
            continue
        won = sum(1 for a, b in pairs if a > b)
        rng = random.Random(12)
        boot = []
        for _ in range(resamples):
            pick = [rng.choice(pairs) for _ in pairs]
            boot.append(statistics.median(a for a, _ in pick) / statistics.median(b for _, b in pick))
        boot.sort()
        low, high = boot[int(0.05 * resamples)], boot[int(0.95 * resamples) - 1]
        point = statistics.median(a for a, _ in pairs) / statistics.median(b for _, b in pairs)
        name = "scheduled" if ours == SCHEDULED else "preforked 2w"
        print(f"| {setup} c={conns}, {name} / {peer} | {len(pairs)} | {won} "
              f"| {statistics.median(a / b for a, b in pairs):.2f}× "
              f"| {point:.2f}× ({low:.2f}–{high:.2f}) |")


# The hello figures of each row: what, how read off a sample, unit, lower is better.
# p99 is not among the criteria; it shows what a throughput figure can cost
# (a scheduler that serves some connections again and again while others wait has a
# smaller working set, and a long tail).
HELLO_FIGURES = (
    ("req/s", lambda r: r["rps"], "", False),
    ("req per server CPU-s", per_cpu_s, "", False),
    ("p99 latency", lambda r: r["p99_us"] / 1000 if r.get("p99_us") else None, " ms", True),
)


def count(rows, peer, setup, conns):
    return sum(1 for r in rows if r["peer"] == peer and r["setup"] == setup and r["conns"] == conns)


def table(hello_rows, comet_rows, counts=False):
    def n(peer, setup, conns):
        return f" (n={count(hello_rows, peer, setup, conns)})" if counts else ""

    print("| workload | mixserve | tokio+hyper | nginx | may_minihttp | ratio |")
    print("|---|---|---|---|---|---|")
    for setup, conns in (("pinned", 50), ("pinned", 1000)):
        for what, key, unit, lower in HELLO_FIGURES:
            ours = hello(hello_rows, SCHEDULED, setup, conns, key)
            tokio = hello(hello_rows, "tokio-hyper", setup, conns, key)
            nginx = hello(hello_rows, "nginx-1w", setup, conns, key)
            may = hello(hello_rows, "may_minihttp", setup, conns, key)
            print(f"| hello c={conns} {setup}, {what} | scheduled {fmt(ours, unit)}{n(SCHEDULED, setup, conns)} "
                  f"| {fmt(tokio, unit)}{n('tokio-hyper', setup, conns)} "
                  f"| 1w {fmt(nginx, unit)}{n('nginx-1w', setup, conns)} "
                  f"| {fmt(may, unit)}{n('may_minihttp', setup, conns)} "
                  f"| {ratio(ours, tokio, lower)} tokio, {ratio(ours, nginx, lower)} nginx-1w |")
    for what, key, unit, lower in HELLO_FIGURES:
        ours = hello(hello_rows, PREFORKED, "shared", 1000, key)
        tokio = hello(hello_rows, "tokio-hyper", "shared", 1000, key)
        nginx = hello(hello_rows, "nginx-2w", "shared", 1000, key)
        may = hello(hello_rows, "may_minihttp", "shared", 1000, key)
        print(f"| hello c=1000 shared, {what} | preforked 2w×scheduled {fmt(ours, unit)}"
              f"{n(PREFORKED, 'shared', 1000)} "
              f"| {fmt(tokio, unit)}{n('tokio-hyper', 'shared', 1000)} "
              f"| 2w {fmt(nginx, unit)}{n('nginx-2w', 'shared', 1000)} "
              f"| {fmt(may, unit)}{n('may_minihttp', 'shared', 1000)} "
              f"| {ratio(ours, nginx, lower)} nginx-2w |")
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


def problems(hello_rows, comet_rows):
    failed = [r["peer"] for r in comet_rows if not r.get("pass")]
    errors = [r["peer"] for r in hello_rows
              if any(r.get(k, 0) for k in ("err_connect", "err_read", "err_write", "err_timeout", "err_status"))]
    if failed:
        print(f"\ncomet runs that failed: {', '.join(sorted(set(failed)))}")
    if errors:
        print(f"\nhello runs with errors: {', '.join(sorted(set(errors)))}")


if __name__ == "__main__":
    main()
