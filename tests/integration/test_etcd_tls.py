"""etcd over TLS with client certificates (issue 12, docs/security.md §2.4).

A real etcd serving https with --client-cert-auth (certificates from
scripts/dev_certs.sh); a node and a router given --etcd https://...
--etcd-cacert --etcd-cert --etcd-key register, a collection is created and
written and searched through the router. A node without the client
certificate is refused by etcd (never registers, logs why); one given an
http:// endpoint with TLS set does not start and says why.
"""
import os
import shutil
import tempfile
import unittest

import numpy as np

import harness
import router_harness as rh


class EtcdTls(harness.ClusterTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="vs-it-etcd-certs-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.certs = harness.dev_certs(self.dir, "etcd")
        self.cluster = rh.RouterCluster(nodes=1, routers=1, etcd_tls=self.certs["etcd"]).start()
        self.addCleanup(self.cluster.close)

    def stray_node(self, name):
        """A node of this cluster that is not in cluster.nodes (it must not start)."""
        n = harness.Node(self.cluster, name)
        n.port = harness.free_ports(1)[0]
        os.makedirs(n.data_dir, exist_ok=True)
        self.addCleanup(n.proc.stop)
        return n

    def test_node_and_router_over_tls(self):
        self.assertTrue(self.cluster.etcd.url.startswith("https://"))
        stub = self.cluster.stub()
        stub.CreateCollection(rh.create_request("e", 4), timeout=30)
        rh.upsert_all(stub, "e", [1, 2, 3], np.eye(3, 4, dtype=np.float32))
        r = stub.Search(rh.search_request("e", [[0, 1, 0, 0]], k=1), timeout=10)
        self.assertEqual(r.results[0].hits[0].id, 2)
        self.assertIsNotNone(self.cluster.etcd.get(self.cluster.nodes[0].key))

    def test_node_without_client_cert_refused(self):
        n = self.stray_node("bad-cert")
        argv = n.argv()
        i = argv.index("--etcd-cert")
        del argv[i:i + 4]  # --etcd-cert FILE --etcd-key FILE
        n.proc.spawn(argv)
        # etcd refuses the handshake: the node never registers (it keeps
        # retrying, as during an etcd outage) and its log says why
        rh.wait_until(lambda: "cannot register in etcd" in n.proc.tail(50), 30,
                      "the refused connection logged")
        self.assertIsNone(self.cluster.etcd.get(n.key))

    def test_http_endpoint_with_tls_refused(self):
        n = self.stray_node("bad-url")
        argv = n.argv()
        argv[argv.index("--etcd") + 1] = self.cluster.etcd.url.replace("https://", "http://")
        n.proc.spawn(argv)
        rh.wait_until(lambda: not n.proc.alive(), 30, "the node exits")
        self.assertIn("not https://", n.proc.tail(20))


if __name__ == "__main__":
    unittest.main()
