"""The controller's move executor on real processes (issue 9,
docs/rebalance.md §2–§4, router/controller/moves.c).

Move documents are put into etcd by the test (as the Rebalance RPC would)
and executed by the elected controller, under a Writer and a Searcher (full
coverage: min_coverage 0 = 1.0) through the routers:

- a backup move: the target ends in in_sync, the source holds nothing, R
  copies, equal digests, 0 acknowledged writes lost, 0 failed searches;
- a primary move hands primaryship to the target; a LEADER move only
  changes the primary;
- a move whose target stops (SIGSTOP, then its lease runs out) is undone,
  retried and FAILED after 3 attempts with a reason, and a move queued
  after it still runs (--max-moves 1);
- a target that stops without losing its lease makes no progress for
  --move-timeout-ms: undone, and the retry succeeds once it runs again;
- the controller router killed with SIGKILL mid-move: the other router's
  controller finishes it;
- the source (a primary) killed with SIGKILL mid-move: failover promotes
  the other copy, which sends the target its copy, and the move's switch
  (not a failover `replace`) removes the dead source: R copies, in sync;
- automatic: a node joining a 2-node cluster gets replicas without any RPC;
  a drain mark empties its node (both need the planner, rebalance.c: they
  are skipped while it plans nothing).

Finished documents beyond the newest 50 are deleted.

Small on purpose: dim 16, a few thousand points, --auto-rebalance off except
in the automatic tests, a long --replace-after-ms."""
import json
import time
import unittest

import repl_harness as rp
from router_harness import vecshard_pb2

EXEC_ARGS = ["--auto-rebalance", "off", "--rebalance-settle-ms", "500"]
_seq = [0]


def move_doc(collection, shard, frm, to, kind="replica", primary=False):
    """A queued move document as moves_queue writes it."""
    _seq[0] += 1
    mid = "%013d-%05d" % (int(time.time() * 1000), _seq[0])
    return {"id": mid, "collection": collection, "shard": shard, "from": frm, "to": to,
            "kind": kind, "primary": primary, "state": "queued", "step": "", "attempts": 0,
            "reason": "", "origin": "manual", "bytes_total": 0,
            "created_at": int(time.time() * 1000), "started_at": 0, "finished_at": 0}


class MoveCase(rp.ReplTestCase):
    def put_move(self, doc):
        c = self.cluster
        c.etcd.put("%s/moves/%s" % (c.prefix, doc["id"]), json.dumps(doc))
        return doc["id"]

    def move(self, mid):
        c = self.cluster
        return c.etcd.get_json("%s/moves/%s" % (c.prefix, mid))

    def wait_move(self, mid, states=("done",), timeout=60):
        def final():
            m = self.move(mid)
            return m if m and m["state"] in ("done", "failed", "cancelled") else None
        m = rp.wait_for(final, timeout, "move %s finished" % mid)
        self.assertIn(m["state"], states, "move %s: %r" % (mid, m))
        return m

    def free_node(self, shard, among=None):
        """A registered node holding no copy of shard."""
        c = self.cluster
        e = c.entry(shard)
        live = sorted(among or c.registered())
        return next(n for n in live if n not in e["replicas"])

    def backup_of(self, shard):
        e = self.cluster.entry(shard)
        return sorted(n for n in e["in_sync"] if n != e["primary"])[0]

    def assert_no_failed_reads(self, s, w=None, killed=None):
        """No failed Search or Get; with killed = (t0, t1), calls in flight
        while a router was being killed (they went to it) are not counted."""
        if w is not None:  # retried writes are fine; report them for the closing note
            fails = w.calls.failures()
            self.measured("write calls retried during moves", "%d (%s)" % (
                len(fails), sorted({f[4] for f in fails})))
        def failed(kind):
            return [f for f in s.calls.failures(kind=kind)
                    if killed is None or not (f[0] <= killed[1] and f[1] >= killed[0])]
        self.assertEqual(failed("search"), [], "searches failed during moves")
        self.assertEqual(failed("get"), [], "gets failed during moves")

    def loaded(self, n=2000, **kw):
        c = self.start_cluster(router_args=EXEC_ARGS + list(kw.pop("router_args", [])), **kw)
        rp.Writer(c).load(n)
        w, s = self.start_load()
        rp.wait_for(lambda: w.acked_points >= 100, 30, "the writer running")
        return c, w, s


