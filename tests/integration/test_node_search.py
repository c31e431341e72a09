"""10,000 clustered 64-d points written to a real node over gRPC from Python,
then searched and fetched: recall@10 against numpy brute force at ef 64,
exact distances, payloads and vectors only on request, Get returning the
exact vectors, LSNs and counts as ShardStatus reports them, upsert replacing
and delete hiding points."""
import unittest

import numpy as np

import harness
import vsdata

N, DIM, NQ, K, EF = 10000, 64, 200, 10, 64
BATCH = 1000
RECALL_FLOOR = 0.95


def make_ids(n):
    """Row -> id: large and non-contiguous, some near 2^64 (ids are uint64)."""
    ids = np.array([10 ** 12 + 7 * i for i in range(n)], dtype=np.uint64)
    for i in range(0, n, 997):
        ids[i] = np.uint64(2 ** 64 - 1 - i)
    return ids


class NodeSearch(harness.ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = c = harness.Cluster(nodes=1, lease_ttl=3).start()
        try:
            cls.node = c.nodes[0]
            c.create_collection("vec64", dim=DIM, m=16, ef_construction=200, ef_search=EF)
            c.wait_shards(cls.node, "vec64", [0])
            cls.base, cls.queries = vsdata.clustered(N, DIM, clusters=40, seed=42, n_queries=NQ)
            cls.gt = vsdata.knn(cls.base, cls.queries, K)
            cls.ids = make_ids(N)
            cls.row_of = {int(x): i for i, x in enumerate(cls.ids)}
            stub = cls.node.stub()
            cls.lsns = []
            for lo in range(0, N, BATCH):
                rows = range(lo, min(N, lo + BATCH))
                pts = harness.points([cls.ids[i] for i in rows], cls.base[lo:lo + BATCH],
                                     [b"doc-%d" % i for i in rows])
                r = stub.Write(harness.write_request("vec64", 0, 1, pts), timeout=60)
                cls.lsns.append(r.lsn)
        except BaseException:
            c.print_tails()
            c.close(check=False)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def search(self, queries, k=K, ef=EF, **kw):
        r = self.node.stub().Search(harness.search_request("vec64", queries, k, ef, **kw),
                                    timeout=60)
        self.assertEqual(len(r.shards), 1)
        self.assertEqual(r.shards[0].shard, 0)
        self.assertEqual(r.shards[0].code, 0, r.shards[0].error)
        self.assertEqual(len(r.shards[0].results), len(queries))
        return r.shards[0].results

    def rows(self, hits):
        return [self.row_of[h.id] for h in hits]

    def test_lsns_and_status(self):
        self.assertEqual(len(self.lsns), N // BATCH)
        self.assertGreater(self.lsns[0], 0)
        self.assertEqual(self.lsns, list(range(self.lsns[0], self.lsns[0] + len(self.lsns))))
        (st,) = self.node.shard_status("vec64")
        self.assertEqual(st.count, N)
        self.assertEqual(st.deleted, 0)
        self.assertEqual(st.lsn, self.lsns[-1])
        self.assertEqual(st.epoch, 1)
        self.assertGreater(st.disk_bytes, N * DIM * 4)

    def test_recall_at_10_ef_64(self):
        results = self.search(self.queries)
        found = []
        for qi, res in enumerate(results):
            self.assertEqual(len(res.hits), K)
            d = [h.distance for h in res.hits]
            self.assertEqual(d, sorted(d), "hits of query %d not sorted" % qi)
            rows = self.rows(res.hits)
            exact = ((self.base[rows].astype(np.float64) - self.queries[qi]) ** 2).sum(1)
            np.testing.assert_allclose(d, exact, rtol=1e-3, atol=1e-3)
            found.append(rows)
        rec = vsdata.recall(self.gt, found, K)
        print("\nrecall@10 at ef 64 over gRPC: %.4f" % rec)
        self.assertGreaterEqual(rec, RECALL_FLOOR)

    def test_default_ef_is_collections(self):
        # ef 0 = the collection's ef_search (64): the very same answers.
        a = self.search(self.queries[:50], ef=0)
        b = self.search(self.queries[:50], ef=EF)
        self.assertEqual([[h.id for h in r.hits] for r in a], [[h.id for h in r.hits] for r in b])

    def test_batched_queries_keep_positions(self):
        batch = self.search(self.queries[:32])
        for qi in range(32):
            (single,) = self.search(self.queries[qi:qi + 1])
            self.assertEqual([h.id for h in batch[qi].hits], [h.id for h in single.hits])

    def test_payloads_and_vectors_only_on_request(self):
        plain = self.search(self.queries[:20])
        for res in plain:
            for h in res.hits:
                self.assertEqual(h.payload, b"")
                self.assertEqual(len(h.vector), 0)
        rich = self.search(self.queries[:20], with_payload=True, with_vector=True)
        for res in rich:
            for h in res.hits:
                row = self.row_of[h.id]
                self.assertEqual(h.payload, b"doc-%d" % row)
                self.assertTrue(np.array_equal(np.array(h.vector, dtype=np.float32),
                                               self.base[row]))

    def test_get_exact_vectors(self):
        rng = np.random.default_rng(5)
        rows = [int(x) for x in rng.choice(N, 300, replace=False)]
        rows += [0, 997, 9999, rows[3]]  # near-2^64 ids and a duplicate
        ids = [int(self.ids[i]) for i in rows]
        absent = [5, 10 ** 12 + 1, 2 ** 63]
        req_ids = ids[:100] + [absent[0]] + ids[100:] + absent[1:]
        r = self.node.stub().Get(harness.shard_node_pb2.NodeGetRequest(
            collection="vec64", shard=0, ids=req_ids, with_payload=True, with_vector=True),
            timeout=30)
        first_seen = list(dict.fromkeys(ids))
        self.assertEqual([p.id for p in r.points], first_seen)
        self.assertEqual(list(r.missing_ids), absent)
        for p in r.points:
            row = self.row_of[p.id]
            self.assertTrue(np.array_equal(np.array(p.vector, dtype=np.float32), self.base[row]),
                            "vector of id %d differs" % p.id)
            self.assertEqual(p.payload, b"doc-%d" % row)
        bare = self.node.stub().Get(harness.shard_node_pb2.NodeGetRequest(
            collection="vec64", shard=0, ids=ids[:10]), timeout=30)
        self.assertEqual([p.id for p in bare.points], ids[:10])
        self.assertTrue(all(len(p.vector) == 0 and p.payload == b"" for p in bare.points))


class NodeMutations(harness.ClusterTestCase):
    """Upsert of an existing id replaces it; deleted ids are never returned."""

    def setUp(self):
        self.cluster = harness.Cluster(nodes=1, lease_ttl=3).start()
        self.addCleanup(self.cluster.close)

    def test_replace_and_delete(self):
        c, node = self.cluster, self.cluster.nodes[0]
        c.create_collection("mut", dim=32, ef_construction=100)
        c.wait_shards(node, "mut", [0])
        stub = node.stub()
        base = vsdata.clustered(600, 32, clusters=8, seed=3)
        stub.Write(harness.write_request("mut", 0, 1, harness.points(range(600), base)),
                   timeout=30)

        new_vec = np.full(32, 5.0, dtype=np.float32)  # far from every cluster
        stub.Write(harness.write_request("mut", 0, 1, harness.points([17], [new_vec], [b"new"])),
                   timeout=30)
        g = stub.Get(harness.shard_node_pb2.NodeGetRequest(
            collection="mut", shard=0, ids=[17], with_vector=True, with_payload=True), timeout=5)
        self.assertTrue(np.array_equal(np.array(g.points[0].vector, dtype=np.float32), new_vec))
        self.assertEqual(g.points[0].payload, b"new")
        r = stub.Search(harness.search_request("mut", [new_vec, base[17]], k=3), timeout=5)
        hits = r.shards[0].results
        self.assertEqual(hits[0].hits[0].id, 17)
        self.assertEqual(hits[0].hits[0].distance, 0.0)
        self.assertNotIn(17, [h.id for h in hits[1].hits],
                         "the replaced vector of id 17 was still found")

        deleted = list(range(100, 200))
        w = stub.Write(harness.write_request("mut", 0, 1, deletes=deleted), timeout=30)
        self.assertGreater(w.lsn, 0)
        r = stub.Search(harness.search_request("mut", base[100:200], k=10, ef=200), timeout=30)
        for res in r.shards[0].results:
            self.assertEqual(len(res.hits), 10)
            self.assertFalse(set(h.id for h in res.hits) & set(deleted),
                             "a deleted id was returned")
        g = stub.Get(harness.shard_node_pb2.NodeGetRequest(
            collection="mut", shard=0, ids=[99, 100, 150, 200]), timeout=5)
        self.assertEqual([p.id for p in g.points], [99, 200])
        self.assertEqual(list(g.missing_ids), [100, 150])
        (st,) = node.shard_status("mut")
        self.assertEqual(st.count, 500)
        # Deleting an absent id is not an error.
        stub.Write(harness.write_request("mut", 0, 1, deletes=[100, 123456]), timeout=5)


if __name__ == "__main__":
    unittest.main()
