"""Limits that protect the process (issue 12, docs/security.md §4).

- --max-concurrent-requests at the router: with its node stopped (SIGSTOP)
  every Search waits; a flood of FLOOD concurrent calls against a limit of
  LIMIT gets exactly FLOOD - LIMIT RESOURCE_EXHAUSTED answers at once, the
  health check still answers, and once the node runs again a Search works.
- the same at a node: a primary whose backup is stopped holds its Writes
  for --replicate-timeout-ms; calls beyond the limit are RESOURCE_EXHAUSTED
  (no other error), replication is exempt, and the node keeps serving.
"""
import os
import signal
import threading
import time
import unittest

import grpc
import numpy as np

import harness
import router_harness as rh
from harness import common_pb2, shard_node_pb2 as npb

LIMIT, FLOOD = 3, 10


def flood(fn, n):
    """n concurrent calls of fn() released together: their status codes."""
    codes, lock, gate = [], threading.Lock(), threading.Barrier(n)

    def one():
        gate.wait()
        try:
            fn()
            c = grpc.StatusCode.OK
        except grpc.RpcError as e:
            c = e.code()
        with lock:
            codes.append(c)
    ts = [threading.Thread(target=one) for _ in range(n)]
    for t in ts:
        t.start()
    return ts, codes


class RouterLimit(harness.ClusterTestCase):
    def test_flood_gets_resource_exhausted(self):
        self.cluster = rh.RouterCluster(
            nodes=1, routers=1,
            router_args=["--max-concurrent-requests", str(LIMIT)]).start()
        self.addCleanup(self.cluster.close)
        stub = self.cluster.stub()
        stub.CreateCollection(rh.create_request("l", 4), timeout=30)
        rh.upsert_all(stub, "l", [1, 2], np.ones((2, 4), dtype=np.float32))
        node, router = self.cluster.nodes[0], self.cluster.routers[0]
        os.kill(node.proc.pid, signal.SIGSTOP)
        try:
            req = rh.search_request("l", [[1.0] * 4], k=1)
            ts, codes = flood(lambda: stub.Search(req, timeout=4), FLOOD)
            rh.wait_until(lambda: codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= FLOOD - LIMIT,
                          3, "the calls beyond the limit refused at once")
            self.assertEqual(router.health(), harness.health_pb2.HealthCheckResponse.SERVING)
            for t in ts:
                t.join()
        finally:
            os.kill(node.proc.pid, signal.SIGCONT)
        self.assertEqual(codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED), FLOOD - LIMIT, codes)
        self.assertEqual(len(codes), FLOOD)
        rh.wait_until(lambda: rh.code_of(stub.Search, req, timeout=5)[0] == grpc.StatusCode.OK, 20,
                      "a search after the flood")


class NodeLimit(harness.ClusterTestCase):
    def test_flood_at_a_node(self):
        self.cluster = harness.Cluster(
            nodes=2, node_args=["--max-concurrent-requests", str(LIMIT),
                                "--replicate-timeout-ms", "3000"]).start()
        self.addCleanup(self.cluster.close)
        a, b = self.cluster.nodes
        self.cluster.create_collection("l", 4, replication_factor=2,
                                       placement=[[a.node_id, b.node_id]])
        rh.wait_until(lambda: len(a.shard_status("l")) == 1 and len(b.shard_status("l")) == 1,
                      30, "both replicas open")

        def write(i):
            return a.stub().Write(npb.WriteRequest(
                collection="l", shard=0, epoch=1, batch=common_pb2.WriteBatch(
                    upserts=harness.points([i], [[float(i)] * 4]))), timeout=8)
        rh.wait_until(lambda: rh.code_of(write, 1)[0] == grpc.StatusCode.OK, 20, "a first write")
        os.kill(b.proc.pid, signal.SIGSTOP)
        try:
            n = iter(range(100, 200))
            ts, codes = flood(lambda: write(next(n)), FLOOD)
            for t in ts:
                t.join()
        finally:
            os.kill(b.proc.pid, signal.SIGCONT)
        self.assertGreaterEqual(codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED), 1, codes)
        self.assertTrue(set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED},
                        codes)
        self.assertEqual(a.health(), harness.health_pb2.HealthCheckResponse.SERVING)
        # still serving (a write now may need the new epoch: the stopped backup
        # was dropped from in_sync, so ask the status instead)
        self.assertEqual(len(a.shard_status("l")), 1)


def rss_of(pid):
    with open("/proc/%d/statm" % pid) as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class MemoryBudget(harness.ClusterTestCase):
    """--max-memory: writes through the router until the node refuses one;
    every acknowledged point is then there (exact vectors), after a restart
    too; refused batches wrote nothing; searches and deletes still work."""

    def test_writes_beyond_budget_refused_nothing_lost(self):
        self.cluster = rh.RouterCluster(nodes=1, routers=1).start()
        self.addCleanup(self.cluster.close)
        node = self.cluster.nodes[0]
        budget = rss_of(node.proc.pid) + (48 << 20)  # 48 MiB above its size at start
        node.stop()
        node.extra_args += ["--max-memory", str(budget)]
        node.start()
        stub = self.cluster.stub()
        dim, batch = 128, 500
        stub.CreateCollection(rh.create_request("m", dim), timeout=30)
        rng = np.random.default_rng(5)
        acked, refused, refused_ids = {}, None, []
        for b in range(400):  # at most 200k points x 128 dims: ~100 MB of vectors
            ids = list(range(b * batch + 1, (b + 1) * batch + 1))
            vecs = rng.random((batch, dim), dtype=np.float32)
            try:
                stub.Upsert(rh.upsert_request("m", ids, vecs), timeout=60)
                acked.update(zip(ids, vecs))
            except grpc.RpcError as e:
                refused = e
                refused_ids = ids
                break
        self.assertIsNotNone(refused, "no write was refused under --max-memory")
        self.assertEqual(refused.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, refused.details())
        self.assertIn("--max-memory", refused.details())
        self.assertGreater(len(acked), 0)

        def check():
            ids = sorted(acked)
            for lo in range(0, len(ids), 5000):
                r = stub.Get(rh.vecshard_pb2.GetRequest(collection="m", ids=ids[lo:lo + 5000],
                                                        with_vector=True), timeout=60)
                got = {p.id: p.vector for p in r.points}
                self.assertEqual(len(got), len(ids[lo:lo + 5000]))
                for i in ids[lo:lo + 5000]:
                    np.testing.assert_array_equal(np.array(got[i], dtype=np.float32), acked[i])
            r = stub.Get(rh.vecshard_pb2.GetRequest(collection="m", ids=refused_ids[:50]),
                         timeout=30)
            self.assertEqual(len(r.points), 0, "a refused batch left points behind")
        check()
        some = sorted(acked)[:10]
        r = stub.Search(rh.search_request("m", [acked[some[0]]], k=1), timeout=30)
        self.assertEqual(r.results[0].hits[0].id, some[0])
        stub.Delete(rh.vecshard_pb2.DeleteRequest(collection="m", ids=some[5:]), timeout=30)
        for i in some[5:]:
            del acked[i]
        node.restart()
        rh.wait_until(lambda: rh.code_of(stub.Get, rh.vecshard_pb2.GetRequest(
            collection="m", ids=[some[0]]), timeout=5)[0] == grpc.StatusCode.OK, 60,
            "the node back after a restart")
        check()


if __name__ == "__main__":
    unittest.main()
