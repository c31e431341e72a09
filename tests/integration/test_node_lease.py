"""The node's registration lives on an etcd lease: after kill -9 its key
leaves etcd within the TTL (nobody revokes it, the lease just expires), and
a restart registers it again with a new lease; a clean stop removes it at
once (the node revokes its lease)."""
import json
import time
import unittest

import harness

TTL = 2


class NodeLease(harness.ClusterTestCase):
    def setUp(self):
        self.cluster = harness.Cluster(nodes=1, lease_ttl=TTL).start()
        self.addCleanup(self.cluster.close)

    def wait_key(self, key, present, timeout):
        """Seconds until the key's presence equals `present`, or None on timeout."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if (self.cluster.etcd.get(key) is not None) == present:
                return time.monotonic() - t0
            time.sleep(0.05)
        return None

    def test_key_expires_after_kill9_and_returns(self):
        c, node = self.cluster, self.cluster.nodes[0]
        kv = c.etcd.get(node.key)
        self.assertIsNotNone(kv)
        reg = json.loads(kv["value"])
        self.assertEqual(reg["addr"], node.addr)
        granted = c.etcd.call("lease/timetolive", {"ID": str(kv["lease"])})
        self.assertEqual(int(granted["grantedTTL"]), TTL)

        # Keep-alives hold the key well past one TTL.
        time.sleep(TTL * 2)
        self.assertEqual(c.etcd.get(node.key)["lease"], kv["lease"])

        node.kill9()
        gone = self.wait_key(node.key, False, TTL + 3)
        self.assertIsNotNone(gone, "node key still in etcd %d s after kill -9" % (TTL + 3))
        print("\nnode key left etcd %.2f s after kill -9 (TTL %d s)" % (gone, TTL))
        self.assertLessEqual(gone, TTL + 1.5)

        node.start()  # waits for the key to be written again
        kv2 = c.etcd.get(node.key)
        reg2 = json.loads(kv2["value"])
        self.assertEqual(reg2["addr"], node.addr)
        self.assertNotEqual(kv2["lease"], kv["lease"])
        self.assertGreater(int(reg2["started_at"]), int(reg["started_at"]))
        time.sleep(TTL * 1.5)
        self.assertIsNotNone(c.etcd.get(node.key), "the new registration is not kept alive")

    def test_clean_stop_deregisters(self):
        c, node = self.cluster, self.cluster.nodes[0]
        self.assertIsNotNone(c.etcd.get(node.key))
        self.assertEqual(node.stop(), 0)
        self.assertIsNone(c.etcd.get(node.key),
                          "node key still in etcd right after a clean stop")


if __name__ == "__main__":
    unittest.main()
