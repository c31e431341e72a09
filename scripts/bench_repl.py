"""bench_repl.py — what replication costs and how fast it recovers (make bench-repl).

Real etcd, vecshard-node and vecshard-router processes (tests/integration
repl_harness.py: everything stopped by pid however the run ends), 3 nodes,
--fsync batch, lease TTL --lease-ttl. Measures:

  (a) write throughput, R = 2 against R = 1, side by side in one run: two
      collections of 3 shards and --dim dims, the same writer (--threads
      threads, batches of --batch points, one shard per call, through the
      router), alternating --phase-s phases --alternations times; points/s
      and the ack latency p50/p99 of each, and the ratio R2/R1;
  (b) failover time over --failovers runs: kill -9 of the primary of one
      shard of the R = 2 collection under a single-point writer per shard,
      time from the kill to the first acknowledged write to that shard
      (min/median/max), the node restarted and healthy between runs;
  (c) transfer: a 1-shard R = 2 collection of --transfer-points x --dim
      points (a separate cluster with --replace-after-ms 1000): kill -9 of its
      backup, the replacement's transfer rate (bytes / seconds from the first
      `transferring` status to transfers_completed) and the time from the
      kill to R restored.

Prints a line per measurement, a table and a JSON line. Not a test: the
figures depend on the machine. A part that fails prints its error and the
others still run.

Usage: bench_repl.py [--dim 128] [--threads 8] [--batch 100] [--phase-s 5]
                     [--alternations 2] [--failovers 10] [--transfer-points 200000]
                     [--lease-ttl 3] [--skip-transfer]
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import grpc  # noqa: E402

import repl_harness as rp  # noqa: E402


def throughput(c, args, out):
    """(a): alternating R = 1 / R = 2 write phases."""
    per = {1: [0, 0.0, []], 2: [0, 0.0, []]}  # points, seconds, latencies
    for a in range(args.alternations):
        for r in (1, 2):
            w = rp.Writer(c, "r%d" % r, threads=args.threads, batch=args.batch, dim=args.dim,
                          record=False, seed=10 * a + r, shards=[0, 1, 2]).start()
            t0 = time.monotonic()
            time.sleep(args.phase_s)  # the measuring window itself
            w.stop()
            dt = time.monotonic() - t0
            per[r][0] += w.acked_points
            per[r][1] += dt
            per[r][2] += w.latencies
            print("phase %d R=%d: %d points in %.1f s (%.0f/s), %d failed calls" % (
                a, r, w.acked_points, dt, w.acked_points / dt, len(w.calls.failures())),
                flush=True)
    for r in (1, 2):
        pts, sec, lat = per[r]
        out["r%d_points_per_s" % r] = pts / sec
        out["r%d_ack_p50_ms" % r] = rp.pct(lat, 50) * 1000
        out["r%d_ack_p99_ms" % r] = rp.pct(lat, 99) * 1000
    out["r2_over_r1"] = out["r2_points_per_s"] / out["r1_points_per_s"]


def failovers(c, args, out):
    """(b): kill -9 of a primary, time to the first acked write to its shard."""
    times = []
    w = rp.Writer(c, "r2", batch=1, dim=args.dim, pause_s=0.01, seed=77).start()
    try:
        for run in range(args.failovers):
            shard = run % 3
            c.wait_healthy("r2", replicas=2, timeout=120)
            victim = c.primary_of(shard, "r2")
            t_kill = time.monotonic()
            victim.kill9()
            t_ok = rp.wait_for(lambda: w.calls.first_ok_after(t_kill, shard=shard), 120,
                               "a write to r2 shard %d after the kill" % shard)
            times.append(t_ok - t_kill)
            print("failover %d: shard %d, %s killed, first acked write after %.2f s" % (
                run, shard, victim.node_id, t_ok - t_kill), flush=True)
            victim.start()
    finally:
        w.stop()
    out["failover_s"] = times
    if times:
        out["failover_min_median_max_s"] = [min(times), rp.pct(times, 50), max(times)]


def transfer(args, out):
    """(c): replacement of a killed backup of a big shard by a full transfer."""
    with rp.ReplCluster(nodes=3, routers=1, replicas=2, shards=1, lease_ttl=args.lease_ttl,
                        replace_after_ms=1000, collection=None) as c:
        c.stub().CreateCollection(rp.rh.create_request(
            "xfer", args.dim, shards=1, replication_factor=2, ef_construction=100), timeout=30)
        c.wait_healthy("xfer", replicas=2)
        t0 = time.monotonic()
        rp.Writer(c, "xfer", dim=args.dim, record=False).load(args.transfer_points)
        print("loaded %d x %d points with R = 2 in %.1f s" % (
            args.transfer_points, args.dim, time.monotonic() - t0), flush=True)
        e = c.entry(0, "xfer")
        backup = c.node(next(x for x in e["in_sync"] if x != e["primary"]))
        spare = next(n for n in c.nodes if n.node_id not in e["replicas"])
        t_kill = time.monotonic()
        backup.kill9()
        t_first = total = None
        while time.monotonic() - t_kill < 900:
            try:
                st = c.status(spare, "xfer", timeout=2).get(0)
            except grpc.RpcError:
                st = None
            if st is not None and t_first is None and st.recovery == "transferring":
                t_first = time.monotonic()
            if st is not None and st.transfer_bytes_total:
                total = st.transfer_bytes_total
            if st is not None and st.transfers_completed >= 1:
                break
            time.sleep(0.05)
        else:
            raise rp.HarnessError("no completed transfer to %s within 900 s" % spare.node_id)
        t_done = time.monotonic()
        c.wait_healthy("xfer", replicas=2, timeout=300)
        t_restored = time.monotonic()
        out["transfer_bytes"] = total
        out["transfer_mb_per_s"] = (total or 0) / 1e6 / (t_done - (t_first or t_kill))
        out["restore_r_s"] = t_restored - t_kill
        print("transfer: %s bytes in %.2f s (%.1f MB/s); kill -> R restored %.2f s" % (
            total, t_done - (t_first or t_kill), out["transfer_mb_per_s"], out["restore_r_s"]),
            flush=True)


def attempt(name, fn, out, *a):
    """Runs one part; a failure is printed and recorded, not fatal."""
    try:
        fn(*a)
    except Exception as e:  # one broken part must not hide the others' figures
        out[name + "_error"] = str(e)[:300]
        print("%s: FAILED: %s" % (name, str(e)[:300]), flush=True)


def fmt(out, key, f="%.1f"):
    return f % out[key] if key in out else "n/a"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--phase-s", type=float, default=5)
    ap.add_argument("--alternations", type=int, default=2)
    ap.add_argument("--failovers", type=int, default=10)
    ap.add_argument("--transfer-points", type=int, default=200000)
    ap.add_argument("--lease-ttl", type=int, default=3)
    ap.add_argument("--skip-transfer", action="store_true")
    args = ap.parse_args()
    out = {}
    with rp.ReplCluster(nodes=3, routers=1, lease_ttl=args.lease_ttl, collection=None) as c:
        c.stub().CreateCollection(rp.rh.create_request("r1", args.dim, shards=3), timeout=30)
        c.wait_healthy("r1", replicas=1)
        attempt("r2_create", c.create, out, "r2", args.dim, 3, 2)
        attempt("throughput", throughput, out, c, args, out)
        attempt("failover", failovers, out, c, args, out)
    if not args.skip_transfer:
        attempt("transfer", transfer, out, args, out)

    print("\n| measure | value |\n|---|---|")
    print("| write throughput R = 1 (points/s, %d threads x %d-point batches of %d-d) | %s |" %
          (args.threads, args.batch, args.dim, fmt(out, "r1_points_per_s", "%.0f")))
    print("| write throughput R = 2 (points/s) | %s |" % fmt(out, "r2_points_per_s", "%.0f"))
    print("| R = 2 / R = 1 | %s |" % fmt(out, "r2_over_r1", "%.2f"))
    for r in (1, 2):
        print("| ack latency R = %d p50 / p99 (ms) | %s / %s |" % (
            r, fmt(out, "r%d_ack_p50_ms" % r), fmt(out, "r%d_ack_p99_ms" % r)))
    fo = out.get("failover_min_median_max_s")
    print("| failover, kill -9 -> first acked write (s, min/median/max of %d, TTL %d s) | %s |" %
          (args.failovers, args.lease_ttl, "/".join("%.2f" % x for x in fo) if fo else "n/a"))
    print("| transfer rate, %d x %d-d shard (MB/s) | %s |" % (
        args.transfer_points, args.dim, fmt(out, "transfer_mb_per_s")))
    print("| backup kill -> R restored (s, incl. 1 s replace-after) | %s |" %
          fmt(out, "restore_r_s", "%.2f"))
    print(json.dumps(out))
    return 1 if any(k.endswith("_error") for k in out) else 0


if __name__ == "__main__":
    sys.exit(main())
