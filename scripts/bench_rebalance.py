"""bench_rebalance.py — what a scale-out rebalance costs (make bench-rebalance, docs/rebalance.md).

Real etcd, vecshard-node and vecshard-router processes
(tests/integration/rebalance_harness.py: everything stopped by pid however
the run ends), 2 nodes then 4, --fsync batch, 2 routers with
--auto-rebalance off and --max-moves --max-moves. One collection of
--shards shards, R = 2, --points x --dim uniform random points (numpy,
--load-threads concurrent Upserts of --batch points through the routers).
Measures:

  (a) search latency before: --searchers threads of full-coverage searches
      (k 10, ef --ef, min_coverage 1.0) through both routers for --phase-s
      seconds on 2 nodes: p50 / p99 and searches/s (paced: repl_harness's
      Searcher waits 50 ms between two searches of a thread, its Get turn
      having no ids to read here);
  (b) the rebalance: 2 nodes are added, Rebalance is called, and the time
      from the call until no move is queued or running, every shard is
      healthy and the replica counts are balanced; the bytes moved (the sum
      of the DONE moves' bytes_total, the sources' disk bytes) and MB/s over
      that time; per move the time from RUNNING to DONE (min/median/max);
  (c) search latency during the moves: the same searchers, the searches
      that started between the Rebalance call and the end of (b): p50 / p99,
      searches/s and failures (must be 0).

Checks that every move is DONE and that the primaries' live points add up
to --points. Prints a line per measurement, a table and a JSON line. Not a
test: the figures depend on the machine. --quick is 50,000 x 32.

Usage: bench_rebalance.py [--points 1000000] [--dim 128] [--shards 12] [--efc 100]
                          [--ef 64] [--searchers 2] [--phase-s 10] [--max-moves 2]
                          [--load-threads 4] [--batch 2000] [--quick]
"""
import argparse
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import grpc  # noqa: E402
import numpy as np  # noqa: E402

import rebalance_harness as rb  # noqa: E402
import repl_harness as rp  # noqa: E402
import router_harness as rh  # noqa: E402


def load(c, args):
    """Uniform random points, ids 0..points-1, --load-threads threads."""
    errors = []

    def part(t):
        rng = np.random.default_rng(1000 + t)
        try:
            for lo in range(t * args.batch, args.points, args.load_threads * args.batch):
                ids = list(range(lo, min(args.points, lo + args.batch)))
                req = rh.upsert_request(c.collection, ids,
                                        rng.random((len(ids), args.dim), dtype=np.float32))
                for attempt in range(600):
                    try:
                        c.routers[(lo // args.batch) % len(c.routers)].stub().Upsert(
                            req, timeout=300)
                        break
                    except grpc.RpcError as e:
                        if e.code() not in rp.RETRY_CODES or attempt == 599:
                            raise
                        time.sleep(0.1)
        except Exception as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=part, args=(t,), daemon=True)
               for t in range(args.load_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]


