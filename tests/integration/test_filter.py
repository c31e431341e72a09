"""Filtered search over typed attributes (docs/filtering.md), end to end:
real etcd, 2 vecshard-node processes and a router, a 3-shard collection.

12,000 clustered 32-d points carry a string, a double, an int, a bool and
a tags list (some points lack some of them). For every attribute type and
operator, at selectivities from 50 % to 0.1 %, filtered searches through the
router are checked against numpy brute force over the matching subset:
recall@10 >= 0.95 at the default ef, k hits whenever >= k points match,
every hit matches. Also: a filter matching nothing; Count; upserts that
change a value (found under the new value only) and deletes keep the
indexes exact; delete by filter; kill -9 and restart (WAL replay) and a
restart from a snapshot keep attributes; bad filters and attributes get
INVALID_ARGUMENT naming the field; the debug plans."""
import unittest

import grpc
import numpy as np

import harness
import router_harness as rh
import vsdata
from router_harness import common_pb2 as cpb
from router_harness import vecshard_pb2 as pb

N, DIM, NQ, K = 12000, 32, 30, 10
RECALL_FLOOR = 0.95


def attrs_of(i):
    """The synthetic attributes of point i (a dict of python values)."""
    a = {"price": (i * 7919 % 10000) / 100.0,  # uniform 0.00 .. 99.99
         "n": i % 1000,
         "stock": i % 2 == 0,
         "tags": ["t%d" % (i % 100), "g%d" % (i % 7)]}
    if i % 50 != 49:
        a["cat"] = "c%d" % (i % 10)
    return a


def value_pb(v):
    if isinstance(v, bool):
        return cpb.AttributeValue(bool_value=v)
    if isinstance(v, int):
        return cpb.AttributeValue(int_value=v)
    if isinstance(v, float):
        return cpb.AttributeValue(double_value=v)
    if isinstance(v, str):
        return cpb.AttributeValue(string_value=v)
    return cpb.AttributeValue(tags=cpb.StringList(values=list(v)))


def point_pb(pid, vec, attrs):
    p = cpb.Point(id=pid, vector=[float(x) for x in vec])
    for k, v in attrs.items():
        p.attributes[k].CopyFrom(value_pb(v))
    return p


def cond(key, **test):
    return cpb.Filter(condition=cpb.Condition(key=key, **test))


def eq(key, v):
    return cond(key, eq=value_pb(v))


def rng(key, **b):
    return cond(key, range=cpb.Range(**{k: cpb.Number(value=x) for k, x in b.items()}))


def all_of(*f):
    return cpb.Filter(all_of=cpb.FilterList(filters=list(f)))


def any_of(*f):
    return cpb.Filter(any_of=cpb.FilterList(filters=list(f)))


def not_(f):
    return cpb.Filter(not_filter=f)


# (name, filter, python predicate over attrs_of) covering every type and operator.
CASES = [
    ("bool eq 50%", eq("stock", True), lambda a: a["stock"]),
    ("double range 50%", rng("price", lt=50.0), lambda a: a["price"] < 50),
    ("string eq 10%", eq("cat", "c3"), lambda a: a.get("cat") == "c3"),
    ("and 5%", all_of(eq("cat", "c1"), rng("price", gte=50.0)),
     lambda a: a.get("cat") == "c1" and a["price"] >= 50),
    ("int in 1%", cond("n", in_values=cpb.ValueList(values=[value_pb(x) for x in range(10)])),
     lambda a: a["n"] < 10),
    ("tags any 1%", cond("tags", tags_any=cpb.StringList(values=["t5"])),
     lambda a: "t5" in a["tags"]),
    ("exists false 2%", cond("cat", exists=cpb.Exists(exists=False)), lambda a: "cat" not in a),
    ("or 0.2%", any_of(eq("n", 3), eq("n", 4)), lambda a: a["n"] in (3, 4)),
    ("int eq 0.1%", eq("n", 7), lambda a: a["n"] == 7),
    ("double range 0.1%", rng("price", gte=99.9), lambda a: a["price"] >= 99.9),
    ("tags all 0.14%", cond("tags", tags_all=cpb.StringList(values=["t5", "g5"])),
     lambda a: "t5" in a["tags"] and "g5" in a["tags"]),
    ("not 90%", not_(eq("cat", "c0")), lambda a: a.get("cat") != "c0"),
    ("exists 98%", cond("cat", exists=cpb.Exists(exists=True)), lambda a: "cat" in a),
    ("int range 1% as double", rng("n", gt=1.5, lte=11.0), lambda a: 1.5 < a["n"] <= 11),
]


