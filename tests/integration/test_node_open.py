"""A node started against a real etcd opens the replicas the shard map gives
it — both those written before it started (initial range) and those written
while it runs (watch) — reports them READY through ShardStatus, follows epoch
bumps, and drops a replica the map moves away."""
import os
import time
import unittest

import grpc
import numpy as np

import harness
from harness import READY, shard_node_pb2
from grpc_health.v1 import health_pb2


def wait_gone(path, timeout=10):
    """True once path does not exist (files move to the trash after the replica closes)."""
    deadline = time.monotonic() + timeout
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not os.path.exists(path)


class NodeOpensShards(harness.ClusterTestCase):
    def setUp(self):
        self.cluster = harness.Cluster(nodes=0, lease_ttl=3).start()
        self.addCleanup(self.cluster.close)

    def test_opens_shards_from_etcd(self):
        c = self.cluster
        # Written while the node is down: found by its initial range at the
        # next start. (The node runs once first: a collection older than the
        # data dir's first start whose files are missing would open DAMAGED,
        # see test_node_identity.py.)
        node = c.add_node("node-0")
        self.assertEqual(node.stop(), 0)
        c.create_collection("pre", dim=16, shards=3, epoch=4,
                            placement=[["node-0"], ["ghost"], ["node-0"]])
        node.start()
        st = c.wait_shards(node, "pre", [0, 2])
        self.assertEqual([(s.collection, s.shard) for s in st], [("pre", 0), ("pre", 2)])
        for s in st:
            self.assertEqual(s.epoch, 4)
            self.assertEqual(s.role, shard_node_pb2.SHARD_ROLE_PRIMARY)
            self.assertEqual(s.state, READY)
            self.assertEqual(s.count, 0)
            self.assertEqual(s.lsn, 0)

        # Written while it runs: found by its watch.
        c.create_collection("post", dim=8, shards=2, placement=[["node-0"], ["node-0"]])
        c.wait_shards(node, "post", [0, 1])
        every = node.shard_status("")
        self.assertEqual([(s.collection, s.shard) for s in every],
                         [("post", 0), ("post", 1), ("pre", 0), ("pre", 2)])
        self.assertTrue(all(s.state == READY for s in every))

        # The replica serves: a write and a search of it.
        stub = node.stub()
        vec = np.arange(16, dtype=np.float32)
        r = stub.Write(harness.write_request("pre", 0, 4, harness.points([42], [vec])),
                       timeout=5)
        self.assertEqual(r.epoch, 4)
        res = stub.Search(harness.search_request("pre", [vec], k=1), timeout=5)
        self.assertEqual(res.shards[0].code, 0, res.shards[0].error)
        self.assertEqual([h.id for h in res.shards[0].results[0].hits], [42])

        # An epoch bump reaches the replica; moving shard 2 away closes it.
        c.set_shard("pre", 0, 6, ["node-0"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if [s.epoch for s in node.shard_status("pre") if s.shard == 0] == [6]:
                break
            time.sleep(0.05)
        self.assertEqual([s.epoch for s in node.shard_status("pre") if s.shard == 0], [6])
        c.set_shard("pre", 2, 5, ["ghost"])
        c.wait_shards(node, "pre", [0])
        self.assertTrue(wait_gone(os.path.join(node.data_dir, "pre", "2")),
                        "files of an unassigned replica were kept")
        self.assertTrue(os.path.isdir(os.path.join(node.data_dir, "pre", "0")))

        # Dropping a collection (deleting its key) closes its replicas; their
        # files go to the trash (test_node_identity.py covers the purge).
        c.etcd.delete("%s/collections/post" % c.prefix)
        c.wait_shards(node, "post", [])
        self.assertTrue(wait_gone(os.path.join(node.data_dir, "post")),
                        "the folder of a dropped collection was kept")
        self.assertEqual([(s.collection, s.shard) for s in node.shard_status("")], [("pre", 0)])

    def test_node_status_and_registration(self):
        c = self.cluster
        node = c.add_node("node-7")
        c.create_collection("one", dim=4, shards=2, placement=[["node-7"], ["node-7"]])
        c.wait_shards(node, "one", [0, 1])
        ns = node.stub().NodeStatus(shard_node_pb2.NodeStatusRequest(), timeout=5)
        self.assertEqual(ns.node_id, "node-7")
        self.assertEqual(ns.addr, node.addr)
        self.assertEqual(ns.replicas, 2)
        self.assertTrue(ns.etcd_ok)
        self.assertFalse(ns.fenced)
        self.assertTrue(ns.version)
        self.assertGreater(ns.memory_bytes, 0)

        reg = c.etcd.get_json(node.key)
        self.assertEqual(reg["addr"], node.addr)
        self.assertEqual(reg["version"], ns.version)
        self.assertEqual(int(reg["started_at"]), ns.started_at)
        self.assertLess(abs(ns.started_at - time.time() * 1000), 120000)
        self.assertIn("capacity", reg)
        kv = c.etcd.get(node.key)
        self.assertNotEqual(kv["lease"], 0, "the node key must be attached to a lease")

        for service in ("", "vecshard.v1.ShardNode"):
            self.assertEqual(node.health(service), health_pb2.HealthCheckResponse.SERVING)
        with self.assertRaises(grpc.RpcError) as cm:
            harness.health_pb2_grpc.HealthStub(node.channel()).Check(
                health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)


if __name__ == "__main__":
    unittest.main()
