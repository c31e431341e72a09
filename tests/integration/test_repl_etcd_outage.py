"""etcd stopped under continuous load (issue 8, docs/replication.md §8).

3 nodes, 2 routers, lease TTL 3 s; collection `r2` (R = 2, 3 shards) and
`r1` (R = 1, 3 shards), a writer per shard and a searcher on each. etcd is
stopped for OUTAGE_S seconds (30, 60 with VS_REPL_LONG=1: far beyond the 4 s
after which a node used to fence itself):

- 100 % of the writes and searches started during the outage succeed, and
  every shard of both collections acknowledged writes during it;
- then, etcd still down, a node that is an in-sync backup of an r2 shard S is
  killed: every write to S started after the kill fails UNAVAILABLE — none
  is acknowledged (its removal from in_sync cannot be written);
- etcd started again and the node restarted: full health of both
  collections (shard entries R in-sync READY copies), 0 acknowledged writes
  lost, equal digests."""
import time
import unittest

import repl_harness as rp

OUTAGE_S = 60 if rp.LONG else 30


class EtcdOutage(rp.ReplTestCase):
    def test_etcd_down_r1_and_r2(self):
        c = self.start_cluster(nodes=3, routers=2, replicas=2, shards=3, lease_ttl=3,
                               collection="r2")
        c.create("r1", c.dim, 3, 1)
        w2, s2 = self.start_load("r2")
        w1, s1 = self.start_load("r1", seed=2)
        rp.wait_for(lambda: w1.acked_points >= 100 and w2.acked_points >= 100, 30,
                    "100 acked points on each collection")

        victim = c.nodes[1]
        shards = c.backup_only_shards(victim.node_id, "r2")
        self.assertTrue(shards, "%s is an in-sync backup of no r2 shard" % victim.node_id)
        shard = shards[0]
        t0 = time.monotonic()
        c.stop_etcd()
        rp.wait_for(lambda: time.monotonic() - t0 >= OUTAGE_S, OUTAGE_S + 5,
                    "%d s of etcd outage" % OUTAGE_S, interval=0.5)
        t1 = time.monotonic()
        for name, load in (("r2 writes", w2), ("r1 writes", w1), ("r2 reads", s2),
                           ("r1 reads", s1)):
            bad = load.calls.failures(t0, t1)
            self.assertEqual(bad, [], "%s failed during the outage" % name)
            self.measured("%s during the outage" % name, len(load.calls.select(t0, t1)))
        for w in (w1, w2):
            for sh in range(3):
                self.assertTrue(w.calls.select(t0, t1, shard=sh, ok=True),
                                "%s shard %d wrote nothing during the outage" % (w.collection, sh))

        for x in (w1, w2, s1, s2):
            x.stop()
        victim.kill9()
        probe = rp.Writer(c, "r2", shards=[shard], threads=1, retry=False, seed=3,
                          n_shards=3).start()
        rp.wait_for(lambda: len(probe.calls.log) >= 5, 60, "5 writes to r2 shard %d" % shard)
        probe.stop()
        codes = [x[4] for x in probe.calls.log]
        self.assertEqual(set(codes), {"UNAVAILABLE"},
                         "writes needing the dead backup while etcd is down: %s" % codes)
        self.assertEqual(probe.acked_points, 0)

        c.start_etcd()
        victim.start()
        self.finish(w1, s1, collection="r1", replicas=1)
        self.finish(w2, s2, collection="r2", replicas=2)


if __name__ == "__main__":
    unittest.main()
