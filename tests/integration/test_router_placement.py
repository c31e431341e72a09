"""Where CreateCollection puts replicas (issue 7, finding 7; docs/router.md).

- A node that is registered but does not answer (SIGSTOPped, or killed with
  SIGKILL less than a lease TTL before the create, so its key is still in
  etcd) fails the router's 300 ms health check and gets no shard: the new
  3-shard collection lives on the two healthy nodes and takes all 300
  points, and a search of it has full coverage. Before, round-robin
  placement gave it a shard and every write to that shard failed.
- A newly joined, empty node does not take every shard of the next
  collection: two nodes holding 4 replicas each and an empty third one get
  a 4-shard collection as 1 / 1 / 2 (ceil(4/3) = 2), where the old planner
  put all 4 on the empty node.

Leases are 15 s so a stopped or killed node stays registered through the
test."""
import os
import signal
import unittest

import grpc
import numpy as np

import harness
import router_harness as rh
from router_harness import vecshard_pb2 as pb

DIM = 8
N_POINTS = 300


def replicas_by_node(stub, name):
    """{node id: replicas of collection `name` on it} and the shard list."""
    d = stub.DescribeCollection(pb.DescribeCollectionRequest(name=name), timeout=10)
    count = {}
    for s in d.shards:
        for n in s.replicas:
            count[n] = count.get(n, 0) + 1
    return count, d.shards


class UnhealthyNodeSkipped(harness.ClusterTestCase):
    def setUp(self):
        self.cluster = rh.RouterCluster(nodes=3, routers=1, lease_ttl=15).start()
        self.addCleanup(self.cluster.close)
        self.r = self.cluster.stub()

    def assert_writable_without(self, name, bad):
        """`name` (3 shards) has no replica on node `bad`, takes every point
        and searches with full coverage."""
        count, shards = replicas_by_node(self.r, name)
        self.assertNotIn(bad, count, "the unhealthy node got shards: %r" % count)
        self.assertEqual(sorted(count.values()), [1, 2], count)
        self.assertEqual([len(s.replicas) for s in shards], [1, 1, 1])
        vecs = np.random.default_rng(3).random((N_POINTS, DIM), dtype=np.float32)
        up = self.r.Upsert(rh.upsert_request(name, list(range(N_POINTS)), vecs), timeout=30)
        self.assertEqual(up.upserted, N_POINTS)
        d = self.r.DescribeCollection(pb.DescribeCollectionRequest(name=name), timeout=10)
        self.assertEqual(d.count, N_POINTS)
        res = self.r.Search(rh.search_request(name, [vecs[17]], k=1), timeout=10)
        self.assertEqual((res.coverage.shards_total, res.coverage.shards_ok), (3, 3))
        self.assertEqual([h.id for h in res.results[0].hits], [17])

    def test_stopped_node_gets_no_shard(self):
        bad = self.cluster.nodes[2]
        os.kill(bad.proc.pid, signal.SIGSTOP)
        self.addCleanup(os.kill, bad.proc.pid, signal.SIGCONT)
        self.r.CreateCollection(rh.create_request("hung", DIM, shards=3), timeout=30)
        self.assert_writable_without("hung", bad.node_id)

    def test_just_killed_node_gets_no_shard(self):
        bad = self.cluster.nodes[1]
        bad.kill9()
        kv = self.cluster.etcd.get(bad.key)
        self.assertIsNotNone(kv, "the killed node should still be registered (lease 15 s)")
        self.r.CreateCollection(rh.create_request("dead", DIM, shards=3), timeout=30)
        self.assert_writable_without("dead", bad.node_id)

    def test_too_few_healthy_nodes(self):
        for n in self.cluster.nodes[1:]:
            n.kill9()
        code, details = rh.code_of(self.r.CreateCollection,
                                   rh.create_request("two", DIM, replication_factor=2),
                                   timeout=30)
        self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION, details)
        self.assertIn("replication_factor 2 needs 2 healthy nodes, 1 is (node-0)", details)
        self.assertIn("not answering the health check: node-1, node-2", details)


class NewNodeDoesNotTakeAll(harness.ClusterTestCase):
    def setUp(self):
        self.cluster = rh.RouterCluster(nodes=2, routers=1, lease_ttl=15).start()
        self.addCleanup(self.cluster.close)
        self.r = self.cluster.stub()

    def test_new_empty_node_gets_its_share(self):
        for name in ("old1", "old2"):
            self.r.CreateCollection(rh.create_request(name, DIM, shards=4), timeout=30)
        self.assertEqual(replicas_by_node(self.r, "old1")[0], {"node-0": 2, "node-1": 2})
        new = self.cluster.add_node()
        rh.wait_until(lambda: sum(n.alive for n in self.r.ClusterStatus(
            pb.ClusterStatusRequest(), timeout=10).nodes) == 3, 20, "router sees node-2")
        self.r.CreateCollection(rh.create_request("fresh", DIM, shards=4), timeout=30)
        count, shards = replicas_by_node(self.r, "fresh")
        self.assertEqual(count, {"node-0": 1, "node-1": 1, new.node_id: 2})
        self.assertEqual(sorted(s.primary for s in shards),
                         sorted(["node-0", "node-1", new.node_id, new.node_id]))


if __name__ == "__main__":
    unittest.main()
