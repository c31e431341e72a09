"""A NUL byte inside a collection name is refused, never aliased (issue 7,
finding 6).

protobuf-c hands `string` fields to C as NUL-terminated char *, so before
the fix "nul\\0../../evil" reached every check as "nul": an Upsert into it
wrote to "nul", a Drop of "nul\\0x" dropped "nul", and a node's Search or
ShardStatus for "nul\\0x" answered for "nul". Now every VecShard call on the
router and every ShardNode call on a node answers INVALID_ARGUMENT naming
the field, and "nul" keeps exactly its 3 points.

One node and one router; the bad names are sent with raw grpcio stubs
(Python strings may hold NUL)."""
import unittest

import grpc

import harness
import router_harness as rh
from harness import shard_node_pb2
from router_harness import vecshard_pb2 as pb

SC = grpc.StatusCode
VECTORS = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]


class NulInNames(harness.ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = c = rh.RouterCluster(nodes=1, routers=1).start()
        try:
            cls.r = c.stub()
            cls.r.CreateCollection(rh.create_request("nul", 4), timeout=30)
            up = cls.r.Upsert(rh.upsert_request("nul", [1, 2, 3], VECTORS), timeout=30)
            assert up.upserted == 3, up
            cls.node = c.nodes[0]
        except BaseException:
            c.print_tails()
            c.close(check=False)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def tearDown(self):
        self.assert_nul_intact()

    # --- helpers
    def assert_invalid(self, fn, req, field):
        """fn(req) fails with INVALID_ARGUMENT whose message names `field`
        and the NUL."""
        code, details = rh.code_of(fn, req, timeout=10)
        self.assertEqual(code, SC.INVALID_ARGUMENT, details)
        self.assertIn(field, details)
        self.assertIn("NUL", details)

    def assert_nul_intact(self):
        """"nul" exists with exactly ids 1, 2, 3 and their vectors."""
        d = self.r.DescribeCollection(pb.DescribeCollectionRequest(name="nul"), timeout=10)
        self.assertEqual(d.config.name, "nul")
        self.assertEqual(d.count, 3)
        g = self.r.Get(pb.GetRequest(collection="nul", ids=[1, 2, 3, 100], with_vector=True),
                       timeout=10)
        self.assertEqual([p.id for p in g.points], [1, 2, 3])
        self.assertEqual([list(p.vector) for p in g.points], VECTORS)
        self.assertEqual(list(g.missing_ids), [100])
        names = [c.name for c in self.r.ListCollections(pb.ListCollectionsRequest(),
                                                        timeout=10).collections]
        self.assertEqual(names, ["nul"])

    def epoch(self):
        d = self.r.DescribeCollection(pb.DescribeCollectionRequest(name="nul"), timeout=10)
        return d.shards[0].epoch

    # --- router
    def test_router_upsert_does_not_write_to_prefix(self):
        self.assert_invalid(self.r.Upsert, rh.upsert_request(
            "nul\x00../../evil", [100], [[0.5, 0.5, 0.5, 0.5]]), "collection")

    def test_router_drop_does_not_drop_prefix(self):
        self.assert_invalid(self.r.DropCollection, pb.DropCollectionRequest(name="nul\x00x"),
                            "name")

    def test_router_create_refused(self):
        self.assert_invalid(self.r.CreateCollection, rh.create_request("nul\x00y", 4),
                            "config.name")

    def test_router_reads_and_delete_refused(self):
        self.assert_invalid(self.r.Search, rh.search_request(
            "nul\x00x", [VECTORS[0]], k=1), "collection")
        self.assert_invalid(self.r.Get, pb.GetRequest(collection="nul\x00x", ids=[1]),
                            "collection")
        self.assert_invalid(self.r.DescribeCollection,
                            pb.DescribeCollectionRequest(name="nul\x00x"), "name")
        self.assert_invalid(self.r.Delete, pb.DeleteRequest(collection="nul\x00x", ids=[1]),
                            "collection")
        self.assert_invalid(self.r.ClusterStatus,
                            pb.ClusterStatusRequest(collection="nul\x00x"), "collection")

    # --- node
    def test_node_write_does_not_write_to_prefix(self):
        self.assert_invalid(self.node.stub().Write, harness.write_request(
            "nul\x00../../evil", 0, self.epoch(),
            harness.points([100], [[0.5, 0.5, 0.5, 0.5]])), "collection")
        self.assert_invalid(self.node.stub().Write, harness.write_request(
            "nul\x00x", 0, self.epoch(), deletes=[1]), "collection")
        st = [s for s in self.node.shard_status("nul")]
        self.assertEqual([(s.collection, s.shard, s.count) for s in st], [("nul", 0, 3)])

    def test_node_reads_refused(self):
        stub = self.node.stub()
        self.assert_invalid(stub.Search, harness.search_request("nul\x00x", [VECTORS[0]], k=1),
                            "collection")
        self.assert_invalid(stub.Get, shard_node_pb2.NodeGetRequest(
            collection="nul\x00x", shard=0, ids=[1]), "collection")
        # A leading NUL must not read as "no collection" (= every replica).
        self.assert_invalid(stub.ShardStatus, shard_node_pb2.ShardStatusRequest(
            collection="\x00nul"), "collection")
        self.assert_invalid(stub.ShardStatus, shard_node_pb2.ShardStatusRequest(
            collection="nul\x00x"), "collection")


if __name__ == "__main__":
    unittest.main()
