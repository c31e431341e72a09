"""TLS on every hop (issue 12, docs/security.md §2), with real certificates
from scripts/dev_certs.sh.

- The router's public port serves TLS: a TLS client works, a plaintext one
  is refused (UNAVAILABLE); with --tls-client-auth require a client without
  a certificate is refused too.
- A node's port is mTLS: a client without a certificate, or with one of
  another CA, is refused; one of the cluster CA is served.
- Replication and a full transfer run over mTLS (the nodes refuse
  plaintext, so they can only have run over TLS): equal digests after a
  backup is replaced by a transfer to the third node.
- SIGHUP rotates certificates: after a renewed certificate and SIGHUP, new
  connections get the new certificate (compared byte for byte), calls on
  the connections open before never fail, and a broken file on SIGHUP
  keeps the old certificate and the process serving.
"""
import os
import shutil
import signal
import socket
import ssl
import tempfile
import threading
import time
import unittest

import grpc
import numpy as np

import harness
import repl_harness as rp
import router_harness as rh
from router_harness import vecshard_pb2 as pb
from harness import shard_node_pb2 as npb

DIM = 8


def served_cert(port, files=None, ca=None):
    """DER of the certificate the TLS server on 127.0.0.1:port presents
    (a client certificate from files when the server requires one)."""
    ctx = ssl.create_default_context(cafile=ca or files["ca"])
    ctx.set_alpn_protocols(["h2"])
    if files is not None:
        ctx.load_cert_chain(files["cert"], files["key"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            return t.getpeercert(binary_form=True)


def der_of(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def refused(addr, tls=None, method="router"):
    """The status code of a health check over a fresh channel."""
    ch = harness.channel(addr, tls)
    try:
        harness.health_pb2_grpc.HealthStub(ch).Check(harness.health_pb2.HealthCheckRequest(),
                                                     timeout=3)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()
    finally:
        ch.close()


class TlsCase(harness.ClusterTestCase):
    def make_certs(self):
        self.dir = tempfile.mkdtemp(prefix="vs-it-certs-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.certs = harness.dev_certs(self.dir, "node", "router", "client")
        self.client = self.certs["client"]
        # the harness's own channels: the client certificate of the cluster CA
        return self.certs


class TlsRouterNode(TlsCase):
    def setUp(self):
        c = self.make_certs()
        self.cluster = rh.RouterCluster(
            nodes=2, routers=1, node_args=harness.tls_args(c["node"]),
            router_args=harness.tls_args(c["router"]), client_tls=self.client).start()
        self.addCleanup(self.cluster.close)
        self.stub = self.cluster.stub()
        self.stub.CreateCollection(rh.create_request("t", DIM, shards=2), timeout=30)
        rng = np.random.default_rng(1)
        self.vecs = rng.random((200, DIM), dtype=np.float32)
        rh.upsert_all(self.stub, "t", list(range(1, 201)), self.vecs)

    def search_ok(self, stub=None):
        r = (stub or self.stub).Search(rh.search_request("t", self.vecs[:3], k=1), timeout=10)
        self.assertEqual([res.hits[0].id for res in r.results], [1, 2, 3])

    def test_tls_client_works_plaintext_refused(self):
        router = self.cluster.routers[0]
        self.search_ok()
        # a TLS client with only the CA (no client certificate): the router
        # does not ask for one by default
        ch = harness.channel(router.addr, {"ca": self.certs["router"]["ca"]})
        self.addCleanup(ch.close)
        self.search_ok(rh.vecshard_pb2_grpc.VecShardStub(ch))
        self.assertEqual(refused(router.addr, None), grpc.StatusCode.UNAVAILABLE)
        for n in self.cluster.nodes:
            self.assertEqual(refused(n.addr, None), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(der_of(self.certs["router"]["cert"]),
                         served_cert(router.port, ca=self.certs["router"]["ca"]))

    def test_cli_over_tls(self):
        router = self.cluster.routers[0]
        ca = self.certs["router"]["ca"]
        r = rh.run([rh.CLI_BIN, "--router", router.addr, "--tls-ca", ca, "list"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("t", r.stdout.split())
        env = dict(os.environ, VECSHARD_TLS_CA=ca)
        r = rh.run([rh.CLI_BIN, "--router", router.addr, "describe", "t"], env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = rh.run([rh.CLI_BIN, "--router", router.addr, "list"])  # plaintext
        self.assertEqual(r.returncode, 1)
        self.assertIn("UNAVAILABLE", r.stderr)
        r = rh.run([rh.CLI_BIN, "--router", router.addr, "--tls-ca", "/nonexistent.pem", "list"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent.pem", r.stderr)

    def test_router_client_auth_require(self):
        r = self.cluster.add_router(start=False)
        r.extra_args = r.extra_args + ["--tls-client-auth", "require"]
        r.start()
        ca_only = {"ca": self.certs["router"]["ca"]}
        self.assertEqual(refused(r.addr, ca_only), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(refused(r.addr, self.client), grpc.StatusCode.OK)
        self.search_ok(r.stub())

    def test_node_refuses_client_without_ca_signed_cert(self):
        node = self.cluster.nodes[0]
        other = harness.dev_certs(os.path.join(self.dir, "other"), "client")["client"]
        self.assertEqual(refused(node.addr, {"ca": self.client["ca"]}),
                         grpc.StatusCode.UNAVAILABLE)
        # a certificate of another CA (the server is verified with ours)
        self.assertEqual(refused(node.addr, dict(other, ca=self.client["ca"])),
                         grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(refused(node.addr, self.client), grpc.StatusCode.OK)
        st = node.stub().ShardStatus(npb.ShardStatusRequest(collection="t"), timeout=10)
        self.assertEqual(len(st.shards), 1)

    def test_sighup_rotates_without_failing_calls(self):
        router = self.cluster.routers[0]
        old = served_cert(router.port, ca=self.client["ca"])
        errors, calls = [], [0]
        stop = threading.Event()

        def searcher():  # calls on the channel opened before the rotation
            while not stop.is_set():
                try:
                    self.search_ok()
                    calls[0] += 1
                except Exception as e:  # noqa: BLE001 — any failure is the finding
                    errors.append(repr(e))
        t = threading.Thread(target=searcher)
        t.start()
        try:
            harness.dev_certs(self.dir, "router", "node")  # renewed in place, same CA
            new_router = der_of(self.certs["router"]["cert"])
            self.assertNotEqual(old, new_router)
            os.kill(router.proc.pid, signal.SIGHUP)
            for n in self.cluster.nodes:
                os.kill(n.proc.pid, signal.SIGHUP)
            rh.wait_until(lambda: served_cert(router.port, ca=self.client["ca"]) == new_router,
                          10, "the router serving the renewed certificate")
            new_node = der_of(self.certs["node"]["cert"])
            for n in self.cluster.nodes:
                rh.wait_until(lambda: served_cert(n.port, self.client) == new_node, 10,
                              "%s serving the renewed certificate" % n.name)
            # a broken certificate file: the reload is refused, the old one stays
            with open(self.certs["router"]["cert"]) as f:
                good = f.read()
            with open(self.certs["router"]["cert"], "w") as f:
                f.write("not a certificate\n")
            os.kill(router.proc.pid, signal.SIGHUP)
            rh.wait_until(lambda: "TLS reload of the public port failed" in router.proc.tail(50),
                          10, "the failed reload logged")
            self.assertEqual(served_cert(router.port, ca=self.client["ca"]), new_router)
            with open(self.certs["router"]["cert"], "w") as f:
                f.write(good)
            n0 = calls[0]
            rh.wait_until(lambda: calls[0] > n0 + 5, 20, "searches after the rotation")
        finally:
            stop.set()
            t.join()
        self.assertEqual(errors, [])
        self.assertTrue(router.proc.alive())
        # fresh connections end to end: client -> router -> nodes, all renewed
        ch = harness.channel(router.addr, self.client)
        self.addCleanup(ch.close)
        self.search_ok(rh.vecshard_pb2_grpc.VecShardStub(ch))


class TlsReplication(TlsCase, rp.ReplTestCase):
    def test_replication_and_transfer_over_mtls(self):
        c = self.make_certs()
        cl = self.start_cluster(nodes=3, routers=1, replicas=2, shards=1, dim=DIM,
                                replace_after_ms=1000, node_args=harness.tls_args(c["node"]),
                                router_args=harness.tls_args(c["router"]),
                                client_tls=self.client)
        w, s = self.start_load(threads=2)
        rh.wait_until(lambda: w.acked_points > 200, 60, "writes acknowledged over TLS")
        e = cl.entry(0)
        backup = cl.node(next(x for x in e["in_sync"] if x != e["primary"]))
        third = next(n for n in cl.nodes if n.node_id not in e["replicas"])
        backup.kill9()
        rh.wait_until(lambda: third.node_id in cl.entry(0)["in_sync"], 90,
                      "%s in sync after a transfer" % third.node_id)
        self.finish(w, s, replicas=2)
        st = cl.status(third).get(0)
        self.assertGreaterEqual(st.transfers_completed, 1)


if __name__ == "__main__":
    unittest.main()
