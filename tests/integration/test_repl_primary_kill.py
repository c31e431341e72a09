"""kill -9 of a primary under continuous writes (issue 8, docs/replication.md §3, §5, §7).

R = 2 on 3 nodes, 3 shards, 2 routers, lease TTL 3 s. A writer per shard and
a searcher run through both routers. The primary of shard 0 is killed with
SIGKILL; then:

- writes to every shard it led, and full-coverage searches, succeed again
  within TTL + 2 s of the kill (first successful call started after it);
- each such shard's entry names a new primary that was in in_sync before the
  kill, at a higher epoch, without the dead node in in_sync but with it still
  in replicas (it was gone for less than --replace-after-ms);
- the killed node, restarted, catches up from its LSN: it is back in in_sync
  of every shard it holds and did no full transfer (transfers_completed 0);
- 0 acknowledged writes lost (router and every in-sync replica, exact bytes),
  equal digests on every shard's in-sync replicas."""
import time
import unittest

import repl_harness as rp


class PrimaryKill(rp.ReplTestCase):
    def test_kill9_primary_under_writes(self):
        c = self.start_cluster(nodes=3, routers=2, replicas=2, shards=3, lease_ttl=3)
        w, s = self.start_load()
        rp.wait_for(lambda: w.acked_points >= 300, 30, "300 acked points before the kill")
        victim = c.primary_of(0)
        led = c.shards_led_by(victim.node_id)
        before = {sh: c.entry(sh) for sh in led}
        t_kill = time.monotonic()
        victim.kill9()
        bound = c.lease_ttl + 2

        for sh in led:
            t_ok = rp.wait_for(lambda: w.calls.first_ok_after(t_kill, shard=sh), bound + 20,
                               "a write to shard %d after the kill" % sh)
            self.measured("shard %d: kill -> first acked write" % sh, "%.2f s" % (t_ok - t_kill))
            self.assertLessEqual(t_ok - t_kill, bound, "shard %d writable again too late" % sh)
        t_ok = rp.wait_for(lambda: s.calls.first_ok_after(t_kill, kind="search"), bound + 20,
                           "a full-coverage search after the kill")
        self.assertLessEqual(t_ok - t_kill, bound, "full-coverage search too late")

        for sh in led:
            e = c.entry(sh)
            self.assertNotEqual(e["primary"], victim.node_id)
            self.assertIn(e["primary"], before[sh]["in_sync"])
            self.assertGreater(e["epoch"], before[sh]["epoch"])
            self.assertNotIn(victim.node_id, e["in_sync"])
            self.assertIn(victim.node_id, e["replicas"])

        n = w.acked_points
        rp.wait_for(lambda: w.acked_points >= n + 200, 30, "200 more acked points")
        victim.start()
        c.wait_healthy(timeout=40)
        rp.wait_for(lambda: all(st.in_sync for st in c.status(victim).values()), 10,
                    "%s's ShardStatus in_sync on every replica" % victim.node_id)
        for sh, st in c.status(victim).items():
            self.assertEqual(st.transfers_completed, 0,
                             "shard %d caught up by a full transfer, not from its LSN" % sh)
        self.finish(w, s)


if __name__ == "__main__":
    unittest.main()
