"""Data safety of a node's data dir (issue 7, findings 1 and 2).

- The data dir records its owner (node-identity.txt): a start with another
  --node-id refuses (exit 2, naming both ids and the file) and deletes
  nothing; --identity-mismatch adopt keeps the data under the new id, wipe
  moves it to the trash.
- Replicas etcd no longer assigns are moved to <data-dir>/trash.d/, not
  deleted; restored when assigned again; purged after --trash-grace-ms once
  etcd says their collection is gone.
- A replica etcd assigns whose files vanished (the data dir was emptied)
  while its collection is older than the data dir opens DAMAGED: Write and
  Get answer DATA_LOSS, a router search counts the shard as missing,
  ShardStatus and `vecshard status` say why; --reset-replica accepts it as
  empty. A collection created after the data dir opens READY as before.
"""
import glob
import os
import shutil
import struct
import subprocess
import unittest

import grpc

import harness
import router_harness as rh
from harness import READY, shard_node_pb2
from vecshard.v1 import vecshard_pb2

DAMAGED = shard_node_pb2.REPLICA_STATE_DAMAGED
IDS = list(range(1, 7))


def vec(i):
    """Exactly representable 4-d vector of point i."""
    return [float(i), i + 0.5, -float(i), 1.0]


def payload(i):
    return b"payload-%d" % i


def write_points(node, collection, shard, epoch, ids):
    node.stub().Write(harness.write_request(
        collection, shard, epoch, harness.points(ids, [vec(i) for i in ids],
                                                 [payload(i) for i in ids])), timeout=10)


def get_points(node, collection, shard, ids):
    """{id: (vector, payload)} as the node returns them."""
    r = node.stub().Get(shard_node_pb2.NodeGetRequest(
        collection=collection, shard=shard, ids=ids, with_payload=True, with_vector=True),
        timeout=10)
    return {p.id: (list(p.vector), p.payload) for p in r.points}


def expected(ids):
    return {i: (vec(i), payload(i)) for i in ids}


