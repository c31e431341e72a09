"""Restart of a node, as an operator sees it (issue 7, findings 3 and 8).

- A clean SIGTERM snapshots every replica with writes no snapshot holds: the
  snapshot file carries the last LSN, and the restart replays no WAL record
  and serves the exact data.
- While replicas load, the node is already up: Health/Check answers
  NOT_SERVING, ShardStatus lists replicas still loading as LOADING, a search
  of one answers UNAVAILABLE for that shard; then SERVING and READY with the
  exact counts.
- A byte flipped in the middle of a replica's WAL (the node stopped) does not
  cut acknowledged records: the node starts, its other replica is READY, the
  damaged one is not READY and refuses writes, the log names the file and
  offset, and every WAL file is byte-identical afterwards.
- A stop signal while replicas load: one lets the load finish and shuts
  down without registering (shutdown snapshots taken); a second exits at once.
"""
import glob
import hashlib
import os
import re
import signal
import time
import unittest

import grpc
import numpy as np

import harness
from harness import READY, shard_node_pb2
from grpc_health.v1 import health_pb2

# Snapshots off (except where a test turns them on): the WAL is the only copy.
NO_SNAPSHOTS = ["--snapshot-wal-bytes", "1024GiB", "--snapshot-wal-records", "0",
                "--snapshot-max-age-s", "0", "--shutdown-snapshot-timeout-ms", "0"]
LOADING = shard_node_pb2.REPLICA_STATE_LOADING


def vectors(seed, n, dim):
    return np.random.default_rng(seed).random((n, dim), dtype=np.float32)


def write_points(node, coll, shard, ids, vecs, batch=500):
    """Writes ids/vecs to (coll, shard) in batches; returns the last LSN."""
    stub = node.stub()
    lsn = 0
    for lo in range(0, len(ids), batch):
        r = stub.Write(harness.write_request(coll, shard, 1, harness.points(
            ids[lo:lo + batch], vecs[lo:lo + batch],
            [b"p%d" % i for i in ids[lo:lo + batch]])), timeout=60)
        lsn = r.lsn
    return lsn


def wal_digest(replica_dir):
    """{file name: sha256} of every WAL segment of a replica folder."""
    out = {}
    for p in sorted(glob.glob(os.path.join(replica_dir, "wal-*.log"))):
        with open(p, "rb") as f:
            out[os.path.basename(p)] = hashlib.sha256(f.read()).hexdigest()
    return out


