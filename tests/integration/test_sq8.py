"""SQ8 collections (docs/engine.md), end to end: real etcd, a vecshard-node
and a router.

Collections created with QUANTIZATION_SQ8 (l2 over 2 shards, cosine over 1)
hold 6,000 clustered 32-d points, enough for every shard to train its codes.
Searches through the router are checked against numpy brute force: recall@10
>= 0.95 at the default ef, and every returned distance equals the exact
float distance (the candidates are re-ranked on floats). The same holds
after kill -9 (WAL replay re-codes every point) and after a clean restart
(the snapshot's vectors are re-coded at load); Get returns the exact
vectors, the float vectors' scratch file is never left in the data folder,
Describe reports the quantization, and a bad value is INVALID_ARGUMENT
naming config.quantization."""
import os
import unittest

import grpc
import numpy as np

import harness
import router_harness as rh
import vsdata
from router_harness import common_pb2 as cpb
from router_harness import vecshard_pb2 as pb

N, DIM, NQ, K = 6000, 32, 40, 10
RECALL_FLOOR = 0.95


class Sq8(harness.ClusterTestCase):

    def test_sq8_collections_through_restarts(self):
        c = rh.RouterCluster(nodes=0, routers=0, lease_ttl=5,
                             node_args=("--snapshot-wal-records", "3")).start()
        try:
            c.add_node(http=True)
            c.add_router()
            r = c.stub(0)
            base, queries = vsdata.clustered(N, DIM, clusters=20, seed=5, spread=0.3,
                                             n_queries=NQ)
            specs = {"q": ("l2", 2), "qc": ("cosine", 1)}
            # The same data without quantization, for the memory comparison.
            r.CreateCollection(rh.create_request("f", DIM, shards=2), timeout=30)
            rh.upsert_all(r, "f", list(range(N)), base, batch=2000)
            for name, (metric, shards) in specs.items():
                got = r.CreateCollection(rh.create_request(
                    name, DIM, metric=metric, shards=shards,
                    quantization=cpb.QUANTIZATION_SQ8), timeout=30).config
                self.assertEqual(got.quantization, cpb.QUANTIZATION_SQ8)
                rh.upsert_all(r, name, list(range(N)), base, batch=2000)
            truth = {name: vsdata.knn(base, queries, K, metric)
                     for name, (metric, _) in specs.items()}
            exact = {name: vsdata.distances(base, queries, metric)
                     for name, (metric, _) in specs.items()}

            def check(where):
                for name, (metric, _) in specs.items():
                    res = r.Search(rh.search_request(name, queries, k=K), timeout=60).results
                    found = [[h.id for h in q.hits] for q in res]
                    rec = vsdata.recall(truth[name], found, K)
                    self.assertGreaterEqual(rec, RECALL_FLOOR, "%s %s: recall %.4f" %
                                            (where, name, rec))
                    for qi, q in enumerate(res):
                        self.assertEqual(len(q.hits), K, where)
                        for h in q.hits:
                            want = exact[name][qi][h.id]
                            self.assertAlmostEqual(h.distance, want,
                                                   delta=1e-4 * (1 + abs(want)),
                                                   msg="%s %s: id %d" % (where, name, h.id))
                    cnt = r.Count(pb.CountRequest(collection=name), timeout=30).count
                    self.assertEqual(cnt, N, where)
                g = r.Get(pb.GetRequest(collection="q", ids=[0, 17, N - 1], with_vector=True),
                          timeout=30)
                for p in g.points:
                    np.testing.assert_array_equal(np.array(p.vector, dtype=np.float32),
                                                  base[p.id], where)
                d = r.DescribeCollection(pb.DescribeCollectionRequest(name="q"), timeout=30)
                self.assertEqual(d.config.quantization, cpb.QUANTIZATION_SQ8, where)
                for root, _, files in os.walk(c.nodes[0].data_dir):
                    self.assertNotIn("vectors.scratch", files, "%s: %s" % (where, root))

            check("after the load")
            # The shards hold codes, not floats, in memory: the float vectors are in the
            # mapped file, so at least 90 % of their bytes are missing from the SQ8 count.
            m = c.nodes[0].metrics()
            mem = {name: sum(v for (n, labels), v in m.items()
                             if n == "vecshard_replica_memory_bytes"
                             and ("collection", name) in labels) for name in ("q", "f")}
            self.assertGreater(mem["f"], 0)
            self.assertLessEqual(mem["q"] + 0.9 * N * DIM * 4, mem["f"], mem)
            c.nodes[0].kill9()
            c.nodes[0].start()
            rh.wait_until(lambda: self._serving(r), 60, "the node serving again")
            check("after kill -9")
            c.nodes[0].stop()
            c.nodes[0].start()
            rh.wait_until(lambda: self._serving(r), 60, "the node serving again")
            check("after a clean restart")

            bad = rh.create_request("bad", DIM)
            bad.config.quantization = 7
            with self.assertRaises(grpc.RpcError) as e:
                r.CreateCollection(bad, timeout=30)
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn("config.quantization", e.exception.details())
        finally:
            c.close()

    @staticmethod
    def _serving(r):
        try:
            for name in ("q", "qc"):
                r.Count(pb.CountRequest(collection=name), timeout=5)
            return True
        except grpc.RpcError:
            return False


if __name__ == "__main__":
    unittest.main()
