"""API keys with roles at the router (issue 12, docs/security.md §3).

A router with --api-keys (a read, a write, an admin and a collection-scoped
write key, stored as SHA-256 hashes) in front of one node:

- every VecShard RPC without a key, with a malformed header and with an
  unknown key answers UNAUTHENTICATED; with a key whose role is too low,
  PERMISSION_DENIED (read-only methods have no lower role); with a key of the
  right role, neither;
- a scoped key may touch its collection only (PERMISSION_DENIED elsewhere,
  and for a cluster-wide Rebalance or a Drain);
- the gRPC health check needs no key;
- SIGHUP reloads the key file: a new key works, a removed one is
  UNAUTHENTICATED, a broken file keeps the old keys (logged);
- the CLI sends --api-key and VECSHARD_API_KEY; refusals are counted in
  vecshard_router_auth_failures_total.
"""
import hashlib
import os
import shutil
import signal
import tempfile
import unittest

import grpc

import harness
import router_harness as rh
from router_harness import vecshard_pb2 as pb

KEYS = {"reader": ("read", "k-read-0001"), "writer": ("write", "k-write-0002"),
        "boss": ("admin", "k-admin-0003"), "scoped": ("write", "k-scoped-0004")}
ROLE_RANK = {"read": 1, "write": 2, "admin": 3}


def key_line(name, role, key, scope=None):
    return "%s %s sha256:%s%s\n" % (name, role, hashlib.sha256(key.encode()).hexdigest(),
                                    " collections=" + scope if scope else "")


def write_keys(path, extra=""):
    with open(path, "w") as f:
        f.write("# test keys\n\n")
        for name, (role, key) in KEYS.items():
            f.write(key_line(name, role, key, "a" if name == "scoped" else None))
        f.write(extra)


# method -> (role needed, request builder(collection))
METHODS = {
    "Search": ("read", lambda c: rh.search_request(c, [[0.0] * 4], k=1)),
    "Get": ("read", lambda c: pb.GetRequest(collection=c, ids=[1])),
    "Count": ("read", lambda c: pb.CountRequest(collection=c)),
    "DescribeCollection": ("read", lambda c: pb.DescribeCollectionRequest(name=c)),
    "ListCollections": ("read", lambda c: pb.ListCollectionsRequest()),
    "ClusterStatus": ("read", lambda c: pb.ClusterStatusRequest()),
    "Upsert": ("write", lambda c: rh.upsert_request(c, [7], [[0.5] * 4])),
    "Delete": ("write", lambda c: pb.DeleteRequest(collection=c, ids=[99])),
    "CreateCollection": ("admin", lambda c: rh.create_request(c + "-new", 4)),
    "DropCollection": ("admin", lambda c: pb.DropCollectionRequest(name=c + "-absent")),
    "Rebalance": ("admin", lambda c: pb.RebalanceRequest(dry_run=True, collection=c)),
    "Drain": ("admin", lambda c: pb.DrainRequest(node_id="no-such-node", undrain=True)),
}
DENIED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


