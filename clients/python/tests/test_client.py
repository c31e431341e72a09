"""test_client.py — vecshard.Client against a real cluster (etcd, 3 nodes, routers).

The whole blocking API with exact results and exceptions (class, code and
the router's message), rebalance and drain with the per-node figures, a 20k-point recall floor against numpy brute force,
batching under a router's message limit (router-small runs with
--max-message-bytes 1 MiB), retries across a router restart, the progress
bar, `pip install --target` of the package from the source tree, and a
search's request_id in the router's log.
"""
import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import clientenv
from clientenv import rh

import grpc
import numpy as np

import vecshard
from vecshard import _common

SMALL = 1 << 20


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = rh.RouterCluster(nodes=3, routers=1).start()
        small = rh.Router(cls.cluster, "router-small",
                          extra_args=["--max-message-bytes", str(SMALL)])
        cls.cluster.routers.append(small)
        small.start()
        cls.addr = cls.cluster.routers[0].addr
        cls.client = vecshard.Client(cls.addr, timeout=30)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.cluster.close()

    def assertRaisesCode(self, cls, message, fn, *args, **kw):
        with self.assertRaises(cls) as cm:
            fn(*args, **kw)
        self.assertEqual(cm.exception.code, cls.code)
        self.assertEqual(cm.exception.message, message)
        return cm.exception

    def test_address_from_environment(self):
        old = os.environ.get("VECSHARD_ROUTER")
        try:
            os.environ["VECSHARD_ROUTER"] = self.addr
            with vecshard.Client() as c:
                self.assertEqual(c.address, self.addr)
                self.assertIsInstance(c.list_collections(), list)
            del os.environ["VECSHARD_ROUTER"]
            self.assertRaisesCode(vecshard.InvalidArgument,
                                  "address: none given and $VECSHARD_ROUTER is not set",
                                  vecshard.Client)
        finally:
            if old is not None:
                os.environ["VECSHARD_ROUTER"] = old

    def test_collections(self):
        c = self.client
        info = c.create_collection("coll-a", 8, metric="cosine", shards=2, M=12,
                                   ef_construction=100, ef_search=32)
        self.assertEqual((info.name, info.dim, info.metric, info.shards, info.replicas, info.M,
                          info.ef_construction, info.ef_search),
                         ("coll-a", 8, "cosine", 2, 1, 12, 100, 32))
        self.assertGreater(info.created_at, 0)
        self.assertRaisesCode(vecshard.AlreadyExists, 'collection "coll-a" already exists',
                              c.create_collection, "coll-a", 8)
        self.assertIn("coll-a", c.list_collections())
        d = c.describe("coll-a")
        self.assertEqual((d.count, len(d.shard_info)), (0, 2))
        self.assertEqual([s["shard"] for s in d.shard_info], [0, 1])
        self.assertTrue(c.collection_exists("coll-a"))
        self.assertFalse(c.collection_exists("coll-none"))
        e = self.assertRaisesCode(vecshard.NotFound, 'collection "coll-none" not found',
                                  c.describe, "coll-none")
        self.assertIsInstance(e, LookupError)
        self.assertRaises(vecshard.InvalidArgument, c.create_collection, "bad name!", 8)
        self.assertRaises(vecshard.InvalidArgument, c.create_collection, "coll-b", 0)
        self.assertRaisesCode(vecshard.InvalidArgument,
                              "metric: 'hamming' is not one of l2, ip, cosine",
                              c.create_collection, "coll-b", 8, metric="hamming")
        self.assertEqual(info.quantization, "none")
        q = c.create_collection("coll-q", 8, quantization="sq8")
        self.assertEqual(q.quantization, "sq8")
        self.assertEqual(c.describe("coll-q").quantization, "sq8")
        self.assertRaisesCode(vecshard.InvalidArgument,
                              "quantization: 'pq' is not one of none, sq8",
                              c.create_collection, "coll-b", 8, quantization="pq")
        c.drop_collection("coll-q")
        st = c.status()
        self.assertEqual(sorted(n["id"] for n in st["nodes"] if n["alive"]),
                         ["node-0", "node-1", "node-2"])
        self.assertIn("coll-a", [x["name"] for x in st["collections"]])
        # Per replica, as its node reports it (R = 1 here: the primary alone, READY, in sync).
        reps = [s["replica_status"] for s in st["shards"] if s["primary"]]
        self.assertTrue(reps)
        for r in reps:
            self.assertEqual([(x["role"], x["state"], x["in_sync"], x["alive"]) for x in r],
                             [("primary", "READY", True, True)])
        c.drop_collection("coll-a")
        self.assertFalse(c.collection_exists("coll-a"))
        self.assertRaisesCode(vecshard.NotFound, 'collection "coll-a" not found',
                              c.drop_collection, "coll-a")

    def test_rebalance_and_drain(self):
        c = self.client
        c.create_collection("bal", 4, shards=3)
        vecs = np.random.default_rng(3).standard_normal((90, 4)).astype(np.float32)
        c.upsert("bal", np.arange(90, dtype=np.uint64), vecs)
        info = c.describe("bal")
        self.assertEqual(sorted(n["id"] for n in info.nodes), ["node-0", "node-1", "node-2"])
        self.assertTrue(all(n["answered"] and n["replicas"] == 1 and n["bytes"] > 0
                            for n in info.nodes), info.nodes)
        self.assertEqual(sum(n["points"] for n in info.nodes), 90)
        reps = [r for s in info.shard_info for r in s["replica_status"]]
        self.assertEqual(sum(r["points"] for r in reps), 90)
        st = c.status()
        self.assertIsInstance(st["moves"], list)
        for n in st["nodes"]:
            self.assertEqual(set(n) >= {"draining", "bytes", "points", "answered"}, True, n)
            self.assertFalse(n["draining"])
        # 3 shards R = 1 on 3 nodes: balanced, so the plan is empty, dry or not.
        empty = {"moves": [], "started": False, "note": ""}
        self.assertEqual(c.rebalance(dry_run=True, collection="bal"), empty)
        self.assertEqual(c.rebalance(collection="bal"), empty)
        self.assertRaisesCode(vecshard.NotFound, 'collection "nope" not found', c.rebalance,
                              collection="nope")
        self.assertRaisesCode(vecshard.InvalidArgument,
                              "node_id is empty; it names a node (vecshard status lists them)",
                              c.drain, "")
        self.assertRaisesCode(vecshard.NotFound, 'node_id "node-9" is neither registered nor '
                              'named by any shard entry', c.drain, "node-9")
        on2 = sum("node-2" in s["replicas"] for s in st["shards"])
        try:
            d = c.drain("node-2")
            self.assertEqual((d["draining"], d["empty"]), (True, False))
            self.assertLessEqual(d["replicas_left"], on2)
            self.assertTrue({n["id"]: n for n in c.status()["nodes"]}["node-2"]["draining"])
        finally:
            u = c.undrain("node-2")
        self.assertFalse(u["draining"])
        self.assertFalse({n["id"]: n for n in c.status()["nodes"]}["node-2"]["draining"])
        c.drop_collection("bal")

    def test_points(self):
        c = self.client
        c.create_collection("pts", 4, shards=3)
        rng = np.random.default_rng(7)
        vecs = rng.standard_normal((300, 4)).astype(np.float32)
        ids = np.arange(1000, 1300, dtype=np.uint64)
        pay = ["p%d" % i for i in ids]
        self.assertEqual(c.upsert("pts", ids, vecs, payloads=pay, batch_size=64), 300)
        self.assertEqual(c.count("pts"), 300)
        r = c.search("pts", vecs[:5], k=3, ef=100, with_payload=True, with_vector=True)
        self.assertEqual((r.ids.dtype, r.ids.shape, r.distances.dtype, r.distances.shape),
                         (np.dtype(np.uint64), (5, 3), np.dtype(np.float32), (5, 3)))
        self.assertEqual(r.ids[:, 0].tolist(), ids[:5].tolist())
        self.assertEqual(r.distances[:, 0].tolist(), [0.0] * 5)
        self.assertEqual([p[0] for p in r.payloads], [b"p1000", b"p1001", b"p1002", b"p1003",
                                                      b"p1004"])
        np.testing.assert_array_equal(r.vectors[:, 0], vecs[:5])
        self.assertEqual(r.counts.tolist(), [3] * 5)
        self.assertEqual(r.coverage, vecshard.Coverage(3, 3, [], False))
        truth = clientenv.brute_force(vecs, vecs[:5], 3)
        self.assertEqual(r.ids.tolist(), ids[truth].tolist())
        # One 1-D query is one row; a lists input works like numpy.
        r1 = c.search("pts", vecs[7].tolist(), k=2)
        self.assertEqual(r1.ids.shape, (1, 2))
        self.assertEqual(int(r1.ids[0, 0]), 1007)
        # More hits asked for than points: padded rows, counts tell.
        c.create_collection("tiny", 2)
        c.upsert("tiny", [5, 6], [[0, 0], [1, 1]])
        t = c.search("tiny", [[0, 0]], k=4)
        self.assertEqual(t.counts.tolist(), [2])
        self.assertEqual(t.ids[0].tolist(), [5, 6, int(vecshard.PAD_ID), int(vecshard.PAD_ID)])
        self.assertEqual(t.distances[0].tolist(), [0.0, 2.0, np.inf, np.inf])

        g = c.get("pts", [1002, 1001, 77, 1002])
        self.assertEqual(g.ids.tolist(), [1002, 1001])
        self.assertEqual(g.payloads, [b"p1002", b"p1001"])
        np.testing.assert_array_equal(g.vectors, vecs[[2, 1]])
        self.assertEqual(g.missing_ids.tolist(), [77])
        g2 = c.get("pts", [1003], with_vector=False, with_payload=False)
        self.assertEqual((g2.ids.tolist(), g2.vectors, g2.payloads), ([1003], None, None))

        # Upsert replaces; within one call an id given twice keeps its last copy.
        self.assertEqual(c.upsert("pts", [1000, 1000], [[9, 9, 9, 9], [8, 8, 8, 8]],
                                  payloads=[b"x", b"y"]), 1)
        g3 = c.get("pts", [1000])
        self.assertEqual((g3.vectors.tolist(), g3.payloads), ([[8, 8, 8, 8]], [b"y"]))
        self.assertEqual(c.delete("pts", [1000, 1001, 5]), 3)
        self.assertEqual(c.count("pts"), 298)
        r2 = c.search("pts", vecs[:2], k=298, ef=400)
        self.assertNotIn(1000, r2.ids.tolist()[0])
        self.assertNotIn(1001, r2.ids.tolist()[1])
        self.assertEqual(c.upsert("pts", [], np.zeros((0, 4))), 0)
        c.drop_collection("pts")
        c.drop_collection("tiny")

    def test_errors(self):
        c = self.client
        c.create_collection("errs", 8)
        e = self.assertRaisesCode(vecshard.InvalidArgument,
                                  "points[0].vector has 7 floats, collection dim is 8",
                                  c.upsert, "errs", [1], np.zeros((1, 7)))
        self.assertIsInstance(e, ValueError)
        self.assertEqual(str(e), "INVALID_ARGUMENT: points[0].vector has 7 floats, "
                                 "collection dim is 8")
        self.assertRaisesCode(vecshard.NotFound, 'collection "nosuch" not found',
                              c.search, "nosuch", np.zeros((1, 8)))
        self.assertRaisesCode(vecshard.NotFound, 'collection "nosuch" not found',
                              c.upsert, "nosuch", [1], np.zeros((1, 8)))
        self.assertRaises(vecshard.InvalidArgument, c.search, "errs", np.zeros((1, 3)))
        self.assertRaisesCode(vecshard.InvalidArgument, "vectors: 2 rows for 1 ids",
                              c.upsert, "errs", [1], np.zeros((2, 8)))
        self.assertRaisesCode(vecshard.InvalidArgument, "ids: ids are unsigned, got -1",
                              c.upsert, "errs", [-1], np.zeros((1, 8)))
        self.assertRaisesCode(vecshard.InvalidArgument, "payloads: 2 given for 1 ids",
                              c.upsert, "errs", [1], np.zeros((1, 8)), payloads=[b"", b""])
        self.assertRaisesCode(vecshard.InvalidArgument, "k: must be at least 1, got 0",
                              c.search, "errs", np.zeros((1, 8)), k=0)
        nan = np.zeros((1, 8), np.float32)
        nan[0, 3] = np.nan
        self.assertRaises(vecshard.InvalidArgument, c.upsert, "errs", [1], nan)
        c.drop_collection("errs")

    def test_request_id(self):
        # A router logging at debug level writes one "request" line per call,
        # ending with its request_id.
        r = rh.Router(self.cluster, "router-debug", extra_args=["--log-level", "debug"])
        self.cluster.routers.append(r)
        r.start()
        with vecshard.Client(r.addr, timeout=30) as c:
            c.create_collection("rid", 4)
            c.upsert("rid", [1, 2], np.eye(2, 4))
            rid = "py-%d" % time.monotonic_ns()
            res = c.search("rid", np.eye(1, 4), k=1, request_id=rid)
            self.assertEqual(res.ids[0, 0], 1)
            c.drop_collection("rid")
        with open(r.proc.log_path) as f:
            lines = [ln for ln in f if ln.endswith("request_id=%s\n" % rid)]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn('msg="request" method=Search collection=rid code=OK', lines[0])
        r.stop()
        self.cluster.routers.remove(r)

    def test_recall_20k(self):
        c = self.client
        rng = np.random.default_rng(42)
        base = rng.standard_normal((20000, 32)).astype(np.float32)
        queries = rng.standard_normal((200, 32)).astype(np.float32)
        c.create_collection("r20k", 32, shards=3)
        t0 = time.monotonic()
        self.assertEqual(c.upsert("r20k", np.arange(20000), base, batch_size=2000,
                                  parallel=3), 20000)
        load_s = time.monotonic() - t0
        self.assertEqual(c.count("r20k"), 20000)
        truth = clientenv.brute_force(base, queries, 10)
        t0 = time.monotonic()
        r = c.search("r20k", queries, k=10, ef=128)
        search_s = time.monotonic() - t0
        rec = clientenv.recall(r.ids, truth)
        print("\n  20k x 32-d, 3 shards: upsert %.2f s, 200 queries %.3f s, recall@10 "
              "(ef 128) %.4f" % (load_s, search_s, rec), file=sys.stderr)
        self.assertGreaterEqual(rec, 0.97)
        # Distances are squared L2 (hnswlib's), exact for the hits returned.
        exact = ((base[r.ids[:, 0].astype(np.int64)] - queries) ** 2).sum(1)
        np.testing.assert_allclose(r.distances[:, 0], exact, rtol=1e-4, atol=1e-4)
        # Automatic ef: the target is met (within 0.01) and the reply says what was used.
        a = c.search("r20k", queries, k=10, target_recall=0.95)
        self.assertIsNone(r.ef_used)
        self.assertGreaterEqual(clientenv.recall(a.ids, truth), 0.94)
        self.assertGreaterEqual(a.ef_used, 10)
        self.assertGreater(a.estimated_recall, 0.9)
        self.assertRaisesCode(vecshard.InvalidArgument, "target_recall: 1.5 is not in (0, 1]",
                              c.search, "r20k", queries, target_recall=1.5)
        c.drop_collection("r20k")

    def test_batches_under_message_limit(self):
        small = self.cluster.routers[1]
        dim = 256
        rng = np.random.default_rng(3)
        vecs = rng.standard_normal((3000, dim)).astype(np.float32)
        ids = np.arange(3000, dtype=np.uint64)
        self.client.create_collection("big", dim)
        # The limit is real: the whole set in one message is refused.
        code, _ = rh.code_of(small.stub().Upsert, rh.upsert_request("big", ids[:2000],
                                                                    vecs[:2000]), timeout=30)
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        # The client cuts one call into batches that each fit.
        reqs = list(_common.upsert_batches("big", ids, vecs, None, 100000, SMALL))
        self.assertEqual(sum(n for _, n in reqs), 3000)
        self.assertGreaterEqual(len(reqs), 3)
        self.assertTrue(all(r.ByteSize() <= SMALL for r, _ in reqs))
        self.assertGreater(max(r.ByteSize() for r, _ in reqs), SMALL * 0.9)
        pay = [bytes(60000)] * 40
        preqs = list(_common.upsert_batches("big", ids[:40], vecs[:40], pay, 1000, SMALL))
        self.assertTrue(all(r.ByteSize() <= SMALL for r, _ in preqs))
        with vecshard.Client(small.addr, max_message=SMALL) as c:
            self.assertEqual(c.upsert("big", ids, vecs, batch_size=100000), 3000)
            self.assertEqual(c.upsert("big", ids[:40], vecs[:40], payloads=pay), 40)
            self.assertEqual(c.count("big"), 3000)
            g = c.get("big", ids)
            self.assertEqual(len(g), 3000)
            np.testing.assert_array_equal(g.vectors, vecs)
            self.assertEqual(g.payloads[:40], pay)
            # 300 x 20 hits with vectors (~6 MiB) come back in several replies.
            r = c.search("big", vecs[:300], k=20, ef=200, with_vector=True)
            self.assertEqual(r.vectors.shape, (300, 20, dim))
            np.testing.assert_array_equal(r.vectors, vecs[r.ids.astype(np.int64)])
            self.assertGreaterEqual(int((r.ids[:, 0] == np.arange(300)).sum()), 290)
        self.client.drop_collection("big")

    def test_retry_across_router_restart(self):
        c = self.client
        c.create_collection("retry", 2)
        router = self.cluster.routers[0]
        calls = []
        stub = vecshard.Client(router.addr, retries=10, backoff=0.05)
        real = stub._stub.Upsert

        def counted(*a, **kw):
            calls.append(1)
            return real(*a, **kw)
        stub._stub.Upsert = counted
        # A call the router refuses is not retried.
        self.assertRaises(vecshard.InvalidArgument, stub.upsert, "retry", [1], [[1, 2, 3]])
        self.assertEqual(len(calls), 1)
        calls.clear()
        router.stop()
        out = {}
        t = threading.Thread(target=lambda: out.update(n=stub.upsert("retry", [1, 2],
                                                                      [[1, 2], [3, 4]])))
        t.start()
        rh.wait_until(lambda: len(calls) >= 2, 20, "two refused Upsert attempts")
        router.start()
        t.join(60)
        self.assertEqual(out.get("n"), 2)
        self.assertGreaterEqual(len(calls), 3)
        self.assertEqual(c.count("retry"), 2)
        # With no retries left, the error is Unavailable with gRPC's message.
        router.stop()
        try:
            nore = vecshard.Client(router.addr, retries=0, timeout=5)
            self.assertRaises(vecshard.Unavailable, nore.count, "retry")
        finally:
            router.start()
        stub.close()
        c.drop_collection("retry")

    def test_progress_bar(self):
        class Tty(io.StringIO):
            def isatty(self):
                return True
        c = self.client
        c.create_collection("prog", 2)
        bar = Tty()
        c.upsert("prog", np.arange(2500), np.ones((2500, 2)), batch_size=1000, progress=bar)
        lines = bar.getvalue().split("\r")
        self.assertEqual(len(lines), 4)
        self.assertTrue(lines[-1].endswith("] 2500/2500\n"), lines[-1])
        notty = io.StringIO()
        c.upsert("prog", np.arange(10), np.ones((10, 2)), progress=notty)
        self.assertEqual(notty.getvalue(), "")
        c.drop_collection("prog")

    def test_pip_install_target(self):
        # From a copy (pip builds in the source dir), so the stubs come from
        # $VECSHARD_PROTO and the tree stays clean.
        work = tempfile.mkdtemp(prefix="vs-pip-", dir=self.cluster.root)
        src, target = os.path.join(work, "src"), os.path.join(work, "target")
        shutil.copytree(clientenv.PKG, src, ignore=shutil.ignore_patterns(
            "__pycache__", "build", "*.egg-info", "tests"))
        env = dict(os.environ, VECSHARD_PROTO=os.path.join(clientenv.REPO, "proto"))
        p = subprocess.run([sys.executable, "-m", "pip", "install", "--break-system-packages",
                            "--no-build-isolation", "--no-deps", "--quiet", "--target", target,
                            src], capture_output=True, text=True, timeout=120, env=env)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        script = ("import vecshard, numpy as np\n"
                  "c = vecshard.Client()\n"
                  "c.create_collection('piped', 2)\n"
                  "c.upsert('piped', [4], np.array([[1.0, 2.0]]))\n"
                  "print(vecshard.__file__.startswith(%r), c.search('piped', [1, 2], k=1).ids)\n"
                  % target)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(PYTHONPATH=target, VECSHARD_ROUTER=self.addr)
        p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=60, env=env, cwd=target)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), "True [[4]]")
        self.client.drop_collection("piped")

    def test_z_partial_coverage(self):
        """Last (it kills a node): min_coverage below 1 returns the answering
        shards' hits with the missing shard named; 1.0 raises Unavailable."""
        c = self.client
        c.create_collection("cov", 2, shards=3)
        ids = np.arange(300)
        c.upsert("cov", ids, np.stack([ids, ids], 1).astype(np.float32))
        info = c.describe("cov")
        lost = [s["shard"] for s in info.shard_info if s["primary"] == "node-2"]
        self.assertEqual(len(lost), 1)
        self.cluster.nodes[2].kill9()
        with vecshard.Client(self.addr, retries=0) as once:
            rh.wait_until(lambda: isinstance(_error(once.search, "cov", [[0, 0]], k=5),
                                             vecshard.Unavailable), 10, "Unavailable search")
            e = _error(once.search, "cov", [[0, 0]], k=5)
            self.assertIn("shard %d" % lost[0], e.message)
            r = once.search("cov", [[0, 0]], k=300, ef=400, min_coverage=0.5)
        self.assertEqual(r.coverage, vecshard.Coverage(3, 2, lost, True))
        on_lost = {int(i) for i in ids if rh.shard_of(int(i), 3) == lost[0]}
        got = set(r.ids[0, :r.counts[0]].tolist())
        self.assertEqual(got, set(ids.tolist()) - on_lost)


def _error(fn, *args, **kw):
    """The VecshardError fn raises, or None."""
    try:
        fn(*args, **kw)
    except vecshard.VecshardError as e:
        return e
    return None


if __name__ == "__main__":
    unittest.main()
