#!/usr/bin/python3
"""vecshard-bench against hnswlib, side by side, on one or more data sets.

usage: scripts/bench_peer.py --bench BIN --peer BIN --data DIR [--data DIR ...]
                             [--ef LIST] [--threads N] [--rounds N] [--k N]

Each DIR holds base.fvecs, query.fvecs and gt.ivecs (what `vecshard-bench
--write DIR` or the Makefile's data targets produce). Both binaries take the
same flags and print the same JSON lines (tools/bench/bench_report.h). The
machine is shared and noisy, so the two engines run alternately (ours, peer,
ours, peer, ...) for --rounds rounds and each side keeps its best: the fastest
build, the highest QPS per ef. Recall per ef is the mean over the rounds
(builds are multi-threaded, so each round's graph differs slightly).

Reported per data set: build seconds, RSS growth and the engine's own byte
count per vector, and QPS at recall@k 0.95 and 0.99, interpolated linearly
between the two ef points that bracket the target ("n/a" if no ef reaches it;
">=" when even the smallest ef is above it, so the QPS is a lower bound).
Ratios are ours/peer: for QPS higher is better, for build time and memory
lower is better. The last line is one JSON object with every ratio.

A report, not a gate: exits 0 whatever the numbers are; non-zero only when a
benchmark binary fails or its output cannot be read.
"""
import argparse
import json
import os
import subprocess
import sys

DEFAULT_EF = "10,16,24,32,48,64,96,128,192,256,384,512"
TARGETS = (0.95, 0.99)
M, EFC = 16, 200


