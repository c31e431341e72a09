"""The router's per-shard retry (router/shard_call.c) with an in-sync replica
or a primary that cannot be reached.

A "ghost" node is registered in etcd (nodes/ghost) at an address where
nothing listens, and listed in every shard's `in_sync` after the real
primary; the nodes ignore in_sync, so only the router's choice changes.

- Reads: every Get returns all 300 points with their exact vectors and
  payloads and no missing id, and every Search covers 3 of 3 shards with
  the same hits as before the ghost was added, although about half of the
  first tries go to the ghost: a failed replica is retried on the next
  in-sync one (batched per node for Search).
- Writes: with shard 0's primary set to the ghost, an Upsert of a shard-0
  point fails UNAVAILABLE naming "shard 0 (primary ghost at <addr>)" after
  the three paused resends (>= 50 + 100 + 200 ms); with a primary that is
  not registered, UNAVAILABLE "shard 0 has no live primary (nobody is not
  registered)" and no call is made; points of the other shards of the same
  call are written (and said so)."""
import json
import time
import unittest

import grpc

import harness
import router_harness as rh
import vsdata
from router_harness import vecshard_pb2 as pb

DIM = 8
N = 300
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


class RetryOnReplicas(harness.ClusterTestCase):
    def setUp(self):
        # No controller: these tests point shard entries at fake or
        # unregistered primaries on purpose, which failover would repair.
        self.cluster = rh.RouterCluster(nodes=2, routers=1,
                                        router_args=["--controller", "off"]).start()
        self.addCleanup(self.cluster.close)
        self.r = self.cluster.stub()
        self.r.CreateCollection(rh.create_request("rt", DIM, shards=3), timeout=30)
        self.base, self.queries = vsdata.clustered(N, DIM, clusters=5, seed=3, n_queries=10)
        self.payloads = [("p%d" % i).encode() for i in range(N)]
        self.r.Upsert(rh.upsert_request("rt", list(range(N)), self.base, self.payloads),
                      timeout=30)
        self.ghost_addr = "127.0.0.1:%d" % harness.free_ports(1)[0]
        c = self.cluster
        c.etcd.put("%s/nodes/ghost" % c.prefix, {"addr": self.ghost_addr, "started_at": 1,
                                                  "version": "0", "capacity": 0,
                                                  "node_id": "ghost"})

    def edit_shard(self, shard, change):
        c = self.cluster
        key = "%s/shards/rt/%d" % (c.prefix, shard)
        entry = json.loads(c.etcd.get(key)["value"])
        change(entry)
        c.etcd.put(key, entry)

    def describe(self):
        return self.r.DescribeCollection(pb.DescribeCollectionRequest(name="rt"), timeout=10)

    def search(self):
        return self.r.Search(rh.search_request("rt", self.queries, k=5, ef=100), timeout=10)

    def test_reads_retry_on_the_next_in_sync_replica(self):
        before = [[h.id for h in res.hits] for res in self.search().results]
        for s in range(3):
            self.edit_shard(s, lambda e: e["in_sync"].append("ghost"))
        rh.wait_until(lambda: all(list(sh.in_sync)[-1:] == ["ghost"]
                                  for sh in self.describe().shards), 10, "ghost in in_sync")
        get = pb.GetRequest(collection="rt", ids=list(range(N)), with_payload=True,
                            with_vector=True)
        for _ in range(20):
            r = self.r.Get(get, timeout=10)
            self.assertEqual(list(r.missing_ids), [])
            self.assertEqual([p.id for p in r.points], list(range(N)))
            for p in r.points:
                self.assertEqual(list(p.vector), [float(x) for x in self.base[p.id]])
                self.assertEqual(p.payload, self.payloads[p.id])
        for _ in range(20):
            r = self.search()
            cov = r.coverage
            self.assertEqual((cov.shards_total, cov.shards_ok, cov.partial), (3, 3, False))
            self.assertEqual([[h.id for h in res.hits] for res in r.results], before)

    def test_writes_resend_to_the_primary_then_fail_naming_it(self):
        p0 = next(i for i in range(10 ** 6, 10 ** 6 + 100) if rh.shard_of(i, 3) == 0)
        p1 = next(i for i in range(10 ** 6, 10 ** 6 + 100) if rh.shard_of(i, 3) == 1)
        self.edit_shard(0, lambda e: e.update(primary="ghost"))
        rh.wait_until(lambda: self.describe().shards[0].primary == "ghost", 10, "ghost primary")
        t0 = time.monotonic()
        code, details = rh.code_of(self.r.Upsert, rh.upsert_request(
            "rt", [p0, p1], self.base[:2]), timeout=10)
        elapsed = time.monotonic() - t0
        self.assertEqual(code, UNAVAILABLE, details)
        self.assertTrue(details.startswith(
            "1 of 2 shards failed: shard 0 (primary ghost at %s): UNAVAILABLE: " %
            self.ghost_addr), details)
        self.assertIn("; the other shards were written (retrying the whole call is safe)",
                      details)
        self.assertGreaterEqual(elapsed, 0.35, "three paused resends: 50 + 100 + 200 ms")
        r = self.r.Get(pb.GetRequest(collection="rt", ids=[p1], with_vector=True), timeout=10)
        self.assertEqual([list(p.vector) for p in r.points], [[float(x) for x in self.base[1]]])

        self.edit_shard(0, lambda e: e.update(primary="nobody"))
        rh.wait_until(lambda: self.describe().shards[0].primary == "nobody", 10,
                      "unregistered primary")
        code, details = rh.code_of(self.r.Upsert, rh.upsert_request("rt", [p0], self.base[:1]),
                                   timeout=10)
        self.assertEqual(code, UNAVAILABLE, details)
        self.assertEqual(details, "1 of 1 shards failed: shard 0 has no live primary "
                                  "(nobody is not registered)")


if __name__ == "__main__":
    unittest.main()