class ReplicaMoves(MoveCase):
    def test_backup_and_primary_moves_under_load(self):
        c, w, s = self.loaded(nodes=3, routers=1, replicas=2, shards=2)
        # a backup move on shard 0
        frm, to = self.backup_of(0), self.free_node(0)
        mid = self.put_move(move_doc(c.collection, 0, frm, to))
        m = self.wait_move(mid)
        self.assertEqual(m["attempts"], 1)
        e = c.entry(0)
        self.assertIn(to, e["in_sync"])
        self.assertNotIn(frm, e["replicas"])
        self.assertEqual(len(e["replicas"]), 2)
        self.assertEqual(sorted(e["replicas"]), sorted(e["in_sync"]))
        rp.wait_for(lambda: 0 not in c.status(c.node(frm)), 20, "%s released shard 0" % frm)
        # a primary move on shard 1
        prim = c.entry(1)["primary"]
        to = self.free_node(1)
        mid = self.put_move(move_doc(c.collection, 1, prim, to, primary=True))
        self.wait_move(mid)
        e = c.entry(1)
        self.assertEqual(e["primary"], to)
        self.assertNotIn(prim, e["replicas"])
        self.assertEqual(sorted(e["replicas"]), sorted(e["in_sync"]))
        self.assertEqual(len(e["replicas"]), 2)
        t = time.monotonic()
        rp.wait_for(lambda: w.calls.first_ok_after(t, shard=1), 20,
                    "a write to shard 1 after the switch")
        self.finish(w, s)
        self.assert_no_failed_reads(s, w)

    def test_leader_move(self):
        c, w, s = self.loaded(nodes=3, routers=1, replicas=2, shards=2)
        e = c.entry(0)
        prim, to = e["primary"], self.backup_of(0)
        mid = self.put_move(move_doc(c.collection, 0, prim, to, kind="leader"))
        self.wait_move(mid)
        e2 = c.entry(0)
        self.assertEqual(e2["primary"], to)
        self.assertEqual(sorted(e2["replicas"]), sorted(e["replicas"]))
        self.assertEqual(sorted(e2["in_sync"]), sorted(e["replicas"]))
        t = time.monotonic()
        rp.wait_for(lambda: w.calls.first_ok_after(t, shard=0), 20, "a write after the handover")
        # a leader move that no longer applies is cancelled with its reason
        mid = self.put_move(move_doc(c.collection, 0, prim, to, kind="leader"))
        m = self.wait_move(mid, states=("cancelled",))
        self.assertIn("not the primary", m["reason"])
        self.finish(w, s)
        self.assert_no_failed_reads(s, w)


class Pruning(MoveCase):
    def test_finished_documents_beyond_50_are_deleted(self):
        c = self.start_cluster(nodes=2, routers=1, replicas=1, shards=1, router_args=EXEC_ARGS)
        ids = []
        for i in range(56):
            d = move_doc(c.collection, 0, "node-0", "node-1")
            d["id"] = "%013d-%05d" % (1000000000000 + i, i)  # old, in creation order
            d["state"] = ("done", "failed", "cancelled")[i % 3]
            ids.append(self.put_move(d))
        queued = self.put_move(move_doc(c.collection, 0, "node-9", "node-1"))

        # the queued one no longer applies (node-9 holds no copy): cancelled, and
        # then the newest of 51 finished ones
        m = self.wait_move(queued, states=("cancelled",))
        self.assertIn("node-9 holds no copy", m["reason"])

        def left():
            keys = [kv["key"].rsplit("/", 1)[1]
                    for kv in c.etcd.range_prefix(c.prefix + "/moves/")]
            return keys if len(keys) <= 50 else None
        keys = rp.wait_for(left, 20, "50 move documents left")
        self.assertEqual(sorted(keys), sorted(ids[7:] + [queued]))


