"""chaos.py — random kill -9 rounds on a replicated cluster under mixed load.

R = 2 on 4 nodes, 2 routers, one etcd, one collection of 4 shards. Every
round starts a fresh writer (upserts and deletes, retried with the same
ids) and searcher (full-coverage searches, Gets of acknowledged ids) through
both routers, kills one random victim with SIGKILL — a node, a router, or
the etcd member — keeps it down for a random time (for a node sometimes
longer than --replace-after-ms, so its replicas are re-created elsewhere),
starts it again, and then, with the load stopped:

- waits until every shard has R in-sync READY replicas (the recovery time
  is from the kill to that moment);
- checks that no acknowledged write of any round so far is lost or
  different, through a router and on every in-sync replica's node;
- checks that no Get served a replica missing an acknowledged write;
- checks that every shard's in-sync replicas have equal digests.

Then `--rebalance-rounds` rounds on a second cluster (docs/rebalance.md):
R = 2, 8 shards, starting on 2 nodes with --auto-rebalance on and transfers
at --transfer-max-mbps, so moves last seconds. Odd rounds add a node (the
controller rebalances on the join), even rounds drain the newest node (and
stop it once empty). In each round, once a move is RUNNING, one of its
source node, its target node or the controller router is killed with
SIGKILL and started again after a random time below the lease TTL x 2;
then, the load stopped, the round waits until no move is queued or running,
every shard is healthy and (join rounds) the replica counts are balanced,
and checks the same things (no acknowledged write lost, no stale Get,
equal digests) plus: no node holds two copies of a shard, no move was left
RUNNING, and a drained node ends with 0 replicas.

It prints one table row per round and a summary, and exits 1 if any round
failed a check (0 otherwise):

    VS_BUILD=build python3 tests/chaos/chaos.py --rounds 10 [--rebalance-rounds 4] [--seed N]

`make chaos` runs 10 rounds (CHAOS_ROUNDS=...) and 4 rebalance rounds
(CHAOS_REBALANCE_ROUNDS=...), `make test` (chaos-short) 2 rounds and 1
rebalance round (a join, about 15 s).
"""
import argparse
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
import rebalance_harness as rb  # noqa: E402
import repl_harness as rp  # noqa: E402


def run_round(c, rnd, rng, args, writers):
    """One kill / restart / heal / check round; returns its table row."""
    w = rp.Writer(c, threads=4, batch=5, delete_every=5, seed=100 + rnd, pause_s=0.01).start()
    s = rp.Searcher(c, w, seed=rnd).start()
    writers.append(w)
    rp.wait_for(lambda: w.acked_points >= 100, 60, "100 acked points in round %d" % rnd)
    kind = rng.choice(["node", "node", "router", "etcd"])
    if kind == "node":
        victim = rng.choice(c.nodes)
        long_down = rng.random() < 0.3
        down = (c.replace_after_ms / 1000.0 + 2) if long_down else rng.uniform(0, 2 * c.lease_ttl)
        name = victim.node_id
    elif kind == "router":
        victim = rng.choice(c.routers)
        down, name = rng.uniform(0, 3), victim.name
    else:
        victim = c.etcd
        down, name = rng.uniform(0, 6), "etcd"
    t_kill = time.monotonic()
    if kind == "etcd":
        victim.proc.kill9()
    else:
        victim.kill9()
    threading.Event().wait(down)  # the outage itself, not a wait for a state
    if kind == "etcd":
        c.start_etcd()
    else:
        victim.start(timeout=60)
    row = {"round": rnd, "victim": name, "down_s": down}
    w.stop()
    s.stop()
    check_round(c, row, writers, s, t_kill, lambda: c.wait_healthy(timeout=args.heal_timeout))
    row["acked"] = w.acked_points
    row["failed_calls"] = len(w.calls.failures()) + len(s.calls.failures())
    return row


def check_round(c, row, writers, s, t_kill, heal, placement=False):
    """The end-of-round checks of every kind of round; fills row. heal()
    waits until the cluster has recovered (raising if it does not);
    placement also checks the rebalance placement rules."""
    try:
        heal()
        row["recovery_s"] = time.monotonic() - t_kill
        lost = []
        for x in writers:
            lost += c.acked_lost(x)
        row["lost"] = len(lost)
        row["wrong_reads"] = len(s.wrong)
        row["digests_equal"] = True
        try:
            c.assert_digests_equal()
        except AssertionError as e:
            row["digests_equal"] = False
            row["detail"] = str(e)[:300]
        if lost:
            row["detail"] = "; ".join(lost[:5])
        problems = c.placement_problems() if placement else []
        if problems:
            row["digests_equal"] = False
            row["detail"] = "; ".join(problems[:5])
    except Exception as e:  # a round that does not heal is a failed round, not a crash
        row.update(recovery_s=float("nan"), lost=-1, wrong_reads=len(s.wrong),
                   digests_equal=False, detail=str(e)[:300])


