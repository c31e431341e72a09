"""Node-side replication (docs/replication.md §3-§5, §8) on real etcd and
vecshard-node processes, R = 2 (node-0 primary, node-1 backup), no router:
writes acknowledged by the primary are on the backup byte for byte; a
killed backup leaves in_sync by CAS and writes continue, and once restarted
it catches up from its LSN and is added back; a Replicate at an older epoch
is refused FAILED_PRECONDITION; a gap answers GAP with `have`; a deposed
primary's unacknowledged tail on the backup is truncated when it rejoins; a
paused primary (SIGSTOP, promotion, SIGCONT) acknowledges nothing after the
promotion and rejoins as a backup;
with etcd stopped writes continue, and a backup that dies meanwhile makes
writes fail UNAVAILABLE (never acknowledged on one copy)."""
import os
import signal
import threading
import time
import unittest

import grpc
import numpy as np

import harness
from harness import common_pb2, shard_node_pb2

DIM = 8
TTL = 3
COLL = "rep"
OK = shard_node_pb2.REPLICATE_RESULT_OK
GAP = shard_node_pb2.REPLICATE_RESULT_GAP


def vec(i):
    """The vector of point i (deterministic)."""
    return np.random.default_rng(i).random(DIM, dtype=np.float32)


def payload(i):
    return b"p-%d" % i


