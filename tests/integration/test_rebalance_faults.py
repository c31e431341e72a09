"""kill -9 in the middle of a move (issue 9 "Done when", docs/rebalance.md §2).

3 nodes, 2 routers, a collection of 2 shards R = 2 holding POINTS points of
DIM dims, nodes sending transfers at --transfer-max-mbps 1 so a copy takes
seconds, --auto-rebalance off. One move of shard 0 is queued (the move
document, as the Rebalance RPC writes it) from its PRIMARY P to the node Z
that holds no copy, under a writer and a searcher. "In the middle" is when
ClusterStatus shows the move RUNNING at step `copying` and Z's ShardStatus
reports bytes transferred. Then SIGKILL of:

- the source P (restarted once failover named a new primary): failover
  promotes the in-sync backup, which sends Z its copy; the switch removes P;
- the target Z, kept down until its lease is gone (the attempt is undone),
  then restarted;
- the router holding the controller election (the other router's
  controller resumes the move from its entry).

In every case the move ends DONE (Z in in_sync, P in no replica list), or
FAILED / CANCELLED with a reason and Z in no replica list; then every shard
has R in-sync READY copies, no live node serves a copy the entries do not
name, the in-sync digests are equal, 0 acknowledged writes are lost, no Get
missed an acknowledged id and no search answer had an id twice.
"""
import time
import unittest

import grpc

import rebalance_harness as rb
import repl_harness as rp

POINTS = 60000 if rp.LONG else 30000
DIM = 32


class MoveFaults(rb.RebalanceTestCase):
    def setUp(self):
        c = self.start_cluster(nodes=3, routers=2, replicas=2, shards=2, dim=DIM, lease_ttl=3,
                               transfer_max_mbps=1, auto_rebalance=False, max_moves=1,
                               settle_ms=500)
        self.base = c.load_base(POINTS, batch=4000)
        e = c.entry(0)
        self.p = c.node(e["primary"])
        self.b = c.node(next(x for x in e["in_sync"] if x != e["primary"]))
        self.z = next(n for n in c.nodes if n.node_id not in e["replicas"])

    def copying(self, mid):
        """The move once RUNNING at step copying with bytes on Z, else None."""
        m = next((m for m in self.cluster.moves() if m.id == mid), None)
        if m is None or m.state != rb.RUNNING or m.step != "copying":
            return None
        try:
            st = self.cluster.status(self.z, timeout=2).get(0)
        except grpc.RpcError:
            return None
        return m if st is not None and st.transfer_bytes_done > 0 else None

    def run_case(self, victim_kind):
        c = self.cluster
        w, s = self.start_load(threads=2, batch=5, pause_s=0.02)
        rp.wait_for(lambda: w.acked_points >= 100, 60, "100 acked writes")
        mid = c.queue_move(0, self.p.node_id, self.z.node_id)
        t0 = time.monotonic()
        m = rp.wait_for(lambda: self.copying(mid), 60, "move %s copying" % mid)
        self.assertTrue(m.primary)
        self.measured("move bytes_total", m.bytes_total)
        if victim_kind == "source":
            self.p.kill9()
            rp.wait_for(lambda: c.entry(0)["primary"] != self.p.node_id, 30,
                        "failover of shard 0 off %s" % self.p.node_id)
            self.p.start(timeout=120)
        elif victim_kind == "target":
            self.z.kill9()
            rp.wait_for(lambda: self.z.node_id not in c.registered(), 30,
                        "%s's lease gone" % self.z.node_id)
            rp.wait_for(lambda: self.z.node_id not in c.entry(0)["replicas"], 30,
                        "the attempt undone (%s out of shard 0's replicas)" % self.z.node_id)
            self.z.start(timeout=60)
        else:
            ctl = c.controller_router()
            ctl.kill9()
            new = c.controller_router(timeout=c.controller_ttl + 10)
            self.assertIsNot(new, ctl)
            ctl.start()
        doc = c.wait_move_final(mid, timeout=180)
        self.measured("move %s with %s killed: %s after %d attempt(s)" % (
            mid, victim_kind, doc["state"], doc["attempts"]),
            "%.1f s (reason %r)" % (time.monotonic() - t0, doc["reason"]))
        e = c.entry(0)
        if doc["state"] == "done":
            self.assertIn(self.z.node_id, e["in_sync"])
            self.assertNotIn(self.p.node_id, e["replicas"])
        else:
            self.assertIn(doc["state"], ("failed", "cancelled"))
            self.assertNotEqual(doc["reason"], "", "an abandoned move without a reason")
            self.assertNotIn(self.z.node_id, e["replicas"])
        c.wait_settled(timeout=120)
        rp.wait_for(lambda: not c.stray_replicas(), 30, "no stray replica")
        self.finish(w, s)
        self.assertEqual(c.acked_lost(self.base), [], "loaded points lost")
        self.assert_no_duplicates(self.base, w)
        self.assert_placement()
        return doc

    def test_kill9_source_midway(self):
        self.run_case("source")

    def test_kill9_target_midway(self):
        self.run_case("target")

    def test_kill9_controller_midway(self):
        doc = self.run_case("controller")
        self.assertEqual(doc["state"], "done", "a controller's death must not abandon a move")


if __name__ == "__main__":
    unittest.main()
