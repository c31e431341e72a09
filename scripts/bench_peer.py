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

Three sides run per data set: vecshard with float vectors, vecshard with SQ8
(--quant sq8, float vectors in a mapped scratch file) and hnswlib.
Reported per data set: build seconds, RSS growth (anonymous memory) and the engine's own byte
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
import shutil
import subprocess
import sys
import tempfile

DEFAULT_EF = "10,16,24,32,48,64,96,128,192,256,384,512"
TARGETS = (0.95, 0.99)
M, EFC = 16, 200


def run_one(binary, data_dir, ef, threads, k, extra=()):
    """Runs one benchmark binary on data_dir; returns (build, {ef: search})."""
    cmd = [binary,
           "--base", os.path.join(data_dir, "base.fvecs"),
           "--query", os.path.join(data_dir, "query.fvecs"),
           "--gt", os.path.join(data_dir, "gt.ivecs"),
           "--M", str(M), "--efc", str(EFC), "--k", str(k),
           "--threads", str(threads), "--ef", ef, "--json"] + list(extra)
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


def report(name, sides, k):
    """Prints one data set's table; returns its ratios.

    sides: [(label, (build, points))], ours first, the peer (hnswlib) last.
    Each of ours gets ratios against the peer; sq8 also against float vecshard.
    """
    labels = [label for label, _ in sides]
    builds = [b for _, (b, _) in sides]
    curves = [p for _, (_, p) in sides]
    peer_b, peer_p = builds[-1], curves[-1]
    n = builds[0]["n"]
    print()
    print("== %s: %d x %d, M %d, efC %d, build threads %d, recall@%d" %
          (name, n, builds[0]["dim"], M, EFC, builds[0]["threads"], k))
    head = "%-30s" + " %13s" * len(sides) + " %11s" * (len(sides) - 1)
    print(head % tuple([""] + labels + ["%s/peer" % l.split()[-1] for l in labels[:-1]]))
    ratios = {}
    rows = [("build seconds (lower better)", "build_seconds", lambda b: b["seconds"], "%.2f"),
            ("RSS growth MB (lower better)", None, lambda b: b["rss_bytes"] / 1e6, "%.1f"),
            ("RSS B/vector (lower better)", "rss_bytes", lambda b: b["rss_bytes"] / n, "%.0f"),
            ("index B/vector (lower better)", "bytes", lambda b: b["bytes"] / n, "%.0f")]
    for label, key, get, spec in rows:
        vals = [get(b) for b in builds]
        rs = [ratio(v, vals[-1]) for v in vals[:-1]]
        for l, r in zip(labels, rs):
            if key:
                ratios.setdefault(l, {})[key] = r
        print(head % tuple([label] + [fmt(v, spec) for v in vals] + [fmt(r) for r in rs]))
    for t in TARGETS:
        got = [qps_at(c, t) for c in curves]
        rs = [ratio(q, got[-1][0]) for q, _ in got[:-1]]
        for l, r in zip(labels, rs):
            ratios.setdefault(l, {})["qps_at_%.2f" % t] = r
        cells = [(note + fmt(q, "%.0f")) if q is not None else note for q, note in got]
        print(head % tuple(["QPS @ recall %.2f (higher)" % t] + cells + [fmt(r) for r in rs]))
    if "vecshard sq8" in labels and "vecshard" in labels:
        fb, qb = builds[labels.index("vecshard")], builds[labels.index("vecshard sq8")]
        fp = {p["ef"]: p for p in curves[labels.index("vecshard")]}
        qp = curves[labels.index("vecshard sq8")]
        loss = max(fp[p["ef"]]["recall"] - p["recall"] for p in qp if p["ef"] in fp)
        sq = ratios.setdefault("vecshard sq8", {})
        sq["rss_vs_float"] = ratio(qb["rss_bytes"], fb["rss_bytes"])
        sq["bytes_vs_float"] = ratio(qb["bytes"], fb["bytes"])
        sq["max_recall_loss_vs_float"] = loss
        print("sq8 vs float vecshard: RSS %s, index bytes %s, largest recall@%d loss at one ef %.4f"
              % (fmt(sq["rss_vs_float"]), fmt(sq["bytes_vs_float"]), k, loss))
    print("kernels: " + ", ".join("%s %s" % (l, b.get("kernel")) for l, b in zip(labels, builds)))
    print("%6s" % "ef" + " | %9s %9s %8s" * len(sides) % (("recall", "QPS", "p99 us") * len(sides)))
    by_ef = [{p["ef"]: p for p in c} for c in curves]
    for p in curves[0]:
        cells = []
        for m in by_ef:
            q = m.get(p["ef"])
            cells += [fmt(q and q["recall"], "%.4f"), fmt(q and q["qps"], "%.0f"),
                      fmt(q and q["p99_us"], "%.1f")]
        print("%6d" % p["ef"] + " | %9s %9s %8s" * len(sides) % tuple(cells))
    for r in ratios.values():
        for key, v in r.items():
            r[key] = None if v is None else round(v, 3)
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
    scratch = tempfile.mkdtemp(prefix="vs-bench-peer-")
    try:
        for d in args.data:
            name = os.path.basename(os.path.normpath(d))
            # vecshard float, vecshard SQ8 with its float vectors in a mapped file, hnswlib.
            sides = [("vecshard", args.bench, []),
                     ("vecshard sq8", args.bench,
                      ["--quant", "sq8", "--vector-file", os.path.join(scratch, "vectors")]),
                     ("hnswlib", args.peer, [])]
            runs = {label: [] for label, _, _ in sides}
            for r in range(args.rounds):
                for label, binary, extra in sides:
                    print("[%s] round %d/%d: %s" % (name, r + 1, args.rounds, label),
                          file=sys.stderr, flush=True)
                    runs[label].append(run_one(binary, d, args.ef, args.threads, args.k, extra))
            all_ratios[name] = report(name, [(label, merge_rounds(runs[label]))
                                             for label, _, _ in sides], args.k)
    except (RuntimeError, ValueError, KeyError, OSError) as e:
        print("bench_peer: %s" % e, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(json.dumps({"ratios": all_ratios, "note": "ours/peer per side (and sq8 vs float "
                      "vecshard); qps higher is better, build_seconds/rss_bytes/bytes lower is "
                      "better"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
