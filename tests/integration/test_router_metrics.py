"""The router's observability (docs/router.md "Observability", docs/operations.md
"Probes" and "Metrics"): a router with --http in front of 2 real nodes.

- /metrics after N searches: vecshard_grpc_server_handled_total{method="Search",
  code="OK"} == N exactly, the fan-out histogram has N observations of 3 shards
  each, the merge histogram N, the node calls by node/method/code add up to
  the nodes each search asked; a bad request counts under INVALID_ARGUMENT
  and does not fan out; the cluster view gauges (nodes, collections, shards,
  in-sync replicas per shard, wanted replicas, moves by state, controller).
- Request ids: the client's x-request-id comes back as trailing metadata and
  shows as request_id= in the router's log and the node's; an invalid one is
  replaced by 16 lower-case hex characters, as is a missing one.
- --slow-query-ms: a search slower than 1 ms logs one warn "slow request"
  line with request_id, method, collection, duration_ms, k, ef, shards and
  coverage; the default (1000) logs none for the same search.
- Probes: /healthz and /readyz 200 when routed; /readyz 503 naming the stale
  view once etcd has been down longer than --view-max-age-ms (healthz stays
  200), 200 again once etcd is back; 503 "no routing table yet" for a
  router that never reached etcd.
"""
import re
import time
import unittest

import grpc

import harness
import router_harness as rh
import vsdata
from router_harness import vecshard_pb2 as pb

DIM = 8
N_POINTS = 200
N_SEARCHES = 7
SHARDS = 3
SVC = "vecshard.v1.VecShard"
HEX16 = re.compile(r"^[0-9a-f]{16}$")


def trailer(call, key):
    for k, v in call.trailing_metadata() or ():
        if k == key:
            return v
    return None


def log_lines(server, needle):
    """Lines of a process's log that contain needle."""
    with open(server.proc.log_path, encoding="utf-8", errors="replace") as f:
        return [line for line in f if needle in line]


