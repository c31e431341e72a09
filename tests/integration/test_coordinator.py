"""Coordinating nodes (docs/node.md, "Coordinating node"; issue 15): a node
started with --coordinator-listen also serves the public vecshard.v1.VecShard
service, with the router's own code, and searches its own shards in-process.

- 3 nodes, each a coordinator, and a router: a 3-shard collection created
  through node-0's port and filled through node-1's answers searches through
  every node's port with exactly the router's hits and distances (several k
  and ef, payloads and vectors too), and the same Get and Count; a bad
  request gets the router's status code and message.
- A coordinator searches its own shards in-process: the ShardNode server
  counts the calls (in-process calls count as received ones), but the
  node process never holds a TCP connection to its own ShardNode port.
- A one-node deployment is one node process plus etcd, no router: create,
  upsert and search against brute force, single-query searches (run on the
  coordinator's poller, every shard being local) equal to the batch's rows;
  after a restart the data is exactly there; the Python client package
  works against the node's port.
- --coordinator-api-keys: a call without a key is UNAUTHENTICATED, with a
  read key a search works and a write is PERMISSION_DENIED.
- R = 2: writes through every node's coordinator (a primary's write
  handler runs in-process on one of them) lose nothing acknowledged and
  leave equal digests; a node stopped with SIGTERM while searches go
  through another's coordinator costs no search and exits 0.
- kill -9 of a primary (then restarted) and SIGSTOP of another past its
  lease, under writes through the coordinators: nothing acknowledged is
  lost, digests equal.
- --coordinator-listen that is not host:port exits 2 naming the flag; a
  port in use makes the node exit 1 saying so.
- A killed node: another node's coordinator answers with 2 of 3 shards
  covered when min_coverage allows it, UNAVAILABLE when it asks for all.
"""
import hashlib
import os
import re
import subprocess
import sys
import threading
import time
import unittest

import grpc

import harness
import repl_harness
import router_harness as rh
import vsdata
from vecshard.v1 import vecshard_pb2 as pb
from vecshard.v1 import vecshard_pb2_grpc

N, DIM, NQ = 3000, 16, 60
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start_coordinating(c, n_nodes, extra=()):
    """Adds n_nodes nodes to started cluster c, each with its own
    --coordinator-listen port; returns the ports' addresses."""
    ports = harness.free_ports(n_nodes)
    addrs = []
    for p in ports:
        addr = "127.0.0.1:%d" % p
        c.add_node(extra_args=["--coordinator-listen", addr] + list(extra))
        addrs.append(addr)
    for n, addr in zip(c.nodes[-n_nodes:], addrs):
        rh.wait_until(lambda n=n: "coordinator listening" in n.proc.tail(400), 30,
                      "%s's coordinator port" % n.node_id)
    return addrs


def stub_at(addr, md=None):
    return vecshard_pb2_grpc.VecShardStub(harness.channel(addr))


def hits(resp):
    return [[(h.id, h.distance, h.payload, tuple(h.vector)) for h in q.hits]
            for q in resp.results]


