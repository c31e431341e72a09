"""Drain and undrain (issue 9 "Done when", docs/rebalance.md §4).

`test_drain_then_stop`: 3 nodes, 2 routers, 6 shards R = 2 (4 replicas per
node) holding POINTS points, under a writer and a searcher at min_coverage
1.0. Drain{node-0}: the answer says draining with 4 replicas left; the
controller moves everything off it (every move origin `drain`, DONE), and
then Drain/ClusterStatus report it empty (0 replicas, `empty`), the other
two nodes hold 6 each, no search or Get failed during the moves, no
acknowledged write lost, no id duplicated, digests equal. Then node-0 is
killed with SIGKILL and the load runs on until its lease is gone and 2 s
more: not one write, search or Get started after the kill fails, and no
shard entry changes (same mod_revision).

`test_undrain_cancels_queued`: 3 shards R = 2 on 3 nodes, --max-moves 1 and
transfers at 1 MB/s, Drain{node-0} then, once its first move runs, Drain{undrain}: draining
false, the queued drain moves CANCELLED with a reason, the running one
finishes DONE, nothing else moves afterwards, and node-0 keeps its other
replicas. Bad input: an unknown node id is NOT_FOUND, an empty one
INVALID_ARGUMENT naming `node_id`.
"""
import time
import unittest

import grpc

import rebalance_harness as rb
import repl_harness as rp

POINTS = 100000 if rp.LONG else 20000
DIM = 8


class Drain(rb.RebalanceTestCase):
    def test_drain_then_stop(self):
        c = self.start_cluster(nodes=3, routers=2, replicas=2, shards=6, dim=DIM,
                               auto_rebalance=True, settle_ms=1000, max_moves=2)
        base = c.load_base(POINTS, batch=4000)
        victim = c.node("node-0")
        self.assertEqual(c.replica_counts()[victim.node_id], 4)
        w, _ = self.start_load(threads=3, batch=5, pause_s=0.01, searcher=False)
        s = rp.Searcher(c, w, min_coverage=1.0, pause_s=0.01).start()
        self.addCleanup(s.stop)
        mw = self.watch_moves()
        rp.wait_for(lambda: w.acked_points >= 100, 60, "100 acked writes")
        # The joins at start-up may have queued automatic moves (primaries):
        # let them finish; they are not the drain's.
        # Settled for 3 × --rebalance-settle-ms: the controller's start-up
        # settle check has run (its plan, if any, would be active by then).
        stable = {"since": None}

        def settled_long():
            if c.settle_problems():
                stable["since"] = None
            elif stable["since"] is None:
                stable["since"] = time.monotonic()
            return stable["since"] is not None and time.monotonic() - stable["since"] > 3.0
        rp.wait_for(settled_long, 120, "settled 3 s before the drain", interval=0.2)

        t0 = time.monotonic()
        t_drain_ms = int(time.time() * 1000)
        r = c.drain(victim.node_id)
        self.assertTrue(r.draining)
        self.assertEqual(r.replicas_left, 4)
        self.assertFalse(r.empty)
        self.assertEqual(r.note, "")
        self.assertIn(victim.node_id, c.draining())

        def empty():
            st = c.cluster_status()
            n = next(n for n in st.nodes if n.id == victim.node_id)
            return n.draining and n.replicas == 0 and not c.settle_problems()
        rp.wait_for(empty, 180, "%s empty and the cluster settled" % victim.node_id,
                    interval=0.2)
        self.measured("drain of 4 replicas (%d points)" % POINTS,
                      "%.1f s" % (time.monotonic() - t0))
        r = c.drain(victim.node_id)  # asking again reports the state
        self.assertTrue(r.draining and r.empty)
        self.assertEqual(r.replicas_left, 0)
        counts = c.replica_counts(nodes={"node-1", "node-2"})
        self.assertEqual(counts, {"node-1": 6, "node-2": 6})
        seen = mw.moves()
        self.assertGreaterEqual(len(seen), 4)
        # Final states from ClusterStatus: the watcher samples, so its last
        # sight of a move may be RUNNING just before the DONE write.
        final = {m.id: m for m in c.moves()}
        for k, v in seen.items():
            m = final.get(k, v["move"])
            if m.origin == "auto" and m.created_at < t_drain_ms:
                continue  # planned after the joins, before the drain
            self.assertEqual(m.origin, "drain", rb.move_str(m))
            if (m.kind or "replica") == "replica":
                self.assertEqual(m.from_node, victim.node_id, rb.move_str(m))
            self.assertEqual(m.state, rb.DONE, rb.move_str(m))
        self.assert_searched_through_moves(mw, s)
        self.assertEqual(w.calls.failures(), [], "writes failed during the drain")

        # stopping the empty node changes nothing for clients
        before = {k: (e["mod_revision"], e["replicas"]) for k, e in c.entries().items()}
        t_kill = time.monotonic()
        victim.kill9()
        rp.wait_for(lambda: victim.node_id not in c.registered(), 30,
                    "%s's lease gone" % victim.node_id)
        t_gone = time.monotonic()
        n0 = len(s.calls.select(since=t_kill))
        rp.wait_for(lambda: time.monotonic() > t_gone + 2 and
                    len(s.calls.select(since=t_kill)) > n0 + 10, 30, "load after the kill")
        w.stop()
        s.stop()
        mw.stop()
        self.assertEqual(w.calls.failures(since=t_kill), [], "writes failed after the kill")
        self.assertEqual(s.calls.failures(since=t_kill), [], "reads failed after the kill")
        self.assertGreater(len(w.calls.select(since=t_kill, ok=True)), 0)
        self.assertEqual({k: (e["mod_revision"], e["replicas"])
                          for k, e in c.entries().items()}, before, "a shard entry changed")
        self.finish(w, s)
        self.assertEqual(c.acked_lost(base), [], "loaded points lost")
        self.assert_no_duplicates(base, w)

    def test_undrain_cancels_queued(self):
        c = self.start_cluster(nodes=3, routers=1, replicas=2, shards=3, dim=32,
                               auto_rebalance=False, transfer_max_mbps=1, max_moves=1,
                               settle_ms=500)
        c.load_base(30000, batch=4000)
        victim = "node-0"
        for node_id, code in (("nope", grpc.StatusCode.NOT_FOUND),
                              ("", grpc.StatusCode.INVALID_ARGUMENT)):
            got, details = rp.rh.code_of(c.drain, node_id)
            self.assertEqual(got, code, details)
            if node_id == "":
                self.assertIn("node_id", details)
        held = c.replica_counts()[victim]
        c.drain(victim)
        running = c.wait_move(lambda m: m.state == rb.RUNNING and m.origin == "drain", 60,
                              "a drain move running")
        r = c.drain(victim, undrain=True)
        self.assertFalse(r.draining)
        self.assertNotIn(victim, c.draining())
        c.wait_settled(timeout=120)
        moves = c.moves()
        by_id = {m.id: m for m in moves}
        self.assertEqual(by_id[running.id].state, rb.DONE, rb.move_str(by_id[running.id]))
        others = [m for m in moves if m.id != running.id]
        self.assertGreater(len(others), 0, "the drain queued one move only")
        for m in others:
            self.assertEqual(m.state, rb.CANCELLED, rb.move_str(m))
            self.assertNotEqual(m.reason, "", rb.move_str(m))
        self.assertEqual(c.replica_counts()[victim], held - 1)
        self.assertEqual(len(c.moves()), len(moves), "something moved after the undrain")
        c.assert_digests_equal()


if __name__ == "__main__":
    unittest.main()