class FailedMoves(MoveCase):
    def test_target_stops_undone_retried_failed_next_runs(self):
        c, w, s = self.loaded(nodes=3, routers=1, replicas=2, shards=2,
                              router_args=["--max-moves", "1"])
        ghost = c.add_node("node-3")  # holds nothing: stopping it touches no other shard
        rp.wait_for(lambda: "node-3" in c.registered(), 20, "node-3 registered")
        c.pause(ghost)
        t0 = time.monotonic()
        bad = self.put_move(move_doc(c.collection, 0, self.backup_of(0), "node-3"))
        frm1, to1 = self.backup_of(1), self.free_node(1, among={"node-0", "node-1", "node-2"})
        good = self.put_move(move_doc(c.collection, 1, frm1, to1))
        rp.wait_for(lambda: "node-3" in c.entry(0)["replicas"], 20, "node-3 added to shard 0")
        m = self.wait_move(good, timeout=60)  # runs once the stuck one is undone
        self.assertEqual(m["state"], "done")
        self.assertIn(to1, c.entry(1)["in_sync"])
        ghost.kill9()
        c.resume(ghost)
        m = self.wait_move(bad, states=("failed",), timeout=60)
        self.measured("stuck target -> move failed", "%.1f s" % (time.monotonic() - t0))
        self.assertEqual(m["attempts"], 3)
        self.assertIn("node-3", m["reason"])
        self.assertIn("not registered", m["reason"])
        e = c.entry(0)
        self.assertNotIn("node-3", e["replicas"])
        self.assertEqual(len(e["replicas"]), 2)
        self.finish(w, s)
        self.assert_no_failed_reads(s, w)


class StalledMove(MoveCase):
    def test_no_progress_undone_then_retry_succeeds(self):
        # a long lease: the stopped target stays registered, only the timeout catches it
        c, w, s = self.loaded(nodes=3, routers=1, replicas=2, shards=2, lease_ttl=15,
                              router_args=["--move-timeout-ms", "1500"])
        slow = c.add_node("node-3")
        rp.wait_for(lambda: "node-3" in c.registered(), 20, "node-3 registered")
        c.pause(slow)
        mid = self.put_move(move_doc(c.collection, 0, self.backup_of(0), "node-3"))
        m = rp.wait_for(lambda: (lambda d: d if d["attempts"] == 1 and d["state"] == "queued"
                                 else None)(self.move(mid)), 30, "attempt 1 undone")
        self.assertIn("no progress for 1500 ms (attempt 1 of 3)", m["reason"])
        self.assertNotIn("node-3", c.entry(0)["replicas"])
        c.resume(slow)
        m = self.wait_move(mid, timeout=60)
        self.assertEqual(m["attempts"], 2)
        self.assertIn("node-3", c.entry(0)["in_sync"])
        self.finish(w, s)
        self.assert_no_failed_reads(s, w)


class ControllerKilledMidMove(MoveCase):
    def test_other_router_finishes_the_move(self):
        c, w, s = self.loaded(nodes=3, routers=2, replicas=2, shards=2, transfer_max_mbps=1,
                              n=6000)
        ctl = c.controller_router()
        other = next(r for r in c.routers if r is not ctl)
        prim = c.entry(0)["primary"]
        to = self.free_node(0)
        mid = self.put_move(move_doc(c.collection, 0, prim, to, primary=True))
        rp.wait_for(lambda: self.move(mid)["state"] == "running", 20, "move running")
        t_kill = time.monotonic()
        ctl.kill9()
        killed = (t_kill, time.monotonic())
        m = self.wait_move(mid, timeout=90)
        e = c.entry(0)
        self.assertEqual(e["primary"], to)
        self.assertNotIn(prim, e["replicas"])
        with open(other.proc.log_path, "rb") as f:
            log = f.read().decode(errors="replace")
        self.assertIn("decision=move_done move=%s" % mid, log)
        self.finish(w, s)
        self.assert_no_failed_reads(s, w, killed)
        self.assertGreaterEqual(m["attempts"], 1)