class Writer:
    """Writes one point per call to the primary, following vs-epoch; keeps every acked id."""

    def __init__(self, node, epoch=1):
        self.node = node
        self.epoch = epoch
        self.acked = []
        self.codes = {}

    def write(self, i, timeout=10):
        """One attempt; returns the status code (OK adds i to acked)."""
        req = harness.write_request(COLL, 0, self.epoch,
                                    harness.points([i], [vec(i)], [payload(i)]))
        try:
            r = self.node.stub().Write(req, timeout=timeout)
        except grpc.RpcError as e:
            md = dict(e.trailing_metadata() or ())
            if e.code() == grpc.StatusCode.FAILED_PRECONDITION and "vs-epoch" in md:
                self.epoch = int(md["vs-epoch"])
            self.codes[e.code()] = self.codes.get(e.code(), 0) + 1
            return e.code()
        self.epoch = max(self.epoch, r.epoch)
        self.acked.append(i)
        return grpc.StatusCode.OK

    def write_retrying(self, i, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.write(i) == grpc.StatusCode.OK:
                return
            time.sleep(0.05)
        raise AssertionError("write of %d not acknowledged within %.0f s (%r)" %
                             (i, timeout, self.codes))


class NodeReplication(harness.ClusterTestCase):
    def setUp(self):
        self.cluster = harness.Cluster(nodes=2, lease_ttl=TTL,
                                       node_args=["--replicate-timeout-ms", "1000"]).start()
        self.addCleanup(self.cluster.close)
        self.p, self.b = self.cluster.nodes
        self.cluster.create_collection(COLL, dim=DIM, ef_construction=32, replication_factor=2,
                                       placement=[["node-0", "node-1"]])
        for n in (self.p, self.b):
            self.cluster.wait_shards(n, COLL, [0])

    # --- helpers
    def entry(self):
        return self.cluster.etcd.get_json("%s/shards/%s/0" % (self.cluster.prefix, COLL))

    def status(self, node):
        (st,) = node.shard_status(COLL)
        return st

    def wait_until(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = pred()
                if last:
                    return last
            except grpc.RpcError as e:
                last = e
            time.sleep(0.05)
        self.fail("%s not reached within %.0f s (last: %r)" % (what, timeout, last))

    def assert_exact(self, node, ids, missing=()):
        """Get of ids from node returns exactly their vectors and payloads; `missing` are absent."""
        g = node.stub().Get(shard_node_pb2.NodeGetRequest(
            collection=COLL, shard=0, ids=list(ids) + list(missing), with_vector=True,
            with_payload=True), timeout=10)
        self.assertEqual(sorted(p.id for p in g.points), sorted(ids))
        self.assertEqual(sorted(g.missing_ids), sorted(missing))
        for p in g.points:
            self.assertTrue(np.array_equal(np.array(p.vector, dtype=np.float32), vec(p.id)), p.id)
            self.assertEqual(p.payload, payload(p.id))

    def replicate(self, node, epoch, prev_lsn, prev_epoch, records=(), primary="node-0"):
        return node.stub().Replicate(shard_node_pb2.ReplicateRequest(
            collection=COLL, shard=0, epoch=epoch, primary=primary, primary_addr=self.p.addr,
            prev_lsn=prev_lsn, prev_epoch=prev_epoch, records=list(records)), timeout=10)

    @staticmethod
    def record(lsn, epoch, i):
        batch = common_pb2.WriteBatch(upserts=harness.points([i], [vec(i)], [payload(i)]))
        return shard_node_pb2.WalRecord(lsn=lsn, epoch=epoch, batch=batch.SerializeToString())

    # --- tests
    def test_writes_reach_backup(self):
        w = Writer(self.p)
        for i in range(1, 61):
            self.assertEqual(w.write(i), grpc.StatusCode.OK)
        # Acknowledged means applied on the backup: no waiting needed.
        sb, sp = self.status(self.b), self.status(self.p)
        self.assertEqual((sb.lsn, sb.count), (60, 60))
        self.assertEqual((sp.lsn, sp.count), (60, 60))
        self.assertEqual(sb.last_epoch, 1)
        self.assertTrue(sb.in_sync)
        self.assertEqual(sb.role, shard_node_pb2.SHARD_ROLE_BACKUP)
        self.assert_exact(self.b, range(1, 61))
        (peer,) = sp.peers
        self.assertEqual((peer.node_id, peer.in_sync, peer.acked_lsn, peer.state),
                         ("node-1", True, 60, "in_sync"))
        self.assertEqual(self.entry()["epoch"], 1)

    def test_backup_killed_then_catches_up(self):
        w = Writer(self.p)
        for i in range(1, 21):
            self.assertEqual(w.write(i), grpc.StatusCode.OK)
        stop = threading.Event()

        def loop():
            i = 1000
            while not stop.is_set():
                w.write(i)
                i += 1
                time.sleep(0.01)

        t = threading.Thread(target=loop)
        t.start()
        try:
            self.wait_until(lambda: len(w.acked) >= 40, 10, "writes under load")
            self.b.kill9()
            n0 = len(w.acked)
            # Removed from in_sync by the primary's CAS, then writes go on.
            e = self.wait_until(lambda: self.entry()["in_sync"] == ["node-0"] and self.entry(),
                                10, "backup removed from in_sync")
            self.assertEqual(e["epoch"], 2)
            self.assertEqual(e["replicas"], ["node-0", "node-1"])
            self.assertEqual(e["recovering"], ["node-1"])
            self.wait_until(lambda: len(w.acked) >= n0 + 30, 10, "writes after the removal")
            n1 = len(w.acked)
            self.b.start()
            # Catches up from its LSN and is added back by the primary (epoch + 1).
            e = self.wait_until(lambda: sorted(self.entry()["in_sync"]) == ["node-0", "node-1"]
                                and self.entry(), 20, "backup back in in_sync")
            self.assertEqual(e["epoch"], 3)
            self.assertEqual(e["recovering"], [])
            self.wait_until(lambda: len(w.acked) >= n1 + 30, 10, "writes after the re-add")
        finally:
            stop.set()
            t.join()
        sp = self.status(self.p)
        sb = self.wait_until(lambda: self.status(self.b).lsn == sp.lsn and self.status(self.b),
                             10, "backup at the primary's LSN")
        self.assertEqual(sb.count, sp.count)
        self.assertEqual(sb.count, len(set(w.acked)))
        self.assertEqual(sb.transfers_completed, 0)  # incremental, not a full copy
        self.assertTrue(sb.in_sync)
        self.assert_exact(self.b, w.acked)
        self.assert_exact(self.p, w.acked)

    def test_older_epoch_refused(self):
        w = Writer(self.p)
        self.assertEqual(w.write(1), grpc.StatusCode.OK)
        self.cluster.set_shard(COLL, 0, 5, ["node-0", "node-1"])
        self.wait_until(lambda: self.status(self.b).epoch == 5, 10, "backup at epoch 5")
        with self.assertRaises(grpc.RpcError) as cm:
            self.replicate(self.b, 4, 1, 1, [self.record(2, 4, 2)])
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(dict(cm.exception.trailing_metadata())["vs-epoch"], "5")
        self.assertEqual(self.status(self.b).lsn, 1)
        self.assert_exact(self.b, [1], missing=[2])

    def test_gap_answers_have(self):
        w = Writer(self.p)
        for i in range(1, 6):
            self.assertEqual(w.write(i), grpc.StatusCode.OK)
        sb = self.status(self.b)
        e, le = sb.epoch, sb.last_epoch
        r = self.replicate(self.b, e, 9, le, [self.record(10, le, 10)])
        self.assertEqual(r.result, GAP)
        self.assertEqual(r.lsn_gap.have, 5)
        self.assertEqual(r.applied_lsn, 5)
        # A duplicate with its epoch is acknowledged without effect.
        r = self.replicate(self.b, e, 2, le, [self.record(3, le, 3)])
        self.assertEqual((r.result, r.applied_lsn), (OK, 5))
        self.assert_exact(self.b, range(1, 6), missing=[10])

    def test_divergent_tail_truncated_on_rejoin(self):
        w = Writer(self.p)
        for i in range(1, 11):
            self.assertEqual(w.write(i), grpc.StatusCode.OK)
        # The primary dies; before that it had forwarded three records it never acknowledged.
        self.p.kill9()
        sb = self.status(self.b)
        self.assertEqual((sb.epoch, sb.last_epoch), (1, 1))
        r = self.replicate(self.b, 1, 10, 1, [self.record(11 + k, 1, 9000 + k) for k in range(3)])
        self.assertEqual((r.result, r.applied_lsn), (OK, 13))
        # node-0 comes back as the primary of epoch 3 without those records, and writes at it.
        self.cluster.set_shard(COLL, 0, 3, ["node-0", "node-1"], in_sync=["node-0"],
                               recovering=["node-1"])
        self.p.start()
        w.epoch = 3
        self.wait_until(lambda: w.write(11) == grpc.StatusCode.OK, 20, "write at epoch 3")
        # The backup's records 11..13 (epoch 1) are cut (TRUNCATE after 10), then 11 resent.
        e = self.wait_until(lambda: sorted(self.entry()["in_sync"]) == ["node-0", "node-1"]
                            and self.entry(), 20, "backup back in in_sync")
        self.assertEqual(e["epoch"], 4)
        sb = self.wait_until(lambda: self.status(self.b).lsn == 11 and self.status(self.b), 10,
                             "backup at lsn 11")
        self.assertEqual(sb.truncations, 1)
        self.assertEqual(sb.last_epoch, 3)
        self.assertEqual(sb.count, 11)
        self.assert_exact(self.b, range(1, 12), missing=[9000, 9001, 9002])
        w.write_retrying(12)
        self.assertEqual(self.status(self.b).lsn, 12)

    def test_truncate_with_nothing_after_answers_without_reopening(self):
        # A TRUNCATE retried after its answer was lost must not reopen (replay) the replica again:
        # with a replay longer than the call's deadline that looped forever (make bench-repl).
        w = Writer(self.p)
        for i in range(1, 6):
            self.assertEqual(w.write(i), grpc.StatusCode.OK)
        self.assertEqual(self.status(self.b).lsn, 5)
        with open(self.b.proc.log_path, errors="replace") as f:
            opened = f.read().count('msg="opened replica"')
        r = self.b.stub().Replicate(shard_node_pb2.ReplicateRequest(
            collection=COLL, shard=0, epoch=1, primary="node-0", primary_addr=self.p.addr,
            action=shard_node_pb2.REPLICATE_ACTION_TRUNCATE, truncate_after=5), timeout=10)
        self.assertEqual((r.result, r.applied_lsn), (OK, 5))
        sb = self.status(self.b)
        self.assertEqual((sb.state, sb.truncations, sb.count), (harness.READY, 0, 5))
        with open(self.b.proc.log_path, errors="replace") as f:
            self.assertEqual(f.read().count('msg="opened replica"'), opened)
        w.write_retrying(6)
        self.assertEqual(self.status(self.b).lsn, 6)

    def test_paused_primary_acknowledges_nothing_after_promotion(self):
        w = Writer(self.p)
        for i in range(1, 21):
            self.assertEqual(w.write(i), grpc.StatusCode.OK)
        os.kill(self.p.proc.pid, signal.SIGSTOP)
        try:
            # The promotion a controller would make: node-1 primary at epoch 2, alone in in_sync.
            self.cluster.set_shard(COLL, 0, 2, ["node-1", "node-0"], in_sync=["node-1"],
                                   recovering=["node-0"])
            w1 = Writer(self.b, epoch=2)
            self.wait_until(lambda: w1.write(100) == grpc.StatusCode.OK, 10,
                            "write on the promoted primary")
            for i in range(101, 111):
                self.assertEqual(w1.write(i), grpc.StatusCode.OK)
        finally:
            os.kill(self.p.proc.pid, signal.SIGCONT)
        # The old primary, resumed, acknowledges nothing at its old epoch.
        old = Writer(self.p, epoch=1)
        for i in range(500, 510):
            old.epoch = 1
            self.assertNotEqual(old.write(i, timeout=10), grpc.StatusCode.OK)
        self.assertEqual(old.acked, [])
        # It rejoins as a backup: any tail it wrote meanwhile is cut, then it catches up.
        e = self.wait_until(lambda: sorted(self.entry()["in_sync"]) == ["node-0", "node-1"]
                            and self.entry(), 20, "old primary back in in_sync")
        self.assertEqual(e["primary"], "node-1")
        w1.write_retrying(111)
        sb = self.status(self.b)
        sp = self.wait_until(lambda: self.status(self.p).lsn == sb.lsn and self.status(self.p),
                             10, "old primary at the new primary's LSN")
        self.assertEqual(sp.role, shard_node_pb2.SHARD_ROLE_BACKUP)
        self.assertEqual(sp.count, sb.count)
        acked = w.acked + w1.acked
        self.assertEqual(sb.count, len(acked))
        self.assert_exact(self.p, acked, missing=range(500, 510))
        self.assert_exact(self.b, acked, missing=range(500, 510))

    def test_etcd_down_writes_continue_then_dead_backup_unavailable(self):
        w = Writer(self.p)
        for i in range(1, 11):
            self.assertEqual(w.write(i), grpc.StatusCode.OK)
        self.cluster.etcd.stop()
        # Past the lease TTL: both copies keep acknowledging.
        deadline = time.monotonic() + TTL + 3
        i = 100
        while time.monotonic() < deadline:
            self.assertEqual(w.write(i), grpc.StatusCode.OK, w.codes)
            i += 1
            time.sleep(0.02)
        self.assertEqual(self.status(self.b).lsn, self.status(self.p).lsn)
        # A backup dying while etcd is down cannot be removed: the writes fail UNAVAILABLE.
        self.b.kill9()
        lsn_before = self.status(self.p).lsn
        for k in range(3):
            self.assertEqual(w.write(5000 + k), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(w.acked.count(5000), 0)
        self.assertEqual(self.status(self.p).lsn, lsn_before + 3)  # in the WAL, unacknowledged
        # etcd back: the backup is removed by CAS and writes are acknowledged again.
        self.cluster.etcd.restart()
        w.write_retrying(6000)
        e = self.entry()
        self.assertEqual(e["in_sync"], ["node-0"])
        self.assertEqual(e["epoch"], 2)
        self.assert_exact(self.p, w.acked)


if __name__ == "__main__":
    unittest.main()
