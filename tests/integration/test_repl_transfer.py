"""kill -9 of either side in the middle of a TransferShard (issue 8, docs/replication.md §6).

R = 2 on 3 nodes, one shard holding POINTS points of 32 dims, senders
limited by --transfer-max-mbps 1 so a copy takes seconds. The backup B is
killed; after --replace-after-ms (1 s) the third node Z receives a full copy
from the primary P. While Z reports `transferring` with bytes done > 0:

- Z's replica is RECOVERING, a search of it on Z answers UNAVAILABLE (no
  partial data served), and the shard entry does not list Z in in_sync;
- then either the receiver Z or the sender P is killed with SIGKILL and
  started again.

The transfer starts over and completes: Z is in in_sync with
transfers_completed >= 1 and no `<shard>.incoming` staging folder left; a
reader's Gets of acknowledged ids never missed one (Z never served before it
held everything); the digests of P and Z are equal and no acknowledged
write is lost."""
import os
import time
import unittest

import grpc

import harness
import repl_harness as rp

POINTS = 60000 if rp.LONG else 30000
DIM = 32


class TransferKill(rp.ReplTestCase):
    def setUp(self):
        c = self.start_cluster(nodes=3, routers=2, replicas=2, shards=1, lease_ttl=3, dim=DIM,
                               replace_after_ms=1000, transfer_max_mbps=1)
        self.load = rp.Writer(c, threads=1, pause_s=0.2).load(POINTS)
        e = c.entry(0)
        self.p = c.node(e["primary"])
        self.b = c.node(next(x for x in e["in_sync"] if x != e["primary"]))
        self.z = next(n for n in c.nodes if n.node_id not in e["replicas"])

    def transferring(self):
        """Z's status of shard 0 once it is transferring with bytes done, else None."""
        try:
            st = self.cluster.status(self.z, timeout=2).get(0)
        except grpc.RpcError:
            return None
        if st is not None and st.recovery == "transferring" and st.transfer_bytes_done > 0:
            return st
        return None

    def run_case(self, kill_sender):
        c = self.cluster
        self.load.start()
        self.addCleanup(self.load.stop)
        reader = rp.Searcher(c, self.load).start()
        self.addCleanup(reader.stop)
        t0 = time.monotonic()
        self.b.kill9()
        st = rp.wait_for(self.transferring, 60, "%s transferring shard 0" % self.z.node_id)
        self.measured("transfer total bytes", st.transfer_bytes_total)
        self.assertEqual(st.state, rp.RECOVERING)
        self.assertNotIn(self.z.node_id, c.entry(0)["in_sync"])
        r = self.z.stub().Search(harness.search_request(c.collection, [[0.5] * DIM], k=10),
                                 timeout=10)
        self.assertEqual(r.shards[0].code, grpc.StatusCode.UNAVAILABLE.value[0],
                         "a recovering replica answered a search: %s" % r.shards[0])

        victim = self.p if kill_sender else self.z
        victim.kill9()
        victim.start(timeout=120)  # the sender replays its WAL before it serves
        entries = c.wait_healthy(timeout=120)
        self.measured("backup kill -> R restored (%s killed midway)" % victim.node_id,
                      "%.2f s" % (time.monotonic() - t0))
        self.assertEqual(sorted(entries[0]["in_sync"]),
                         sorted([self.p.node_id, self.z.node_id]))
        self.assertGreaterEqual(c.status(self.z)[0].transfers_completed, 1)
        self.assertFalse(os.path.exists(os.path.join(self.z.data_dir, c.collection,
                                                     "0.incoming")), "staging folder left")
        digests = self.finish(self.load, reader)
        self.assertEqual(set(digests[0]), {self.p.node_id, self.z.node_id})

    def test_kill9_receiver_midway(self):
        self.run_case(kill_sender=False)

    def test_kill9_sender_midway(self):
        self.run_case(kill_sender=True)


if __name__ == "__main__":
    unittest.main()
