"""Observability end to end (docs/operations.md "Probes" and "Metrics"):
etcd, 2 nodes and 1 router, each with --http on a free loopback port.

- promtool: `promtool check metrics` accepts the /metrics text of every node
  and router (exit 0 and no lint output at all) after a create, upserts and
  searches; the Content-Type is the text format 0.0.4's.
- Probes: /healthz and /readyz 200 "ok" on every process of the cluster; a
  node and a router whose etcd is a dead port stay live (/healthz 200) but
  are not ready (/readyz 503 with the reason).
- Prometheus for real: /usr/bin/prometheus on loopback (temp storage, a
  generated prometheus.yml scraping every endpoint each second); through its
  HTTP API every target reaches up == 1, and searches issued through the
  router show in increase() of vecshard_grpc_server_handled_total{method="Search"}.
  Prometheus is stopped by pid (harness.Proc) on success and failure.
- The docs: the metric names in docs/operations.md's "Metrics" table are
  exactly the families a node and a router export (both directions).

Skips (with the reason) only when promtool or prometheus is not installed
(Debian package prometheus; `make deps`).
"""
import json
import os
import re
import subprocess
import time
import unittest
import urllib.parse

import harness
import router_harness as rh
import vsdata

PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"
DOCS = os.path.join(harness.REPO, "docs", "operations.md")
DIM = 8
SHARDS = 2
SVC = "vecshard.v1.VecShard"
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


def http_arg():
    return ["--http", "127.0.0.1:%d" % harness.free_ports(1)[0]]