def own_connections(pid, port):
    """TCP connections of process pid whose remote end is 127.0.0.1:port."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", link)
        if m:
            inodes.add(m.group(1))
    n = 0
    for table in ("tcp", "tcp6"):
        with open("/proc/%d/net/%s" % (pid, table)) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                remote, state, inode = cols[2], cols[3], cols[9]
                if inode in inodes and state == "01" and int(remote.split(":")[1], 16) == port:
                    n += 1
    return n


def node_metric(node, name, **labels):
    text = harness.http_get(node.http_addr, "/metrics")[1]
    return harness.parse_metrics(text).total(name, **labels)


class Coordinator(harness.ClusterTestCase):

    def test_same_answers_as_the_router(self):
        c = rh.RouterCluster(nodes=0, routers=0).start()
        try:
            addrs = start_coordinating(c, 3)
            c.add_router()
            r = c.stub(0)
            n0, n1 = stub_at(addrs[0]), stub_at(addrs[1])
            base, queries = vsdata.clustered(N, DIM, clusters=12, seed=5, spread=0.2,
                                             n_queries=NQ)
            n0.CreateCollection(rh.create_request("co", DIM, m=8, ef_construction=60, shards=3),
                                timeout=30)
            payloads = [("p%d" % i).encode() for i in range(N)]
            for lo in range(0, N, 1000):
                n1.Upsert(rh.upsert_request("co", list(range(lo, lo + 1000)),
                                            base[lo:lo + 1000], payloads[lo:lo + 1000]),
                          timeout=60)
            self.assertEqual(r.Count(pb.CountRequest(collection="co"), timeout=30).count, N)
            truth = vsdata.knn(base, queries, 10)
            for k, ef in ((1, 0), (10, 10), (10, 40), (25, 100)):
                want = r.Search(rh.search_request("co", queries, k=k, ef=ef, with_payload=True,
                                                  with_vector=True), timeout=60)
                for addr in addrs:
                    got = stub_at(addr).Search(
                        rh.search_request("co", queries, k=k, ef=ef, with_payload=True,
                                          with_vector=True), timeout=60)
                    self.assertEqual(hits(got), hits(want), "k %d ef %d via %s" % (k, ef, addr))
                    self.assertEqual(got.coverage, want.coverage)
                if k == 10 and ef == 40:
                    found = [[h.id for h in q.hits] for q in want.results]
                    self.assertGreaterEqual(vsdata.recall(truth, found, 10), 0.9)
            ids = [0, 17, 2999, 5000]
            want = r.Get(pb.GetRequest(collection="co", ids=ids, with_vector=True), timeout=30)
            for addr in addrs:
                got = stub_at(addr).Get(pb.GetRequest(collection="co", ids=ids, with_vector=True),
                                        timeout=30)
                self.assertEqual(got, want)
                self.assertEqual(
                    stub_at(addr).Count(pb.CountRequest(collection="co"), timeout=30).count, N)
            # bad input: the router's code and message
            bad = rh.search_request("co", [[0.0] * (DIM + 1)])
            codes = []
            for s in (r, n0):
                with self.assertRaises(grpc.RpcError) as e:
                    s.Search(bad, timeout=30)
                codes.append((e.exception.code(), e.exception.details()))
            self.assertEqual(codes[0][0], grpc.StatusCode.INVALID_ARGUMENT)
            self.assertEqual(codes[1], codes[0])
            self.assertIn("dim", codes[1][1])
        finally:
            c.close()

    def test_own_shards_are_searched_in_process(self):
        c = rh.RouterCluster(nodes=0, routers=0).start()
        try:
            ports = harness.free_ports(1)
            addr = "127.0.0.1:%d" % ports[0]
            n = c.add_node(extra_args=["--coordinator-listen", addr], http=True)
            rh.wait_until(lambda: "coordinator listening" in n.proc.tail(400), 30,
                          "the coordinator port")
            s = stub_at(addr)
            s.CreateCollection(rh.create_request("solo", 4), timeout=30)
            s.Upsert(rh.upsert_request("solo", [1, 2, 3], [[0.0] * 4, [1.0] * 4, [2.0] * 4]),
                     timeout=30)

            def searches():
                return node_metric(n, "vecshard_grpc_server_handled_total",
                                   service="vecshard.v1.ShardNode", method="Search")

            before = searches()
            for _ in range(20):
                resp = s.Search(rh.search_request("solo", [[0.9] * 4], k=2), timeout=30)
                self.assertEqual([h.id for h in resp.results[0].hits], [2, 1])
            # the ShardNode server counts in-process calls as it counts
            # received ones...
            self.assertEqual(searches() - before, 20)
            # ...but the node never opened a connection to its own port
            port = int(n.addr.rsplit(":", 1)[1])
            self.assertEqual(own_connections(n.proc.pid, port), 0)
        finally:
            c.close()

    def test_one_node_deployment(self):
        c = harness.Cluster(nodes=0).start()
        try:
            addr = start_coordinating(c, 1)[0]
            s = stub_at(addr)
            base, queries = vsdata.clustered(2000, DIM, clusters=8, seed=9, spread=0.2,
                                             n_queries=40)
            s.CreateCollection(rh.create_request("one", DIM, m=12, ef_construction=100,
                                                 shards=2), timeout=30)
            rh.upsert_all(s, "one", list(range(2000)), base, batch=500)
            truth = vsdata.knn(base, queries, 10)
            resp = s.Search(rh.search_request("one", queries, k=10, ef=64), timeout=60)
            found = [[h.id for h in q.hits] for q in resp.results]
            self.assertGreaterEqual(vsdata.recall(truth, found, 10), 0.95)
            # one query per call: both shards are here, so the search runs on
            # the coordinator's poller (router_search_cheap); same answers
            for i in range(0, 40, 7):
                one = s.Search(rh.search_request("one", queries[i:i + 1], k=10, ef=64),
                               timeout=30)
                self.assertEqual(hits(one)[0], hits(resp)[i])
            before = s.Get(pb.GetRequest(collection="one", ids=list(range(0, 2000, 97)),
                                         with_vector=True), timeout=30)
            c.nodes[0].restart()
            rh.wait_until(lambda: c.nodes[0].proc.tail(400).count("coordinator listening") >= 2,
                          30, "the coordinator port after the restart")

            def answered():
                try:
                    return s.Count(pb.CountRequest(collection="one"), timeout=5).count == 2000
                except grpc.RpcError:
                    return False

            rh.wait_until(answered, 30, "the count after the restart")
            after = s.Get(pb.GetRequest(collection="one", ids=list(range(0, 2000, 97)),
                                        with_vector=True), timeout=30)
            self.assertEqual(after, before)
            again = s.Search(rh.search_request("one", queries, k=10, ef=64), timeout=60)
            self.assertEqual(hits(again), hits(resp))
            # the Python client package works against the node's port as
            # against a router (its own process: its package is also
            # called vecshard)
            script = ("import vecshard, numpy as np\n"
                      "with vecshard.Client(%r) as c:\n"
                      "    c.create_collection('py', dim=4)\n"
                      "    c.upsert('py', [1, 2], np.array([[0, 0, 0, 0], [1, 1, 1, 1]], 'f4'))\n"
                      "    print(c.search('py', [[0.9, 1, 1, 1]], k=2).ids.tolist())\n" % addr)
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                [os.path.join(REPO, "clients", "python"),
                 os.path.join(harness.BUILD, "gen", "python")]))
            out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                                 text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(out.stdout.strip(), "[[2, 1]]")
        finally:
            c.close()

    def test_api_keys(self):
        c = harness.Cluster(nodes=0).start()
        try:
            keys = os.path.join(c.root, "keys")
            with open(keys, "w") as f:
                for name, role, key in (("r", "read", "k-read-1"), ("a", "admin", "k-admin-1")):
                    f.write("%s %s sha256:%s\n" % (name, role,
                                                   hashlib.sha256(key.encode()).hexdigest()))
            addr = start_coordinating(c, 1, extra=["--coordinator-api-keys", keys])[0]
            s = stub_at(addr)
            admin = [("authorization", "Bearer k-admin-1")]
            read = [("authorization", "Bearer k-read-1")]
            with self.assertRaises(grpc.RpcError) as e:
                s.CreateCollection(rh.create_request("k", 4), timeout=30)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
            s.CreateCollection(rh.create_request("k", 4), timeout=30, metadata=admin)
            with self.assertRaises(grpc.RpcError) as e:
                s.Upsert(rh.upsert_request("k", [1], [[1.0] * 4]), timeout=30, metadata=read)
            self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
            s.Upsert(rh.upsert_request("k", [1], [[1.0] * 4]), timeout=30, metadata=admin)
            resp = s.Search(rh.search_request("k", [[1.0] * 4], k=1), timeout=30, metadata=read)
            self.assertEqual([h.id for h in resp.results[0].hits], [1])
        finally:
            c.close()

    def test_killed_node_partial_coverage(self):
        c = rh.RouterCluster(nodes=0, routers=0).start()
        try:
            addrs = start_coordinating(c, 3)
            s = stub_at(addrs[0])
            s.CreateCollection(rh.create_request("kp", 4, shards=3), timeout=30)
            rh.upsert_all(s, "kp", list(range(300)), [[float(i)] * 4 for i in range(300)],
                          batch=300)
            full = s.Search(rh.search_request("kp", [[5.0] * 4], k=5), timeout=30)
            self.assertEqual((full.coverage.shards_ok, full.coverage.shards_total), (3, 3))
            c.nodes[2].kill9()
            resp = s.Search(rh.search_request("kp", [[5.0] * 4], k=5, min_coverage=0.5),
                            timeout=30)
            self.assertEqual((resp.coverage.shards_ok, resp.coverage.shards_total), (2, 3))
            self.assertEqual(len(resp.results[0].hits), 5)
            with self.assertRaises(grpc.RpcError) as e:  # min_coverage 0 means all shards
                s.Search(rh.search_request("kp", [[5.0] * 4], k=5), timeout=30)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        finally:
            c.close()


class CoordinatorFlags(harness.ClusterTestCase):

    def test_bad_address_and_busy_port(self):
        """--coordinator-listen that is not host:port: exit 2 naming the flag.
        A port already taken: the node says so and exits 1 (after a clean
        shutdown of what it had started), not serving without the port."""
        r = rh.run([harness.NODE_BIN, "--coordinator-listen", "nowhere", "--data-dir",
                    "/nonexistent"], timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--coordinator-listen", r.stderr)
        c = harness.Cluster(nodes=0).start()
        try:
            import socket
            busy = socket.socket()
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            addr = "127.0.0.1:%d" % busy.getsockname()[1]
            n = c.add_node(extra_args=["--coordinator-listen", addr], start=False)
            n.port = harness.free_ports(1)[0]
            n.proc.spawn(n.argv())
            rh.wait_until(lambda: not n.proc.alive(), 30, "the node to give up")
            self.assertEqual(n.proc.stop(), 1)
            self.assertIn("cannot start the coordinator port", n.proc.tail(200))
            busy.close()
        finally:
            c.close(check=False)


class CoordinatorPort:
    """A node's coordinator port, shaped like a harness router for the
    replication writer (stub(), proc)."""

    def __init__(self, node, addr):
        self.node, self.addr, self.proc = node, addr, node.proc

    def stub(self):
        return stub_at(self.addr)


def coordinator_addr(node):
    """The address of the node's last "coordinator listening" log line."""
    found = re.findall(r'msg="coordinator listening" addr=(\S+)', node.proc.tail(2000))
    return found[-1] if found else None


