"""kill -9 in the middle of a stream of acknowledged writes loses none of
them: a writer thread records every id whose Write returned OK; the node is
SIGKILLed while it writes, restarted on the same data dir and port, and every
acknowledged id must be there with its exact vector and payload, LSNs must
continue after the last acknowledged one, and search must work. Two rounds,
so the second recovery starts from what the first one left (WAL and any
snapshot written in between)."""
import threading
import time
import unittest

import grpc
import numpy as np

import harness
import vsdata

DIM = 32
BATCH = 50


class Writer(threading.Thread):
    """Writes batches of fresh ids until stopped or a write fails; records
    the ids, vectors and LSNs of every acknowledged batch."""

    def __init__(self, node, first_id, seed):
        super().__init__(daemon=True)
        # A channel of its own: node.kill9() closes the node's shared one, and
        # a call started on a closed channel raises ValueError, not RpcError.
        self.channel = harness.channel(node.addr)
        self.stub = harness.shard_node_pb2_grpc.ShardNodeStub(self.channel)
        self.next_id = first_id
        self.rng = np.random.default_rng(seed)
        self.acked = {}  # id -> vector
        self.lsns = []
        self.error = None
        self.stop_event = threading.Event()

    def run(self):
        try:
            self._run()
        finally:
            self.channel.close()

    def _run(self):
        while not self.stop_event.is_set():
            ids = list(range(self.next_id, self.next_id + BATCH))
            self.next_id += BATCH
            vecs = self.rng.random((BATCH, DIM), dtype=np.float32)
            req = harness.write_request("crash", 0, 1, harness.points(
                ids, vecs, [b"p%d" % i for i in ids]))
            try:
                r = self.stub.Write(req, timeout=10)
            except grpc.RpcError as e:
                self.error = e
                return
            for i, v in zip(ids, vecs):
                self.acked[i] = v
            self.lsns.append(r.lsn)


class NodeCrash(harness.ClusterTestCase):
    def start_cluster(self, fsync, node_args=()):
        self.cluster = harness.Cluster(nodes=1, lease_ttl=3, fsync=fsync,
                                       node_args=node_args).start()
        self.addCleanup(self.cluster.close)
        return self.cluster, self.cluster.nodes[0]

    def check_all_present(self, node, acked):
        """Every acknowledged id is there, exact vector and payload."""
        ids = sorted(acked)
        stub = node.stub()
        for lo in range(0, len(ids), 2000):
            chunk = ids[lo:lo + 2000]
            r = stub.Get(harness.shard_node_pb2.NodeGetRequest(
                collection="crash", shard=0, ids=chunk, with_vector=True, with_payload=True),
                timeout=30)
            self.assertEqual(list(r.missing_ids), [],
                             "%d acknowledged ids lost after kill -9, e.g. %s" %
                             (len(r.missing_ids), list(r.missing_ids)[:10]))
            self.assertEqual([p.id for p in r.points], chunk)
            for p in r.points:
                self.assertTrue(np.array_equal(np.array(p.vector, dtype=np.float32),
                                               acked[p.id]), "vector of id %d differs" % p.id)
                self.assertEqual(p.payload, b"p%d" % p.id)

    def check_search(self, node, acked):
        """Searching stored vectors finds each one first, at distance 0."""
        sample = sorted(acked)[::max(1, len(acked) // 200)]
        r = node.stub().Search(harness.search_request(
            "crash", [acked[i] for i in sample], k=10, ef=64), timeout=30)
        self.assertEqual(r.shards[0].code, 0, r.shards[0].error)
        top = [res.hits[0].id if res.hits else None for res in r.shards[0].results]
        self.assertGreaterEqual(np.mean([a == b for a, b in zip(top, sample)]), 0.95)

    def crash_round(self, node, first_id, seed, acked, last_lsn, writers=1):
        """Kills the node mid-stream of `writers` concurrent writers, restarts
        it and checks everything acknowledged. Returns (last LSN, next id)."""
        ws = [Writer(node, first_id + i * 10 ** 6, seed * 100 + i) for i in range(writers)]
        for w in ws:
            w.start()
        deadline = time.monotonic() + 20
        while (sum(len(w.lsns) for w in ws) < 40 and all(w.is_alive() for w in ws) and
               time.monotonic() < deadline):
            time.sleep(0.01)
        for w in ws:
            self.assertTrue(w.is_alive(), "writer stopped before the crash: %r" % w.error)
        self.assertGreaterEqual(sum(len(w.lsns) for w in ws), 40, "writes too slow to test")
        node.kill9()  # while the writers are mid-stream
        lsns = []
        for w in ws:
            w.join(15)
            self.assertFalse(w.is_alive())
            self.assertIsNotNone(w.error, "a write succeeded against a killed node")
            self.assertIn(w.error.code(), (grpc.StatusCode.UNAVAILABLE,
                                           grpc.StatusCode.CANCELLED,
                                           grpc.StatusCode.DEADLINE_EXCEEDED,
                                           grpc.StatusCode.UNKNOWN,
                                           grpc.StatusCode.INTERNAL))
            self.assertEqual(w.lsns, sorted(w.lsns))
            acked.update(w.acked)
            lsns += w.lsns
        self.assertEqual(len(set(lsns)), len(lsns), "an LSN was acknowledged twice")
        self.assertGreater(min(lsns), last_lsn)
        w = max(ws, key=lambda x: x.lsns[-1])

        node.start()
        self.cluster.wait_shards(node, "crash", [0])
        self.check_all_present(node, acked)
        self.check_search(node, acked)
        (st,) = node.shard_status("crash")
        self.assertGreaterEqual(st.count, len(acked))
        self.assertGreaterEqual(st.lsn, max(lsns))
        return max(lsns), max(x.next_id for x in ws)

    def test_acknowledged_writes_survive_kill9(self):
        self.run_rounds("always", writers=1)

    def test_kill9_with_group_commit_and_snapshots(self):
        # Two concurrent writers share fsyncs (batch); a 64 KiB snapshot
        # threshold makes the node snapshot during the stream, so recovery
        # loads a snapshot and replays the WAL after it.
        st = self.run_rounds("batch", writers=2, node_args=["--snapshot-wal-bytes", "64KiB"])
        self.assertGreater(st.snapshot_lsn, 0, "no snapshot was taken")

    def run_rounds(self, fsync, writers, node_args=()):
        c, node = self.start_cluster(fsync, node_args)
        c.create_collection("crash", dim=DIM, m=12, ef_construction=64)
        c.wait_shards(node, "crash", [0])
        # A base the graph already holds before the crash.
        base = vsdata.clustered(2000, DIM, clusters=8, seed=11)
        node.stub().Write(harness.write_request(
            "crash", 0, 1, harness.points(range(2000), base, [b"p%d" % i for i in range(2000)])),
            timeout=30)
        acked = {i: base[i] for i in range(2000)}

        last_lsn, next_id = self.crash_round(node, 10000, 1, acked, 0, writers)
        last_lsn, next_id = self.crash_round(node, next_id, 2, acked, last_lsn, writers)

        # LSNs continue after the last acknowledged one; the node takes writes.
        r = node.stub().Write(harness.write_request(
            "crash", 0, 1, harness.points([next_id], [np.ones(DIM)])), timeout=10)
        self.assertGreater(r.lsn, last_lsn)
        (st,) = node.shard_status("crash")
        print("\nkill -9 twice (fsync %s, %d writers): %d acknowledged points all present, "
              "snapshot lsn %d" % (fsync, writers, len(acked), st.snapshot_lsn))
        return st


if __name__ == "__main__":
    unittest.main()
