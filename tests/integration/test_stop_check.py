"""Stopping a node safely (docs/operations.md, "Stopping a node").

`vecshard stop-check NODE` is the node pods' preStop hook: it exits 0 only
when stopping NODE leaves every shard with an in-sync copy on another live
node. R = 2 on 3 nodes: it passes on a healthy cluster, fails (exit 1,
naming the shard) while the other copy of a shard is down, and with --wait
returns 0 once that copy is back and caught up. Then a SIGTERM'd node
revokes its lease before its shutdown snapshots, so the controller promotes
the backups of the shards it led without waiting for the snapshots; it
comes back as a backup and every acknowledged write is on every in-sync
copy (exact vectors and payloads, equal digests)."""
import unittest

import repl_harness as rp
import router_harness as rh


class StopCheck(rp.ReplTestCase):
    def check(self, node_id, *extra):
        return rh.run([rh.CLI_BIN, "--router", self.cluster.routers[0].addr, "stop-check",
                       node_id] + list(extra), timeout=120)

    def test_stop_check_and_leave_before_snapshots(self):
        c = self.start_cluster(nodes=3, routers=1, replicas=2, shards=3, lease_ttl=3)
        self.cluster = c
        w = rp.Writer(c)
        w.load(300, batch=100)
        for n in c.nodes:
            r = self.check(n.node_id)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("can be stopped", r.stdout)

        a_id, b_id = c.entry(0)["replicas"]
        a, b = c.node(a_id), c.node(b_id)
        b.kill9()
        rp.wait_for(lambda: b_id not in c.entry(0)["in_sync"], c.lease_ttl + 20,
                    "%s out of shard 0's in_sync" % b_id)
        r = self.check(a_id)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("repl/0: no other in-sync copy", r.stdout)
        self.assertEqual(self.check("no-such-node").returncode, 0)

        b.start()
        r = self.check(a_id, "--wait", "--timeout-s", "90")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(b_id, c.entry(0)["in_sync"])

        led = c.shards_led_by(a_id)
        w.load(100, batch=50)  # writes no snapshot holds: the shutdown takes snapshots
        self.assertEqual(a.stop(), 0)
        with open(a.proc.log_path, encoding="utf-8", errors="replace") as f:
            log = f.read()
        revoked = log.find("revoked etcd lease")
        snapshots = log.find('msg="shutdown snapshots"')
        self.assertGreater(revoked, 0, "no lease revocation in the log")
        self.assertGreater(snapshots, revoked, "the lease was revoked after the snapshots")
        for s in led:
            rp.wait_for(lambda s=s: c.entry(s)["primary"] not in ("", a_id), 30,
                        "a new primary of shard %d" % s)
        # Writes go on while it is down; it comes back as a backup and catches
        # up: every acknowledged write is on every in-sync copy, digests equal.
        w.load(100, batch=50)
        a.start()
        c.wait_healthy(replicas=2, timeout=90)
        self.assertEqual(c.acked_lost(w), [])
        c.assert_digests_equal()


if __name__ == "__main__":
    unittest.main()
