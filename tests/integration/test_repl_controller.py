"""kill -9 of the controller router (issue 8, docs/replication.md §7).

R = 2 on 3 nodes, 3 shards, 2 routers with --controller-ttl 2. The router
that ClusterStatus names as controller is killed with SIGKILL:

- the other router holds the election within controller TTL + 2 s (its
  ClusterStatus.controller names it);
- a primary killed afterwards is failed over by it: shard 0 gets a new
  primary from its old in_sync, and writes to it succeed, within lease TTL +
  2 s of that kill;
- after both come back: full health, 0 acknowledged writes lost, equal
  digests."""
import time
import unittest

import repl_harness as rp
from router_harness import vecshard_pb2


class ControllerKill(rp.ReplTestCase):
    def test_kill9_controller_then_failover(self):
        c = self.start_cluster(nodes=3, routers=2, replicas=2, shards=3, lease_ttl=3,
                               controller_ttl=2)
        w, s = self.start_load()
        ctl = c.controller_router()
        other = next(r for r in c.routers if r is not ctl)
        rp.wait_for(lambda: w.acked_points >= 200, 30, "200 acked points")
        t_kill = time.monotonic()
        ctl.kill9()

        def other_is_controller():
            cid = other.stub().ClusterStatus(vecshard_pb2.ClusterStatusRequest(),
                                             timeout=2).controller
            return c.router_by_id(cid) is other
        rp.wait_for(other_is_controller, c.controller_ttl + 20, "%s as controller" % other.name)
        took = time.monotonic() - t_kill
        self.measured("controller kill -> takeover", "%.2f s" % took)
        self.assertLessEqual(took, c.controller_ttl + 2)

        victim = c.primary_of(0)
        before = c.entry(0)
        t_kill = time.monotonic()
        victim.kill9()
        rp.wait_for(lambda: c.entry(0)["primary"] != victim.node_id, c.lease_ttl + 20,
                    "failover of shard 0 by %s" % other.name)
        self.assertIn(c.entry(0)["primary"], before["in_sync"])
        t_ok = rp.wait_for(lambda: w.calls.first_ok_after(t_kill, shard=0), c.lease_ttl + 20,
                           "a write to shard 0 after the failover")
        self.measured("primary kill -> first acked write (new controller)",
                      "%.2f s" % (t_ok - t_kill))
        self.assertLessEqual(t_ok - t_kill, c.lease_ttl + 2)

        ctl.start()
        victim.start()
        self.finish(w, s)


if __name__ == "__main__":
    unittest.main()