def crc32c(data):
    """CRC-32C (Castagnoli), as common/util/crc32c computes it."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def append_wal_record(path, lsn, epoch, payload):
    """Appends a record with a valid checksum (docs/storage.md) to a WAL segment."""
    head = struct.pack("<QQ", lsn, epoch)
    with open(path, "ab") as f:
        f.write(struct.pack("<II", len(payload), crc32c(head + payload)) + head + payload)


def trash_entries(node):
    d = os.path.join(node.data_dir, "trash.d")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def run_node(node, node_id, extra=(), prefix=None):
    """Runs vecshard-node to completion (it is expected to refuse to start)."""
    argv = node.argv()
    argv[argv.index("--node-id") + 1] = node_id
    if prefix is not None:
        argv[argv.index("--etcd-prefix") + 1] = prefix
    return subprocess.run(argv + list(extra), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30)


class NodeIdentity(harness.ClusterTestCase):
    def setUp(self):
        self.cluster = harness.Cluster(nodes=0, lease_ttl=3).start()
        self.addCleanup(self.cluster.close)

    def loaded_node(self):
        """Node "a" hosting idc/0 with IDS written, then stopped cleanly."""
        c = self.cluster
        a = c.add_node("a")
        c.create_collection("idc", dim=4, placement=[["a"]])
        c.wait_shards(a, "idc", [0])
        write_points(a, "idc", 0, 1, IDS)
        self.assertEqual(a.stop(), 0)
        return a

    def test_other_node_id_refused_then_owner_restarts(self):
        a = self.loaded_node()
        files = sorted(os.listdir(os.path.join(a.data_dir, "idc", "0")))
        self.assertTrue(files)
        ident = os.path.join(a.data_dir, "node-identity.txt")
        with open(ident) as f:
            self.assertIn("node_id: a\n", f.read())

        p = run_node(a, "b")
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn('node "a"', p.stderr)
        self.assertIn('node "b"', p.stderr)
        self.assertIn(ident, p.stderr)
        # Same node id, another cluster (etcd prefix): refused as well.
        p = run_node(a, "a", prefix="/other")
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn('of cluster "/vecshard"', p.stderr)
        self.assertIn('of cluster "/other"', p.stderr)
        # Nothing was deleted or moved.
        self.assertEqual(sorted(os.listdir(os.path.join(a.data_dir, "idc", "0"))), files)
        self.assertEqual(trash_entries(a), [])

        a.start()
        st = self.cluster.wait_shards(a, "idc", [0])
        self.assertEqual((st[0].state, st[0].count, st[0].lsn), (READY, 6, 1))
        self.assertEqual(get_points(a, "idc", 0, IDS), expected(IDS))

    def test_damaged_identity_refused(self):
        a = self.loaded_node()
        ident = os.path.join(a.data_dir, "node-identity.txt")
        with open(ident, "r+b") as f:
            f.seek(30)
            b = f.read(1)
            f.seek(30)
            f.write(bytes([b[0] ^ 0x01]))
        p = run_node(a, "a")
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("identity file is damaged", p.stderr)
        self.assertIn(ident, p.stderr)
        self.assertTrue(os.listdir(os.path.join(a.data_dir, "idc", "0")))

    def test_adopt_keeps_data(self):
        c = self.cluster
        a = self.loaded_node()
        c.set_shard("idc", 0, 2, ["b"])
        b = c.add_node("b", start=False)
        b.data_dir = a.data_dir
        b.extra_args = ["--identity-mismatch", "adopt"]
        b.start()
        # READY comes from the local reopen; epoch 2 once the shard map was read.
        st = c.wait_shards(b, "idc", [0], epoch=2)
        self.assertEqual((st[0].state, st[0].count, st[0].epoch), (READY, 6, 2))
        self.assertEqual(get_points(b, "idc", 0, IDS), expected(IDS))
        with open(os.path.join(a.data_dir, "node-identity.txt")) as f:
            self.assertIn("node_id: b\n", f.read())

    def test_wipe_moves_data_to_trash(self):
        c = self.cluster
        a = self.loaded_node()
        created = c.etcd.get_json("%s/collections/idc" % c.prefix)["created_at"]
        w = c.add_node("w", start=False)
        w.data_dir = a.data_dir
        w.extra_args = ["--identity-mismatch", "wipe"]
        w.start()
        self.assertEqual(list(w.shard_status("")), [])
        self.assertFalse(os.path.exists(os.path.join(a.data_dir, "idc")))
        entries = trash_entries(w)
        self.assertEqual(len(entries), 1, entries)
        self.assertTrue(entries[0].endswith(".idc.0.%d.wiped" % created), entries)
        self.assertTrue(os.listdir(os.path.join(w.data_dir, "trash.d", entries[0])))
        with open(os.path.join(a.data_dir, "node-identity.txt")) as f:
            self.assertIn("node_id: w\n", f.read())


class Trash(harness.ClusterTestCase):
    def setUp(self):
        # The grace must outlast the unassign -> reassign steps below (or the
        # entry of "keep" could be purged before it is restored).
        self.cluster = harness.Cluster(nodes=1, lease_ttl=3,
                                       node_args=["--trash-grace-ms", "4000"]).start()
        self.addCleanup(self.cluster.close)

    def test_unassigned_replica_goes_to_trash_then_back_or_purged(self):
        c = self.cluster
        n = c.nodes[0]
        c.create_collection("keep", dim=4)
        c.create_collection("gone", dim=4)
        c.wait_shards(n, "keep", [0])
        c.wait_shards(n, "gone", [0])
        write_points(n, "keep", 0, 1, IDS)
        write_points(n, "gone", 0, 1, IDS[:3])
        created = {name: c.etcd.get_json("%s/collections/%s" % (c.prefix, name))["created_at"]
                   for name in ("keep", "gone")}

        # Unassigned: the folders move into the trash, nothing is deleted.
        c.set_shard("keep", 0, 2, ["ghost"])
        c.set_shard("gone", 0, 2, ["ghost"])
        c.wait_shards(n, "keep", [])
        c.wait_shards(n, "gone", [])
        entries = rh.wait_until(lambda: (lambda e: e if len(e) == 2 else None)(trash_entries(n)),
                                10, "two trash entries")
        self.assertFalse(os.path.exists(os.path.join(n.data_dir, "keep", "0")))
        by_coll = {e.split(".")[2]: e for e in entries}
        self.assertEqual(sorted(by_coll), ["gone", "keep"])
        for name, e in by_coll.items():
            self.assertTrue(e.endswith(".%s.0.%d" % (name, created[name])), e)
            self.assertTrue(os.listdir(os.path.join(n.data_dir, "trash.d", e)))

        # Assigned again (same collection, same created_at): restored with its data.
        c.set_shard("keep", 0, 3, ["node-0"])
        st = c.wait_shards(n, "keep", [0], epoch=3)
        self.assertEqual((st[0].state, st[0].count), (READY, 6))
        self.assertEqual(get_points(n, "keep", 0, IDS), expected(IDS))

        # Collection dropped in etcd: purged once the grace has passed.
        c.etcd.delete("%s/collections/gone" % c.prefix)
        c.etcd.delete("%s/shards/gone/" % c.prefix, prefix=True)
        rh.wait_until(lambda: trash_entries(n) == [], 20, "the dropped collection purged")
        self.assertEqual([(s.collection, s.state) for s in n.shard_status("")],
                         [("keep", READY)])
        with open(n.proc.log_path) as f:
            log = f.read()
        self.assertIn("purged replica files from the trash", log)
        self.assertIn("its collection was dropped", log)


class CorruptReplica(harness.ClusterTestCase):
    def setUp(self):
        self.cluster = harness.Cluster(nodes=1, lease_ttl=3).start()
        self.addCleanup(self.cluster.close)

    def test_unrecoverable_files_open_damaged_and_are_kept(self):
        c = self.cluster
        n = c.nodes[0]
        c.create_collection("cor", dim=4)
        c.create_collection("tmp", dim=4)
        c.wait_shards(n, "cor", [0])
        c.wait_shards(n, "tmp", [0])
        write_points(n, "cor", 0, 1, IDS)
        created = c.etcd.get_json("%s/collections/cor" % c.prefix)["created_at"]
        self.assertEqual(n.stop(), 0)
        # A record whose checksum is right but whose batch does not decode:
        # replica_open answers REPLICA_ECORRUPT.
        wal = glob.glob(os.path.join(n.data_dir, "cor", "0", "wal-*.log"))
        self.assertEqual(len(wal), 1, wal)
        append_wal_record(wal[0], 2, 1, b"\xff\xff\xff\xff")
        size = os.path.getsize(wal[0])

        n.start()
        st = c.wait_shards(n, "cor", [0], state=DAMAGED)
        self.assertIn("WAL record lsn 2 does not decode as a WriteBatch", st[0].state_reason)
        code, msg = rh.code_of(n.stub().Write, harness.write_request(
            "cor", 0, 1, harness.points([99], [vec(99)])), timeout=5)
        self.assertEqual(code, grpc.StatusCode.DATA_LOSS)
        self.assertIn("replica cor/0 is DAMAGED: ", msg)
        code, _ = rh.code_of(n.stub().Get, shard_node_pb2.NodeGetRequest(
            collection="cor", shard=0, ids=IDS), timeout=5)
        self.assertEqual(code, grpc.StatusCode.DATA_LOSS)
        # Neither deleted nor reopened empty.
        self.assertEqual(os.path.getsize(wal[0]), size)

        # The operator resets it: the damaged files go to the trash, it opens
        # empty. Meanwhile "tmp" was dropped: its replica goes to the trash too.
        self.assertEqual(n.stop(), 0)
        c.etcd.delete("%s/collections/tmp" % c.prefix)
        c.etcd.delete("%s/shards/tmp/" % c.prefix, prefix=True)
        n.extra_args = ["--reset-replica", "cor/0", "--trash-grace-ms", "500"]
        n.start()
        st = c.wait_shards(n, "cor", [0])
        self.assertEqual((st[0].state, st[0].count, st[0].lsn), (READY, 0, 0))
        c.wait_shards(n, "tmp", [])
        rh.wait_until(lambda: not os.path.exists(os.path.join(n.data_dir, "tmp")), 10,
                      "the dropped collection moved to the trash")
        # Past the grace, the purge removes the dropped collection's entry but
        # keeps the damaged files of cor/0: etcd still assigns that shard here.
        entries = rh.wait_until(lambda: (lambda e: e if len(e) == 1 else None)(trash_entries(n)),
                                15, "the dropped collection's trash entry purged")
        with open(n.proc.log_path) as f:
            self.assertIn('msg="purged replica files from the trash" collection=tmp', f.read())
        self.assertTrue(entries[0].endswith(".cor.0.%d.wiped" % created), entries)
        kept = os.path.join(n.data_dir, "trash.d", entries[0], os.path.basename(wal[0]))
        self.assertEqual(os.path.getsize(kept), size)


class EmptiedDataDir(harness.ClusterTestCase):
    def setUp(self):
        self.cluster = rh.RouterCluster(nodes=2, routers=1, lease_ttl=3).start()
        self.addCleanup(self.cluster.close)

    def test_missing_files_are_damaged_not_empty(self):
        c = self.cluster
        n0, n1 = c.nodes
        c.create_collection("dmg", dim=4, shards=2, placement=[["node-0"], ["node-1"]])
        st = c.wait_shards(n1, "dmg", [1])
        # A collection created after the data dir: READY, no reason (no false positive).
        self.assertEqual((st[0].state, st[0].state_reason), (READY, ""))
        c.wait_shards(n0, "dmg", [0])
        router = c.stub()
        ids = list(range(40))
        rh.wait_until(lambda: rh.code_of(router.Upsert, rh.upsert_request(
            "dmg", ids, [vec(i) for i in ids]), timeout=10)[0] == grpc.StatusCode.OK, 15,
            "upsert through the router")
        on0 = [i for i in ids if rh.shard_of(i, 2) == 0]
        on1 = [i for i in ids if rh.shard_of(i, 2) == 1]
        self.assertTrue(on0 and on1)

        # The data dir of node-1 is emptied (replaced disk, re-created container).
        self.assertEqual(n1.stop(), 0)
        shutil.rmtree(n1.data_dir)
        n1.start()
        st = c.wait_shards(n1, "dmg", [1], state=DAMAGED)
        self.assertIn("no data on disk, but collection created at", st[0].state_reason)
        self.assertIn("the data dir was emptied or replaced", st[0].state_reason)
        self.assertEqual(st[0].count, 0)

        # The node refuses writes and reads of it with DATA_LOSS.
        code, msg = rh.code_of(n1.stub().Write, harness.write_request(
            "dmg", 1, 1, harness.points([on1[0]], [vec(0)])), timeout=5)
        self.assertEqual(code, grpc.StatusCode.DATA_LOSS)
        self.assertIn("replica dmg/1 is DAMAGED: no data on disk", msg)
        code, msg = rh.code_of(n1.stub().Get, shard_node_pb2.NodeGetRequest(
            collection="dmg", shard=1, ids=on1), timeout=5)
        self.assertEqual(code, grpc.StatusCode.DATA_LOSS)
        r = n1.stub().Search(harness.search_request("dmg", [vec(1)], k=3, shards=[1]), timeout=5)
        self.assertEqual(r.shards[0].code, grpc.StatusCode.DATA_LOSS.value[0])
        self.assertIn("replica dmg/1 is DAMAGED", r.shards[0].error)

        # Through the router: coverage is honest, writes to the shard fail naming it.
        code, msg = rh.code_of(router.Search, rh.search_request(
            "dmg", [vec(1)], k=5, min_coverage=1.0), timeout=10)
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
        self.assertIn("search covered 1 of 2 shards", msg)
        self.assertIn("shard 1 (node node-1: DATA_LOSS: replica dmg/1 is DAMAGED", msg)
        res = router.Search(rh.search_request("dmg", [vec(1)], k=len(ids), min_coverage=0.5),
                            timeout=10)
        self.assertEqual((res.coverage.shards_total, res.coverage.shards_ok,
                          list(res.coverage.missing_shards), res.coverage.partial),
                         (2, 1, [1], True))
        self.assertEqual(sorted(h.id for h in res.results[0].hits), sorted(on0))
        code, msg = rh.code_of(router.Upsert, rh.upsert_request("dmg", [on1[0]], [vec(0)]),
                               timeout=10)
        self.assertEqual(code, grpc.StatusCode.DATA_LOSS)
        self.assertIn("shard 1 (primary node-1", msg)
        self.assertIn("replica dmg/1 is DAMAGED", msg)

        # ClusterStatus and `vecshard status` say why.
        cs = router.ClusterStatus(vecshard_pb2.ClusterStatusRequest(collection="dmg"), timeout=10)
        states = {s.shard: (s.primary_state, s.primary_state_reason) for s in cs.shards}
        self.assertEqual(states[0], ("READY", ""))
        self.assertEqual(states[1][0], "DAMAGED")
        self.assertIn("no data on disk", states[1][1])
        p = rh.run([rh.CLI_BIN, "--router", c.routers[0].addr, "status"], timeout=60, check=True)
        self.assertIn("DAMAGED", p.stdout)
        self.assertIn("dmg/1 is DAMAGED: no data on disk", p.stdout)

        # The operator accepts the loss: READY and empty, writable again.
        self.assertEqual(n1.stop(), 0)
        n1.extra_args = ["--reset-replica", "dmg/1"]
        n1.start()
        st = c.wait_shards(n1, "dmg", [1])
        self.assertEqual((st[0].state, st[0].count, st[0].state_reason), (READY, 0, ""))
        rh.wait_until(lambda: rh.code_of(router.Upsert, rh.upsert_request(
            "dmg", [on1[0]], [vec(on1[0])]), timeout=10)[0] == grpc.StatusCode.OK, 15,
            "upsert to the reset shard")
        res = router.Search(rh.search_request("dmg", [vec(1)], k=len(ids), min_coverage=1.0),
                            timeout=10)
        self.assertEqual(sorted(h.id for h in res.results[0].hits), sorted(on0 + [on1[0]]))


if __name__ == "__main__":
    unittest.main()