class NodeRestart(harness.ClusterTestCase):
    def start_cluster(self, node_args):
        self.cluster = harness.Cluster(nodes=0, lease_ttl=3, node_args=node_args).start()
        self.addCleanup(self.cluster.close)
        return self.cluster

    def check_exact(self, node, coll, shard, ids, vecs):
        """Every id is there with its exact vector and payload."""
        stub = node.stub()
        for lo in range(0, len(ids), 2000):
            chunk = [int(i) for i in ids[lo:lo + 2000]]
            r = stub.Get(shard_node_pb2.NodeGetRequest(
                collection=coll, shard=shard, ids=chunk, with_vector=True, with_payload=True),
                timeout=30)
            self.assertEqual(list(r.missing_ids), [])
            self.assertEqual([p.id for p in r.points], chunk)
            for p in r.points:
                k = ids.index(p.id) if isinstance(ids, list) else int(p.id - ids[0])
                self.assertTrue(np.array_equal(np.array(p.vector, dtype=np.float32), vecs[k]),
                                "vector of id %d differs" % p.id)
                self.assertEqual(p.payload, b"p%d" % p.id)

    def log_text(self, node):
        with open(node.proc.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_log(self, node, text, before, timeout=30):
        """Polls until node's log holds text more than `before` times."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_text(node).count(text) > before:
                return
            time.sleep(0.01)
        self.fail("%r never appeared in the log" % text)

    def wait_not_serving(self, node, timeout=60):
        """Polls until Health/Check answers NOT_SERVING (replicas loading)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assertTrue(node.proc.alive(), node.proc.tail())
            if node._port_open() and node.health() == health_pb2.HealthCheckResponse.NOT_SERVING:
                return
            time.sleep(0.01)
        self.fail("Health/Check never answered NOT_SERVING")

    def test_sigterm_snapshots_every_replica(self):
        c = self.start_cluster(["--snapshot-wal-bytes", "1024GiB", "--snapshot-wal-records", "0",
                                "--snapshot-max-age-s", "0"])
        node = c.add_node("node-0")
        c.create_collection("snap", dim=16, shards=2, placement=[["node-0"], ["node-0"]])
        c.wait_shards(node, "snap", [0, 1])
        ids0, ids1 = list(range(0, 3000)), list(range(10000, 10700))
        v0, v1 = vectors(1, 3000, 16), vectors(2, 700, 16)
        lsn0 = write_points(node, "snap", 0, ids0, v0, batch=100)   # 30 records
        lsn1 = write_points(node, "snap", 1, ids1, v1, batch=100)   # 7 records
        self.assertEqual((lsn0, lsn1), (30, 7))
        st = {s.shard: s for s in node.shard_status("snap")}
        self.assertEqual((st[0].snapshot_lsn, st[1].snapshot_lsn), (0, 0))

        self.assertEqual(node.stop(), 0)
        for shard, lsn in ((0, 30), (1, 7)):
            d = os.path.join(node.data_dir, "snap", str(shard))
            snaps = sorted(glob.glob(os.path.join(d, "snapshot-*.vsx")))
            self.assertEqual([os.path.basename(p) for p in snaps],
                             ["snapshot-%020d.vsx" % lsn])
        log = self.log_text(node)
        self.assertEqual(len(re.findall(r'msg="snapshot on shutdown" collection=snap', log)), 2)
        self.assertIn("shutdown snapshots\" taken=2 failed=0 skipped=0", log)

        node.start()
        st = {s.shard: s for s in c.wait_shards(node, "snap", [0, 1])}
        self.assertEqual((st[0].lsn, st[0].snapshot_lsn, st[0].count), (30, 30, 3000))
        self.assertEqual((st[1].lsn, st[1].snapshot_lsn, st[1].count), (7, 7, 700))
        log = self.log_text(node)
        opened = re.findall(r'msg="opened replica" collection=snap shard=(\d) lsn=(\d+) '
                            r'count=(\d+) snapshot_lsn=(\d+) replayed=(\d+)', log)
        self.assertEqual(sorted(opened[-2:]), [("0", "30", "3000", "30", "0"),
                                               ("1", "7", "700", "7", "0")])
        self.check_exact(node, "snap", 0, ids0, v0)
        self.check_exact(node, "snap", 1, ids1, v1)
        # Writes continue after the snapshot's LSN.
        r = node.stub().Write(harness.write_request("snap", 1, 1, harness.points(
            [99999], [v1[0]], [b"p99999"])), timeout=10)
        self.assertEqual(r.lsn, 8)

    def test_loading_is_visible(self):
        c = self.start_cluster(NO_SNAPSHOTS + ["--load-threads", "1"])
        node = c.add_node("node-0")
        shards, per, dim = 4, 12000, 32
        c.create_collection("big", dim=dim, shards=shards, ef_construction=100,
                            placement=[["node-0"]] * shards)
        c.wait_shards(node, "big", list(range(shards)))
        data = {}
        for s in range(shards):
            ids = list(range(s * 100000, s * 100000 + per))
            data[s] = (ids, vectors(10 + s, per, dim))
            write_points(node, "big", s, ids, data[s][1], batch=2000)
        node.kill9()  # no shutdown snapshot either way: the whole WAL replays

        node.proc.spawn(node.argv())
        seen_not_serving = seen_loading = seen_unavailable = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            self.assertTrue(node.proc.alive(), node.proc.tail())
            if not node._port_open():
                time.sleep(0.01)
                continue
            h = node.health()
            if h == health_pb2.HealthCheckResponse.NOT_SERVING:
                seen_not_serving = True
                try:
                    st = list(node.shard_status("big", timeout=2))
                    loading = [s.shard for s in st if s.state == LOADING]
                    if loading:
                        # Every replica found on disk is listed from the start.
                        self.assertEqual(sorted(s.shard for s in st), list(range(shards)))
                        seen_loading = True
                        r = node.stub().Search(harness.search_request(
                            "big", [data[loading[-1]][1][0]], k=1, shards=[loading[-1]]),
                            timeout=5)
                        if r.shards[0].code == grpc.StatusCode.UNAVAILABLE.value[0]:
                            self.assertIn("still loading", r.shards[0].error)
                            seen_unavailable = True
                except grpc.RpcError:
                    pass
            elif h == health_pb2.HealthCheckResponse.SERVING:
                break
            time.sleep(0.01)
        self.assertTrue(seen_not_serving, "Health never answered NOT_SERVING during the load")
        self.assertTrue(seen_loading, "ShardStatus never listed a LOADING replica")
        self.assertTrue(seen_unavailable, "a search of a loading replica was not UNAVAILABLE")
        st = c.wait_shards(node, "big", list(range(shards)))
        self.assertEqual([s.count for s in st], [per] * shards)
        self.assertEqual([s.lsn for s in st], [per // 2000] * shards)
        self.assertIn('msg="serving" replicas=4', self.log_text(node))
        for s in range(shards):
            self.check_exact(node, "big", s, data[s][0][:500], data[s][1][:500])

        # Stop signals during the load: a second one exits at once (status 1) ...
        node.kill9()
        node.proc.spawn(node.argv())
        self.wait_not_serving(node)
        before = self.log_text(node).count('msg="shutting down"')
        os.kill(node.proc.pid, signal.SIGTERM)
        # Signals do not queue: the second is sent once the first was taken.
        self.wait_log(node, 'msg="shutting down"', before)
        os.kill(node.proc.pid, signal.SIGTERM)
        self.assertEqual(node.proc.popen.wait(timeout=60), 1)
        self.assertIn("second signal during shutdown; exiting now", self.log_text(node))
        # ... one lets the load finish, then the node shuts down without registering
        # (with shutdown snapshots on for this run).
        node.extra_args = NO_SNAPSHOTS[:6] + ["--load-threads", "1"]
        node.proc.spawn(node.argv())
        self.wait_not_serving(node)
        os.kill(node.proc.pid, signal.SIGTERM)
        self.assertEqual(node.proc.popen.wait(timeout=120), 0)
        log = self.log_text(node)
        self.assertIn('msg="stop signal while loading; not registering" replicas=4', log)
        self.assertIn('msg="shutdown snapshots" taken=4 failed=0 skipped=0', log)
        node.proc._forget()
        node.close_channel()
        node.start()
        st = c.wait_shards(node, "big", list(range(shards)))
        self.assertEqual([(s.count, s.snapshot_lsn) for s in st], [(per, per // 2000)] * shards)

    def test_mid_wal_corruption_is_not_cut(self):
        c = self.start_cluster(NO_SNAPSHOTS)
        node = c.add_node("node-0")
        c.create_collection("dmg", dim=8, shards=2, placement=[["node-0"], ["node-0"]])
        c.wait_shards(node, "dmg", [0, 1])
        ids, vecs = list(range(2000)), vectors(7, 2000, 8)
        self.assertEqual(write_points(node, "dmg", 0, ids, vecs, batch=20), 100)
        self.assertEqual(write_points(node, "dmg", 1, ids, vecs, batch=20), 100)
        self.assertEqual(node.stop(), 0)

        d0 = os.path.join(node.data_dir, "dmg", "0")
        segs = sorted(glob.glob(os.path.join(d0, "wal-*.log")))
        self.assertEqual(len(segs), 1)
        size = os.path.getsize(segs[0])
        with open(segs[0], "r+b") as f:  # one byte in the middle: ~50 acknowledged records follow
            f.seek(size // 2)
            b = f.read(1)
            f.seek(size // 2)
            f.write(bytes([b[0] ^ 0x10]))
        before = wal_digest(d0)

        node.start()
        # The healthy replica is READY; the damaged one is absent or in a not-READY state.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            st = {s.shard: s for s in node.shard_status("dmg")}
            if 1 in st and st[1].state == READY:
                break
            time.sleep(0.05)
        st = {s.shard: s for s in node.shard_status("dmg")}
        self.assertEqual(st[1].state, READY)
        self.assertEqual((st[1].lsn, st[1].count), (100, 2000))
        self.assertTrue(0 not in st or st[0].state != READY,
                        "the damaged replica is READY: %r" % st.get(0))
        with self.assertRaises(grpc.RpcError) as cm:
            node.stub().Write(harness.write_request("dmg", 0, 1, harness.points(
                [5000], [vecs[0]])), timeout=10)
        self.assertNotEqual(cm.exception.code(), grpc.StatusCode.OK)
        log = self.log_text(node)
        name = os.path.basename(segs[0])
        m = re.search(r"wal %s offset (\d+): damaged record \([^)]*\) followed by valid records "
                      r"up to lsn 100; refusing to truncate acknowledged writes" % name, log)
        self.assertIsNotNone(m, "no message naming the file and offset in the log")
        self.assertTrue(24 < int(m.group(1)) <= size // 2)
        self.check_exact(node, "dmg", 1, ids, vecs)
        self.assertEqual(node.stop(), 0)
        self.assertEqual(wal_digest(d0), before, "the damaged WAL was changed")


if __name__ == "__main__":
    unittest.main()
