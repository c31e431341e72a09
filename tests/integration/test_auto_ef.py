"""Automatic ef (SearchRequest.target_recall, docs/engine.md), end to end:
real etcd, a vecshard-node and a router, a 2-shard collection of 20,000
clustered 32-d points on a deliberately weak graph (M 8, efC 60) so recall
spans a wide range of ef.

After 300 ordinary searches (the shards' past queries), searches with
target_recall 0.90 / 0.95 / 0.99 over 300 fresh queries of the same
distribution reach the target within 0.01 against numpy brute force; the
ef the reply reports is at most 1.3x the smallest ef that reaches the
target through the same router; the reply's estimate is within 0.02 of the
target. Without past queries (a fresh collection) the shards calibrate on
their own points and still reach the target. Bad values are
INVALID_ARGUMENT naming target_recall."""
import json
import os
import unittest

import grpc

import harness
import router_harness as rh
import vsdata
from router_harness import vecshard_pb2 as pb

N, DIM, NQ, K = 20000, 32, 300, 10


class AutoEf(harness.ClusterTestCase):

    def test_target_recall(self):
        c = rh.RouterCluster(nodes=1, routers=1).start()
        try:
            r = c.stub(0)
            base, queries = vsdata.clustered(N + NQ, DIM, clusters=40, seed=9, spread=0.25,
                                             n_queries=NQ)
            base, past = base[:N], base[N:]
            truth = vsdata.knn(base, queries, K)
            for name in ("a", "b"):
                r.CreateCollection(rh.create_request(name, DIM, m=8, ef_construction=60,
                                                     shards=2), timeout=30)
                rh.upsert_all(r, name, list(range(N)), base, batch=5000)

            def recall(name, **kw):
                req = rh.search_request(name, queries, k=K)
                for key, v in kw.items():
                    setattr(req, key, v)
                resp = r.Search(req, timeout=120)
                found = [[h.id for h in q.hits] for q in resp.results]
                return vsdata.recall(truth, found, K), resp

            # Collection "a" has seen past queries; "b" calibrates on its own points.
            r.Search(rh.search_request("a", past, k=K), timeout=60)
            by_ef = {}
            for target in (0.90, 0.95, 0.99):
                got, resp = recall("a", target_recall=target)
                ef = resp.auto_ef.ef
                self.assertGreater(ef, 0)
                self.assertGreaterEqual(got, target - 0.01, "a: target %.2f ef %d" % (target, ef))
                self.assertLess(abs(resp.auto_ef.estimated_recall - target), 0.02)
                smallest = None
                e = K
                while smallest is None and e <= 4 * ef + 64:
                    if e not in by_ef:
                        by_ef[e] = recall("a", ef=e)[0]
                    if by_ef[e] >= target:
                        smallest = e
                    e += 1 + e // 16
                self.assertIsNotNone(smallest)
                self.assertLessEqual(ef, 1.3 * smallest,
                                     "target %.2f: ef %d, smallest %d" % (target, ef, smallest))
                own, resp_b = recall("b", target_recall=target)
                self.assertGreaterEqual(own, target - 0.01,
                                        "b: target %.2f ef %d" % (target, resp_b.auto_ef.ef))

            # The CLI: --target-recall, reported in its JSON line.
            qpath = os.path.join(c.root, "queries.fvecs")
            vsdata.write_fvecs(qpath, queries)
            p = rh.run([rh.CLI_BIN, "--router", c.routers[0].addr, "search", "a", "--query",
                        qpath, "--target-recall", "0.95", "--json"], timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr)
            out = json.loads(p.stdout.strip().splitlines()[-1])
            self.assertEqual(out["target_recall"], 0.95)
            self.assertGreaterEqual(out["ef"], K)
            self.assertGreater(out["estimated_recall"], 0.9)
            p = rh.run([rh.CLI_BIN, "--router", c.routers[0].addr, "search", "a", "--query",
                        qpath, "--target-recall", "0.95", "--ef", "20"], timeout=60)
            self.assertEqual(p.returncode, 2)
            self.assertIn("--ef and --target-recall exclude each other", p.stderr)

            plain = r.Search(rh.search_request("a", queries[:1], k=K), timeout=30)
            self.assertFalse(plain.HasField("auto_ef"))
            for kw, text in (({"target_recall": 1.5}, "target_recall is 1.5, must be in (0, 1]"),
                             ({"target_recall": -0.1}, "target_recall is -0.1"),
                             ({"target_recall": 0.9, "ef": 40},
                              "set ef or target_recall, not both")):
                req = rh.search_request("a", queries[:1], k=K)
                for key, v in kw.items():
                    setattr(req, key, v)
                with self.assertRaises(grpc.RpcError) as e:
                    r.Search(req, timeout=30)
                self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                self.assertIn(text, e.exception.details())
        finally:
            c.close()


if __name__ == "__main__":
    unittest.main()
