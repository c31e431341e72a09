"""Shard transfer (docs/replication.md §6) and replica digests (§11) on real
nodes and etcd.

Sender: a grpcio client calls TransferShard on the primary directly and
checks the stream byte for byte: snapshot chunks of at most 1 MiB with
correct CRC-32C, contiguous offsets, equal to the snapshot file on disk;
then WAL records with consecutive LSNs after the snapshot, correct CRC-32C,
each the exact WriteBatch that was written at that LSN; then `end` with the
LSN and epoch the primary reported; exact status codes for a missing shard,
a stale epoch and a bad name.

Receiver: a backup is told to pull a copy (Replicate, action TRANSFER) and
ends with the same digest, LSN, count, vectors and payloads as the primary;
kill -9 of the receiver in the middle of a (rate-limited) transfer leaves no
staging folder after its restart and the replica is served only with its
old content; kill -9 of the sender in the middle fails the job cleanly (the
receiver goes back to READY with its old content, last error kept); in both
cases a second transfer then completes with equal digests.
"""
import os
import time
import unittest

import grpc
import numpy as np

import harness
from vecshard.v1 import common_pb2, shard_node_pb2

DIM = 128
COLL = "xfer"
CHUNK = 1 << 20
RECOVERING = shard_node_pb2.REPLICA_STATE_RECOVERING
TRANSFER = shard_node_pb2.REPLICATE_ACTION_TRANSFER
TRANSFERRING = shard_node_pb2.REPLICATE_RESULT_TRANSFERRING


def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_T = _crc32c_table()


def crc32c(data):
    """CRC-32C (Castagnoli), as common/util/crc32c.c computes it."""
    c = 0xFFFFFFFF
    t = _T
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def load(node, n, seed=7):
    """Writes n points in batches of 250 to shard 0 of COLL on node (the
    primary), with payloads, then deletes every 10th id and re-upserts every
    7th with a new vector. Returns ({id: (vector, payload)} of the live
    points, {lsn: WriteBatch written})."""
    rng = np.random.default_rng(seed)
    stub = node.stub()
    live, batches = {}, {}

    def write(batch):
        r = stub.Write(shard_node_pb2.WriteRequest(collection=COLL, shard=0, epoch=1, batch=batch),
                       timeout=30)
        batches[r.lsn] = batch

    for start in range(0, n, 250):
        ids = list(range(start, min(n, start + 250)))
        vecs = rng.random((len(ids), DIM), dtype=np.float32)
        pls = [b"payload-%d" % i * (1 + i % 3) for i in ids]
        write(common_pb2.WriteBatch(upserts=harness.points(ids, vecs, pls)))
        for i, v, p in zip(ids, vecs, pls):
            live[i] = (v, p)
    dels = list(range(0, n, 10))
    write(common_pb2.WriteBatch(deletes=dels))
    for i in dels:
        live.pop(i, None)
    again = list(range(3, n, 7))
    vecs = rng.random((len(again), DIM), dtype=np.float32)
    write(common_pb2.WriteBatch(upserts=harness.points(again, vecs, [b"re-%d" % i for i in again])))
    for i, v in zip(again, vecs):
        live[i] = (v, b"re-%d" % i)
    return live, batches


def status(node, digest=False):
    """node's ShardStatus of shard 0 of COLL."""
    r = node.stub().ShardStatus(shard_node_pb2.ShardStatusRequest(
        collection=COLL, shards=[0], with_digest=digest), timeout=30)
    return r.shards[0]


def start_transfer(backup, primary):
    r = backup.stub().Replicate(shard_node_pb2.ReplicateRequest(
        collection=COLL, shard=0, epoch=1, primary=primary.node_id, primary_addr=primary.addr,
        action=TRANSFER), timeout=10)
    return r


