"""Every bad input of docs/design.md §8 gets its exact gRPC status code from a real
node, and the node keeps serving afterwards (each test ends with a normal
search that must still return the right answer, and the process must still
be running)."""
import unittest

import grpc
import numpy as np

import harness
from harness import common_pb2, shard_node_pb2

SC = grpc.StatusCode
DIM = 8


class NodeErrors(harness.ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = c = harness.Cluster(nodes=1, lease_ttl=3).start()
        try:
            cls.node = c.nodes[0]
            # "err": the node's shard, at epoch 5 (stale-epoch tests send 4).
            c.create_collection("err", dim=DIM, epoch=5, ef_construction=64)
            # "split": shard 0 here, shard 1 placed on a node that does not run.
            c.create_collection("split", dim=DIM, shards=2, placement=[["node-0"], ["ghost"]])
            # "tiny": 2-d, so a batch over the point limit stays a small message.
            c.create_collection("tiny", dim=2, ef_construction=32)
            # "backup": this node holds a backup replica; "ghost" is primary.
            c.create_collection("backup", dim=DIM, epoch=3, placement=[["ghost", "node-0"]])
            c.create_collection("cos", dim=DIM, metric="cosine")
            for name, shards in (("err", [0]), ("split", [0]), ("tiny", [0]), ("backup", [0]),
                                 ("cos", [0])):
                c.wait_shards(cls.node, name, shards)
            cls.base = np.random.default_rng(9).random((200, DIM), dtype=np.float32)
            cls.node.stub().Write(harness.write_request(
                "err", 0, 5, harness.points(range(1, 201), cls.base)), timeout=30)
        except BaseException:
            c.print_tails()
            c.close(check=False)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def tearDown(self):
        self.assert_still_serving()

    # --- helpers
    def assert_still_serving(self):
        """The process runs and a normal search finds an exact match."""
        self.assertTrue(self.node.proc.alive(), "the node process died")
        r = self.node.stub().Search(harness.search_request("err", [self.base[41]], k=1),
                                    timeout=10)
        self.assertEqual(r.shards[0].code, 0, r.shards[0].error)
        self.assertEqual([h.id for h in r.shards[0].results[0].hits], [42])

    def assert_code(self, code, fn, req, timeout=10, **kw):
        """Calls fn(req) and asserts it fails with exactly `code`; returns the error."""
        with self.assertRaises(grpc.RpcError) as cm:
            fn(req, timeout=timeout, **kw)
        e = cm.exception
        self.assertEqual(e.code(), code, "expected %s, got %s: %s" % (code, e.code(),
                                                                     e.details()))
        return e

    def write(self, req, code):
        return self.assert_code(code, self.node.stub().Write, req)

    def search(self, req, code):
        return self.assert_code(code, self.node.stub().Search, req)

    def get(self, req, code):
        return self.assert_code(code, self.node.stub().Get, req)

    def pts(self, vectors, first_id=1000, payloads=None):
        return harness.points(range(first_id, first_id + len(vectors)), vectors, payloads)

    # --- INVALID_ARGUMENT
    def test_wrong_dim(self):
        for n in (DIM - 1, DIM + 1, 0):
            e = self.write(harness.write_request("err", 0, 5, self.pts([np.ones(n)])),
                           SC.INVALID_ARGUMENT)
            self.assertTrue(e.details())
            self.search(harness.search_request("err", [np.ones(n)], k=5), SC.INVALID_ARGUMENT)
        # One bad point among good ones rejects the whole batch.
        vecs = [np.ones(DIM)] * 5 + [np.ones(DIM + 3)] + [np.ones(DIM)]
        self.write(harness.write_request("err", 0, 5, self.pts(vecs, first_id=5000)),
                   SC.INVALID_ARGUMENT)
        g = self.node.stub().Get(shard_node_pb2.NodeGetRequest(
            collection="err", shard=0, ids=[5000, 5004]), timeout=5)
        self.assertEqual(list(g.missing_ids), [5000, 5004], "a rejected batch was applied")

    def test_nan_and_inf(self):
        for bad in (float("nan"), float("inf"), float("-inf")):
            v = np.ones(DIM, dtype=np.float32)
            v[3] = bad
            self.write(harness.write_request("err", 0, 5, self.pts([v])), SC.INVALID_ARGUMENT)
            self.search(harness.search_request("err", [v], k=5), SC.INVALID_ARGUMENT)
        # A bad query among good ones fails the call.
        v = np.ones(DIM, dtype=np.float32)
        v[0] = float("nan")
        self.search(harness.search_request("err", [self.base[0], v], k=5), SC.INVALID_ARGUMENT)

    def test_k_and_ef_limits(self):
        q = [self.base[0]]
        self.search(harness.search_request("err", q, k=0), SC.INVALID_ARGUMENT)
        self.search(harness.search_request("err", q, k=10001), SC.INVALID_ARGUMENT)
        self.search(harness.search_request("err", q, k=5, ef=100001), SC.INVALID_ARGUMENT)
        # The limits themselves are allowed: k 10,000 returns every point.
        r = self.node.stub().Search(harness.search_request("err", q, k=10000), timeout=30)
        self.assertEqual(r.shards[0].code, 0, r.shards[0].error)
        self.assertEqual(len(r.shards[0].results[0].hits), 200)
        r = self.node.stub().Search(harness.search_request("err", q, k=5, ef=100000), timeout=30)
        self.assertEqual(r.shards[0].results[0].hits[0].id, 1)

    def test_empty_lists_and_status_filter(self):
        req = harness.search_request("err", [self.base[0]], k=5, shards=[])
        self.search(req, SC.INVALID_ARGUMENT)
        self.search(harness.search_request("err", [], k=5), SC.INVALID_ARGUMENT)
        self.assert_code(SC.INVALID_ARGUMENT, self.node.stub().ShardStatus,
                         shard_node_pb2.ShardStatusRequest(shards=[0]))
        # An unknown collection is an empty list, not an error.
        r = self.node.stub().ShardStatus(shard_node_pb2.ShardStatusRequest(collection="nosuch"),
                                         timeout=5)
        self.assertEqual(len(r.shards), 0)

    def test_zero_vector_under_cosine(self):
        self.write(harness.write_request("cos", 0, 1, self.pts([np.zeros(DIM)])),
                   SC.INVALID_ARGUMENT)
        self.search(harness.search_request("cos", [np.zeros(DIM)], k=5), SC.INVALID_ARGUMENT)
        # A non-zero vector is stored normalised.
        self.node.stub().Write(harness.write_request(
            "cos", 0, 1, self.pts([np.full(DIM, 3.0)], 1)), timeout=5)
        g = self.node.stub().Get(shard_node_pb2.NodeGetRequest(
            collection="cos", shard=0, ids=[1], with_vector=True), timeout=5)
        np.testing.assert_allclose(g.points[0].vector, np.full(DIM, 1 / np.sqrt(DIM)),
                                   rtol=1e-6)

    def test_empty_name(self):
        self.write(harness.write_request("", 0, 5, self.pts([np.ones(DIM)])),
                   SC.INVALID_ARGUMENT)
        self.search(harness.search_request("", [np.ones(DIM)], k=5), SC.INVALID_ARGUMENT)
        self.get(shard_node_pb2.NodeGetRequest(collection="", shard=0, ids=[1]),
                 SC.INVALID_ARGUMENT)

    # --- NOT_FOUND
    def test_unknown_collection(self):
        self.write(harness.write_request("nosuch", 0, 1, self.pts([np.ones(DIM)])),
                   SC.NOT_FOUND)
        self.search(harness.search_request("nosuch", [np.ones(DIM)], k=5), SC.NOT_FOUND)
        self.get(shard_node_pb2.NodeGetRequest(collection="nosuch", shard=0, ids=[1]),
                 SC.NOT_FOUND)

    def test_shard_not_hosted(self):
        # The replica lookup fails before any per-point check, so which shard
        # these ids route to does not matter.
        ids = [1, 2, 3]
        pts = harness.points(ids, [np.ones(DIM)] * len(ids))
        self.write(harness.write_request("split", 1, 1, pts), SC.NOT_FOUND)
        self.get(shard_node_pb2.NodeGetRequest(collection="split", shard=1, ids=ids),
                 SC.NOT_FOUND)
        # Search reports a missing shard inside the reply, the others still answer.
        r = self.node.stub().Search(harness.search_request(
            "split", [np.ones(DIM)], k=5, shards=[0, 1]), timeout=10)
        self.assertEqual([s.shard for s in r.shards], [0, 1])
        self.assertEqual(r.shards[0].code, 0, r.shards[0].error)
        self.assertEqual(r.shards[1].code, SC.NOT_FOUND.value[0])
        self.assertTrue(r.shards[1].error)

    # --- FAILED_PRECONDITION
    def test_stale_epoch(self):
        e = self.write(harness.write_request("err", 0, 4, self.pts([np.ones(DIM)], 7000)),
                       SC.FAILED_PRECONDITION)
        self.assertEqual(e.details(), "stale epoch 4, current 5")
        trailers = dict(e.trailing_metadata() or ())
        self.assertEqual(trailers.get("vs-epoch"), "5")
        g = self.node.stub().Get(shard_node_pb2.NodeGetRequest(
            collection="err", shard=0, ids=[7000]), timeout=5)
        self.assertEqual(list(g.missing_ids), [7000], "a stale-epoch write was applied")
        # The current epoch is accepted.
        r = self.node.stub().Write(harness.write_request(
            "err", 0, 5, self.pts([np.ones(DIM)], 7001)), timeout=10)
        self.assertEqual(r.epoch, 5)

    def test_write_to_backup(self):
        (st,) = self.node.shard_status("backup")
        self.assertEqual(st.role, shard_node_pb2.SHARD_ROLE_BACKUP)
        e = self.write(harness.write_request("backup", 0, 3, self.pts([np.ones(DIM)])),
                       SC.FAILED_PRECONDITION)
        trailers = dict(e.trailing_metadata() or ())
        self.assertEqual(trailers.get("vs-epoch"), "3")
        self.assertEqual(trailers.get("vs-primary"), "ghost")

    # --- UNAVAILABLE
    def test_epoch_newer_than_nodes(self):
        e = self.write(harness.write_request("err", 0, 6, self.pts([np.ones(DIM)], 7100)),
                       SC.UNAVAILABLE)
        self.assertEqual(dict(e.trailing_metadata() or ()).get("vs-epoch"), "5")

    # --- RESOURCE_EXHAUSTED
    def test_get_over_100k_ids(self):
        self.get(shard_node_pb2.NodeGetRequest(collection="err", shard=0,
                                               ids=list(range(100001))),
                 SC.RESOURCE_EXHAUSTED)

    def test_payload_over_64k(self):
        v = [np.ones(DIM)]
        self.write(harness.write_request("err", 0, 5, self.pts(v, 8000, [b"x" * (65536 + 1)])),
                   SC.RESOURCE_EXHAUSTED)
        self.node.stub().Write(harness.write_request(
            "err", 0, 5, self.pts(v, 8001, [b"y" * 65536])), timeout=10)
        g = self.node.stub().Get(shard_node_pb2.NodeGetRequest(
            collection="err", shard=0, ids=[8000, 8001], with_payload=True), timeout=5)
        self.assertEqual([p.id for p in g.points], [8001])
        self.assertEqual(g.points[0].payload, b"y" * 65536)

    def test_batch_over_100k_points(self):
        n = 100001
        xs = np.random.default_rng(1).random((n, 2), dtype=np.float32)
        batch = common_pb2.WriteBatch(upserts=[
            common_pb2.Point(id=i, vector=(float(a), float(b))) for i, (a, b) in enumerate(xs)])
        req = shard_node_pb2.WriteRequest(collection="tiny", shard=0, epoch=1, batch=batch)
        self.write(req, SC.RESOURCE_EXHAUSTED)
        (st,) = self.node.shard_status("tiny")
        self.assertEqual(st.count, 0, "a rejected batch was applied")

    def test_message_over_max(self):
        # A NodeSearchRequest whose collection field (1) is 64 MiB + 1 KiB:
        # rejected on size alone, before it is decoded.
        body = b"a" * ((64 << 20) + 1024)
        raw = b"\x0a" + _varint(len(body)) + body
        call = self.node.channel().unary_unary("/vecshard.v1.ShardNode/Search",
                                               request_serializer=lambda b: b,
                                               response_deserializer=lambda b: b)
        self.assert_code(SC.RESOURCE_EXHAUSTED, call, raw, timeout=30)

    # --- DEADLINE_EXCEEDED
    def test_tiny_deadline(self):
        qs = np.random.default_rng(2).random((2000, DIM), dtype=np.float32)
        req = harness.search_request("err", qs, k=100, ef=2000)
        self.assert_code(SC.DEADLINE_EXCEEDED, self.node.stub().Search, req, timeout=0.001)


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


if __name__ == "__main__":
    unittest.main()
