"""Duplicate-heavy data and edge values through a real node and router.

DuplicateHeavy (issue 7, finding 4): three data sets that once bricked a
shard (10 distinct vectors repeated 900 times; one-hot vectors cycling
through the 128 axes; 3,000 copies of one vector among 5,000) under l2, ip
and cosine, with payloads, over 2 shards of one node: every Upsert batch
is OK, Get returns every point with its payload, a search with k = ef =
1,000 returns 1,000 hits at exactly the brute-force distances; after
kill -9 and a restart the node holds the same points with the same vectors
and payloads, and writes succeed.

ValueRules (finding 5): a cosine vector whose norm underflows and any
component beyond 1e16 are INVALID_ARGUMENT naming the point, at the router
and at the node, for points and queries; a search afterwards has recall
1.0 against brute force and only finite distances.
"""
import math
import unittest

import grpc
import numpy as np

import harness
import router_harness as rh
import vsdata
from harness import common_pb2
from vecshard.v1 import vecshard_pb2 as pb

SC = grpc.StatusCode
K = 1000


def dataset(kind):
    """(vectors float32, query rows): the data set and rows holding duplicated vectors."""
    rng = np.random.default_rng(17)
    if kind == "dup10":
        base = rng.uniform(-1, 1, (10, 16)).astype(np.float32)
        return base[np.arange(9000) % 10], list(range(10))
    if kind == "onehot":
        x = np.zeros((5000, 128), dtype=np.float32)
        x[np.arange(5000), np.arange(5000) % 128] = 1.0
        return x, [0, 1, 77]
    one = rng.uniform(-1, 1, 32).astype(np.float32)
    x = rng.uniform(-1, 1, (5000, 32)).astype(np.float32)
    x[np.arange(5000) % 5 < 3] = one
    return x, [0]


def payload(i):
    return b"p%06d" % i


