"""The controller in the routers (docs/replication.md §7), on real etcd,
nodes and routers. These tests check the shard entries, ClusterStatus and
the logged decisions, not the data (replication and transfer are the
nodes' part).

- Election: of two routers exactly one is the controller, and both name it
  in ClusterStatus.controller; kill -9 of it: the other names itself within
  --controller-ttl + 2 s and logs `controller elected`.
- Failover: R = 2, 3 nodes, 3 shards; kill -9 of a node that leads shards:
  within the node lease TTL + 2 s every shard it led has a new primary that
  was in in_sync, the epoch bumped, the dead node out of in_sync but still in
  replicas, and one `decision=failover` line per shard. Restarted within
  --replace-after-ms it keeps its place in replicas past that grace.
- Re-replication: a node gone longer than --replace-after-ms is replaced in
  replicas by the registered node without a copy (not before the grace),
  and until then ClusterStatus.replica_status and `vecshard status` (text
  and --json) show the dead node's copy as not alive with its reason, and
  the summary line counts its shards as degraded.
- Reads: R = 2 on 2 nodes, 40 sequential searches go 20 / 20 to the two
  replicas (node debug logs), 200 concurrent ones at least 70 each.
- R = 1 with a dead node: no promotion, no replacement, the entry
  unchanged, and exactly one `decision=wait` line per shard.
"""
import concurrent.futures
import json
import re
import sys
import time
import unittest

import harness
import router_harness as rh
from router_harness import vecshard_pb2 as pb

DIM = 8


def status(router, timeout=5):
    return router.stub().ClusterStatus(pb.ClusterStatusRequest(), timeout=timeout)


def entries(cluster, name):
    """{shard: entry dict} straight from etcd."""
    out = {}
    for kv in cluster.etcd.range_prefix("%s/shards/%s/" % (cluster.prefix, name)):
        out[int(kv["key"].rsplit("/", 1)[1])] = json.loads(kv["value"])
    return out


def router_log(router):
    with open(router.proc.log_path, errors="replace") as f:
        return f.read()


def decisions(router, kind, collection):
    return [line for line in router_log(router).splitlines()
            if "decision=%s " % kind in line and "collection=%s " % collection in line]


class Election(harness.ClusterTestCase):
    TTL = 2

    def setUp(self):
        self.cluster = rh.RouterCluster(nodes=1, routers=2,
                                        router_args=["--controller-ttl", str(self.TTL)]).start()
        self.addCleanup(self.cluster.close)

    def leader_seen_by_all(self):
        names = set()
        for r in self.cluster.routers:
            if r.proc.alive():
                names.add(status(r).controller)
        return names.pop() if len(names) == 1 and "" not in names else None

    def test_one_controller_then_takeover(self):
        leader = rh.wait_until(self.leader_seen_by_all, 15, "one controller named by both")
        ports = [r.addr.rsplit(":", 1)[1] for r in self.cluster.routers]
        holders = [i for i, p in enumerate(ports) if leader.endswith(":" + p)]
        self.assertEqual(len(holders), 1, (leader, ports))
        old = self.cluster.routers[holders[0]]
        other = self.cluster.routers[1 - holders[0]]
        self.assertEqual(len(re.findall(r"controller elected", router_log(old))), 1)
        self.assertNotIn("controller elected", router_log(other))

        old.proc.kill9()
        t0 = time.monotonic()
        rh.wait_until(lambda: status(other).controller.endswith(":" + other.addr.rsplit(":")[1]),
                      self.TTL + 10, "takeover by the other router", interval=0.05)
        took = time.monotonic() - t0
        sys.stderr.write("\n  measured: controller takeover %.2f s (ttl %d s)\n" % (took, self.TTL))
        self.assertLessEqual(took, self.TTL + 2, "takeover took %.2f s" % took)
        self.assertIn("controller elected", router_log(other))


class GraceCase(harness.ClusterTestCase):
    """3 nodes, one router with --replace-after-ms GRACE_MS, and an R = 2 collection COLL of
    SHARDS shards."""
    GRACE_MS, COLL, SHARDS = 0, "", 0

    def setUp(self):
        self.cluster = rh.RouterCluster(
            nodes=3, routers=1, lease_ttl=3,
            router_args=["--replace-after-ms", str(self.GRACE_MS)]).start()
        self.addCleanup(self.cluster.close)
        self.r = self.cluster.stub()
        self.r.CreateCollection(rh.create_request(self.COLL, DIM, shards=self.SHARDS,
                                                  replication_factor=2), timeout=30)


