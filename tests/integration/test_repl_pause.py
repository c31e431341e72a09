"""SIGSTOP of a primary past its TTL, then SIGCONT (issue 8, docs/replication.md §8).

R = 2 on 3 nodes, 3 shards, lease TTL 3 s. The primary P of shard 0 is
stopped; while it is stopped a Write is sent to it directly with the epoch
it holds (60 s deadline: P reads it only after SIGCONT) and the writers keep
going through the routers. After the controller promoted another in-sync
replica (entry epoch up, P out of in_sync) and a write to shard 0 was
acknowledged by it, P is continued. Then:

- the direct Write, handled by P after the promotion, is NOT acknowledged
  (FAILED_PRECONDITION or UNAVAILABLE) and its point is on no replica, P
  included, and not returned by a router;
- P rejoins shard 0 as a BACKUP (its unacknowledged tail cut: the shard's
  digests are equal on every in-sync replica, P included);
- every write the routers acknowledged is on every in-sync replica."""
import time
import unittest

import grpc

import harness
import repl_harness as rp
import router_harness as rh
from harness import shard_node_pb2
from router_harness import vecshard_pb2


class PausedPrimary(rp.ReplTestCase):
    def test_sigstop_primary_past_ttl(self):
        c = self.start_cluster(nodes=3, routers=2, replicas=2, shards=3, lease_ttl=3)
        w, s = self.start_load()
        rp.wait_for(lambda: w.acked_points >= 300, 30, "300 acked points before the pause")
        p = c.primary_of(0)
        before = c.entry(0)
        ghost = next(i for i in range(rp.FOREIGN_IDS, rp.FOREIGN_IDS + 1000)
                     if rh.shard_of(i, 3) == 0)
        req = harness.write_request(c.collection, 0, before["epoch"], harness.points(
            [ghost], [rp.vector_of(ghost, c.dim)], [b"must-not-be-acked"]))
        stub = p.stub()

        c.pause(p)
        t_stop = time.monotonic()
        fut = stub.Write.future(req, timeout=60)
        rp.wait_for(lambda: c.entry(0)["primary"] != p.node_id, c.lease_ttl + 20,
                    "a new primary of shard 0 while %s is stopped" % p.node_id)
        promoted = c.entry(0)
        self.measured("SIGSTOP -> promotion", "%.2f s" % (time.monotonic() - t_stop))
        self.assertIn(promoted["primary"], before["in_sync"])
        self.assertNotIn(p.node_id, promoted["in_sync"])
        self.assertGreater(promoted["epoch"], before["epoch"])
        t_promo = time.monotonic()
        rp.wait_for(lambda: w.calls.first_ok_after(t_promo, shard=0), 30,
                    "an acked write to shard 0 on its new primary")

        c.resume(p)
        try:
            fut.result()
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        self.assertIn(code, (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE),
                      "the deposed primary answered a write after the promotion with %s" % code)

        digests = self.finish(w, s)
        e = c.entry(0)
        self.assertIn(p.node_id, e["in_sync"])
        self.assertNotEqual(e["primary"], p.node_id)
        st = c.status(p)[0]
        self.assertEqual(st.role, rp.ROLE_BACKUP)
        self.measured("truncations on the deposed primary", st.truncations)
        self.assertIn(p.node_id, digests[0])
        for m in e["in_sync"]:
            r = c.node(m).stub().Get(shard_node_pb2.NodeGetRequest(
                collection=c.collection, shard=0, ids=[ghost]), timeout=10)
            self.assertEqual(list(r.missing_ids), [ghost], "the unacked write is on %s" % m)
        r = c.stub(1).Get(vecshard_pb2.GetRequest(collection=c.collection, ids=[ghost]),
                          timeout=10)
        self.assertEqual(list(r.missing_ids), [ghost])


if __name__ == "__main__":
    unittest.main()
