"""router_harness.py — harness.py plus vecshard-router processes.

RouterCluster is a harness.Cluster (real etcd, real vecshard-node
processes, everything stopped by pid, log tails on failure) that also runs
any number of vecshard-router processes against the same etcd:

    with RouterCluster(nodes=3, routers=2) as c:
        stub = c.routers[0].stub()                    # vecshard.v1.VecShard
        stub.CreateCollection(create_request("docs", dim=64, shards=3))
        c.nodes[1].kill9()

With http=True (RouterCluster(router_http=True)) a router serves --http on a
free loopback port (router.http_port): router.http_get(path), .metrics() and
.metric(name, **labels) come from harness.Server, as for nodes.

Routers are started after the nodes and are up once Health/Check answers
SERVING and their ClusterStatus lists every running node as alive (so a
CreateCollection right after start sees all of them). Like nodes, a router
keeps its port across restarts; a first start that loses the race for its
port is retried on a fresh one. Routers are stopped before the nodes.

The module also holds small helpers for the public API (request builders,
the routing hash of docs/router.md) and for running the CLI and
deploy/local/cluster.sh.

Environment (besides harness.py's): VS_ROUTER_BIN, VS_CLI_BIN override
build/vecshard-router and build/vecshard.
"""
import os
import subprocess
import time

import grpc

import harness
from harness import HarnessError, common_pb2, health_pb2
from harness import channel  # noqa: F401  (tests call rh.channel)
from vecshard.v1 import vecshard_pb2, vecshard_pb2_grpc

ROUTER_BIN = os.environ.get("VS_ROUTER_BIN", os.path.join(harness.BUILD, "vecshard-router"))
CLI_BIN = os.environ.get("VS_CLI_BIN", os.path.join(harness.BUILD, "vecshard"))
CLUSTER_SH = os.path.join(harness.REPO, "deploy", "local", "cluster.sh")
METRICS = {"l2": common_pb2.METRIC_L2, "ip": common_pb2.METRIC_IP,
           "cosine": common_pb2.METRIC_COSINE}


class Router(harness.Server):
    """One vecshard-router process: fixed name and (after first start) port."""

    def __init__(self, cluster, name, threads=8, extra_args=(), http=False):
        super().__init__(cluster, name)
        self.threads = threads
        self.extra_args = list(extra_args)
        self.http = http  # serve --http on a loopback port (self.http_port)

    def argv(self):
        # Automatic rebalance is off unless a test asks for it: the tests
        # written before it fake nodes and edit shard entries by hand, and a
        # fake node that registers is a join the controller would plan moves
        # onto. The rebalance tests pass --auto-rebalance themselves.
        auto = [] if "--auto-rebalance" in self.extra_args else ["--auto-rebalance", "off"]
        return [ROUTER_BIN, "--listen", self.addr, "--etcd", self.cluster.etcd.url,
                "--etcd-prefix", self.cluster.prefix, "--threads", str(self.threads)] + \
            self.cluster.etcd.client_args() + \
            (["--http", "127.0.0.1:%d" % self.http_port] if self.http else []) + \
            auto + self.extra_args

    def start(self, timeout=30, want_nodes=None):
        """Starts (or restarts, same port) and waits until it serves and sees
        want_nodes live nodes (default: every running node; 0: do not ask)."""
        if want_nodes is None:
            want_nodes = sum(1 for n in self.cluster.nodes if n.proc.alive())

        def spawn_and_wait():
            if self.http and self.http_port is None:
                self.http_port = harness.free_ports(1)[0]
            self.proc.spawn(self.argv())
            self._wait_up(want_nodes, timeout)
        return self._start(ROUTER_BIN, spawn_and_wait)

    def _wait_up(self, want_nodes, timeout):
        deadline = time.monotonic() + timeout
        healthy, seen = False, None
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise HarnessError("%s exited with status %s during start-up; log tail:\n%s" %
                                   (self.name, self.proc.popen.returncode, self.proc.tail()))
            healthy = healthy or (self._port_open() and
                                  self.health() == health_pb2.HealthCheckResponse.SERVING)
            if healthy and not want_nodes:
                return
            if healthy:
                try:
                    st = self.stub().ClusterStatus(vecshard_pb2.ClusterStatusRequest(),
                                                   timeout=2,
                                                   metadata=getattr(self.cluster, "client_md",
                                                                    None))
                    seen = sum(1 for n in st.nodes if n.alive)
                    if st.revision > 0 and seen >= want_nodes:
                        return
                except grpc.RpcError:
                    pass
            time.sleep(0.05)
        raise HarnessError("%s not up after %.0f s (healthy=%s, live nodes seen=%s of %d); "
                           "log tail:\n%s" % (self.name, timeout, healthy, seen, want_nodes,
                                              self.proc.tail()))

    def stub(self):
        return vecshard_pb2_grpc.VecShardStub(self.channel())