def promtool_check(text):
    """(exit status, output) of `promtool check metrics` over text."""
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def docs_metric_names():
    """Metric names in the first column of the table under "## Metrics"."""
    with open(DOCS, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^## Metrics\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if m is None:
        raise AssertionError("docs/operations.md has no \"## Metrics\" section")
    names = []
    for line in m.group(1).splitlines():
        cell = re.match(r"^\|\s*`(vecshard_[a-z0-9_]+)`\s*\|", line)
        if cell:
            names.append(cell.group(1))
    return names


class Observability(harness.ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = c = rh.RouterCluster(nodes=0, routers=0)
        c.start()
        try:
            for _ in range(2):
                c.add_node(extra_args=c.node_args + http_arg())
            r = rh.Router(c, "router-0", extra_args=http_arg())
            c.routers.append(r)
            r.start()
            cls.router = r
            cls.stub = r.stub()
            cls.stub.CreateCollection(rh.create_request("obs", DIM, shards=SHARDS,
                                                        replication_factor=2), timeout=30)
            cls.base, cls.queries = vsdata.clustered(300, DIM, clusters=4, seed=3, n_queries=5)
            rh.upsert_all(cls.stub, "obs", list(range(300)), cls.base, batch=100)
            for q in cls.queries:
                cls.stub.Search(rh.search_request("obs", [q], k=5), timeout=10)
        except BaseException:
            c.print_tails()
            c.close(check=False)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def servers(self):
        return list(self.cluster.nodes) + list(self.cluster.routers)

    def search(self, n=1):
        for i in range(n):
            self.stub.Search(rh.search_request("obs", [self.queries[i % len(self.queries)]], k=5),
                             timeout=10)

    def wait_ready(self, server, timeout=30):
        def ready():
            return server.http_get("/readyz")[0] == 200
        rh.wait_until(ready, timeout, "%s /readyz 200" % server.name)

    # ------------------------------------------------------------ promtool
    @unittest.skipUnless(os.access(PROMTOOL, os.X_OK), PROMTOOL + " not installed (make deps)")
    def test_promtool_accepts_every_endpoint(self):
        self.search(3)
        for s in self.servers():
            status, body, ctype = harness.http_get(s.http_addr, "/metrics")
            self.assertEqual(status, 200, s.name)
            self.assertEqual(ctype, TEXT_FORMAT, s.name)
            self.assertIn('vecshard_build_info{program="vecshard-%s"' %
                          ("router" if s in self.cluster.routers else "node"), body)
            rc, out = promtool_check(body)
            self.assertEqual((rc, out), (0, ""), "%s: promtool check metrics:\n%s" % (s.name, out))

    # ------------------------------------------------------------ probes
    def test_probes_ready_cluster(self):
        for s in self.servers():
            self.wait_ready(s)
            self.assertEqual(s.http_get("/healthz")[:2], (200, "ok\n"), s.name)
            self.assertEqual(s.http_get("/readyz")[:2], (200, "ok\n"), s.name)
            self.assertEqual(s.http_get("/nope")[0], 404, s.name)

    def test_probes_without_etcd(self):
        """A node and a router pointed at a dead etcd: alive, not ready."""
        c = self.cluster
        dead = "http://127.0.0.1:%d" % harness.free_ports(1)[0]
        n = c.add_node("node-noetcd", start=False,
                       extra_args=http_arg() + ["--etcd", dead])
        r = rh.Router(c, "router-noetcd", extra_args=http_arg() + ["--etcd", dead])
        c.routers.append(r)
        try:
            n.start(registered=False)
            r.start(want_nodes=0)
            for s in (n, r):
                rh.wait_until(lambda: s.http_get("/healthz")[0] == 200, 10,
                              "%s /healthz 200" % s.name)
                status, body = s.http_get("/readyz")
                self.assertEqual(status, 503, "%s: %s" % (s.name, body))
                self.assertTrue(body.endswith("\n") and body.count("\n") == 1, body)
            self.assertIn("not registered in etcd", n.http_get("/readyz")[1])
            self.assertIn("no routing table yet", r.http_get("/readyz")[1])
        finally:
            r.stop()
            n.stop()
            c.routers.remove(r)
            c.nodes.remove(n)

    # ------------------------------------------------------------ Prometheus
    @unittest.skipUnless(os.access(PROMETHEUS, os.X_OK), PROMETHEUS + " not installed (make deps)")
    def test_prometheus_scrapes_the_cluster(self):
        c = self.cluster
        targets = {s.name: s.http_addr for s in self.servers()}
        port = harness.free_ports(1)[0]
        root = os.path.join(c.root, "prometheus")
        os.makedirs(root, exist_ok=True)
        cfg = os.path.join(root, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n")
            for name, addr in sorted(targets.items()):
                f.write("  - job_name: %s\n    static_configs:\n      - targets: ['%s']\n" %
                        (name, addr))
        proc = harness.Proc("prometheus", os.path.join(c.root, "prometheus.log"))
        api = "127.0.0.1:%d" % port
        proc.spawn([PROMETHEUS, "--config.file", cfg, "--storage.tsdb.path",
                    os.path.join(root, "data"), "--web.listen-address", api,
                    "--log.level", "warn"])
        try:
            def get(path, **params):
                q = "?" + urllib.parse.urlencode(params) if params else ""
                try:
                    status, body, _ = harness.http_get(api, path + q)
                except OSError:
                    return None
                return json.loads(body) if status == 200 else None

            def all_up():
                self.assertTrue(proc.alive(), "prometheus exited:\n" + proc.tail())
                t = get("/api/v1/targets")
                if t is None:
                    return False
                active = t["data"]["activeTargets"]
                up = {a["labels"]["job"] for a in active if a["health"] == "up"}
                return up == set(targets)
            rh.wait_until(all_up, 60, "every target healthy in /api/v1/targets")

            def up_is_1():
                r = get("/api/v1/query", query="up")
                if r is None:
                    return False
                vals = {s["metric"]["job"]: s["value"][1] for s in r["data"]["result"]}
                return vals == {name: "1" for name in targets}
            rh.wait_until(up_is_1, 30, "up == 1 for every target")

            query = ('sum(increase(vecshard_grpc_server_handled_total{service="%s",'
                     'method="Search",job="router-0"}[10s]))' % SVC)

            def searches_seen():
                self.search(2)  # keep the counter moving between scrapes
                r = get("/api/v1/query", query=query)
                res = r["data"]["result"] if r is not None else []
                return bool(res) and float(res[0]["value"][1]) > 0
            rh.wait_until(searches_seen, 60, "searches in increase() of the request counter",
                          interval=0.5)
        finally:
            rc = proc.stop()
            self.assertIn(rc, (0, None), "prometheus exit status; log:\n" + proc.tail())

    # ------------------------------------------------------------ docs
    def test_docs_table_matches_export(self):
        self.search(2)
        exported = set()
        for s in self.servers():
            exported |= set(s.metrics().families)
        listed = docs_metric_names()
        self.assertEqual(len(listed), len(set(listed)), "a name is listed twice in the table")
        missing = sorted(exported - set(listed))
        stale = sorted(set(listed) - exported)
        self.assertEqual((missing, stale), ([], []),
                         "docs/operations.md \"Metrics\": not documented %s; documented but "
                         "not exported %s" % (missing, stale))


if __name__ == "__main__":
    unittest.main()