def latencies(searcher, t0, t1):
    """(p50 ms, p99 ms, searches/s, failures) of the searches started in [t0, t1)."""
    calls = searcher.calls.select(since=t0, until=t1, kind="search")
    ok = [c[1] - c[0] for c in calls if c[4] == "OK"]
    return (rp.pct(ok, 50) * 1000, rp.pct(ok, 99) * 1000, len(ok) / max(t1 - t0, 1e-9),
            len(calls) - len(ok))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=1000000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--shards", type=int, default=12)
    ap.add_argument("--efc", type=int, default=100)
    ap.add_argument("--ef", type=int, default=64)
    ap.add_argument("--searchers", type=int, default=2)
    ap.add_argument("--phase-s", type=float, default=10)
    ap.add_argument("--max-moves", type=int, default=2)
    ap.add_argument("--load-threads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--timeout-s", type=float, default=3600)
    ap.add_argument("--quick", action="store_true", help="50,000 x 32, 5 s phases")
    args = ap.parse_args()
    if args.quick:
        args.points, args.dim, args.phase_s = 50000, 32, 5
    out = {"points": args.points, "dim": args.dim, "shards": args.shards,
           "max_moves": args.max_moves}
    with rb.RebalanceCluster(nodes=2, routers=2, replicas=2, shards=args.shards, dim=args.dim,
                             auto_rebalance=False, max_moves=args.max_moves,
                             move_timeout_ms=600000, m=16, ef_construction=args.efc,
                             collection="rebal") as c:
        t = time.monotonic()
        load(c, args)
        out["load_s"] = time.monotonic() - t
        print("loaded %d x %d (R = 2, %d shards) in %.1f s" % (
            args.points, args.dim, args.shards, out["load_s"]), flush=True)
        holder = rp.Writer(c, threads=1, record=False)  # dim and collection for the searcher
        s = rp.Searcher(c, holder, threads=args.searchers, min_coverage=1.0, ef=args.ef,
                        pause_s=0.0, timeout=30).start()
        try:
            t0 = time.monotonic()
            time.sleep(args.phase_s)  # the measuring window itself
            t1 = time.monotonic()
            b50, b99, brate, bfail = latencies(s, t0, t1)
            print("before: search p50 %.2f ms, p99 %.2f ms, %.0f/s, %d failed" % (
                b50, b99, brate, bfail), flush=True)
            out.update(before_p50_ms=b50, before_p99_ms=b99, before_per_s=brate,
                       before_failed=bfail)

            for _ in range(2):
                c.add_node()
            mw = rb.MoveWatcher(c, interval=0.2).start()
            t_start = time.monotonic()
            plan = c.rebalance()
            print("rebalance: %d moves queued" % len(plan.moves), flush=True)
            c.wait_balanced(timeout=args.timeout_s)
            t_end = time.monotonic()
            mw.stop()
        finally:
            s.stop()
        d50, d99, drate, dfail = latencies(s, t_start, t_end)
        moves = mw.moves()
        done = [v for v in moves.values() if v["move"].state == rb.DONE]
        moved = sum(v["move"].bytes_total for v in done if (v["move"].kind or "replica") ==
                    "replica")
        per = [v["t_end"] - v["t_running"] for v in done if v["t_running"] and v["t_end"]]
        secs = t_end - t_start
        out.update(moves=len(moves), moves_done=len(done), rebalance_s=secs,
                   bytes_moved=moved, mb_per_s=moved / 1e6 / secs,
                   move_s_min_median_max=[min(per), rp.pct(per, 50), max(per)] if per else None,
                   during_p50_ms=d50, during_p99_ms=d99, during_per_s=drate,
                   during_failed=dfail, replicas_per_node=c.replica_counts())
        print("rebalance: %d moves (%d done) in %.1f s, %.1f MB moved = %.1f MB/s" % (
            len(moves), len(done), secs, moved / 1e6, out["mb_per_s"]), flush=True)
        print("during: search p50 %.2f ms, p99 %.2f ms, %.0f/s, %d failed" % (
            d50, d99, drate, dfail), flush=True)
        total = 0
        for sh, e in c.entries().items():
            total += c.status(c.node(e["primary"])).get(sh).count
        out["points_after"] = total
        ok = len(done) == len(moves) and total == args.points and dfail == 0

    print("\n| measure | value |\n|---|---|")
    print("| load %d x %d-d, R = 2, %d shards (s) | %.1f |" % (
        args.points, args.dim, args.shards, out["load_s"]))
    print("| rebalance 2 -> 4 nodes: moves, time (s) | %d, %.1f |" % (len(moves), secs))
    print("| data moved (MB), rate (MB/s) | %.1f, %.1f |" % (moved / 1e6, out["mb_per_s"]))
    mm = out["move_s_min_median_max"]
    print("| one move, RUNNING -> DONE (s, min/median/max) | %s |" % (
        "/".join("%.1f" % x for x in mm) if mm else "n/a"))
    print("| search p50 / p99 before (ms, ef %d, %d threads) | %.2f / %.2f |" % (
        args.ef, args.searchers, b50, b99))
    print("| search p50 / p99 during the moves (ms) | %.2f / %.2f |" % (d50, d99))
    print("| searches/s before / during; failed during | %.0f / %.0f; %d |" % (
        brate, drate, dfail))
    print(json.dumps(out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
