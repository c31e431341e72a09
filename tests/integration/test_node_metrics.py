"""vecshard-node's --http endpoint against a real node and etcd: /metrics
shows the replicas' exact counts and states (docs/operations.md, "Metrics"),
/readyz follows registration and replica states, /healthz the gRPC server,
and the --slow-query-ms line carries the caller's x-request-id. With R = 2
the primary reports both copies in sync and the backup's lag reaching 0."""
import shutil
import subprocess
import time
import unittest

import grpc
import numpy as np

import harness
from harness import shard_node_pb2

DIM = 8
DAMAGED = shard_node_pb2.REPLICA_STATE_DAMAGED


def poll(fn, timeout=20, what="condition"):
    """Calls fn until it returns a true value (returned) or timeout passes (AssertionError
    with the last value)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError("%s not reached within %.0f s; last: %r" % (what, timeout, last))


def vectors(n, seed=1):
    return np.random.default_rng(seed).random((n, DIM), dtype=np.float32)


class NodeMetrics(harness.ClusterTestCase):
    def setUp(self):
        self.cluster = harness.Cluster(nodes=0, lease_ttl=3).start()
        self.addCleanup(self.cluster.close)

    def node(self, *args, **kw):
        kw.setdefault("http", True)
        return self.cluster.add_node(extra_args=list(args), **kw)

    def test_replica_metrics_after_writes_and_snapshot(self):
        # A snapshot once 3 records are in the WAL: the 3rd write triggers it.
        node = self.node("--snapshot-wal-records", "3")
        c = self.cluster
        c.create_collection("m", dim=DIM, epoch=2)
        c.wait_shards(node, "m", [0])
        stub = node.stub()
        base = vectors(150)
        stub.Write(harness.write_request("m", 0, 2, harness.points(range(1, 101), base)),
                   timeout=10)
        stub.Write(harness.write_request("m", 0, 2, deletes=[5, 6]), timeout=10)
        m = node.metrics()
        lab = frozenset({"collection": "m", "shard": "0"}.items())

        def get(name, **extra):
            return m.get((name, lab | frozenset(extra.items())))
        self.assertEqual(get("vecshard_replica_points"), 98)
        self.assertEqual(get("vecshard_replica_lsn"), 2)
        self.assertEqual(get("vecshard_replica_epoch"), 2)
        self.assertEqual(get("vecshard_replica_wal_since_snapshot_records"), 2)
        self.assertGreater(get("vecshard_replica_wal_since_snapshot_bytes"), 100 * DIM * 4)
        self.assertEqual(get("vecshard_replica_snapshots_total"), 0)
        self.assertIsNone(get("vecshard_replica_snapshot_age_seconds"))  # no snapshot yet
        self.assertEqual(get("vecshard_replica_state", state="ready"), 1)
        for other in ("loading", "recovering", "damaged"):
            self.assertEqual(get("vecshard_replica_state", state=other), 0)
        self.assertEqual(get("vecshard_replica_role", role="primary"), 1)
        self.assertEqual(get("vecshard_replica_role", role="backup"), 0)
        self.assertEqual(get("vecshard_replica_in_sync"), 1)
        self.assertEqual(get("vecshard_shard_in_sync_replicas"), 1)
        self.assertEqual(m[("vecshard_points_upserted_total",
                            frozenset({"collection": "m"}.items()))], 100)
        self.assertEqual(m[("vecshard_points_deleted_total",
                            frozenset({"collection": "m"}.items()))], 2)
        self.assertEqual(m[("vecshard_etcd_registered", frozenset())], 1)
        self.assertEqual(m[("vecshard_etcd_lease_live", frozenset())], 1)
        self.assertEqual(m[("vecshard_etcd_reachable", frozenset())], 1)
        # The same bytes ShardStatus reports.
        st = node.shard_status("m")[0]
        self.assertEqual(get("vecshard_replica_disk_bytes"), st.disk_bytes)

        # The third record triggers the background snapshot: the WAL since it is back to 0.
        stub.Write(harness.write_request("m", 0, 2, harness.points(range(101, 151), base[100:])),
                   timeout=10)

        def snapshotted():
            now = node.metrics()
            ok = (now.get(("vecshard_replica_snapshots_total", lab)) == 1 and
                  now.get(("vecshard_replica_wal_since_snapshot_records", lab)) == 0)
            return now if ok else None
        m = poll(snapshotted, what="snapshot in /metrics")
        self.assertEqual(m[("vecshard_replica_points", lab)], 148)
        self.assertEqual(m[("vecshard_replica_lsn", lab)], 3)
        self.assertEqual(m[("vecshard_replica_wal_since_snapshot_bytes", lab)], 0)
        age = m[("vecshard_replica_snapshot_age_seconds", lab)]
        self.assertGreaterEqual(age, 0)
        self.assertLess(age, 30)
        self.assertEqual(m[("vecshard_replica_disk_bytes", lab)], node.shard_status("m")[0].disk_bytes)

        # Searches count once per query and shard; the rpc layer counts the call.
        stub.Search(harness.search_request("m", base[:3], k=5), timeout=10)
        m = node.metrics()
        self.assertEqual(m[("vecshard_search_queries_total",
                            frozenset({"collection": "m"}.items()))], 3)
        self.assertEqual(m[("vecshard_grpc_server_handled_total", frozenset({
            "service": "vecshard.v1.ShardNode", "method": "Search", "code": "OK"}.items()))], 1)

        if shutil.which("promtool"):
            _, text = node.http_get("/metrics")
            r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                               capture_output=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())

    def test_families_declared_without_replicas(self):
        node = self.node()
        _, text = node.http_get("/metrics")
        for fam in ("vecshard_replica_points", "vecshard_replica_state", "vecshard_replica_role",
                    "vecshard_shard_in_sync_replicas", "vecshard_replication_lag_records",
                    "vecshard_replica_snapshot_age_seconds", "vecshard_transfers_in_flight"):
            self.assertIn("# TYPE %s gauge\n" % fam, text)
        self.assertNotIn("vecshard_replica_points{", text)
        # Ready once the shard map read after the registration is applied.
        poll(lambda: node.http_get("/readyz") == (200, "ok\n"), what="readyz 200")
        self.assertEqual(node.http_get("/healthz"), (200, "ok\n"))

    def test_readyz_waits_for_registration(self):
        c = self.cluster
        c.etcd.stop()
        node = self.node(start=False)
        node.start(registered=False)
        self.assertEqual(node.http_get("/healthz"), (200, "ok\n"))
        code, body = node.http_get("/readyz")
        self.assertEqual(code, 503)
        self.assertIn("not registered in etcd", body)
        self.assertEqual(node.metric("vecshard_etcd_registered"), 0)
        c.etcd.start_again()
        poll(lambda: node.http_get("/readyz")[0] == 200, what="readyz 200 after etcd is back")
        self.assertEqual(node.metric("vecshard_etcd_registered"), 1)
        self.assertEqual(node.metric("vecshard_etcd_reachable"), 1)

    def test_readyz_names_a_damaged_replica(self):
        c = self.cluster
        # A collection older than the node's data dir whose files are missing (a replaced
        # disk): its replica opens DAMAGED instead of empty (docs/node.md).
        c.create_collection("d", dim=DIM)
        node = self.node(start=False)
        node.start()
        c.wait_shards(node, "d", [0], state=DAMAGED)
        code, body = node.http_get("/readyz")
        self.assertEqual(code, 503)
        self.assertTrue(body.startswith("replica d/0 is DAMAGED"), body)
        self.assertEqual(node.http_get("/healthz"), (200, "ok\n"))
        lab = {"collection": "d", "shard": "0"}
        self.assertEqual(node.metric("vecshard_replica_state", state="damaged", **lab), 1)
        self.assertEqual(node.metric("vecshard_replica_state", state="ready", **lab), 0)
        self.assertIsNone(node.metric("vecshard_replica_points", **lab))
        # The operator accepts it as empty: ready again.
        self.assertEqual(node.stop(), 0)
        node.extra_args += ["--reset-replica", "d/0"]
        node.start()
        c.wait_shards(node, "d", [0])
        poll(lambda: node.http_get("/readyz") == (200, "ok\n"), what="readyz 200 after reset")
        self.assertEqual(node.metric("vecshard_replica_state", state="ready", **lab), 1)
        self.assertEqual(node.metric("vecshard_replica_points", **lab), 0)

    def test_slow_request_line_carries_the_request_id(self):
        c = self.cluster
        node = self.node("--slow-query-ms", "1")
        c.create_collection("s", dim=DIM, ef_construction=64)
        c.wait_shards(node, "s", [0])
        base = vectors(3000, seed=3)
        stub = node.stub()
        for lo in range(0, 3000, 1000):
            stub.Write(harness.write_request(
                "s", 0, 1, harness.points(range(lo + 1, lo + 1001), base[lo:lo + 1000])),
                timeout=30)
        # 300 queries at ef 400 take well over 1 ms on any machine.
        stub.Search(harness.search_request("s", base[:300], k=10, ef=400), timeout=60,
                    metadata=(("x-request-id", "it-rid-42"),))

        def slow_line():
            with open(node.proc.log_path) as f:
                return [ln for ln in f if 'msg="slow request"' in ln and "method=Search" in ln]
        lines = poll(slow_line, what="slow request line")
        self.assertEqual(len(lines), 1, lines)
        ln = lines[0]
        for part in ("level=warn", "request_id=it-rid-42", "collection=s", "shards=0", "k=10",
                     "ef=400", "code=OK", "duration_ms="):
            self.assertIn(part, ln)
        # Calls without the metadata carry no request id; a bad one (spaces) is dropped.
        stub.Search(harness.search_request("s", base[:300], k=10, ef=400), timeout=60,
                    metadata=(("x-request-id", "has space"),))
        lines = poll(lambda: len(slow_line()) == 2 and slow_line(), what="second slow line")
        self.assertNotIn("request_id=", lines[1])


class ReplicatedMetrics(harness.ClusterTestCase):
    def setUp(self):
        self.cluster = harness.Cluster(nodes=0, lease_ttl=3).start()
        self.addCleanup(self.cluster.close)

    def test_primary_reports_in_sync_and_lag(self):
        c = self.cluster
        p = c.add_node("node-0", http=True)
        b = c.add_node("node-1", http=True)
        c.create_collection("r", dim=DIM, replication_factor=2, placement=[["node-0", "node-1"]])
        c.wait_shards(p, "r", [0])
        c.wait_shards(b, "r", [0])
        p.stub().Write(harness.write_request("r", 0, 1, harness.points(range(1, 51),
                                                                       vectors(50))),
                       timeout=10)
        lab = {"collection": "r", "shard": "0"}
        self.assertEqual(p.metric("vecshard_shard_in_sync_replicas", **lab), 2)
        self.assertEqual(p.metric("vecshard_shard_replicas", **lab), 2)
        # The write was acknowledged by the backup: its lag is 0 and it acked LSN 1.
        poll(lambda: p.metric("vecshard_replication_lag_records", node="node-1", **lab) == 0,
             what="lag 0")
        self.assertEqual(p.metric("vecshard_replication_acked_lsn", node="node-1", **lab), 1)
        self.assertEqual(b.metric("vecshard_replica_role", role="backup", **lab), 1)
        self.assertEqual(b.metric("vecshard_replica_points", **lab), 50)
        self.assertEqual(b.metric("vecshard_replica_in_sync", **lab), 1)
        # Shard-level families are the primary's: the backup declares them without samples.
        self.assertIsNone(b.metric("vecshard_shard_in_sync_replicas", **lab))
        self.assertEqual(p.metric("vecshard_replication_in_sync_removals_total"), 0)


if __name__ == "__main__":
    unittest.main()
