"""The Python client's attributes and filters (docs/filtering.md) against a
real cluster: attributes as dicts on upsert, get and search; filters as
dicts in the JSON form (every operator), count and delete by filter; bad
filters raise InvalidArgument naming the part."""
import unittest

import numpy as np

import clientenv
from clientenv import rh

import vecshard

N, DIM = 2000, 8


class FiltersTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = rh.RouterCluster(nodes=1, routers=1).start()
        cls.addr = cls.cluster.routers[0].addr
        rng = np.random.default_rng(5)
        cls.vecs = rng.standard_normal((N, DIM)).astype(np.float32)
        cls.attrs = [{"n": i % 100, "price": float(i % 1000) / 10, "cat": "c%d" % (i % 10),
                      "ok": i % 2 == 0, "tags": ["t%d" % (i % 20), "all"]} for i in range(N)]
        with vecshard.Client(cls.addr) as c:
            c.create_collection("pf", DIM, shards=2)
            c.upsert("pf", np.arange(N), cls.vecs, attributes=cls.attrs)

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def test_filters(self):
        cases = [
            ({"eq": {"cat": "c3"}}, lambda a: a["cat"] == "c3"),
            ({"and": [{"eq": {"ok": True}}, {"range": {"price": {"lt": 10}}}]},
             lambda a: a["ok"] and a["price"] < 10),
            ({"or": [{"eq": {"n": 1}}, {"in": {"n": [2, 3]}}]}, lambda a: a["n"] in (1, 2, 3)),
            ({"not": {"any": {"tags": ["t1", "t2"]}}},
             lambda a: not ({"t1", "t2"} & set(a["tags"]))),
            ({"all": {"tags": ["t4", "all"]}}, lambda a: "t4" in a["tags"]),
            ({"exists": "cat"}, lambda a: True),
            ({"exists": {"cat": False}}, lambda a: False),
        ]
        with vecshard.Client(self.addr) as c:
            for f, pred in cases:
                match = {i for i in range(N) if pred(self.attrs[i])}
                self.assertEqual(c.count("pf", filter=f), len(match), f)
                r = c.search("pf", self.vecs[:3], k=10, filter=f, with_attributes=True)
                for row in range(3):
                    got = r.ids[row, :r.counts[row]].tolist()
                    self.assertEqual(len(got), min(10, len(match)), f)
                    self.assertTrue(set(got) <= match, f)
                    for j, pid in enumerate(got):
                        self.assertEqual(r.attributes[row][j], self.attrs[pid])
            g = c.get("pf", [5, 6], with_attributes=True)
            self.assertEqual(g.attributes, [self.attrs[5], self.attrs[6]])
            with self.assertRaises(vecshard.InvalidArgument) as cm:
                c.search("pf", self.vecs[:1], filter={"range": {"price": {}}})
            self.assertIn("range has no bound", str(cm.exception))
            with self.assertRaises(vecshard.InvalidArgument):
                c.count("pf", filter={"near": {"x": 1}})

    def test_delete_by_filter(self):
        with vecshard.Client(self.addr) as c:
            c.create_collection("pd", DIM)
            c.upsert("pd", np.arange(100), self.vecs[:100], attributes=self.attrs[:100])
            self.assertEqual(c.delete("pd", filter={"eq": {"cat": "c7"}}), 10)
            self.assertEqual(c.count("pd"), 90)
            self.assertEqual(c.count("pd", filter={"eq": {"cat": "c7"}}), 0)


if __name__ == "__main__":
    unittest.main()
