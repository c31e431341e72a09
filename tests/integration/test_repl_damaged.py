"""Damaged or unexpectedly empty replicas recover from a peer (issue 8, docs/replication.md §1, §4, §5).

R = 2 on 3 nodes, 3 shards, a writer per shard and a searcher throughout.

- An emptied backup: the backup B of shard S is killed with SIGKILL, its
  replica folder deleted, B restarted at once (long before
  --replace-after-ms). B gets the copy back by a full transfer
  (transfers_completed >= 1), is back in S's in_sync, READY; 0 acknowledged
  writes lost, equal digests.
- A damaged primary: the primary P of shard S is killed with SIGKILL (no
  background snapshots: its records are all in the WAL), one byte in the
  middle of its WAL flipped (valid records follow: the replica opens
  DAMAGED), P restarted. Another former in-sync member becomes S's primary
  (P steps down, or the controller fails it over), and P's replica recovers
  by a full transfer back into in_sync; 0 lost, equal digests."""
import glob
import os
import shutil
import unittest

import repl_harness as rp

NO_SNAPSHOTS = ["--snapshot-wal-bytes", "1024GiB", "--snapshot-wal-records", "0",
                "--snapshot-max-age-s", "0"]


class DamagedReplicas(rp.ReplTestCase):
    def test_emptied_backup_recovers_by_transfer(self):
        c = self.start_cluster(nodes=3, routers=2, replicas=2, shards=3, lease_ttl=3)
        w, s = self.start_load()
        rp.wait_for(lambda: w.acked_points >= 300, 30, "300 acked points")
        b = c.nodes[2]
        shard = c.backup_only_shards(b.node_id)[0]
        b.kill9()
        shutil.rmtree(os.path.join(b.data_dir, c.collection, str(shard)))
        b.start()
        c.wait_healthy(timeout=60)
        st = c.status(b)[shard]
        self.assertGreaterEqual(st.transfers_completed, 1,
                                "the emptied copy came back without a full transfer")
        self.finish(w, s)

    def test_damaged_primary_recovers_by_transfer(self):
        c = self.start_cluster(nodes=3, routers=2, replicas=2, shards=3, lease_ttl=3,
                               node_args=NO_SNAPSHOTS)
        w, s = self.start_load()
        rp.wait_for(lambda: w.acked_points >= 600, 30, "600 acked points")
        before = c.entry(0)
        p = c.node(before["primary"])
        p.kill9()
        segs = sorted(glob.glob(os.path.join(p.data_dir, c.collection, "0", "wal-*.log")),
                      key=os.path.getsize)
        self.assertTrue(segs, "no WAL segment for shard 0 on %s" % p.node_id)
        size = os.path.getsize(segs[-1])
        with open(segs[-1], "r+b") as f:  # valid records follow: not a torn tail
            f.seek(size // 2)
            byte = f.read(1)
            f.seek(size // 2)
            f.write(bytes([byte[0] ^ 0x10]))
        p.start()
        entries = c.wait_healthy(timeout=90)
        self.assertNotEqual(entries[0]["primary"], p.node_id)
        self.assertIn(entries[0]["primary"], before["in_sync"])
        self.assertGreater(entries[0]["epoch"], before["epoch"])
        self.assertGreaterEqual(c.status(p)[0].transfers_completed, 1)
        self.finish(w, s)


if __name__ == "__main__":
    unittest.main()