class Failover(GraceCase):
    GRACE_MS, COLL, SHARDS = 8000, "fo", 3

    def test_failover_then_return_within_grace(self):
        before = entries(self.cluster, "fo")
        led = {}
        for s, e in before.items():
            led.setdefault(e["primary"], []).append(s)
        victim_id = max(led, key=lambda n: len(led[n]))
        victim = [n for n in self.cluster.nodes if n.node_id == victim_id][0]
        mine = sorted(led[victim_id])
        self.assertTrue(mine)

        victim.kill9()
        t0 = time.monotonic()

        def moved():
            now = entries(self.cluster, "fo")
            return now if all(now[s]["primary"] != victim_id for s in mine) else None
        after = rh.wait_until(moved, 20, "new primaries for shards %s" % mine, interval=0.05)
        took = time.monotonic() - t0
        sys.stderr.write("\n  measured: failover of %d shards %.2f s after kill -9 (lease ttl %d s)\n"
                         % (len(mine), took, victim.lease_ttl))
        self.assertLessEqual(took, victim.lease_ttl + 2, "failover took %.2f s" % took)
        for s in mine:
            b, a = before[s], after[s]
            self.assertIn(a["primary"], b["in_sync"])
            self.assertNotEqual(a["primary"], victim_id)
            self.assertGreater(int(a["epoch"]), int(b["epoch"]))
            self.assertNotIn(victim_id, a["in_sync"])
            self.assertIn(victim_id, a["replicas"])
            self.assertEqual(sorted(a["replicas"]), sorted(b["replicas"]))
            self.assertEqual(sorted(a["recovering"]), [victim_id])
        lines = decisions(self.cluster.routers[0], "failover", "fo")
        self.assertEqual(sorted(int(re.search(r"shard=(\d+)", x).group(1)) for x in lines), mine)
        for x in lines:
            self.assertIn("from=%s " % victim_id, x)
            self.assertRegex(x, r"epoch_from=\d+ epoch_to=\d+ lsn=\d+ reason=")

        # Back within the grace: it keeps its place in every shard, past the grace.
        victim.start()
        time.sleep(max(0.0, t0 + self.GRACE_MS / 1000.0 + 1.5 - time.monotonic()))
        final = entries(self.cluster, "fo")
        for s, e in before.items():
            self.assertEqual(sorted(final[s]["replicas"]), sorted(e["replicas"]), s)
        self.assertEqual(decisions(self.cluster.routers[0], "replace", "fo"), [])


class Replace(GraceCase):
    GRACE_MS, COLL, SHARDS = 3000, "rp", 2

    def test_replaced_after_grace(self):
        before = entries(self.cluster, "rp")
        victim = self.cluster.nodes[0]
        vid = victim.node_id
        held = sorted(s for s, e in before.items() if vid in e["replicas"])
        self.assertTrue(held)
        victim.kill9()
        rh.wait_until(lambda: self.cluster.etcd.get(victim.key) is None, 15,
                      "the victim's lease to expire", interval=0.05)
        gone_at = time.monotonic()

        # While it is gone: replica_status shows its copy as not alive, with a reason.
        st = status(self.cluster.routers[0])
        for si in st.shards:
            if si.collection != "rp" or si.shard not in held:
                continue
            infos = {ri.node_id: ri for ri in si.replica_status}
            self.assertEqual(sorted(infos), sorted(before[si.shard]["replicas"]))
            self.assertFalse(infos[vid].alive)
            self.assertEqual(infos[vid].reason, "node not registered")
            live = [ri for n, ri in infos.items() if n != vid]
            self.assertTrue(all(ri.alive and ri.state == "READY" for ri in live), live)

        # The CLI shows the same once the victim's shards have a live primary.
        rh.wait_until(lambda: all(e["primary"] != vid
                                  for e in entries(self.cluster, "rp").values()), 10,
                      "live primaries", interval=0.05)
        addr = self.cluster.routers[0].addr
        txt = rh.run([rh.CLI_BIN, "--router", addr, "status"], check=True).stdout
        self.assertIn("REPLICATION: %d shards fully in sync, %d degraded, 0 without a live "
                      "primary" % (2 - len(held), len(held)), txt)
        self.assertIn("node not registered", txt)
        js = json.loads(rh.run([rh.CLI_BIN, "--router", addr, "status", "--json"],
                               check=True).stdout.strip().splitlines()[-1])
        dead = [r for sh in js["shards"] for r in sh["replica_status"] if r["node_id"] == vid]
        self.assertEqual(len(dead), len(held))
        self.assertTrue(all(not r["alive"] and not r["in_sync"] and
                            r["reason"] == "node not registered" for r in dead), dead)

        def replaced():
            now = entries(self.cluster, "rp")
            return now if all(vid not in now[s]["replicas"] for s in held) else None
        after = rh.wait_until(replaced, 30, "replacement of %s" % vid, interval=0.05)
        took = time.monotonic() - gone_at
        self.assertGreaterEqual(took, self.GRACE_MS / 1000.0 - 0.3, "replaced before the grace")
        self.assertLessEqual(took, self.GRACE_MS / 1000.0 + 3)
        live_ids = {n.node_id for n in self.cluster.nodes if n.node_id != vid}
        for s in held:
            b, a = before[s], after[s]
            survivors = [n for n in b["replicas"] if n != vid]
            newcomer = (live_ids - set(survivors)).pop()
            self.assertEqual(sorted(a["replicas"]), sorted(survivors + [newcomer]))
            self.assertNotIn(vid, a["in_sync"])
            self.assertIn(a["primary"], survivors)
            # The replace wrote the newcomer outside in_sync (its decision line); the entry read
            # here may already show it back in: the primary re-adds a caught-up copy at once, and
            # this empty shard catches up in milliseconds.
            # The controller logs the decision after its CAS returns: the entry
            # can be seen before the line is written, so poll for it.
            def line_of(s=s):
                got = [x for x in decisions(self.cluster.routers[0], "replace", "rp")
                       if " shard=%d " % s in x]
                return got or None
            line = rh.wait_until(line_of, 5, "the replace decision line of shard %d" % s,
                                 interval=0.05)
            self.assertEqual(len(line), 1, line)
            self.assertIn(" to=%s " % newcomer, line[0])
        lines = decisions(self.cluster.routers[0], "replace", "rp")
        self.assertEqual(len(lines), len(held), lines)
        rh.wait_until(lambda: all(sorted(entries(self.cluster, "rp")[s]["in_sync"]) ==
                                  sorted(after[s]["replicas"]) for s in held), 30,
                      "the new copies in in_sync")


