"""test_hnswlib.py — vecshard.hnswlib against Debian's real hnswlib (0.6).

Each test runs the same hnswlib-style script twice on the same data, once
with `import hnswlib` and once with `import vecshard.hnswlib as hnswlib` on
a real cluster (etcd, 3 nodes, a router), and compares: shapes, dtypes,
label semantics, distances of the same labels, recall@k within 0.01 of
hnswlib's, and the exceptions (class and message) for wrong
dimensionality, capacity exceeded, fewer than k results and label not
found. Also: deletes, replace_deleted and filter (hnswlib 0.8 API), the
portable save/load file moved to a second cluster, and the life of an
automatically named collection.
"""
import gc
import os
import sys
import tempfile
import unittest

import clientenv
from clientenv import rh

import hnswlib as real
import numpy as np

import vecshard
import vecshard.hnswlib as vhnswlib


def tutorial(hnswlib, data, tmpdir, space):
    """hnswlib's README example (add half, save, load, add the rest, query)."""
    num_elements, dim = data.shape
    ids = np.arange(num_elements)
    p = hnswlib.Index(space=space, dim=dim)
    p.init_index(max_elements=num_elements // 2, ef_construction=100, M=16)
    p.set_ef(10)
    p.set_num_threads(2)
    half = num_elements // 2
    p.add_items(data[:half], ids[:half])
    labels1, distances1 = p.knn_query(data[:half], k=1)
    path = os.path.join(tmpdir, "first_half.bin")
    p.save_index(path)
    del p
    p = hnswlib.Index(space=space, dim=dim)
    p.load_index(path, max_elements=num_elements)
    p.set_ef(50)
    p.add_items(data[half:], ids[half:])
    labels2, distances2 = p.knn_query(data, k=1)
    return dict(labels1=labels1, distances1=distances1, labels2=labels2,
                distances2=distances2, count=p.get_current_count(),
                max=p.get_max_elements(), ids=sorted(p.get_ids_list()), index=p)


def failure(fn):
    """(exception class name, message) of calling fn, or None."""
    try:
        fn()
    except Exception as e:  # the point is to compare whatever is raised
        return type(e).__name__, str(e)
    return None


class HnswlibCompatTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = rh.RouterCluster(nodes=3, routers=1).start()
        cls.client = vhnswlib.connect(cls.cluster.routers[0].addr)
        cls.tmp = tempfile.mkdtemp(prefix="vs-hnswlib-", dir=cls.cluster.root)
        cls.rng = np.random.default_rng(11)

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def collections(self):
        return self.client.list_collections()

    def test_tutorial_flow(self):
        data = self.rng.random((2000, 16), dtype=np.float32)
        for space in ("l2", "cosine"):
            theirs = tutorial(real, data, self.tmp, space)
            ours = tutorial(vhnswlib, data, self.tmp, space)
            for key in ("labels1", "distances1", "labels2", "distances2"):
                self.assertEqual((ours[key].shape, ours[key].dtype),
                                 (theirs[key].shape, theirs[key].dtype), key)
            self.assertEqual((ours["count"], ours["max"], ours["ids"]),
                             (theirs["count"], theirs["max"], theirs["ids"]))
            for key, n in (("labels1", 1000), ("labels2", 2000)):
                r_ours = float((ours[key][:, 0] == np.arange(n)).mean())
                r_theirs = float((theirs[key][:, 0] == np.arange(n)).mean())
                self.assertGreaterEqual(r_ours, r_theirs - 0.01, (space, key))
            ours["index"].drop()

    def test_recall_and_distances_per_space(self):
        base = self.rng.standard_normal((4000, 24)).astype(np.float32)
        queries = self.rng.standard_normal((200, 24)).astype(np.float32)
        for space in ("l2", "ip", "cosine"):
            got = {}
            for mod in (real, vhnswlib):
                idx = mod.Index(space=space, dim=24)
                idx.init_index(max_elements=4000, ef_construction=200, M=16)
                idx.add_items(base)
                idx.set_ef(64)
                got[mod] = idx.knn_query(queries, k=10)
                if mod is vhnswlib:
                    idx.drop()
            (lo, do), (lt, dt) = got[vhnswlib], got[real]
            self.assertEqual((lo.shape, lo.dtype, do.shape, do.dtype),
                             (lt.shape, lt.dtype, dt.shape, dt.dtype))
            truth = clientenv.brute_force(base, queries, 10, space)
            rec_o, rec_t = clientenv.recall(lo, truth), clientenv.recall(lt, truth)
            print("\n  %s 4000 x 24-d, ef 64: recall@10 vecshard.hnswlib %.4f, hnswlib %.4f" %
                  (space, rec_o, rec_t), file=sys.stderr, end="")
            self.assertGreaterEqual(rec_o, rec_t - 0.01, space)
            # Rows sorted by distance, and a label both return has the same distance.
            self.assertTrue((np.diff(do, axis=1) >= 0).all())
            same = lo[:, 0] == lt[:, 0]
            self.assertGreater(same.mean(), 0.9)
            np.testing.assert_allclose(do[same, 0], dt[same, 0], rtol=1e-4, atol=1e-5)

    def test_same_exceptions(self):
        def script(mod):
            out = []
            idx = mod.Index(space="l2", dim=4)
            idx.init_index(max_elements=3, M=8, ef_construction=50)
            out.append(failure(lambda: idx.add_items(np.zeros((2, 5)))))
            out.append(failure(lambda: idx.add_items(np.zeros((3, 4)), [1, 2])))
            idx.add_items(np.eye(4)[:3], [10, 11, 12])
            out.append(failure(lambda: idx.add_items(np.ones((1, 4)), [13])))
            out.append((idx.get_current_count(), idx.element_count))
            out.append(failure(lambda: idx.knn_query(np.zeros(4), k=4)))
            out.append(failure(lambda: idx.mark_deleted(99)))
            out.append(failure(lambda: idx.get_items([99])))
            out.append(failure(lambda: idx.unmark_deleted(99)))
            out.append(failure(lambda: idx.unmark_deleted(10)))
            idx.mark_deleted(10)
            out.append(failure(lambda: idx.mark_deleted(10)))
            out.append(failure(lambda: idx.get_items([10])))
            out.append((idx.get_current_count(), sorted(idx.get_ids_list())))
            out.append(failure(lambda: idx.knn_query(np.zeros(4), k=3)))
            labels, _ = idx.knn_query(np.eye(4)[0], k=1)
            out.append(labels.tolist())
            idx.unmark_deleted(10)
            labels, dist = idx.knn_query(np.eye(4)[0], k=2)
            out.append((labels.tolist(), dist.tolist()))
            out.append(failure(lambda: idx.resize_index(1)))
            idx.resize_index(5)
            idx.add_items(np.ones((2, 4)), [13, 14])
            out.append((idx.max_elements, idx.get_max_elements(), idx.element_count))
            out.append(np.asarray(idx.get_items([11, 10])).tolist())
            if mod is vhnswlib:
                idx.drop()
            return out
        ours, theirs = script(vhnswlib), script(real)
        self.maxDiff = None
        self.assertEqual(ours, theirs)
        self.assertEqual(ours[0], ("RuntimeError", "wrong dimensionality of the vectors"))
        self.assertEqual(ours[2], ("RuntimeError",
                                   "The number of elements exceeds the specified limit"))
        self.assertEqual(ours[5], ("RuntimeError", "Label not found"))
        self.assertEqual(ours[4], ("RuntimeError", "Cannot return the results in a contigious "
                                   "2D array. Probably ef or M is too small"))
        self.assertEqual(ours[12], ours[4])
        # Capacity: hnswlib 0.6 inserts the points that fit before it fails;
        # vecshard.hnswlib checks first and writes nothing.
        part = vhnswlib.Index(space="l2", dim=2)
        part.init_index(max_elements=2)
        part.add_items([[0, 0]])
        self.assertRaises(RuntimeError, part.add_items, [[1, 1], [2, 2]])
        self.assertEqual((part.element_count, self.client.count(part.collection)), (1, 1))
        part.drop()
        # A query of the wrong dimension: hnswlib 0.6 reads past the row;
        # vecshard.hnswlib raises the add_items error.
        idx = vhnswlib.Index(space="ip", dim=4)
        idx.init_index(10)
        idx.add_items(np.eye(4))
        self.assertEqual(failure(lambda: idx.knn_query(np.zeros((1, 5)))),
                         ("RuntimeError", "wrong dimensionality of the vectors"))
        self.assertEqual(failure(lambda: vhnswlib.Index("hamming", 4)),
                         ("RuntimeError", "Space name must be one of l2, ip, or cosine."))
        self.assertEqual(failure(lambda: idx.init_index(10)),
                         ("RuntimeError", "The index is already initiated."))
        idx.drop()

    def test_replace_deleted_and_filter(self):
        idx = vhnswlib.Index(space="l2", dim=2)
        idx.init_index(max_elements=4, allow_replace_deleted=True)
        idx.add_items([[0, 0], [1, 0], [2, 0], [3, 0]], [0, 1, 2, 3])
        idx.mark_deleted(1)
        self.assertEqual(failure(lambda: idx.add_items([[9, 9]], [9])),
                         ("RuntimeError", "The number of elements exceeds the specified limit"))
        idx.add_items([[9, 9]], [9], replace_deleted=True)
        self.assertEqual((idx.element_count, idx.get_ids_list()), (4, [0, 2, 3, 9]))
        self.assertEqual(failure(lambda: idx.unmark_deleted(1)), ("RuntimeError",
                                                                  "Label not found"))
        labels, dist = idx.knn_query([[1, 0]], k=2, filter=lambda x: x % 3 == 0)
        self.assertEqual((labels.tolist(), dist.tolist()), ([[0, 3]], [[1.0, 4.0]]))
        self.assertEqual(failure(lambda: idx.knn_query([[1, 0]], k=3, filter=lambda x: x > 2)),
                         ("RuntimeError", "Cannot return the results in a contigious 2D array. "
                                          "Probably ef or M is too small"))
        no = vhnswlib.Index(space="l2", dim=2)
        no.init_index(max_elements=2)
        self.assertEqual(failure(lambda: no.add_items([[1, 1]], replace_deleted=True)),
                         ("RuntimeError",
                          "Replacement of deleted elements is disabled in constructor"))
        # Filtered search over many points: the answer is the exact filtered top-k.
        big = self.rng.random((3000, 8), dtype=np.float32)
        f = vhnswlib.Index(space="l2", dim=8)
        f.init_index(3000)
        f.add_items(big)
        f.set_ef(200)
        q = self.rng.random((20, 8), dtype=np.float32)
        labels, _ = f.knn_query(q, k=5, filter=lambda x: x % 7 == 0)
        self.assertTrue((labels % 7 == 0).all())
        sub = np.arange(0, 3000, 7)
        truth = sub[clientenv.brute_force(big[sub], q, 5)]
        self.assertGreaterEqual(clientenv.recall(labels, truth), 0.95)
        for i in (idx, no, f):
            i.drop()

    def test_file_moves_between_clusters(self):
        data = self.rng.random((500, 6), dtype=np.float32)
        idx = vhnswlib.Index(space="cosine", dim=6)
        idx.init_index(max_elements=800, M=10, ef_construction=80)
        idx.add_items(data)
        idx.mark_deleted(7)
        path = os.path.join(self.tmp, "moved.bin")
        idx.save_index(path)
        with rh.RouterCluster(nodes=1, routers=1) as other:
            client = vecshard.Client(other.routers[0].addr)
            moved = vhnswlib.Index(space="cosine", dim=6, client=client)
            moved.load_index(path)
            self.assertEqual((moved.max_elements, moved.element_count, moved.M,
                              moved.ef_construction, moved.ef), (800, 500, 10, 80, 10))
            self.assertEqual(client.count(moved.collection), 499)
            np.testing.assert_allclose(moved.get_items([3, 4]), idx.get_items([3, 4]),
                                       rtol=1e-6)
            self.assertEqual(failure(lambda: moved.get_items([7])), ("RuntimeError",
                                                                     "Label not found"))
            moved.unmark_deleted(7)
            moved.set_ef(100)
            labels, _ = moved.knn_query(data[:50], k=1)
            self.assertEqual(labels[:, 0].tolist(), list(range(50)))
            wrong = vhnswlib.Index(space="l2", dim=6, client=client)
            self.assertEqual(failure(lambda: wrong.load_index(path))[0], "RuntimeError")
            moved.drop()
            client.close()
        idx.drop()

    def test_collection_life(self):
        before = set(self.collections())
        tmp = vhnswlib.Index(space="l2", dim=3)
        tmp.init_index(10)
        name = tmp.collection
        self.assertRegex(name, r"^hnswlib-[0-9a-f]{16}$")
        self.assertIn(name, self.collections())
        del tmp
        gc.collect()
        self.assertEqual(set(self.collections()), before)
        kept = vhnswlib.Index(space="l2", dim=3, collection="kept-index", shards=2)
        kept.init_index(10)
        del kept
        gc.collect()
        self.assertIn("kept-index", self.collections())
        self.assertEqual(self.client.describe("kept-index").shards, 2)
        again = vhnswlib.Index(space="l2", dim=3, collection="kept-index")
        self.assertRaises(vecshard.AlreadyExists, again.init_index, 10)
        self.client.drop_collection("kept-index")


if __name__ == "__main__":
    unittest.main()
