"""A whole cluster behind the public API: real etcd, 3 vecshard-node and 2
vecshard-router processes, driven by a Python grpcio client.

20,000 clustered 128-d points are loaded through router-0 into a 3-shard
collection and searched through both routers: recall@10 at ef 64 against
numpy brute force is at least 0.95, both routers give the very same hits,
and recall is no lower than the engine's own (build/vecshard-bench on the
same data written as .fvecs) at the same ef. A 1-shard copy of the data
(one node behind the router) matches the engine's recall within 0.01 at
ef 32 and 64, the widths where recall still moves. Also: collection admin
(create / list / describe / drop, placement over distinct nodes), payloads,
Get and Delete through the other router, and the exact status code of every
bad input."""
import json
import os
import shutil
import tempfile
import unittest

import grpc
import numpy as np

import harness
import router_harness as rh
import vsdata
from router_harness import vecshard_pb2 as pb

N, DIM, NQ, K = 20000, 128, 1000, 10
EF_FLOOR = 64  # recall floor width
EF_COMPARE = (32, 64)  # widths compared with the engine
RECALL_FLOOR = 0.95
ENGINE_TOLERANCE = 0.01
M, EFC = 16, 200
ID_BASE = 10 ** 12  # ids of the 3-shard collection: ID_BASE + 3 * row


