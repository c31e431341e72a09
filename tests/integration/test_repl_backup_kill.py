"""kill -9 of a backup under writes (issue 8, docs/replication.md §3 step 5, §7).

R = 2 on 3 nodes, 3 shards, --replicate-timeout-ms 1000, --replace-after-ms
3000. A node is killed with SIGKILL; on the shard where it was only an
in-sync backup:

- the primary removes it from in_sync (CAS, epoch + 1) and writes continue:
  the first acknowledged write started after the kill comes within
  replicate timeout + 2 s;
- once it has been gone for --replace-after-ms, R is restored on the third
  node by a full transfer (transfers_completed >= 1 there), the dead node is
  in no shard's replicas any more, every shard has 2 in-sync READY copies;
- 0 acknowledged writes lost, equal digests."""
import time
import unittest

import repl_harness as rp


class BackupKill(rp.ReplTestCase):
    def test_kill9_backup_under_writes(self):
        c = self.start_cluster(nodes=3, routers=2, replicas=2, shards=3, lease_ttl=3,
                               replace_after_ms=3000, replicate_timeout_ms=1000)
        w, s = self.start_load()
        rp.wait_for(lambda: w.acked_points >= 300, 30, "300 acked points before the kill")
        victim = c.nodes[1]
        shards = c.backup_only_shards(victim.node_id)
        self.assertTrue(shards, "%s is an in-sync backup of no shard" % victim.node_id)
        shard = shards[0]
        before = c.entry(shard)
        t_kill = time.monotonic()
        victim.kill9()

        bound = c.replicate_timeout_ms / 1000.0 + 2
        t_ok = rp.wait_for(lambda: w.calls.first_ok_after(t_kill, shard=shard), bound + 20,
                           "a write to shard %d after the backup's kill" % shard)
        self.measured("backup kill -> first acked write", "%.2f s" % (t_ok - t_kill))
        self.assertLessEqual(t_ok - t_kill, bound)
        e = c.entry(shard)
        self.assertNotIn(victim.node_id, e["in_sync"])
        self.assertEqual(e["primary"], before["primary"])
        self.assertGreater(e["epoch"], before["epoch"])

        entries = c.wait_healthy(timeout=c.replace_after_ms / 1000.0 + 60)
        t_restored = time.monotonic()
        self.measured("backup kill -> R restored", "%.2f s" % (t_restored - t_kill))
        for sh, en in entries.items():
            self.assertNotIn(victim.node_id, en["replicas"], "shard %d" % sh)
        third = [x for x in entries[shard]["replicas"] if x not in before["replicas"]]
        self.assertEqual(len(third), 1, entries[shard])
        st = c.status(c.node(third[0]))[shard]
        self.assertGreaterEqual(st.transfers_completed, 1,
                                "the new copy on %s was not made by a full transfer" % third[0])
        self.finish(w, s)


if __name__ == "__main__":
    unittest.main()