class DuplicateHeavy(harness.ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = rh.RouterCluster(nodes=1, routers=1, lease_ttl=3).start()
        cls.r = cls.cluster.stub()
        cls.sets = {}
        try:
            for kind in ("dup10", "onehot", "mix"):
                x, qrows = dataset(kind)
                for metric in ("l2", "ip", "cosine"):
                    name = "%s_%s" % (kind, metric)
                    cls.r.CreateCollection(rh.create_request(name, x.shape[1], metric=metric,
                                                             shards=2), timeout=30)
                    cls.sets[name] = (x, qrows, metric)
        except BaseException:
            cls.cluster.print_tails()
            cls.cluster.close(check=False)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def upsert(self, name, x):
        # dup10 in one Upsert (each shard's batch then runs the engine's
        # reachability sweep), the others in batches of 1,000.
        step = len(x) if name.startswith("dup10") else 1000
        for lo in range(0, len(x), step):
            ids = list(range(lo, min(lo + step, len(x))))
            code, r = rh.code_of(self.r.Upsert, rh.upsert_request(
                name, ids, x[lo:lo + step], [payload(i) for i in ids]), timeout=120)
            self.assertEqual(code, SC.OK, "%s batch at %d: %s" % (name, lo, r))
            self.assertEqual(r.upserted, len(ids))

    def get_all(self, name, n):
        """{id: (vector tuple, payload)} of ids 0..n-1; asserts none is missing."""
        out = {}
        for lo in range(0, n, 5000):
            g = self.r.Get(pb.GetRequest(collection=name, ids=list(range(lo, min(lo + 5000, n))),
                                         with_payload=True, with_vector=True), timeout=60)
            self.assertEqual(list(g.missing_ids), [])
            for p in g.points:
                out[p.id] = (tuple(p.vector), p.payload)
        self.assertEqual(len(out), n)
        return out

    def check_search(self, name):
        x, qrows, metric = self.sets[name][:3]
        r = self.r.Search(rh.search_request(name, x[qrows], k=K, ef=K), timeout=60)
        self.assertFalse(r.coverage.partial)
        exact = np.sort(vsdata.distances(x, x[qrows], metric), axis=1)[:, :K]
        for qi, res in enumerate(r.results):
            self.assertEqual(len(res.hits), K, "%s query row %d" % (name, qrows[qi]))
            got = np.array([h.distance for h in res.hits])
            self.assertTrue(np.all(np.isfinite(got)))
            bad = int(np.sum(np.abs(got - exact[qi]) > 1e-4 + 1e-4 * np.abs(exact[qi])))
            self.assertEqual(bad, 0, "%s query row %d: %d distances differ from brute force" %
                             (name, qrows[qi], bad))

    def test_duplicate_heavy_sets(self):
        for name, (x, _, _) in sorted(self.sets.items()):
            with self.subTest(collection=name):
                self.upsert(name, x)
                pts = self.get_all(name, len(x))
                self.assertEqual(sum(1 for i, (_, p) in pts.items() if p != payload(i)), 0)
                self.check_search(name)
                self.sets[name] = self.sets[name] + (pts,)
        # A crash, then a restart that replays every WAL: the same points.
        node = self.cluster.nodes[0]
        node.kill9()
        node.start()
        some = sorted(self.sets)[0]

        def full():
            code, r = rh.code_of(self.r.Search, rh.search_request(
                some, self.sets[some][0][:1], k=1), timeout=5)
            return code == SC.OK and not r.coverage.partial
        rh.wait_until(full, 30, "full coverage after the restart")
        for name, (x, _, _, before) in sorted(self.sets.items()):
            with self.subTest(collection=name, after="kill -9"):
                self.assertEqual(self.get_all(name, len(x)), before)
                self.check_search(name)
                ids = [len(x) + 1, len(x) + 2]
                r = self.r.Upsert(rh.upsert_request(name, ids, x[:2], [b"a", b"b"]), timeout=30)
                self.assertEqual(r.upserted, 2)


class ValueRules(harness.ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = rh.RouterCluster(nodes=1, routers=1, lease_ttl=3).start()
        cls.r = cls.cluster.stub()
        try:
            cls.r.CreateCollection(rh.create_request("cos", 8, metric="cosine"), timeout=30)
            cls.r.CreateCollection(rh.create_request("l2", 8), timeout=30)
            cls.base = np.random.default_rng(3).uniform(-1, 1, (300, 8)).astype(np.float32)
        except BaseException:
            cls.cluster.print_tails()
            cls.cluster.close(check=False)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def assert_invalid(self, fn, req, want):
        code, details = rh.code_of(fn, req, timeout=30)
        self.assertEqual(code, SC.INVALID_ARGUMENT, details)
        self.assertIn(want, details)

    def bad_rows(self, row, value):
        rows = self.base[:5].copy()
        rows[3] = value
        return rows

    def test_router_refuses_points_and_queries(self):
        tiny = [1e-45, 1e-45, 0, 0, 0, 0, 0, 0]
        self.assert_invalid(self.r.Upsert, rh.upsert_request(
            "cos", range(5), self.bad_rows(3, tiny)), "points[3].vector has norm")
        huge = list(self.base[0])
        huge[1] = 2e16
        for name in ("cos", "l2"):
            self.assert_invalid(self.r.Upsert, rh.upsert_request(
                name, range(5), self.bad_rows(3, huge)),
                "points[3].vector[1] is 2e+16, outside +-1e+16")
        self.assert_invalid(self.r.Search, rh.search_request("cos", [self.base[0], tiny], k=5),
                            "queries[1].vector has norm")
        self.assert_invalid(self.r.Search, rh.search_request("l2", [huge], k=5),
                            "queries[0].vector[1] is 2e+16")
        self.check_recall("cos", "cosine")
        self.check_recall("l2", "l2")

    def test_node_refuses_points_and_queries(self):
        node = self.cluster.nodes[0]
        self.r.CreateCollection(rh.create_request("ncos", 8, metric="cosine"), timeout=30)
        sh = rh.wait_until(lambda: [s for s in node.shard_status("ncos") if s.collection == "ncos"],
                           20, "the ncos shard on the node")[0]
        epoch = sh.epoch
        tiny = [1e-45, 1e-45, 0, 0, 0, 0, 0, 0]
        pts = harness.points(range(5), self.bad_rows(3, tiny))
        self.assert_invalid(node.stub().Write, harness.write_request("ncos", 0, epoch, pts),
                            "batch.upserts[3].vector has norm")
        huge = [0.5] * 8
        huge[0] = -3e17
        self.assert_invalid(node.stub().Search, harness.search_request("ncos", [huge], k=3),
                            "queries[0].vector[0] is -3e+17, outside +-1e+16")
        self.assert_invalid(node.stub().Search, harness.search_request("ncos", [tiny], k=3),
                            "queries[0].vector has norm")
        self.check_recall("ncos", "cosine")

    def check_recall(self, name, metric):
        """After the refusals: the normal points go in; recall 1.0, finite distances."""
        ids = list(range(1000, 1300))
        self.assertEqual(rh.upsert_all(self.r, name, ids, self.base), 300)
        queries = self.base[::6] + np.float32(0.01)
        r = self.r.Search(rh.search_request(name, queries, k=10, ef=300), timeout=30)
        gt = vsdata.knn(self.base, queries, 10, metric) + 1000
        found = [[h.id for h in res.hits] for res in r.results]
        self.assertEqual(vsdata.recall(gt, found, 10), 1.0)
        for res in r.results:
            self.assertEqual(len(res.hits), 10)
            self.assertTrue(all(math.isfinite(h.distance) for h in res.hits))


if __name__ == "__main__":
    unittest.main()