class RouterMetrics(harness.ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        http = "127.0.0.1:%d" % harness.free_ports(1)[0]
        cls.cluster = rh.RouterCluster(
            nodes=2, routers=1, node_args=["--log-level", "debug"],
            router_args=["--http", http, "--log-level", "debug", "--view-max-age-ms", "1000"])
        cls.cluster.start()
        cls.router = cls.cluster.routers[0]
        cls.stub = cls.cluster.stub()
        cls.stub.CreateCollection(rh.create_request("m", DIM, shards=SHARDS), timeout=30)
        cls.base, cls.queries = vsdata.clustered(N_POINTS, DIM, clusters=4, seed=5,
                                                 n_queries=N_SEARCHES)
        cls.stub.Upsert(rh.upsert_request("m", list(range(N_POINTS)), cls.base), timeout=30)

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def primaries(self):
        """Distinct nodes holding a primary of collection m (those a search asks)."""
        c = self.cluster
        return {c.etcd.get_json("%s/shards/m/%d" % (c.prefix, s))["primary"]
                for s in range(SHARDS)}

    def test_1_search_counters_are_exact(self):
        before = self.router.metrics()
        self.assertEqual(before.total("vecshard_grpc_server_handled_total", method="Search"), 0)
        for q in self.queries:
            r = self.stub.Search(rh.search_request("m", [q], k=5), timeout=10)
            self.assertEqual(r.coverage.shards_ok, SHARDS)
        code, _ = rh.code_of(self.stub.Search, rh.search_request("m", [self.queries[0]], k=0),
                             timeout=10)
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        code, _ = rh.code_of(self.stub.Search, rh.search_request("nope", [self.queries[0]]),
                             timeout=10)
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND)

        m = self.router.metrics()
        handled = "vecshard_grpc_server_handled_total"
        self.assertEqual(m.get1(handled, service=SVC, method="Search", code="OK"), N_SEARCHES)
        self.assertEqual(m.get1(handled, service=SVC, method="Search", code="INVALID_ARGUMENT"), 1)
        self.assertEqual(m.get1(handled, service=SVC, method="Search", code="NOT_FOUND"), 1)
        self.assertEqual(m.get1(handled, service=SVC, method="Upsert", code="OK"), 1)
        self.assertEqual(m.get1("vecshard_grpc_server_handling_seconds_count", service=SVC,
                                method="Search"), N_SEARCHES + 2)
        # Only the searches that reached the nodes fan out: 3 shards each.
        fan = "vecshard_router_search_fanout_shards"
        self.assertEqual(m.get1(fan + "_count"), N_SEARCHES)
        self.assertEqual(m.get1(fan + "_sum"), N_SEARCHES * SHARDS)
        self.assertEqual(m.get1(fan + "_bucket", le="2"), 0)
        self.assertEqual(m.get1(fan + "_bucket", le="4"), N_SEARCHES)
        self.assertEqual(m.get1("vecshard_router_search_merge_seconds_count"), N_SEARCHES)
        self.assertEqual(m.total("vecshard_router_search_partial_total"), 0)
        # One batched call per node holding a primary, per search.
        calls = "vecshard_router_shard_calls_total"
        asked = self.primaries()
        for node in asked:
            self.assertEqual(m.get1(calls, node=node, method="Search", code="OK"), N_SEARCHES)
        self.assertEqual(m.total(calls, method="Search"), N_SEARCHES * len(asked))
        self.assertEqual(m.total(calls, method="Write", code="OK"), len(asked))
        self.assertEqual(m.total("vecshard_router_shard_retries_total"), 0)
        self.assertEqual(m.total("vecshard_router_shard_failures_total"), 0)

    def test_2_cluster_view_gauges(self):
        m = self.router.metrics()
        self.assertEqual(m.get1("vecshard_router_view_loaded"), 1)
        self.assertGreater(m.get1("vecshard_router_view_revision"), 0)
        self.assertEqual(m.get1("vecshard_etcd_reachable"), 1)
        self.assertEqual(m.get1("vecshard_router_view_stale_seconds"), 0)
        self.assertEqual(m.get1("vecshard_cluster_nodes"), 2)
        self.assertEqual(m.get1("vecshard_cluster_collections"), 1)
        self.assertEqual(m.get1("vecshard_cluster_shards"), SHARDS)
        self.assertEqual(m.get1("vecshard_cluster_nodes_draining"), 0)
        for s in range(SHARDS):
            lab = {"collection": "m", "shard": str(s)}
            self.assertEqual(m.get1("vecshard_cluster_shard_replicas", **lab), 1)
            self.assertEqual(m.get1("vecshard_cluster_shard_in_sync_replicas", **lab), 1)
            self.assertEqual(m.get1("vecshard_cluster_shard_replicas_wanted", **lab), 1)
            self.assertEqual(m.get1("vecshard_cluster_shard_primary_up", **lab), 1)
        for state in ("queued", "running", "done", "failed", "cancelled"):
            self.assertEqual(m.get1("vecshard_rebalance_moves", state=state), 0)
        # The only router wins the election (polled: it campaigns at start).
        rh.wait_until(lambda: self.router.metrics().get1("vecshard_controller_leader") == 1,
                      15, "controller_leader == 1")
        self.assertEqual(m.get1("vecshard_build_info", program="vecshard-router",
                                version="0.1.0"), 1)
        for fam, typ in (("vecshard_router_search_fanout_shards", "histogram"),
                         ("vecshard_router_shard_calls_total", "counter"),
                         ("vecshard_controller_decisions_total", "counter"),
                         ("vecshard_rebalance_moved_bytes_total", "counter"),
                         ("vecshard_router_slow_requests_total", "counter")):
            self.assertEqual(m.families.get(fam), typ, fam)

    def test_3_request_id_is_propagated(self):
        rid = "it-req-%d" % time.monotonic_ns()
        _, call = self.stub.Search.with_call(rh.search_request("m", [self.queries[0]], k=3),
                                             metadata=[("x-request-id", rid)], timeout=10)
        self.assertEqual(trailer(call, "x-request-id"), rid)
        # The router's line about the call, then each node's that served it.
        rh.wait_until(lambda: log_lines(self.router, "request_id=%s " % rid), 5,
                      "router log line with request_id=" + rid)
        line = log_lines(self.router, "request_id=%s " % rid)[-1]
        self.assertIn('msg="request"', line)
        self.assertIn("method=Search collection=m code=OK", line)
        self.assertIn("shards=%d coverage=1.000" % SHARDS, line)
        for node in self.cluster.nodes:
            if node.node_id in self.primaries():
                rh.wait_until(lambda n=node: log_lines(n, "request_id=" + rid), 5,
                              "%s log line with request_id=%s" % (node.node_id, rid))
        # Invalid ids (a space, 65 characters) and no id: a generated one, new each time.
        seen = set()
        for md in ([("x-request-id", "has space")], [("x-request-id", "x" * 65)], []):
            _, call = self.stub.ListCollections.with_call(pb.ListCollectionsRequest(),
                                                          metadata=md, timeout=10)
            got = trailer(call, "x-request-id")
            self.assertRegex(got or "", HEX16)
            seen.add(got)
        self.assertEqual(len(seen), 3)
        # An error reply carries it too.
        try:
            self.stub.Search(rh.search_request("m", [self.queries[0]], k=0),
                             metadata=[("x-request-id", rid + "-bad")], timeout=10)
            self.fail("k=0 accepted")
        except grpc.RpcError as e:
            self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn(("x-request-id", rid + "-bad"), list(e.trailing_metadata()))

    def test_4_slow_query_log(self):
        slow = rh.Router(self.cluster, "router-slow",
                         extra_args=["--slow-query-ms", "1", "--controller", "off"])
        self.cluster.routers.append(slow)
        slow.start()
        rid = "slow-%d" % time.monotonic_ns()
        # 400 queries of k=100 over 3 shards: well above 1 ms on any machine.
        qs = [self.base[i % N_POINTS] for i in range(400)]
        r = slow.stub().Search(rh.search_request("m", qs, k=100), timeout=30,
                               metadata=[("x-request-id", rid)])
        self.assertEqual(len(r.results), 400)
        lines = rh.wait_until(
            lambda: [ln for ln in log_lines(slow, 'msg="slow request"') if rid in ln], 5,
            "slow line")
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("level=warn", lines[0])
        self.assertRegex(lines[0], r"request_id=%s method=Search collection=m code=OK "
                         r"duration_ms=\d+ k=100 ef=0 shards=3 coverage=1\.000" % rid)
        self.assertEqual(harness.parse_metrics(harness.http_get(
            self.router.http_addr, "/metrics")[1]).total("vecshard_router_slow_requests_total"),
            0)
        # The default threshold (1000 ms) does not log the same search.
        self.stub.Search(rh.search_request("m", qs, k=100), timeout=30,
                         metadata=[("x-request-id", rid + "-fast")])
        self.assertEqual([ln for ln in log_lines(self.router, 'msg="slow request"') if rid in ln],
                         [])
        self.assertEqual(len(log_lines(self.router, "request_id=%s-fast " % rid)), 1)
        slow.stop()
        self.cluster.routers.remove(slow)

    def test_5_probes_follow_etcd(self):
        self.assertEqual(self.router.http_get("/healthz")[:2], (200, "ok\n"))
        rh.wait_until(lambda: self.router.http_get("/readyz")[0] == 200, 10, "readyz 200")
        self.cluster.etcd.stop()
        try:
            status, body = rh.wait_until(
                lambda: (lambda r: r[:2] if r[0] == 503 else None)(
                    self.router.http_get("/readyz")), 15, "readyz 503 with etcd stopped")
            self.assertIn("routing table stale", body)
            self.assertIn("--view-max-age-ms 1000", body)
            self.assertEqual(self.router.http_get("/healthz")[0], 200)
            m = self.router.metrics()
            self.assertEqual(m.get1("vecshard_etcd_reachable"), 0)
            self.assertGreater(m.get1("vecshard_router_view_stale_seconds"), 1.0)
            # The cache still routes.
            r = self.stub.Search(rh.search_request("m", [self.queries[0]], k=3), timeout=10)
            self.assertEqual(r.coverage.shards_ok, SHARDS)
        finally:
            self.cluster.etcd.start_again()
        rh.wait_until(lambda: self.router.http_get("/readyz")[0] == 200, 20,
                      "readyz 200 after etcd is back")
        self.assertEqual(self.router.metrics().get1("vecshard_etcd_reachable"), 1)

    def test_6_not_ready_before_the_first_listing(self):
        http = "127.0.0.1:%d" % harness.free_ports(1)[0]
        dead_etcd = "http://127.0.0.1:%d" % harness.free_ports(1)[0]
        lone = rh.Router(self.cluster, "router-lone",
                         extra_args=["--http", http, "--controller", "off"])
        argv = lone.argv
        lone.argv = lambda: [dead_etcd if a == self.cluster.etcd.url else a for a in argv()]
        self.cluster.routers.append(lone)
        lone.start(want_nodes=0)
        rh.wait_until(lambda: harness.tail(lone.proc.log_path).find("http listening") >= 0, 10,
                      "http listening line")
        status, body, _ = lone.http_get("/readyz")
        self.assertEqual(status, 503)
        self.assertIn("no routing table yet", body)
        self.assertEqual(lone.http_get("/healthz")[:2], (200, "ok\n"))
        m = lone.metrics()
        self.assertEqual(m.get1("vecshard_router_view_loaded"), 0)
        self.assertEqual(m.get1("vecshard_cluster_nodes"), 0)
        self.assertEqual(m.get1("vecshard_controller_leader"), 0)
        # Families are declared even with nothing to report.
        for fam in ("vecshard_cluster_shard_in_sync_replicas", "vecshard_router_shard_calls_total",
                    "vecshard_router_search_partial_total"):
            self.assertIn(fam, m.families)
        lone.stop()
        self.cluster.routers.remove(lone)


if __name__ == "__main__":
    unittest.main()
