"""Attributes under replication and failures (docs/filtering.md,
docs/replication.md): R = 2 on 3 nodes, 3 shards, lease TTL 3 s.

A writer upserts points with attributes (a new value per round, so each
upsert changes the indexes) through the routers while:
  1. the primary of shard 0 is killed with SIGKILL and restarted (it catches
     up from its LSN);
  2. a node is stopped with SIGSTOP past its lease, then continued.
Afterwards every acknowledged point has exactly its last acknowledged
attributes, read through a router and from every in-sync replica directly;
Count by filter equals the acknowledged state; filtered searches return only
matching points; the in-sync replicas' digests (which hash attributes) are
equal."""
import threading
import time

import grpc

import repl_harness as rp
import router_harness as rh
import test_filter as tf
from vecshard.v1 import shard_node_pb2 as npb
from router_harness import vecshard_pb2 as pb

DIM = 16


def attrs_of(i, version):
    return {"v": version, "cat": "c%d" % ((i + version) % 5), "tags": ["t%d" % (i % 3)]}


class AttrWriter:
    """Upserts ids 0..n-1 round after round, attributes changing each round;
    remembers the last acknowledged attributes of every id."""

    def __init__(self, cluster, n=300, batch=50):
        self.c, self.n, self.batch = cluster, n, batch
        self.acked = {}      # id -> attrs of its last acknowledged upsert
        self.unknown = set()  # ids whose last upsert failed (either state is fine)
        self.rounds = 0
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        version = 0
        while not self.stop_ev.is_set():
            version += 1
            for lo in range(0, self.n, self.batch):
                if self.stop_ev.is_set():
                    return
                ids = range(lo, min(self.n, lo + self.batch))
                pts = [tf.point_pb(i, rp.vector_of(i, DIM), attrs_of(i, version)) for i in ids]
                router = self.c.routers[version % len(self.c.routers)]
                try:
                    router.stub().Upsert(pb.UpsertRequest(collection="repl", points=pts),
                                         timeout=10)
                    for i in ids:
                        self.acked[i] = attrs_of(i, version)
                        self.unknown.discard(i)
                except grpc.RpcError:
                    self.unknown.update(ids)
                    time.sleep(0.05)
            self.rounds = version

    def start(self):
        self.t.start()
        return self

    def stop(self):
        self.stop_ev.set()
        self.t.join(60)


class FilterRepl(rp.ReplTestCase):
    def test_attributes_survive_kill9_and_sigstop(self):
        c = self.start_cluster(nodes=3, routers=2, replicas=2, shards=3, lease_ttl=3, dim=DIM)
        w = AttrWriter(c).start()
        self.addCleanup(w.stop)
        rp.wait_for(lambda: w.rounds >= 2, 60, "2 rounds of upserts")

        victim = c.primary_of(0)
        victim.kill9()
        r = w.rounds
        rp.wait_for(lambda: w.rounds >= r + 2, 60, "2 rounds after the kill")
        victim.start()
        c.wait_healthy(timeout=60)

        paused = next(n for n in c.nodes if n.node_id != victim.node_id)
        c.pause(paused)
        time.sleep(c.lease_ttl + 2)  # past the lease: its copies leave in_sync
        r = w.rounds
        rp.wait_for(lambda: w.rounds >= r + 1, 60, "a round while a node is stopped")
        c.resume(paused)
        c.wait_healthy(timeout=90)
        r = w.rounds
        rp.wait_for(lambda: w.rounds >= r + 1, 60, "a round after the resume")
        w.stop()
        c.wait_healthy(timeout=90)

        want = {i: a for i, a in w.acked.items() if i not in w.unknown}
        self.assertGreater(len(want), 0)
        ids = sorted(want)
        got = c.stub().Get(pb.GetRequest(collection="repl", ids=ids, with_attributes=True),
                           timeout=30)
        self.check(want, got.points, "router")
        entries = c.entries()
        for s, e in sorted(entries.items()):
            sids = [i for i in ids if rh.shard_of(i, len(entries)) == s]
            for m in e["in_sync"]:
                g = c.node(m).stub().Get(npb.NodeGetRequest(
                    collection="repl", shard=s, ids=sids, with_attributes=True), timeout=30)
                self.check({i: want[i] for i in sids}, g.points, "%s shard %d" % (m, s))
        if not w.unknown:
            for cat in ("c0", "c3"):
                n = c.stub().Count(pb.CountRequest(collection="repl", filter=tf.eq("cat", cat)),
                                   timeout=30).count
                self.assertEqual(n, sum(a["cat"] == cat for a in want.values()), cat)
        req = rh.search_request("repl", [rp.vector_of(7, DIM)], k=20)
        req.filter.CopyFrom(tf.eq("cat", "c1"))
        req.with_attributes = True
        for h in c.stub().Search(req, timeout=30).results[0].hits:
            self.assertEqual(h.attributes["cat"].string_value, "c1")
        c.assert_digests_equal()

    def check(self, want, points, where):
        by_id = {p.id: p for p in points}
        for i, a in want.items():
            self.assertIn(i, by_id, "%s: point %d missing" % (where, i))
            got = {k: tf_value(v) for k, v in by_id[i].attributes.items()}
            self.assertEqual(got, a, "%s: point %d" % (where, i))


def tf_value(v):
    kind = v.WhichOneof("kind")
    return list(v.tags.values) if kind == "tags" else getattr(v, kind)


if __name__ == "__main__":
    import unittest
    unittest.main()