class RouterCluster(harness.ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="vs-it-data-")
        cls.cluster = c = rh.RouterCluster(nodes=3, routers=2, lease_ttl=5).start()
        try:
            cls.r0, cls.r1 = c.stub(0), c.stub(1)
            cls.base, cls.queries = vsdata.clustered(N, DIM, clusters=20, seed=42, spread=0.2,
                                                     n_queries=NQ)
            cls.gt = vsdata.knn(cls.base, cls.queries, K)
            cls.ids = [ID_BASE + 3 * i for i in range(N)]
            cls.r0.CreateCollection(rh.create_request("vec", DIM, m=M, ef_construction=EFC,
                                                      ef_search=EF_FLOOR, shards=3), timeout=30)
            cls.r0.CreateCollection(rh.create_request("vec1", DIM, m=M, ef_construction=EFC,
                                                      ef_search=EF_FLOOR, shards=1), timeout=30)
            cls.upserted = rh.upsert_all(cls.r0, "vec", cls.ids, cls.base)
            rh.upsert_all(cls.r0, "vec1", list(range(N)), cls.base)
        except BaseException:
            c.print_tails()
            c.close(check=False)
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ------------------------------------------------------------ helpers
    def search(self, stub, name, queries, ef, k=K, **kw):
        r = stub.Search(rh.search_request(name, queries, k=k, ef=ef, **kw), timeout=120)
        self.assertEqual(len(r.results), len(queries))
        self.assertFalse(r.coverage.partial)
        return r

    def rows_3shard(self, results):
        out = []
        for res in results:
            rows = []
            for h in res.hits:
                self.assertEqual((h.id - ID_BASE) % 3, 0, "unknown id %d" % h.id)
                rows.append((h.id - ID_BASE) // 3)
            out.append(rows)
        return out

    _engine = None

    def engine_recall(self):
        """{ef: recall} of build/vecshard-bench on the same data, M, efC."""
        if RouterCluster._engine is None:
            d = self.tmp
            vsdata.write_fvecs(os.path.join(d, "base.fvecs"), self.base)
            vsdata.write_fvecs(os.path.join(d, "query.fvecs"), self.queries)
            vsdata.write_ivecs(os.path.join(d, "gt.ivecs"), self.gt)
            p = rh.run([os.path.join(harness.BUILD, "vecshard-bench"),
                        "--base", os.path.join(d, "base.fvecs"),
                        "--query", os.path.join(d, "query.fvecs"),
                        "--gt", os.path.join(d, "gt.ivecs"), "--M", str(M), "--efc", str(EFC),
                        "--k", str(K), "--threads", "2",
                        "--ef", ",".join(str(e) for e in EF_COMPARE), "--json"], check=True)
            recs = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
            RouterCluster._engine = {r["ef"]: r["recall"] for r in recs
                                     if r.get("phase") == "search"}
        return RouterCluster._engine

    # ------------------------------------------------------------ data path
    def test_load_count_and_placement(self):
        self.assertEqual(self.upserted, N)
        d = self.r1.DescribeCollection(pb.DescribeCollectionRequest(name="vec"), timeout=10)
        self.assertEqual(d.count, N)
        self.assertEqual([s.shard for s in d.shards], [0, 1, 2])
        primaries = [s.primary for s in d.shards]
        self.assertEqual(sorted(primaries), sorted(n.node_id for n in self.cluster.nodes),
                         "3 shards x R 1 on 3 nodes should use every node once")
        for s in d.shards:
            self.assertEqual(list(s.replicas), [s.primary])
            self.assertEqual(s.epoch, 1)
            self.assertGreater(s.lsn, 0)
        # Each node's shard holds exactly the ids that hash to it.
        expect = [0, 0, 0]
        for i in self.ids:
            expect[rh.shard_of(i, 3)] += 1
        by_node = {n.node_id: n for n in self.cluster.nodes}
        for s in d.shards:
            (st,) = by_node[s.primary].shard_status("vec")
            self.assertEqual(st.shard, s.shard)
            self.assertEqual(st.count, expect[s.shard], "shard %d" % s.shard)

    def test_recall_floor_and_both_routers_agree(self):
        a = self.search(self.r0, "vec", self.queries, EF_FLOOR)
        b = self.search(self.r1, "vec", self.queries, EF_FLOOR)
        for qi, (ra, rb) in enumerate(zip(a.results, b.results)):
            self.assertEqual([h.id for h in ra.hits], [h.id for h in rb.hits],
                             "routers disagree on query %d" % qi)
            self.assertEqual([h.distance for h in ra.hits], [h.distance for h in rb.hits])
        self.assertEqual((a.coverage.shards_total, a.coverage.shards_ok), (3, 3))
        self.assertEqual(list(a.coverage.missing_shards), [])
        rows = self.rows_3shard(a.results)
        for qi, res in enumerate(a.results):
            self.assertEqual(len(res.hits), K)
            d = [h.distance for h in res.hits]
            self.assertEqual(d, sorted(d), "query %d not sorted" % qi)
            exact = ((self.base[rows[qi]].astype(np.float64) - self.queries[qi]) ** 2).sum(1)
            np.testing.assert_allclose(d, exact, rtol=1e-3, atol=1e-3)
        rec = vsdata.recall(self.gt, rows, K)
        print("\nrecall@10 at ef %d, 3 shards through 2 routers: %.4f" % (EF_FLOOR, rec))
        self.assertGreaterEqual(rec, RECALL_FLOOR)

    def test_recall_matches_engine(self):
        engine = self.engine_recall()
        for ef in EF_COMPARE:
            three = vsdata.recall(self.gt, self.rows_3shard(
                self.search(self.r1, "vec", self.queries, ef).results), K)
            one = vsdata.recall(self.gt, [[h.id for h in r.hits] for r in self.search(
                self.r0, "vec1", self.queries, ef).results], K)
            print("\nrecall@10 at ef %d: engine %.4f, 1 shard behind the router %.4f, "
                  "3 shards %.4f" % (ef, engine[ef], one, three))
            self.assertLessEqual(abs(one - engine[ef]), ENGINE_TOLERANCE,
                                 "1-shard collection vs engine at ef %d" % ef)
            self.assertGreaterEqual(three, engine[ef] - ENGINE_TOLERANCE,
                                    "3-shard collection vs engine at ef %d" % ef)

    def test_batched_and_single_queries_agree(self):
        batch = self.search(self.r0, "vec", self.queries[:20], 0)  # ef 0 = ef_search
        for qi in range(20):
            single = self.search(self.r1, "vec", self.queries[qi:qi + 1], EF_FLOOR)
            self.assertEqual([h.id for h in batch.results[qi].hits],
                             [h.id for h in single.results[0].hits])

    # ------------------------------------------------------------ a grpcio client
    def test_python_client_roundtrip(self):
        """Create through one router, write and read through the other."""
        name = "pyclient"
        dim = 16
        r = self.r0.CreateCollection(rh.create_request(name, dim, metric="cosine", shards=2),
                                     timeout=30)
        self.assertEqual(r.config.name, name)
        self.assertEqual((r.config.m, r.config.ef_construction, r.config.ef_search), (16, 200, 64))
        self.assertEqual(r.config.replication_factor, 1)
        self.assertGreater(r.config.created_at, 0)
        vecs = vsdata.clustered(500, dim, clusters=5, seed=9)
        ids = [2 ** 64 - 1 - i for i in range(250)] + list(range(250))
        up = self.r1.Upsert(rh.upsert_request(name, ids, vecs, [b"p%d" % i for i in ids]),
                            timeout=30)
        self.assertEqual(up.upserted, 500)
        s = self.r1.Search(rh.search_request(name, vecs[:5], k=3, ef=100, with_payload=True,
                                             with_vector=True), timeout=10)
        for qi, res in enumerate(s.results):
            self.assertEqual(res.hits[0].id, ids[qi])
            self.assertAlmostEqual(res.hits[0].distance, 0.0, places=4)
            self.assertEqual(res.hits[0].payload, b"p%d" % ids[qi])
            v = np.array(res.hits[0].vector)
            np.testing.assert_allclose(v, vecs[qi] / np.linalg.norm(vecs[qi]), atol=1e-5)
        g = self.r0.Get(pb.GetRequest(collection=name, ids=[ids[3], 12345, ids[400], ids[3]],
                                      with_payload=True), timeout=10)
        self.assertEqual([p.id for p in g.points], [ids[3], ids[400]])
        self.assertEqual(list(g.missing_ids), [12345])
        self.assertEqual(g.points[1].payload, b"p%d" % ids[400])
        dl = self.r0.Delete(pb.DeleteRequest(collection=name, ids=ids[:100] + [777777]),
                            timeout=10)
        self.assertEqual(dl.deleted, 101)
        s = self.r1.Search(rh.search_request(name, vecs[:100], k=10, ef=200), timeout=10)
        for res in s.results:
            self.assertFalse(set(h.id for h in res.hits) & set(ids[:100]),
                             "a deleted id was returned")
        d = self.r1.DescribeCollection(pb.DescribeCollectionRequest(name=name), timeout=10)
        self.assertEqual(d.count, 400)
        self.r1.DropCollection(pb.DropCollectionRequest(name=name), timeout=30)

    # ------------------------------------------------------------ admin
    def test_create_list_describe_drop(self):
        r0, r1 = self.r0, self.r1
        r0.CreateCollection(rh.create_request("adm-b", 4, metric="ip", shards=5, m=8,
                                              ef_construction=50, ef_search=20), timeout=30)
        r0.CreateCollection(rh.create_request("adm-a", 4, shards=3, replication_factor=2),
                            timeout=30)
        # Another router sees a change once its etcd watch delivers it
        # (milliseconds; docs/router.md), so the other router is polled.
        def listed(router):
            return [c.name for c in router.ListCollections(pb.ListCollectionsRequest(),
                                                           timeout=10).collections]
        names = rh.wait_until(lambda: (lambda n: n if {"adm-a", "adm-b"} <= set(n) else None)(
            listed(r1)), 10, "both new collections listed by the other router")
        self.assertEqual(names, sorted(names))
        self.assertTrue({"adm-a", "adm-b", "vec", "vec1"} <= set(names), names)

        d = r1.DescribeCollection(pb.DescribeCollectionRequest(name="adm-b"), timeout=10)
        self.assertEqual((d.config.dim, d.config.metric, d.config.m, d.config.ef_construction,
                          d.config.ef_search, d.config.shards),
                         (4, rh.METRICS["ip"], 8, 50, 20, 5))
        self.assertEqual(d.count, 0)
        self.assertEqual(len(d.shards), 5)
        d = r1.DescribeCollection(pb.DescribeCollectionRequest(name="adm-a"), timeout=10)
        for s in d.shards:
            self.assertEqual(len(s.replicas), 2)
            self.assertEqual(len(set(s.replicas)), 2, "replicas of a shard on one node")
            self.assertEqual(s.replicas[0], s.primary)
        # Shards are spread: with 3 shards x R 2 on 3 nodes, every node holds 2.
        st = r0.ClusterStatus(pb.ClusterStatusRequest(collection="adm-a"), timeout=10)
        per_node = {}
        for s in st.shards:
            for n in s.replicas:
                per_node[n] = per_node.get(n, 0) + 1
        self.assertEqual(sorted(per_node.values()), [2, 2, 2])
        self.assertEqual(len([n for n in st.nodes if n.alive]), 3)
        self.assertGreater(st.revision, 0)

        for name in ("adm-a", "adm-b"):
            r1.DropCollection(pb.DropCollectionRequest(name=name), timeout=30)
        names = rh.wait_until(lambda: (lambda n: n if not {"adm-a", "adm-b"} & set(n) else None)(
            listed(r0)), 10, "both dropped collections gone from the other router's list")
        self.assertNotIn("adm-a", names)
        self.assertNotIn("adm-b", names)
        code, _ = rh.code_of(r0.DescribeCollection,
                             pb.DescribeCollectionRequest(name="adm-a"), timeout=10)
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND)
        # The nodes delete the dropped replicas' files themselves.
        rh.wait_until(lambda: not any(os.path.exists(os.path.join(n.data_dir, "adm-a"))
                                      for n in self.cluster.nodes), 15,
                      "dropped replicas deleted from the nodes' data dirs")
        # The name can be used again.
        r1.CreateCollection(rh.create_request("adm-a", 8), timeout=30)
        r1.DropCollection(pb.DropCollectionRequest(name="adm-a"), timeout=30)

    # ------------------------------------------------------------ exact codes
    def assert_code(self, code, fn, req, field=None):
        got, details = rh.code_of(fn, req, timeout=15)
        self.assertEqual(got, code, "%s: %s" % (type(req).__name__, details))
        if field is not None:
            self.assertIn(field, details, "message should name %r" % field)
        return details

    def test_bad_inputs(self):
        IA = grpc.StatusCode.INVALID_ARGUMENT
        r = self.r1
        v = self.base[:3]
        # names
        for bad in ("", "bad name", "x" * 65, "a/b", "é"):
            self.assert_code(IA, r.CreateCollection, rh.create_request(bad, 4))
            self.assert_code(IA, r.Search, rh.search_request(bad, v, k=10))
            self.assert_code(IA, r.Upsert, rh.upsert_request(bad, [1], v[:1]))
        self.assert_code(IA, r.CreateCollection, pb.CreateCollectionRequest(), "config")
        self.assert_code(IA, r.CreateCollection, rh.create_request("okname", 0), "dim")
        self.assert_code(IA, r.CreateCollection, rh.create_request("okname", 65537), "dim")
        self.assert_code(IA, r.CreateCollection, rh.create_request("okname", 4, m=1), "m")
        # wrong dim, NaN, Inf, k 0, k / ef too large, min_coverage out of range
        bad_dim = rh.upsert_request("vec", [1, 2], [self.base[0], self.base[1][:DIM - 1]])
        self.assert_code(IA, r.Upsert, bad_dim, "points[1].vector")
        nan = self.base[:2].copy()
        nan[1, 5] = float("nan")
        self.assert_code(IA, r.Upsert, rh.upsert_request("vec", [1, 2], nan), "points[1]")
        inf = self.base[:1].copy()
        inf[0, 0] = float("inf")
        self.assert_code(IA, r.Upsert, rh.upsert_request("vec", [1], inf), "points[0]")
        self.assert_code(IA, r.Upsert, pb.UpsertRequest(collection="vec"), "points")
        self.assert_code(IA, r.Search, rh.search_request("vec", [self.queries[0][:10]], k=10),
                         "queries[0]")
        self.assert_code(IA, r.Search, rh.search_request("vec", nan, k=10), "queries[1]")
        self.assert_code(IA, r.Search, rh.search_request("vec", v, k=0), "k")
        self.assert_code(IA, r.Search, rh.search_request("vec", v, k=10001), "k")
        self.assert_code(IA, r.Search, rh.search_request("vec", v, k=10, ef=100001), "ef")
        self.assert_code(IA, r.Search, rh.search_request("vec", v, k=10, min_coverage=1.5),
                         "min_coverage")
        self.assert_code(IA, r.Search, pb.SearchRequest(collection="vec", k=10), "queries")
        # A rejected batch changes nothing: ids 1 and 2 do not exist afterwards.
        g = r.Get(pb.GetRequest(collection="vec", ids=[1, 2]), timeout=10)
        self.assertEqual(list(g.missing_ids), [1, 2])
        # unknown collection
        NF = grpc.StatusCode.NOT_FOUND
        self.assert_code(NF, r.Search, rh.search_request("nosuch", v, k=10), "nosuch")
        self.assert_code(NF, r.Upsert, rh.upsert_request("nosuch", [1], v[:1]), "nosuch")
        self.assert_code(NF, r.Get, pb.GetRequest(collection="nosuch", ids=[1]))
        self.assert_code(NF, r.Delete, pb.DeleteRequest(collection="nosuch", ids=[1]))
        self.assert_code(NF, r.DescribeCollection, pb.DescribeCollectionRequest(name="nosuch"))
        self.assert_code(NF, r.DropCollection, pb.DropCollectionRequest(name="nosuch"))
        # taken name; placement impossible
        self.assert_code(grpc.StatusCode.ALREADY_EXISTS, self.r0.CreateCollection,
                         rh.create_request("vec", DIM), "vec")
        details = self.assert_code(grpc.StatusCode.FAILED_PRECONDITION, r.CreateCollection,
                                   rh.create_request("toomany", 4, replication_factor=4))
        self.assertRegex(details, r"\b4\b.*\b3\b", "message should give needed and live nodes")
        self.assert_code(NF, r.DescribeCollection, pb.DescribeCollectionRequest(name="toomany"))
        # The cluster still serves after all of that.
        self.search(self.r0, "vec", self.queries[:3], EF_FLOOR)


if __name__ == "__main__":
    unittest.main()