def wait_for(pred, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except grpc.RpcError as e:
            last = e
        else:
            if last:
                return last
        time.sleep(0.05)
    raise AssertionError("%s not reached within %.0f s; last: %r" % (what, timeout, last))


def check_points(test, node, live):
    """Every live point is on node with its exact vector and payload, and nothing else."""
    ids = sorted(live)
    stub = node.stub()
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        r = stub.Get(shard_node_pb2.NodeGetRequest(collection=COLL, shard=0, ids=part,
                                                   with_vector=True, with_payload=True),
                     timeout=30)
        test.assertEqual(list(r.missing_ids), [])
        got = {p.id: p for p in r.points}
        for i in part:
            test.assertEqual(got[i].payload, live[i][1], "payload of id %d" % i)
            np.testing.assert_array_equal(np.array(got[i].vector, dtype=np.float32), live[i][0])
    test.assertEqual(status(node).count, len(live))


def incoming(node):
    return os.path.join(node.data_dir, COLL, "0.incoming")


class TransferSender(harness.ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = harness.Cluster(
            nodes=2, node_args=["--snapshot-wal-records", "12"]).start()
        cls.primary, cls.backup = cls.cluster.nodes
        cls.cluster.create_collection(COLL, DIM, shards=1, replication_factor=2,
                                      placement=[["node-0", "node-1"]])
        for n in cls.cluster.nodes:
            cls.cluster.wait_shards(n, COLL, [0])
        cls.live, cls.batches = load(cls.primary, 4000)

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def test_stream_is_the_snapshot_then_the_wal(self):
        st = wait_for(lambda: (lambda s: s if s.snapshot_lsn > 0 else None)(status(self.primary)),
                      what="a snapshot on the primary")
        msgs = list(self.primary.stub().TransferShard(shard_node_pb2.TransferShardRequest(
            collection=COLL, shard=0, epoch=1, node_id="test"), timeout=60))
        kinds = [m.WhichOneof("body") for m in msgs]
        n_snap = kinds.count("snapshot")
        self.assertGreaterEqual(n_snap, 2, "a snapshot over 1 MiB comes in several chunks")
        self.assertEqual(kinds, ["snapshot"] * n_snap + ["record"] * (len(kinds) - n_snap - 1) +
                         ["end"])
        chunks = [m.snapshot for m in msgs[:n_snap]]
        lsn = chunks[0].lsn
        data = b""
        for c in chunks:
            self.assertLessEqual(len(c.data), CHUNK)
            self.assertEqual(c.offset, len(data))
            self.assertEqual(c.lsn, lsn)
            self.assertEqual(c.crc32c, crc32c(c.data))
            data += c.data
        self.assertEqual(len(data), chunks[0].total_size)
        path = os.path.join(self.primary.data_dir, COLL, "0", "snapshot-%020d.vsx" % lsn)
        if os.path.exists(path):  # a later snapshot may have pruned it since; the pin kept it
            with open(path, "rb") as f:
                self.assertEqual(f.read(), data)
        records = [m.record for m in msgs[n_snap:-1]]
        self.assertEqual([r.lsn for r in records], list(range(lsn + 1, lsn + 1 + len(records))))
        for r in records:
            self.assertEqual(r.crc32c, crc32c(r.batch))
            self.assertEqual(r.epoch, 1)
            self.assertEqual(common_pb2.WriteBatch.FromString(r.batch), self.batches[r.lsn])
        end = msgs[-1].end
        self.assertEqual(end.last_lsn, st.lsn)
        self.assertEqual(end.last_lsn, records[-1].lsn if records else lsn)
        self.assertEqual(end.last_epoch, 1)
        self.assertEqual(end.snapshot_bytes, len(data))
        self.assertEqual(end.records, len(records))

    def test_errors(self):
        stub = self.primary.stub()
        cases = [
            (dict(collection=COLL, shard=3, epoch=1), grpc.StatusCode.NOT_FOUND),
            (dict(collection="nope", shard=0, epoch=1), grpc.StatusCode.NOT_FOUND),
            (dict(collection="bad/name", shard=0, epoch=1), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(collection=COLL, shard=0, epoch=0), grpc.StatusCode.FAILED_PRECONDITION),
        ]
        for req, code in cases:
            with self.assertRaises(grpc.RpcError) as cm:
                list(stub.TransferShard(shard_node_pb2.TransferShardRequest(**req), timeout=10))
            self.assertEqual(cm.exception.code(), code, req)
            if code == grpc.StatusCode.FAILED_PRECONDITION:
                self.assertEqual(dict(cm.exception.trailing_metadata())["vs-epoch"], "1")

    def test_transfer_into_backup_gives_equal_digest(self):
        # Replication already gave the backup every record; a full copy replaces it by an
        # equal one (an empty receiver: test_repl_backup_kill, test_repl_transfer).
        prim = status(self.primary, digest=True)
        before = wait_for(lambda: (lambda s: s if s.lsn == prim.lsn else None)(
            status(self.backup, digest=True)), what="the backup caught up by replication")
        self.assertEqual(len(prim.digest), 32)
        self.assertEqual(before.digest, prim.digest)
        r = start_transfer(self.backup, self.primary)
        self.assertEqual(r.result, TRANSFERRING)
        done = wait_for(lambda: (lambda s: s if s.transfers_completed == 1 and
                                 s.state == harness.READY else None)(status(self.backup, True)),
                        what="the transfer installed")
        self.assertEqual(done.digest, prim.digest)
        self.assertEqual(done.lsn, prim.lsn)
        self.assertEqual(done.count, prim.count)
        self.assertEqual(done.recovery, "")
        check_points(self, self.backup, self.live)
        self.assertFalse(os.path.exists(incoming(self.backup)))
        trash = os.listdir(os.path.join(self.backup.data_dir, "trash.d"))
        self.assertEqual(len([t for t in trash if ".%s.0." % COLL in t]), 1, trash)
        # The copy survives a restart of the receiver (it is a complete replica on disk).
        self.backup.kill9()
        self.backup.start()
        self.cluster.wait_shards(self.backup, COLL, [0])
        self.assertEqual(status(self.backup, True).digest, prim.digest)


class TransferKill(harness.ClusterTestCase):
    """kill -9 of either side in the middle of a transfer slowed to 1 MB/s."""

    def setUp(self):
        self.cluster = harness.Cluster(nodes=2, node_args=[
            "--snapshot-wal-records", "12", "--transfer-max-mbps", "1"]).start()
        self.addCleanup(self.cluster.close)
        self.primary, self.backup = self.cluster.nodes
        self.cluster.create_collection(COLL, DIM, shards=1, replication_factor=2,
                                       placement=[["node-0", "node-1"]])
        for n in self.cluster.nodes:
            self.cluster.wait_shards(n, COLL, [0])
        self.live, _ = load(self.primary, 6000, seed=11)
        wait_for(lambda: status(self.primary).snapshot_lsn > 0, what="a snapshot")
        lsn = status(self.primary).lsn
        old = wait_for(lambda: (lambda s: s if s.lsn == lsn else None)(status(self.backup, True)),
                       what="the backup caught up by replication")
        self.old_digest, self.old_count, self.old_lsn = old.digest, old.count, old.lsn

    def start_and_wait_midway(self):
        start_transfer(self.backup, self.primary)
        st = wait_for(lambda: (lambda s: s if s.transfer_bytes_done > 0 else None)(
            status(self.backup)), what="bytes received")
        self.assertEqual(st.state, RECOVERING)
        self.assertEqual(st.recovery, "transferring")
        self.assertLess(st.transfer_bytes_done, st.transfer_bytes_total)
        with self.assertRaises(grpc.RpcError) as cm:
            self.backup.stub().Get(shard_node_pb2.NodeGetRequest(
                collection=COLL, shard=0, ids=[1]), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertIn("recovering", cm.exception.details())
        self.assertTrue(os.path.isdir(incoming(self.backup)))

    def complete_again(self):
        prim = status(self.primary, True)
        start_transfer(self.backup, self.primary)
        done = wait_for(lambda: (lambda s: s if s.transfers_completed >= 1 and
                                 s.state == harness.READY else None)(status(self.backup, True)),
                        timeout=120, what="the second transfer installed")
        self.assertEqual(done.digest, prim.digest)
        check_points(self, self.backup, self.live)
        self.assertFalse(os.path.exists(incoming(self.backup)))

    def test_receiver_killed_midway(self):
        self.start_and_wait_midway()
        self.backup.kill9()
        self.backup.start()
        self.assertFalse(os.path.exists(incoming(self.backup)))
        st = self.cluster.wait_shards(self.backup, COLL, [0])[0]
        # its old content (what replication gave it), nothing half-copied
        self.assertEqual((st.count, st.lsn), (self.old_count, self.old_lsn))
        self.assertEqual(status(self.backup, True).digest, self.old_digest)
        self.complete_again()

    def test_sender_killed_midway(self):
        self.start_and_wait_midway()
        self.primary.kill9()
        st = wait_for(lambda: (lambda s: s if s.recovery == "" else None)(status(self.backup)),
                      what="the job's end")
        self.assertEqual(st.state, harness.READY)
        self.assertEqual(st.transfers_completed, 0)
        self.assertEqual((st.count, st.lsn), (self.old_count, self.old_lsn))
        with open(self.backup.proc.log_path, encoding="utf-8", errors="replace") as f:
            self.assertIn("transfer failed; the replica keeps its previous state", f.read())
        self.assertEqual(status(self.backup, True).digest, self.old_digest)
        self.assertFalse(os.path.exists(incoming(self.backup)))
        self.primary.start()
        self.cluster.wait_shards(self.primary, COLL, [0])
        self.complete_again()


if __name__ == "__main__":
    unittest.main()