class Auth(harness.ClusterTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="vs-it-keys-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.keys = os.path.join(self.dir, "keys")
        write_keys(self.keys)
        self.cluster = rh.RouterCluster(nodes=1, routers=1, router_http=True,
                                        router_args=["--api-keys", self.keys],
                                        client_md=[("authorization",
                                                    "Bearer " + KEYS["reader"][1])]).start()
        self.addCleanup(self.cluster.close)
        self.router = self.cluster.routers[0]
        self.stub = self.cluster.stub()
        self.md = {n: [("authorization", "Bearer " + k)] for n, (_, k) in KEYS.items()}
        for c in ("a", "b"):
            self.stub.CreateCollection(rh.create_request(c, 4), timeout=30, metadata=self.md["boss"])

    def code(self, method, req, md):
        try:
            getattr(self.stub, method)(req, timeout=10, metadata=md)
            return grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e.code()

    def test_every_rpc_codes(self):
        for method, (need, build) in METHODS.items():
            req = build("a")
            with self.subTest(method=method):
                self.assertEqual(self.code(method, req, None), grpc.StatusCode.UNAUTHENTICATED)
                self.assertEqual(self.code(method, req, [("authorization", "Basic xyz")]),
                                 grpc.StatusCode.UNAUTHENTICATED)
                self.assertEqual(self.code(method, req, [("authorization", "Bearer nope")]),
                                 grpc.StatusCode.UNAUTHENTICATED)
                for name in ("reader", "writer", "boss"):
                    role = KEYS[name][0]
                    got = self.code(method, req, self.md[name])
                    if ROLE_RANK[role] < ROLE_RANK[need]:
                        self.assertEqual(got, grpc.StatusCode.PERMISSION_DENIED, name)
                    else:
                        self.assertNotIn(got, DENIED, name)
        m = self.router.metrics()
        self.assertGreaterEqual(m.total("vecshard_router_auth_failures_total",
                                        reason="unauthenticated"), 3 * len(METHODS))
        self.assertGreater(m.total("vecshard_router_auth_failures_total",
                                   reason="permission_denied"), 0)

    def test_scoped_key(self):
        md = self.md["scoped"]
        self.assertEqual(self.code("Upsert", rh.upsert_request("a", [1], [[1.0] * 4]), md),
                         grpc.StatusCode.OK)
        for method in ("Upsert", "Search", "Get", "Delete", "DescribeCollection"):
            with self.subTest(method=method):
                self.assertEqual(self.code(method, METHODS[method][1]("b"), md),
                                 grpc.StatusCode.PERMISSION_DENIED)
                self.assertNotIn(self.code(method, METHODS[method][1]("a"), md), DENIED)
        self.assertNotIn(self.code("ListCollections", pb.ListCollectionsRequest(), md), DENIED)
        # write role: no admin methods even on its own collection
        self.assertEqual(self.code("DropCollection", pb.DropCollectionRequest(name="a"), md),
                         grpc.StatusCode.PERMISSION_DENIED)

    def test_health_needs_no_key(self):
        self.assertEqual(self.router.health(), harness.health_pb2.HealthCheckResponse.SERVING)
        status, _ = self.router.http_get("/metrics")
        self.assertEqual(status, 200)

    def test_reload_on_sighup(self):
        new = [("authorization", "Bearer k-new-0005")]
        req = pb.ListCollectionsRequest()
        self.assertEqual(self.code("ListCollections", req, new), grpc.StatusCode.UNAUTHENTICATED)
        # the new key in, the reader out
        with open(self.keys, "w") as f:
            for name, (role, key) in KEYS.items():
                if name != "reader":
                    f.write(key_line(name, role, key))
            f.write(key_line("newbie", "read", "k-new-0005"))
        os.kill(self.router.proc.pid, signal.SIGHUP)
        rh.wait_until(lambda: self.code("ListCollections", req, new) == grpc.StatusCode.OK, 10,
                      "the new key accepted after SIGHUP")
        self.assertEqual(self.code("ListCollections", req, self.md["reader"]),
                         grpc.StatusCode.UNAUTHENTICATED)
        # a broken file: the reload is refused, the keys loaded before stay
        with open(self.keys, "a") as f:
            f.write("broken line\n")
        os.kill(self.router.proc.pid, signal.SIGHUP)
        rh.wait_until(lambda: "API key reload failed" in self.router.proc.tail(50), 10,
                      "the failed reload logged")
        self.assertIn("keys:", self.router.proc.tail(50))  # the error names file:line
        self.assertEqual(self.code("ListCollections", req, new), grpc.StatusCode.OK)
        self.assertTrue(self.router.proc.alive())

    def test_cli_key_by_flag_and_env(self):
        addr = self.router.addr
        r = rh.run([rh.CLI_BIN, "--router", addr, "list"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("UNAUTHENTICATED", r.stderr)
        r = rh.run([rh.CLI_BIN, "--router", addr, "--api-key", KEYS["reader"][1], "list"])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = rh.run([rh.CLI_BIN, "--router", addr, "drop", "a"],
                   env={"VECSHARD_API_KEY": KEYS["reader"][1]})
        self.assertEqual(r.returncode, 1)
        self.assertIn("PERMISSION_DENIED", r.stderr)
        # `vecshard key new` prints a key and the line that accepts it
        r = rh.run([rh.CLI_BIN, "key", "new", "cli", "admin"], check=True)
        key = r.stdout.split("key:")[1].split()[0]
        line = r.stdout.split("line:")[1].strip()
        self.assertEqual(line.split()[2], rh.run([rh.CLI_BIN, "key", "hash", key],
                                                 check=True).stdout.strip())
        with open(self.keys, "a") as f:
            f.write(line + "\n")
        os.kill(self.router.proc.pid, signal.SIGHUP)
        rh.wait_until(lambda: rh.run([rh.CLI_BIN, "--router", addr, "describe", "b"],
                                     env={"VECSHARD_API_KEY": key}).returncode == 0, 10,
                      "the CLI's new key accepted")

    def test_bad_key_file_refuses_start(self):
        bad = os.path.join(self.dir, "bad")
        with open(bad, "w") as f:
            f.write(key_line("x", "root", "k"))
        r = self.cluster.add_router(start=False)
        r.extra_args = [a if a != self.keys else bad for a in r.extra_args]
        with self.assertRaises(harness.HarnessError):
            r.start(timeout=10)
        self.assertIn("bad role", r.proc.tail(20))


if __name__ == "__main__":
    unittest.main()
