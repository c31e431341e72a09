"""The router when parts of the cluster are gone (docs/design.md §3, §5).

- A node killed with SIGKILL, R = 1: a search that needs every shard
  (min_coverage unset = 1.0) fails with UNAVAILABLE naming exactly the
  missing shard; with min_coverage 0.5 it returns the other shards' hits,
  marked partial, with exact coverage fields, both while the dead node is
  still registered (calls to it fail) and after its lease expired. The
  threshold is a shard count rounded up (2 of 3 is enough for 0.66, not for
  0.67). Writes to the missing shard fail UNAVAILABLE naming it.
- etcd stopped: searches, Get and writes through the router keep working
  from its cached map (the nodes' leases have not expired yet: TTL 15 s);
  CreateCollection and DropCollection fail with UNAVAILABLE. etcd restarted
  on the same ports: a CreateCollection succeeds again and the new
  collection takes writes and answers searches."""
import re
import time
import unittest

import grpc
import numpy as np

import harness
import router_harness as rh
import vsdata
from router_harness import vecshard_pb2 as pb

DIM = 16
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


class NodeLoss(harness.ClusterTestCase):
    def setUp(self):
        self.cluster = rh.RouterCluster(nodes=3, routers=1, lease_ttl=3).start()
        self.addCleanup(self.cluster.close)
        self.r = self.cluster.stub()
        self.r.CreateCollection(rh.create_request("cov", DIM, shards=3), timeout=30)
        self.base, self.queries = vsdata.clustered(3000, DIM, clusters=10, seed=5,
                                                   n_queries=50)
        rh.upsert_all(self.r, "cov", list(range(3000)), self.base)

    def primary_node(self, shard):
        d = self.r.DescribeCollection(pb.DescribeCollectionRequest(name="cov"), timeout=10)
        node_id = d.shards[shard].primary
        return [n for n in self.cluster.nodes if n.node_id == node_id][0]

    def assert_coverage_behaviour(self, lost):
        # min_coverage unset (= 1.0): UNAVAILABLE naming the missing shard only.
        code, details = rh.code_of(self.r.Search, rh.search_request(
            "cov", self.queries, k=10, ef=200), timeout=10)
        self.assertEqual(code, UNAVAILABLE, details)
        m = re.search(r"missing shards? ([0-9, ]+)", details)
        self.assertIsNotNone(m, "message should name the missing shards: %s" % details)
        self.assertEqual([int(x) for x in re.findall(r"\d+", m.group(1))], [lost], details)
        code, details = rh.code_of(self.r.Search, rh.search_request(
            "cov", self.queries, k=10, ef=200, min_coverage=0.67), timeout=10)
        self.assertEqual(code, UNAVAILABLE, "0.67 x 3 shards needs 3: %s" % details)

        # min_coverage 0.5: the two other shards' hits, marked partial.
        for mc in (0.5, 0.66):
            r = self.r.Search(rh.search_request("cov", self.queries, k=10, ef=200,
                                                min_coverage=mc), timeout=10)
            cov = r.coverage
            self.assertEqual((cov.shards_total, cov.shards_ok, list(cov.missing_shards),
                              cov.partial), (3, 2, [lost], True))
        alive_rows = np.array([i for i in range(3000) if rh.shard_of(i, 3) != lost])
        gt = alive_rows[vsdata.knn(self.base[alive_rows], self.queries, 10)]
        found = []
        for res in r.results:
            self.assertEqual(len(res.hits), 10)
            ids = [h.id for h in res.hits]
            self.assertFalse([i for i in ids if rh.shard_of(i, 3) == lost],
                             "a hit from the lost shard")
            found.append(ids)
        self.assertGreaterEqual(vsdata.recall(gt, found, 10), 0.99)

        # Writes: a batch with a point of the lost shard fails naming it.
        pid = next(i for i in range(10 ** 6, 10 ** 6 + 100) if rh.shard_of(i, 3) == lost)
        code, details = rh.code_of(self.r.Upsert, rh.upsert_request(
            "cov", [pid], self.base[:1]), timeout=10)
        self.assertEqual(code, UNAVAILABLE, details)
        self.assertIn("shard %d" % lost, details)

    def test_kill9_node_partial_results(self):
        lost = 1
        victim = self.primary_node(lost)
        victim.kill9()
        # Still registered (its lease has not expired): the call to it fails.
        self.assert_coverage_behaviour(lost)
        # After the lease expired the router knows the node is gone.
        rh.wait_until(lambda: not any(n.alive and n.id == victim.node_id for n in
                                      self.r.ClusterStatus(pb.ClusterStatusRequest(),
                                                           timeout=5).nodes),
                      15, "the killed node's lease expired in the router's view")
        self.assert_coverage_behaviour(lost)
        # Back on the same dir and port: full coverage again, data intact.
        victim.start()
        def full():
            code, r = rh.code_of(self.r.Search, rh.search_request("cov", self.base[:20], k=1,
                                                                  ef=100), timeout=5)
            return r if code == grpc.StatusCode.OK else None
        r = rh.wait_until(full, 20, "full coverage after the node returned")
        self.assertEqual([res.hits[0].id for res in r.results], list(range(20)))
        self.assertFalse(r.coverage.partial)