class CoordinatorWriter(repl_harness.Writer):
    """The replication writer, writing through coordinator ports."""

    def __init__(self, cluster, ports, **kw):
        self.ports = ports
        super().__init__(cluster, **kw)

    def _routers(self):
        live = [p for p in self.ports if p.proc.alive() and p.node not in self.cluster.paused]
        return live or self.ports


class CoordinatorReplicated(harness.ClusterTestCase):

    def ports(self):
        """Every node's coordinator port, once each has logged it."""
        nodes = self.cluster.nodes
        rh.wait_until(lambda: all(coordinator_addr(n) for n in nodes), 30,
                      "every coordinator port")
        return [CoordinatorPort(n, coordinator_addr(n)) for n in nodes]

    def test_replicated_writes_and_a_node_stopped(self):
        """R = 2 over 3 nodes, writes through all three coordinators (the
        primary's write handler in-process on one of them): nothing
        acknowledged is lost, the in-sync replicas' digests are equal; then
        SIGTERM of one node while searches go through another's coordinator:
        every search is answered with full coverage (the other replica), and
        the node exits 0."""
        c = self.cluster = repl_harness.ReplCluster(
            nodes=3, routers=1, replicas=2, shards=3,
            node_args=["--coordinator-listen", "127.0.0.1:0"]).start()
        try:
            ports = self.ports()
            w = CoordinatorWriter(c, ports, threads=3, batch=20)
            w.start()
            rh.wait_until(lambda: w.acked_points >= 1500, 60, "1,500 acknowledged points")
            w.stop()
            c.wait_healthy()
            self.assertEqual(c.acked_lost(w, routers=ports), [])
            c.assert_digests_equal()

            stop_at = threading.Event()
            answers, failures = [], []

            def search():
                s = ports[0].stub()
                q = [[0.5] * c.dim]
                while not stop_at.is_set():
                    try:
                        r = s.Search(rh.search_request(c.collection, q, k=5), timeout=10)
                        answers.append(r.coverage.shards_ok)
                    except grpc.RpcError as e:
                        failures.append(e.code())

            t = threading.Thread(target=search)
            t.start()
            try:
                rh.wait_until(lambda: len(answers) >= 50, 30, "searches before the stop")
                rc = c.nodes[2].stop()
                n = len(answers)
                rh.wait_until(lambda: len(answers) >= n + 50, 30, "searches after the stop")
            finally:
                stop_at.set()
                t.join(30)
            print("coordinator R=2: %d acked points, %d searches, node-2 exit %s"
                  % (w.acked_points, len(answers), rc))
            self.assertEqual(rc, 0)
            self.assertEqual(failures, [])
            self.assertEqual(set(answers), {3})
        finally:
            c.close()

    def test_kill9_and_sigstop_under_coordinator_writes(self):
        """Writes through the coordinators while the primary of shard 0 is
        killed with -9 and restarted, then the primary of shard 1 is
        SIGSTOPped past its lease and resumed: once the shards are healthy
        again every acknowledged point is there with its exact vector and
        payload (through a coordinator and on every in-sync replica) and the
        in-sync replicas' digests are equal."""
        c = self.cluster = repl_harness.ReplCluster(
            nodes=3, routers=1, replicas=2, shards=3,
            node_args=["--coordinator-listen", "127.0.0.1:0"]).start()
        try:
            ports = self.ports()
            w = CoordinatorWriter(c, ports, threads=3, batch=10)
            w.start()
            try:
                rh.wait_until(lambda: w.acked_points >= 300, 60, "300 acknowledged points")
                victim = c.primary_of(0)
                victim.kill9()
                n = w.acked_points
                rh.wait_until(lambda: w.acked_points >= n + 300, 60, "writes after the kill")
                victim.start()
                # its log keeps the first start's line: wait for the second
                rh.wait_until(lambda: victim.proc.tail(2000).count("coordinator listening") >= 2,
                              30, "the restarted node's coordinator port")
                port = next(p for p in ports if p.node is victim)
                port.addr, port.proc = coordinator_addr(victim), victim.proc
                c.wait_healthy(timeout=90)
                paused = c.primary_of(1)
                c.pause(paused)
                n = w.acked_points
                rh.wait_until(lambda: w.acked_points >= n + 300, 60, "writes while paused")
                time.sleep(c.lease_ttl + 1)  # past the lease: its shards fail over
                c.resume(paused)
                n = w.acked_points
                rh.wait_until(lambda: w.acked_points >= n + 300, 60, "writes after the resume")
            finally:
                w.stop()
            c.wait_healthy(timeout=90)
            self.assertEqual(c.acked_lost(w, routers=[p for p in ports if p.proc.alive()]), [])
            c.assert_digests_equal()
        finally:
            c.close()


if __name__ == "__main__":
    unittest.main()
