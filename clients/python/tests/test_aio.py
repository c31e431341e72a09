"""test_aio.py — vecshard.aio.Client against a real cluster (etcd, 3 nodes, a router).

Every coroutine with exact results (rebalance and drain included), parallel batched upserts gathered
concurrently with searches, and the same exception classes and router
messages as the blocking client.
"""
import asyncio
import unittest

import clientenv
from clientenv import rh

import numpy as np

import vecshard
import vecshard.aio


class AioTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = rh.RouterCluster(nodes=3, routers=1).start()
        cls.addr = cls.cluster.routers[0].addr

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def test_rebalance_and_drain(self):
        asyncio.run(self._rebalance_and_drain())

    async def _rebalance_and_drain(self):
        async with vecshard.aio.Client(self.addr) as c:
            await c.create_collection("aiobal", 4, shards=3)
            info = await c.describe("aiobal")
            self.assertEqual(sorted(n["id"] for n in info.nodes),
                             ["node-0", "node-1", "node-2"])
            empty = {"moves": [], "started": False, "note": ""}
            self.assertEqual(await c.rebalance(dry_run=True, collection="aiobal"), empty)
            with self.assertRaises(vecshard.NotFound):
                await c.rebalance(collection="nope")
            with self.assertRaises(vecshard.NotFound) as cm:
                await c.drain("node-9")
            self.assertEqual(cm.exception.message,
                             'node_id "node-9" is neither registered nor named by any shard '
                             'entry')
            try:
                self.assertTrue((await c.drain("node-1"))["draining"])
                st = await c.status()
                self.assertTrue({n["id"]: n for n in st["nodes"]}["node-1"]["draining"])
            finally:
                self.assertFalse((await c.undrain("node-1"))["draining"])
            await c.drop_collection("aiobal")

    def test_whole_api(self):
        asyncio.run(self._whole_api())

    async def _whole_api(self):
        rng = np.random.default_rng(5)
        vecs = rng.standard_normal((3000, 16)).astype(np.float32)
        async with vecshard.aio.Client(self.addr) as c:
            info = await c.create_collection("aio", 16, metric="ip", shards=3)
            self.assertEqual((info.dim, info.metric, info.shards), (16, "ip", 3))
            with self.assertRaises(vecshard.AlreadyExists) as cm:
                await c.create_collection("aio", 16)
            self.assertEqual(cm.exception.message, 'collection "aio" already exists')
            self.assertTrue(await c.collection_exists("aio"))
            self.assertFalse(await c.collection_exists("nope"))
            self.assertEqual(await c.list_collections(), ["aio"])
            n = await c.upsert("aio", np.arange(3000), vecs, payloads=[b"%d" % i for i in
                                                                      range(3000)],
                               batch_size=250, parallel=4)
            self.assertEqual(n, 3000)
            self.assertEqual(await c.count("aio"), 3000)
            # Searches and a second collection's writes in flight together.
            await c.create_collection("aio2", 2)
            r, m = await asyncio.gather(
                c.search("aio", vecs[:50], k=5, ef=200, with_payload=True),
                c.upsert("aio2", [1, 2, 3], [[0, 0], [1, 0], [0, 1]]))
            self.assertEqual(m, 3)
            truth = clientenv.brute_force(vecs, vecs[:50], 5, "ip")
            self.assertGreaterEqual(clientenv.recall(r.ids, truth), 0.98)
            exact = 1 - (vecs[r.ids[:, 0].astype(np.int64)] * vecs[:50]).sum(1)
            np.testing.assert_allclose(r.distances[:, 0], exact, rtol=1e-4, atol=1e-4)
            self.assertEqual([p[0] for p in r.payloads], [b"%d" % i for i in r.ids[:, 0]])
            g = await c.get("aio", [10, 99999])
            np.testing.assert_array_equal(g.vectors, vecs[[10]])
            self.assertEqual((g.ids.tolist(), g.payloads, g.missing_ids.tolist()),
                             ([10], [b"10"], [99999]))
            self.assertEqual(await c.delete("aio", [10, 11]), 2)
            self.assertEqual(await c.count("aio"), 2998)
            with self.assertRaises(vecshard.InvalidArgument) as cm:
                await c.upsert("aio2", [1], [[1, 2, 3]])
            self.assertEqual(cm.exception.message,
                             "points[0].vector has 3 floats, collection dim is 2")
            with self.assertRaises(vecshard.NotFound) as cm:
                await c.search("nope", [[1, 2]])
            self.assertEqual(cm.exception.message, 'collection "nope" not found')
            st = await c.status()
            self.assertEqual(len(st["nodes"]), 3)
            await c.drop_collection("aio")
            await c.drop_collection("aio2")
            with self.assertRaises(vecshard.NotFound):
                await c.drop_collection("aio")
            self.assertEqual(await c.list_collections(), [])


if __name__ == "__main__":
    unittest.main()