class EtcdOutage(harness.ClusterTestCase):
    def setUp(self):
        self.cluster = rh.RouterCluster(nodes=3, routers=1, lease_ttl=15).start()
        self.addCleanup(self.cluster.close)
        self.r = self.cluster.stub()
        self.r.CreateCollection(rh.create_request("eo", DIM, shards=3), timeout=30)
        self.base = vsdata.clustered(1500, DIM, clusters=10, seed=6)
        rh.upsert_all(self.r, "eo", list(range(1500)), self.base)

    def nearest_ids(self, name, vectors):
        r = self.r.Search(rh.search_request(name, vectors, k=1, ef=100), timeout=10)
        self.assertFalse(r.coverage.partial)
        return [res.hits[0].id for res in r.results]

    def test_data_flows_without_etcd(self):
        c = self.cluster
        outage_started = time.monotonic()
        c.etcd.stop()
        # Searches, Get and writes: from the cached map, to the nodes directly.
        self.assertEqual(self.nearest_ids("eo", self.base[:30]), list(range(30)))
        extra = vsdata.clustered(30, DIM, clusters=3, seed=77) + 3.0
        up = self.r.Upsert(rh.upsert_request("eo", range(5000, 5030), extra), timeout=10)
        self.assertEqual(up.upserted, 30)
        self.assertEqual(self.nearest_ids("eo", extra), list(range(5000, 5030)))
        g = self.r.Get(pb.GetRequest(collection="eo", ids=[5000, 3]), timeout=10)
        self.assertEqual([p.id for p in g.points], [5000, 3])
        self.r.Delete(pb.DeleteRequest(collection="eo", ids=[5029]), timeout=10)
        self.assertNotIn(5029, self.nearest_ids("eo", extra[29:]))
        lst = self.r.ListCollections(pb.ListCollectionsRequest(), timeout=10)
        self.assertEqual([x.name for x in lst.collections], ["eo"])
        # Placement changes need etcd.
        code, details = rh.code_of(self.r.CreateCollection, rh.create_request("later", DIM),
                                   timeout=15)
        self.assertEqual(code, UNAVAILABLE, details)
        code, details = rh.code_of(self.r.DropCollection, pb.DropCollectionRequest(name="eo"),
                                   timeout=15)
        self.assertEqual(code, UNAVAILABLE, details)
        self.assertLess(time.monotonic() - outage_started, c.lease_ttl,
                        "the checks above must run within the nodes' lease TTL")

        c.etcd.restart()
        # Everything resumes: a create succeeds (retried while the router
        # reconnects; ALREADY_EXISTS would mean an earlier try got through).
        deadline = time.monotonic() + 30
        while True:
            code, details = rh.code_of(self.r.CreateCollection,
                                       rh.create_request("later", DIM, shards=2), timeout=15)
            if code in (grpc.StatusCode.OK, grpc.StatusCode.ALREADY_EXISTS):
                break
            self.assertLess(time.monotonic(), deadline, "CreateCollection after etcd "
                            "returned: %s %s" % (code, details))
            time.sleep(0.5)
        rh.wait_until(lambda: rh.code_of(self.r.Upsert, rh.upsert_request(
            "later", range(100), self.base[:100]), timeout=10)[0] == grpc.StatusCode.OK,
            20, "writes to the new collection")
        self.assertEqual(self.nearest_ids("later", self.base[:10]), list(range(10)))
        up = self.r.Upsert(rh.upsert_request("eo", [6000], self.base[:1] + 9.0), timeout=10)
        self.assertEqual(up.upserted, 1)
        self.r.DropCollection(pb.DropCollectionRequest(name="later"), timeout=15)


if __name__ == "__main__":
    unittest.main()