class SourceKilledMidMove(MoveCase):
    def test_primary_source_kill9_move_finishes(self):
        # the source's other replica (shard 1) is re-created by failover after 3 s
        c, w, s = self.loaded(nodes=3, routers=1, replicas=2, shards=2, transfer_max_mbps=1,
                              n=12000, replace_after_ms=3000)
        c.add_node("node-3")
        rp.wait_for(lambda: "node-3" in c.registered(), 20, "node-3 registered")
        e = c.entry(0)
        src = e["primary"]
        mid = self.put_move(move_doc(c.collection, 0, src, "node-3", primary=True))
        rp.wait_for(lambda: "node-3" in c.entry(0)["replicas"], 20, "node-3 added")
        copying = "node-3" not in c.entry(0)["in_sync"]
        c.node(src).kill9()
        m = self.wait_move(mid, timeout=90)
        self.measured("source killed while the target was copying", copying)
        e = c.entry(0)
        self.assertNotIn(src, e["replicas"])
        self.assertIn("node-3", e["in_sync"])
        self.assertEqual(sorted(e["replicas"]), sorted(e["in_sync"]))
        self.assertEqual(len(e["replicas"]), 2)
        self.assertEqual(m["attempts"], 1)
        with open(c.routers[0].proc.log_path, "rb") as f:
            log = f.read().decode(errors="replace")
        # the move, not failover, removed the source from shard 0
        self.assertNotIn("decision=replace collection=repl shard=0", log)
        self.finish(w, s)
        self.assert_no_failed_reads(s, w)


def planner_ready():
    """The planner (rebalance.c) plans something: not the stub."""
    try:
        with open(rp.os.path.join(rp.os.path.dirname(__file__), "..", "..", "router",
                                  "controller", "rebalance.c")) as f:
            return "STUB" not in f.read()
    except OSError:
        return False


@unittest.skipUnless(planner_ready(), "the planner (router/controller/rebalance.c) is a stub")
class Automatic(MoveCase):
    def test_join_gets_replicas(self):
        c = self.start_cluster(nodes=2, routers=1, replicas=2, shards=4,
                               router_args=["--auto-rebalance", "on",
                                            "--rebalance-settle-ms", "500"])
        rp.Writer(c).load(2000)
        w, s = self.start_load()
        c.add_node("node-2")

        def balanced():
            count = {n: 0 for n in ("node-0", "node-1", "node-2")}
            for e in c.entries().values():
                if sorted(e["replicas"]) != sorted(e["in_sync"]):
                    return False
                for n in e["replicas"]:
                    count[n] += 1
            return max(count.values()) - min(count.values()) <= 1 and count["node-2"] > 0
        rp.wait_for(balanced, 90, "replicas balanced over 3 nodes")
        rp.wait_for(lambda: not any(m["state"] in ("queued", "running") for m in
                                    (json.loads(kv["value"]) for kv in
                                     c.etcd.range_prefix(c.prefix + "/moves/"))), 60,
                    "no move active")
        self.finish(w, s)
        self.assert_no_failed_reads(s, w)

    def test_drain_mark_empties_node(self):
        c, w, s = self.loaded(nodes=3, routers=1, replicas=2, shards=3)
        c.etcd.put(c.prefix + "/drain/node-0",
                   json.dumps({"node_id": "node-0", "since": int(time.time() * 1000)}))
        rp.wait_for(lambda: not any("node-0" in e["replicas"] or e["primary"] == "node-0"
                                    for e in c.entries().values()), 90,
                    "node-0 drained")
        w.stop()
        s.stop()
        c.wait_healthy(replicas=2)
        c.node("node-0").stop()
        w2, s2 = self.start_load()
        rp.wait_for(lambda: w2.acked_points >= 100, 30, "writes after node-0 stopped")
        self.finish(w, s, w2, s2)
        self.assert_no_failed_reads(s, w)
        self.assert_no_failed_reads(s2)


if __name__ == "__main__":
    unittest.main()