def run_rebalance_round(c, rnd, rng, args, writers):
    """One join or drain round with a kill -9 during a move; its table row."""
    w = rp.Writer(c, threads=4, batch=5, delete_every=5, seed=500 + rnd, pause_s=0.01).start()
    s = rp.Searcher(c, w, seed=50 + rnd).start()
    writers.append(w)
    rp.wait_for(lambda: w.acked_points >= 100, 60, "100 acked points in round %d" % rnd)
    join = rnd % 2 == 1
    if join:
        what = "join " + c.add_node().node_id
    else:
        newest = max((n for n in c.nodes if n.proc.alive()), key=lambda n: int(
            n.node_id.rsplit("-", 1)[1]))
        c.drain(newest.node_id)
        what = "drain " + newest.node_id
    row = {"round": "r%d" % rnd, "down_s": 0.0}
    try:
        m = c.wait_move(lambda m: m.state == rb.RUNNING, 60, "a move running in round %d" % rnd)
        kind = rng.choice(["source", "target", "controller"])
        if kind == "controller":
            victim = c.controller_router()
            name = victim.name
        else:
            victim = c.node(m.from_node if kind == "source" else m.to_node)
            name = victim.node_id
        down = rng.uniform(0, 2 * c.lease_ttl)
        row.update(victim="%s: %s %s" % (what, kind, name), down_s=down)
        t_kill = time.monotonic()
        victim.kill9()
        threading.Event().wait(down)  # the outage itself, not a wait for a state
        victim.start(timeout=60)
    except Exception as e:
        w.stop()
        s.stop()
        row.update(victim=what, recovery_s=float("nan"), lost=-1, wrong_reads=len(s.wrong),
                   digests_equal=False, detail=str(e)[:300], acked=w.acked_points,
                   failed_calls=len(w.calls.failures()) + len(s.calls.failures()))
        return row
    w.stop()
    s.stop()
    heal = c.wait_balanced if join else c.wait_settled
    check_round(c, row, writers, s, t_kill, lambda: heal(timeout=args.heal_timeout),
                placement=True)
    if not join and row["lost"] >= 0:
        left = c.replica_counts().get(newest.node_id, 0)
        if left:
            row["digests_equal"] = False
            row["detail"] = "drained %s still holds %d replicas" % (newest.node_id, left)
        else:
            newest.stop()  # empty: it leaves the cluster
    row["acked"] = w.acked_points
    row["failed_calls"] = len(w.calls.failures()) + len(s.calls.failures())
    return row


def print_table(rows):
    cols = ("round", "victim", "down_s", "recovery_s", "acked", "failed_calls", "lost",
            "wrong_reads", "digests_equal")
    print("\n" + " | ".join("%-13s" % x for x in cols))
    print("-|-".join("-" * 13 for _ in cols))
    for r in rows:
        print(" | ".join("%-13s" % (("%.2f" % r[k]) if isinstance(r[k], float) else r[k])
                         for k in cols))
        if r.get("detail"):
            print("    detail: %s" % r["detail"])
    ok = [r for r in rows if r["lost"] == 0 and r["digests_equal"] and r["wrong_reads"] == 0]
    rec = [r["recovery_s"] for r in rows if r["recovery_s"] == r["recovery_s"]]
    print("\n%d of %d rounds passed; acked writes %d; recovery s min/median/max %s" % (
        len(ok), len(rows), sum(r["acked"] for r in rows),
        "/".join("%.2f" % rp.pct(rec, q) for q in (0, 50, 100)) if rec else "-"))
    return len(ok) == len(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("CHAOS_ROUNDS", "10")))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "0")) or None)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--lease-ttl", type=int, default=3)
    ap.add_argument("--replace-after-ms", type=int, default=6000)
    ap.add_argument("--heal-timeout", type=float, default=120)
    ap.add_argument("--rebalance-rounds", type=int,
                    default=int(os.environ.get("CHAOS_REBALANCE_ROUNDS", "0")))
    ap.add_argument("--rebalance-points", type=int, default=20000)
    ap.add_argument("--transfer-max-mbps", type=int, default=2)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1, 1 << 30)
    print("chaos: seed %d, %d rounds, R = 2 on %d nodes, %d shards" % (
        seed, args.rounds, args.nodes, args.shards))
    rng = random.Random(seed)
    passed = True
    if args.rounds > 0:
        passed = kill_rounds(rng, args)
    if args.rebalance_rounds:
        passed = rebalance_rounds(rng, args) and passed
    return 0 if passed else 1


def kill_rounds(rng, args):
    """The kill rounds on their own cluster; True if all passed."""
    rows, writers = [], []
    with rp.ReplCluster(nodes=args.nodes, routers=2, replicas=2, shards=args.shards,
                        lease_ttl=args.lease_ttl, replace_after_ms=args.replace_after_ms) as c:
        for rnd in range(1, args.rounds + 1):
            row = run_round(c, rnd, rng, args, writers)
            rows.append(row)
            print("round %d: %s" % (rnd, row), flush=True)
            if row["lost"] < 0:
                break  # the cluster did not heal: later rounds would say nothing
        passed = print_table(rows)
        if not passed:
            c.print_tails()
    return passed


def rebalance_rounds(rng, args):
    """The rebalance rounds on their own cluster; True if all passed."""
    print("\nchaos rebalance: %d rounds, R = 2, 8 shards from 2 nodes, %d points, "
          "transfers at %d MB/s" % (args.rebalance_rounds, args.rebalance_points,
                                    args.transfer_max_mbps))
    rows, writers = [], []
    with rb.RebalanceCluster(nodes=2, routers=2, replicas=2, shards=8, dim=16,
                             lease_ttl=args.lease_ttl, replace_after_ms=60000,
                             transfer_max_mbps=args.transfer_max_mbps, settle_ms=1000,
                             max_moves=2) as c:
        writers.append(c.load_base(args.rebalance_points, batch=4000))
        for rnd in range(1, args.rebalance_rounds + 1):
            row = run_rebalance_round(c, rnd, rng, args, writers)
            rows.append(row)
            print("rebalance round %d: %s" % (rnd, row), flush=True)
            if row["lost"] < 0:
                break
        passed = print_table(rows)
        if not passed:
            c.print_tails()
    return passed


if __name__ == "__main__":
    sys.exit(main())
