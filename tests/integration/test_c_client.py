"""The C client stack (common/rpc + protobuf-c, build/vs-c-client) against a
real node: it upserts a 10,000 x 64 .fvecs file and searches 200 queries;
its recall@10 at ef 64 against numpy's exact neighbours must reach the
floor, and what it wrote must read back exactly from Python."""
import json
import os
import subprocess
import unittest

import numpy as np

import harness
import vsdata

N, DIM, NQ, K = 10000, 64, 200, 10
RECALL_FLOOR = 0.95
CLIENT = os.path.join(harness.BUILD, "vs-c-client")


class CClient(harness.ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isfile(CLIENT):
            raise harness.HarnessError("%s is missing (make %s)" % (CLIENT, CLIENT))
        cls.cluster = c = harness.Cluster(nodes=1, lease_ttl=3).start()
        try:
            cls.node = c.nodes[0]
            c.create_collection("cvec", dim=DIM, m=16, ef_construction=200, ef_search=64)
            c.wait_shards(cls.node, "cvec", [0])
            cls.base, queries = vsdata.clustered(N, DIM, clusters=40, seed=7, n_queries=NQ)
            cls.files = {k: os.path.join(c.root, k) for k in ("base.fvecs", "query.fvecs",
                                                             "gt.ivecs")}
            vsdata.write_fvecs(cls.files["base.fvecs"], cls.base)
            vsdata.write_fvecs(cls.files["query.fvecs"], queries)
            vsdata.write_ivecs(cls.files["gt.ivecs"], vsdata.knn(cls.base, queries, K))
        except BaseException:
            c.print_tails()
            c.close(check=False)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def run_client(self, collection="cvec", *extra):
        argv = [CLIENT, "--addr", self.node.addr, "--collection", collection,
                "--base", self.files["base.fvecs"], "--query", self.files["query.fvecs"],
                "--gt", self.files["gt.ivecs"], "--k", str(K), "--ef", "64",
                "--batch", "1000", "--per-call", "16"] + list(extra)
        return subprocess.run(argv, capture_output=True, text=True, timeout=180)

    def test_upsert_and_search_from_c(self):
        p = self.run_client("cvec", "--payloads")
        self.assertEqual(p.returncode, 0, "vs-c-client failed:\n%s%s" % (p.stdout, p.stderr))
        out = json.loads(p.stdout.strip().splitlines()[-1])
        print("\nvs-c-client: %s" % json.dumps(out))
        self.assertEqual(out["points"], N)
        self.assertEqual(out["queries"], NQ)
        self.assertGreaterEqual(out["recall"], RECALL_FLOOR)

        # What C wrote reads back exactly from Python.
        (st,) = self.node.shard_status("cvec")
        self.assertEqual(st.count, N)
        self.assertEqual(st.lsn, out["last_lsn"])
        rows = [0, 1, 4999, 9998, 9999]
        g = self.node.stub().Get(harness.shard_node_pb2.NodeGetRequest(
            collection="cvec", shard=0, ids=rows, with_vector=True, with_payload=True),
            timeout=10)
        self.assertEqual([p.id for p in g.points], rows)
        for pt in g.points:
            self.assertTrue(np.array_equal(np.array(pt.vector, dtype=np.float32),
                                           self.base[pt.id]))
            self.assertEqual(pt.payload, b"row-%d" % pt.id)

    def test_c_client_reports_errors(self):
        p = self.run_client("nosuch")
        self.assertEqual(p.returncode, 1)
        self.assertIn("write: NOT_FOUND", p.stderr)


if __name__ == "__main__":
    unittest.main()