class SingleCopy(harness.ClusterTestCase):
    def setUp(self):
        self.cluster = rh.RouterCluster(
            nodes=2, routers=1, lease_ttl=3,
            router_args=["--replace-after-ms", "500"]).start()
        self.addCleanup(self.cluster.close)
        self.r = self.cluster.stub()
        self.r.CreateCollection(rh.create_request("one", DIM, shards=2), timeout=30)

    def test_r1_waits(self):
        before = entries(self.cluster, "one")
        victim = self.cluster.nodes[0]
        vid = victim.node_id
        held = sorted(s for s, e in before.items() if e["primary"] == vid)
        self.assertTrue(held)
        victim.kill9()
        rh.wait_until(lambda: self.cluster.etcd.get(victim.key) is None, 15,
                      "the victim's lease to expire", interval=0.05)
        router = self.cluster.routers[0]
        rh.wait_until(lambda: len(decisions(router, "wait", "one")) >= len(held), 10,
                      "decision=wait logged")
        time.sleep(2.0)  # eight more controller rounds, four grace periods
        self.assertEqual(entries(self.cluster, "one"), before)
        lines = decisions(router, "wait", "one")
        self.assertEqual(sorted(int(re.search(r"shard=(\d+)", x).group(1)) for x in lines), held)
        for x in lines:
            self.assertIn('reason="no live in-sync replica"', x)
        for kind in ("failover", "replace", "drop_in_sync"):
            self.assertEqual(decisions(router, kind, "one"), [])


class ReadSpread(harness.ClusterTestCase):
    """Issue item 2: reads use every in-sync replica (router_pick_replica)."""

    def setUp(self):
        self.cluster = rh.RouterCluster(nodes=2, routers=1,
                                        node_args=["--log-level", "debug"]).start()
        self.addCleanup(self.cluster.close)
        self.r = self.cluster.stub()
        self.r.CreateCollection(rh.create_request("rd", DIM, replication_factor=2), timeout=30)
        for n in self.cluster.nodes:  # both copies open, or the first searches skip one
            rh.wait_until(lambda: [x.state for x in n.shard_status("rd")] == [harness.READY],
                          20, "%s: rd/0 READY" % n.node_id)

    def searches_per_node(self):
        out = {}
        for n in self.cluster.nodes:
            with open(n.proc.log_path, errors="replace") as f:
                out[n.node_id] = sum(1 for line in f if 'msg="search" collection=rd ' in line)
        return out

    def test_searches_spread_over_both_replicas(self):
        q = [[0.5] * DIM]
        for _ in range(40):
            self.r.Search(rh.search_request("rd", q, k=5), timeout=10)
        self.assertEqual(self.searches_per_node(), {"node-0": 20, "node-1": 20})

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda _: self.r.Search(rh.search_request("rd", q, k=5), timeout=10),
                        range(200)))
        per = self.searches_per_node()
        # Hedged searches (router --hedge-max-ms) may add a few node searches under load.
        self.assertGreaterEqual(sum(per.values()), 240)
        for node, n in per.items():
            self.assertGreaterEqual(n - 20, 70, "node %s served %d of 200 concurrent searches"
                                    % (node, n - 20))


if __name__ == "__main__":
    unittest.main()