def run_one(binary, data_dir, ef, threads, k):
    """Runs one benchmark binary on data_dir; returns (build, {ef: search})."""
    cmd = [binary,
           "--base", os.path.join(data_dir, "base.fvecs"),
           "--query", os.path.join(data_dir, "query.fvecs"),
           "--gt", os.path.join(data_dir, "gt.ivecs"),
           "--M", str(M), "--efc", str(EFC), "--k", str(k),
           "--threads", str(threads), "--ef", ef, "--json"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError("%s exited %d:\n%s" % (" ".join(cmd), proc.returncode,
                                                  proc.stderr.strip()))
    build, search = None, {}
    for line in proc.stdout.splitlines():
        rec = json.loads(line)
        if rec.get("phase") == "build":
            build = rec
        elif rec.get("phase") == "search":
            search[int(rec["ef"])] = rec
    if build is None or not search:
        raise RuntimeError("%s printed no build or search lines" % " ".join(cmd))
    return build, search


def merge_rounds(rounds):
    """Best of the rounds: fastest build, highest QPS per ef, mean recall per ef."""
    build = min((b for b, _ in rounds), key=lambda b: b["seconds"])
    build = dict(build)
    build["rss_bytes"] = min(b["rss_bytes"] for b, _ in rounds)
    points = []
    for ef in sorted(rounds[0][1]):
        recs = [s[ef] for _, s in rounds if ef in s]
        points.append({"ef": ef,
                       "recall": sum(r["recall"] for r in recs) / len(recs),
                       "qps": max(r["qps"] for r in recs),
                       "p50_us": min(r["p50_us"] for r in recs),
                       "p99_us": min(r["p99_us"] for r in recs)})
    return build, points


def qps_at(points, target):
    """QPS at recall target by linear interpolation; (qps, note) or (None, 'n/a')."""
    if not points:
        return None, "n/a"
    if points[0]["recall"] >= target:
        return points[0]["qps"], ">="
    for lo, hi in zip(points, points[1:]):
        if lo["recall"] < target <= hi["recall"]:
            f = (target - lo["recall"]) / (hi["recall"] - lo["recall"])
            return lo["qps"] + f * (hi["qps"] - lo["qps"]), ""
    return None, "n/a"


def ratio(a, b):
    """a / b, or None when either side is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(x, spec="%.2f"):
    """Formats a number or 'n/a'."""
    return "n/a" if x is None else spec % x


def report(name, ours, peer, k):
    """Prints one data set's table; returns its ratios."""
    (ob, op), (pb, pp) = ours, peer
    n = ob["n"]
    print()
    print("== %s: %d x %d, M %d, efC %d, build threads %d, recall@%d" %
          (name, n, ob["dim"], M, EFC, ob["threads"], k))
    print("%-28s %14s %14s %12s" % ("", "vecshard", "hnswlib", "ours/peer"))
    rows = [("build seconds (lower better)", ob["seconds"], pb["seconds"], "%.2f"),
            ("RSS growth MB (lower better)", ob["rss_bytes"] / 1e6, pb["rss_bytes"] / 1e6, "%.1f"),
            ("RSS B/vector (lower better)", ob["rss_bytes"] / n, pb["rss_bytes"] / n, "%.0f"),
            ("index B/vector (lower better)", ob["bytes"] / n, pb["bytes"] / n, "%.0f")]
    ratios = {"build_seconds": ratio(ob["seconds"], pb["seconds"]),
              "rss_bytes": ratio(ob["rss_bytes"], pb["rss_bytes"]),
              "bytes": ratio(ob["bytes"], pb["bytes"])}
    for label, a, b, spec in rows:
        print("%-28s %14s %14s %12s" % (label, fmt(a, spec), fmt(b, spec), fmt(ratio(a, b))))
    for t in TARGETS:
        qa, na = qps_at(op, t)
        qb, nb = qps_at(pp, t)
        r = ratio(qa, qb)
        ratios["qps_at_%.2f" % t] = r
        print("%-28s %14s %14s %12s" % ("QPS @ recall %.2f (higher)" % t,
                                         (na + fmt(qa, "%.0f")) if qa is not None else na,
                                         (nb + fmt(qb, "%.0f")) if qb is not None else nb,
                                         fmt(r)))
    print("kernels: vecshard %s, hnswlib %s" % (ob.get("kernel"), pb.get("kernel")))
    print("%6s | %9s %9s %8s | %9s %9s %8s" %
          ("ef", "recall", "QPS", "p99 us", "recall", "QPS", "p99 us"))
    peer_by_ef = {p["ef"]: p for p in pp}
    for p in op:
        q = peer_by_ef.get(p["ef"])
        print("%6d | %9.4f %9.0f %8.1f | %9s %9s %8s" %
              (p["ef"], p["recall"], p["qps"], p["p99_us"],
               fmt(q and q["recall"], "%.4f"), fmt(q and q["qps"], "%.0f"),
               fmt(q and q["p99_us"], "%.1f")))
    return ratios


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", required=True, help="vecshard-bench binary")
    ap.add_argument("--peer", required=True, help="vecshard-bench-hnswlib binary")
    ap.add_argument("--data", required=True, action="append", help="data set directory")
    ap.add_argument("--ef", default=DEFAULT_EF, help="ef sweep (default %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="build threads (default 2)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    ap.add_argument("--k", type=int, default=10, help="recall@k (default 10)")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")

    all_ratios = {}
    try:
        for d in args.data:
            name = os.path.basename(os.path.normpath(d))
            runs = {"ours": [], "peer": []}
            for r in range(args.rounds):
                for side, binary in (("ours", args.bench), ("peer", args.peer)):
                    print("[%s] round %d/%d: %s" % (name, r + 1, args.rounds,
                                                   os.path.basename(binary)),
                          file=sys.stderr, flush=True)
                    runs[side].append(run_one(binary, d, args.ef, args.threads, args.k))
            all_ratios[name] = report(name, merge_rounds(runs["ours"]),
                                      merge_rounds(runs["peer"]), args.k)
    except (RuntimeError, ValueError, KeyError, OSError) as e:
        print("bench_peer: %s" % e, file=sys.stderr)
        return 1
    print()
    for r in all_ratios.values():
        for key, v in r.items():
            r[key] = None if v is None else round(v, 3)
    print(json.dumps({"ratios": all_ratios, "note": "ours/peer; qps higher is better, "
                      "build_seconds/rss_bytes/bytes lower is better"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