class Filter(harness.ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = c = rh.RouterCluster(nodes=2, routers=1, lease_ttl=5).start()
        try:
            cls.r = c.stub(0)
            cls.base, cls.queries = vsdata.clustered(N, DIM, clusters=20, seed=7, spread=0.3,
                                                     n_queries=NQ)
            cls.attrs = [attrs_of(i) for i in range(N)]
            cls.r.CreateCollection(rh.create_request("f", DIM, shards=3), timeout=30)
            for lo in range(0, N, 1000):
                cls.r.Upsert(pb.UpsertRequest(collection="f", points=[
                    point_pb(i, cls.base[i], cls.attrs[i]) for i in range(lo, min(N, lo + 1000))]),
                    timeout=120)
        except BaseException:
            c.print_tails()
            c.close(check=False)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def search(self, f, queries=None, k=K, debug=False, with_attributes=False):
        req = rh.search_request("f", self.queries if queries is None else queries, k=k)
        req.filter.CopyFrom(f)
        req.debug = debug
        req.with_attributes = with_attributes
        return self.r.Search(req, timeout=30)

    def brute(self, match_ids, queries, k=K):
        ids = np.array(sorted(match_ids), dtype=np.int64)
        if len(ids) == 0:
            return [[] for _ in queries]
        sub = self.base[ids]
        d = ((queries[:, None, :] - sub[None, :, :]) ** 2).sum(-1)
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        return [[int(ids[j]) for j in row] for row in order]

    def check_case(self, name, f, pred, live=None):
        live = range(N) if live is None else live
        match = {i for i in live if pred(self.attrs[i])}
        gt = self.brute(match, self.queries)
        resp = self.search(f)
        found = total = 0
        for q, res in enumerate(resp.results):
            hits = [h.id for h in res.hits]
            self.assertEqual(len(hits), min(K, len(match)), "%s: query %d" % (name, q))
            self.assertTrue(set(hits) <= match, "%s: a hit does not match" % name)
            found += len(set(hits) & set(gt[q]))
            total += len(gt[q])
        recall = found / total if total else 1.0
        self.assertGreaterEqual(recall, RECALL_FLOOR, "%s: recall %.3f" % (name, recall))
        return len(match), recall

    def test_recall_per_type_and_operator(self):
        for name, f, pred in CASES:
            with self.subTest(name):
                n, recall = self.check_case(name, f, pred)
                print("  %-24s matches %5d recall@10 %.3f" % (name, n, recall))

    def test_nothing_matches(self):
        for f in (eq("cat", "nope"), rng("price", gt=1000.0), eq("stock", "yes"),
                  all_of(eq("cat", "c1"), eq("cat", "c2"))):
            resp = self.search(f, debug=True)
            self.assertTrue(all(len(r.hits) == 0 for r in resp.results))
        c = self.r.Count(pb.CountRequest(collection="f", filter=eq("cat", "nope")), timeout=10)
        self.assertEqual(c.count, 0)

    def test_count(self):
        for name, f, pred in CASES[:6]:
            want = sum(1 for a in self.attrs if pred(a))
            got = self.r.Count(pb.CountRequest(collection="f", filter=f), timeout=30).count
            self.assertEqual(got, want, name)
        self.assertEqual(self.r.Count(pb.CountRequest(collection="f"), timeout=30).count, N)

    def test_debug_plans(self):
        resp = self.search(eq("n", 7), debug=True)
        self.assertEqual(len(resp.plans), 3)
        self.assertEqual({p.plan for p in resp.plans}, {"exact"})
        self.assertEqual(sum(p.estimated_matches for p in resp.plans), 12)
        resp = self.search(not_(eq("cat", "c0")), debug=True)
        self.assertEqual({p.plan for p in resp.plans}, {"post"})
        self.assertTrue(all(p.ef >= K for p in resp.plans))
        resp = self.search(eq("cat", "nope"), debug=True)
        self.assertEqual({p.plan for p in resp.plans}, {"none"})

    def test_bad_filters_and_attributes(self):
        bad = [
            (rng("price"), "filter.condition range has no bound"),
            (cpb.Filter(), "filter is empty"),
            (cond("", eq=value_pb(1)), "filter.condition has key ''"),
            (cond("tags", eq=value_pb(["a"])), "filter.condition.eq is a tags list"),
            (all_of(eq("n", 1), cpb.Filter(any_of=cpb.FilterList())),
             "filter.all_of[1] any_of has 0 sub-filters"),
            (cond("n", in_values=cpb.ValueList()), "filter.condition in_values has 0 values"),
        ]
        for f, msg in bad:
            with self.assertRaises(grpc.RpcError) as cm:
                self.search(f)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn(msg, cm.exception.details())
        deep = eq("n", 1)
        for _ in range(20):
            deep = not_(deep)
        with self.assertRaises(grpc.RpcError) as cm:
            self.r.Count(pb.CountRequest(collection="f", filter=deep), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("nested deeper than 16", cm.exception.details())
        v = [0.0] * DIM
        for attrs, msg in [({"x": float("nan")}, "points[1].attributes['x'] is nan"),
                           ({"bad name": 1}, "points[1].attributes['bad name'] has an invalid"),
                           ({"s": "x" * 2000}, "points[1].attributes['s'] has 2000 bytes"),
                           ({"a%d" % i: i for i in range(65)}, "points[1].attributes has 65")]:
            with self.assertRaises(grpc.RpcError) as cm:
                self.r.Upsert(pb.UpsertRequest(collection="f", points=[
                    point_pb(10 ** 9, v, {}), point_pb(10 ** 9 + 1, v, attrs)]), timeout=10)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn(msg, cm.exception.details())
        with self.assertRaises(grpc.RpcError) as cm:
            self.r.Delete(pb.DeleteRequest(collection="f", ids=[1], filter=eq("n", 1)), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        # Nothing of the refused batches was written; the cluster serves on.
        g = self.r.Get(pb.GetRequest(collection="f", ids=[10 ** 9]), timeout=10)
        self.assertEqual(list(g.missing_ids), [10 ** 9])


class FilterChanges(harness.ClusterTestCase):
    """Upserts, deletes and delete by filter keep the indexes exact, and
    attributes survive kill -9 (WAL replay) and a restart from a snapshot."""

    def test_changes_and_restarts(self):
        n = 3000
        c = rh.RouterCluster(nodes=1, routers=1, lease_ttl=5,
                             node_args=("--snapshot-wal-records", "4")).start()
        try:
            r = c.stub(0)
            base, queries = vsdata.clustered(n, DIM, clusters=10, seed=3, spread=0.3,
                                             n_queries=5)
            attrs = [attrs_of(i) for i in range(n)]
            r.CreateCollection(rh.create_request("g", DIM, shards=2), timeout=30)
            r.Upsert(pb.UpsertRequest(collection="g", points=[
                point_pb(i, base[i], attrs[i]) for i in range(n)]), timeout=120)

            def count(f):
                return r.Count(pb.CountRequest(collection="g", filter=f), timeout=30).count

            def hits(f, q=0, k=50):
                req = rh.search_request("g", queries[q:q + 1], k=k)
                req.filter.CopyFrom(f)
                return [h.id for h in r.Search(req, timeout=30).results[0].hits]

            self.assertEqual(count(eq("cat", "c3")), sum(a.get("cat") == "c3" for a in attrs))
            # An upsert moves point 3 from c3 to c9 and from tag t3 to zz.
            r.Upsert(pb.UpsertRequest(collection="g", points=[
                point_pb(3, base[3], {"cat": "c9", "tags": ["zz"], "n": 3})]), timeout=30)
            attrs[3] = {"cat": "c9", "tags": ["zz"], "n": 3}
            self.assertNotIn(3, hits(eq("cat", "c3"), k=n))
            self.assertIn(3, hits(eq("cat", "c9"), k=n))
            self.assertEqual(hits(cond("tags", tags_any=cpb.StringList(values=["zz"]))), [3])
            self.assertNotIn(3, hits(cond("tags", tags_any=cpb.StringList(values=["t3"])), k=n))
            self.assertNotIn(3, hits(cond("price", exists=cpb.Exists(exists=True)), k=n))
            # An upsert without attributes clears them.
            r.Upsert(pb.UpsertRequest(collection="g", points=[point_pb(13, base[13], {})]),
                     timeout=30)
            attrs[13] = {}
            self.assertEqual(count(cond("n", exists=cpb.Exists(exists=False))), 1)
            # Deletes.
            r.Delete(pb.DeleteRequest(collection="g", ids=[23, 33]), timeout=30)
            self.assertEqual(count(eq("cat", "c3")),
                             sum(a.get("cat") == "c3" for i, a in enumerate(attrs)
                                 if i not in (23, 33)))
            # Delete by filter: every n == 999 point (3 of them).
            d = r.Delete(pb.DeleteRequest(collection="g", filter=eq("n", 999)), timeout=30)
            self.assertEqual(d.deleted, sum(a.get("n") == 999 for a in attrs))
            self.assertEqual(count(eq("n", 999)), 0)
            live = [i for i in range(n) if i not in (23, 33) and attrs[i].get("n") != 999]
            want = {"c3": sum(attrs[i].get("cat") == "c3" for i in live),
                    "t5": sum("t5" in attrs[i].get("tags", []) for i in live),
                    "lt50": sum(attrs[i].get("price", 1e9) < 50 for i in live)}

            def check_all(where):
                self.assertEqual(count(eq("cat", "c3")), want["c3"], where)
                self.assertEqual(count(cond("tags", tags_any=cpb.StringList(values=["t5"]))),
                                 want["t5"], where)
                self.assertEqual(count(rng("price", lt=50.0)), want["lt50"], where)
                self.assertEqual(r.Count(pb.CountRequest(collection="g"), timeout=30).count,
                                 len(live), where)
                g = r.Get(pb.GetRequest(collection="g", ids=[3, 13, 100], with_attributes=True),
                          timeout=30)
                got = {p.id: p for p in g.points}
                self.assertEqual(got[3].attributes["cat"].string_value, "c9", where)
                self.assertEqual(list(got[3].attributes["tags"].tags.values), ["zz"], where)
                self.assertEqual(len(got[13].attributes), 0, where)
                self.assertEqual(got[100].attributes["price"].double_value, attrs[100]["price"])
                self.assertEqual(got[100].attributes["n"].int_value, 100)
                self.assertTrue(got[100].attributes["stock"].bool_value)
                req = rh.search_request("g", queries[:1], k=5)
                req.filter.CopyFrom(eq("cat", "c9"))
                req.with_attributes = True
                for h in r.Search(req, timeout=30).results[0].hits:
                    self.assertEqual(h.attributes["cat"].string_value, "c9", where)

            check_all("before restart")
            c.nodes[0].kill9()
            c.nodes[0].start()
            rh.wait_until(lambda: self._serving(count), 60, "the node serving again")
            check_all("after kill -9")
            c.nodes[0].stop()
            c.nodes[0].start()
            rh.wait_until(lambda: self._serving(count), 60, "the node serving again")
            check_all("after a clean restart")
        finally:
            c.close()

    @staticmethod
    def _serving(count):
        try:
            count(None)
            return True
        except grpc.RpcError:
            return False


if __name__ == "__main__":
    unittest.main()
