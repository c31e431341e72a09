"""If etcd is unreachable, data keeps flowing (docs/design.md §3,
docs/replication.md §8): a node whose lease cannot be renewed keeps taking
writes and serving reads (the epoch rule, not self-fencing, keeps data safe)
and registers again once etcd is back; a node restarted while etcd is down
reopens its replicas from disk and serves reads at once, and takes writes
once etcd answers (its role is unknown until then)."""
import time
import unittest

import grpc
import numpy as np

import harness
from harness import shard_node_pb2

TTL = 2
DIM = 8


class NodeEtcdOutage(harness.ClusterTestCase):
    def setUp(self):
        self.cluster = harness.Cluster(nodes=1, lease_ttl=TTL).start()
        self.addCleanup(self.cluster.close)
        self.node = self.cluster.nodes[0]
        self.cluster.create_collection("out", dim=DIM, ef_construction=64)
        self.cluster.wait_shards(self.node, "out", [0])
        self.base = np.random.default_rng(4).random((300, DIM), dtype=np.float32)
        self.node.stub().Write(harness.write_request(
            "out", 0, 1, harness.points(range(300), self.base)), timeout=10)

    def write(self, first_id, timeout=5):
        return self.node.stub().Write(harness.write_request(
            "out", 0, 1, harness.points([first_id], [np.ones(DIM)])), timeout=timeout)

    def assert_reads(self):
        r = self.node.stub().Search(harness.search_request("out", [self.base[7]], k=1),
                                    timeout=5)
        self.assertEqual(r.shards[0].code, 0, r.shards[0].error)
        self.assertEqual(r.shards[0].results[0].hits[0].id, 7)
        g = self.node.stub().Get(shard_node_pb2.NodeGetRequest(
            collection="out", shard=0, ids=[299], with_vector=True), timeout=5)
        self.assertTrue(np.array_equal(np.array(g.points[0].vector, dtype=np.float32),
                                       self.base[299]))

    def wait_until(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.1)
        self.fail("%s not reached within %.0f s" % (what, timeout))

    def status(self):
        return self.node.stub().NodeStatus(shard_node_pb2.NodeStatusRequest(), timeout=5)

    def write_code(self, first_id):
        try:
            self.write(first_id)
            return grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e.code()

    def test_writes_continue_without_etcd(self):
        c = self.cluster
        c.etcd.stop()
        # The lease is lost within a TTL plus the keep-alive timeout; writes go on throughout
        # (R = 1: no other copy can be promoted, docs/replication.md §8).
        written = 0
        deadline = time.monotonic() + TTL + 6
        while time.monotonic() < deadline:
            self.assertEqual(self.write_code(1000 + written), grpc.StatusCode.OK)
            written += 1
            if not self.status().etcd_ok and written > 20:
                break
            time.sleep(0.02)
        self.wait_until(lambda: not self.status().etcd_ok, TTL + 6, "etcd_ok false")
        for i in range(20):
            self.assertEqual(self.write_code(1000 + written), grpc.StatusCode.OK)
            written += 1
        self.assertFalse(self.status().fenced)
        (st,) = self.node.shard_status("out")
        self.assertEqual(st.state, shard_node_pb2.REPLICA_STATE_READY)
        self.assertEqual(st.count, 300 + written)
        self.assert_reads()

        c.etcd.restart()
        self.wait_until(lambda: self.status().etcd_ok, 20, "registered again after etcd returned")
        self.assertEqual(self.write_code(5000), grpc.StatusCode.OK)
        self.assertIsNotNone(c.etcd.get(self.node.key), "node did not register again")
        c.wait_shards(self.node, "out", [0])
        (st,) = self.node.shard_status("out")
        self.assertEqual(st.count, 300 + written + 1)

    def test_restart_without_etcd_serves_reads(self):
        c = self.cluster
        self.node.stop()
        c.etcd.stop()
        self.node.start(registered=False)
        # Reopened from disk: reads work although etcd never answered.
        self.wait_until(lambda: [s.state for s in self.node.shard_status("out")] ==
                        [shard_node_pb2.REPLICA_STATE_READY], 15, "replica reopened")
        self.assert_reads()
        # Its role is unknown until the shard map is read: writes wait for etcd.
        self.assertEqual(self.write_code(2000), grpc.StatusCode.UNAVAILABLE)

        c.etcd.restart()
        self.wait_until(lambda: self.write_code(2001) == grpc.StatusCode.OK, 20,
                        "writes accepted after etcd returned")
        self.wait_until(lambda: c.etcd.get(self.node.key) is not None, 10, "registration")
        (st,) = self.node.shard_status("out")
        self.assertEqual(st.count, 301)


if __name__ == "__main__":
    unittest.main()