class RouterCluster(harness.Cluster):
    """harness.Cluster + `routers` vecshard-router processes (router-0, ...)."""

    def __init__(self, nodes=3, routers=1, router_threads=8, router_args=(), router_http=False,
                 client_md=None, **kw):
        super().__init__(nodes=nodes, **kw)
        # metadata of the harness's own router calls (e.g. an API key for
        # routers run with --api-keys); None: none
        self.client_md = client_md
        self.n_routers = routers
        self.router_threads = router_threads
        self.router_args = list(router_args)
        self.router_http = router_http
        self.routers = []

    def start(self):
        super().start()
        try:
            for _ in range(self.n_routers):
                self.add_router()
        except BaseException:
            self.print_tails()
            self.close(check=False)
            raise
        return self

    def add_router(self, start=True):
        r = Router(self, "router-%d" % len(self.routers), threads=self.router_threads,
                   extra_args=self.router_args, http=self.router_http)
        self.routers.append(r)
        if start:
            r.start()
        return r

    def close(self, check=True):
        """Routers first (they call the nodes), then nodes and etcd. With
        check, a router or node that did not exit with status 0 on SIGTERM
        raises HarnessError once everything is cleaned up."""
        if self.root is None:
            return
        bad = []
        for r in self.routers:
            try:
                was_running = r.proc.alive()
                rc = r.stop()
                if was_running and rc != 0:
                    bad.append("%s exited with status %s on SIGTERM" % (r.name, rc))
            except Exception:  # keep going: the rest must be stopped too
                r.proc.kill9()
        try:
            super().close(check=check)
        finally:
            if bad and check:
                raise HarnessError("; ".join(bad) + "; log tails:\n" + self.saved_tails)

    def tails(self, n=harness.TAIL_LINES):
        if self.root is None:
            return self.saved_tails
        parts = [super().tails(n)]
        for r in self.routers:
            p = r.proc
            parts.append("---- %s (%s, pid %s)\n%s" % (p.name, p.log_path, p.pid, p.tail(n)))
        return "\n".join(parts)

    def stub(self, i=0):
        return self.routers[i].stub()


# ------------------------------------------------------------------ public API helpers
def create_request(name, dim, metric="l2", m=16, ef_construction=200, ef_search=64, shards=1,
                   replication_factor=1, quantization=0):
    return vecshard_pb2.CreateCollectionRequest(config=common_pb2.CollectionConfig(
        name=name, dim=dim, metric=METRICS[metric], m=m, ef_construction=ef_construction,
        ef_search=ef_search, shards=shards, replication_factor=replication_factor,
        quantization=quantization))


def upsert_request(collection, ids, vectors, payloads=None):
    return vecshard_pb2.UpsertRequest(collection=collection,
                                      points=harness.points(ids, vectors, payloads))


def search_request(collection, queries, k=10, ef=0, min_coverage=0.0, with_payload=False,
                   with_vector=False):
    return vecshard_pb2.SearchRequest(
        collection=collection, k=k, ef=ef, min_coverage=min_coverage,
        queries=[common_pb2.Query(vector=[float(x) for x in q]) for q in queries],
        with_payload=with_payload, with_vector=with_vector)


def upsert_all(stub, collection, ids, vectors, batch=1000, timeout=120):
    """Upserts in batches of `batch` points; returns the number upserted."""
    total = 0
    for lo in range(0, len(ids), batch):
        r = stub.Upsert(upsert_request(collection, ids[lo:lo + batch], vectors[lo:lo + batch]),
                        timeout=timeout)
        total += r.upserted
    return total


_M64 = (1 << 64) - 1


def hash64(x):
    """The routing hash of docs/router.md (splitmix64 finalizer)."""
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def shard_of(point_id, shards):
    return hash64(int(point_id)) % shards


def code_of(fn, *args, **kw):
    """(grpc.StatusCode, details) of calling fn; (OK, reply) on success."""
    try:
        return grpc.StatusCode.OK, fn(*args, **kw)
    except grpc.RpcError as e:
        return e.code(), e.details()


def wait_until(pred, timeout, what, interval=0.1):
    """Polls pred() until it is true; raises HarnessError naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise HarnessError("%s not reached within %.0f s (last: %r)" % (what, timeout, last))


# ------------------------------------------------------------------ processes run to completion
def run(argv, timeout=300, env=None, check=False):
    """Runs argv to completion; returns CompletedProcess (text output)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("VS_BUILD", harness.BUILD)
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout, env=full_env)
    if check and p.returncode != 0:
        raise HarnessError("%s exited %d\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(argv), p.returncode, p.stdout[-3000:], p.stderr[-3000:]))
    return p


def pid_running(pid):
    """True if pid exists and is not a zombie (an exited child nobody reaped)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"
