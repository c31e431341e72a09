"""rebalance_harness.py — scale-out, drain and moves under load (issue 9, docs/rebalance.md).

RebalanceCluster is a repl_harness.ReplCluster whose routers also get the
rebalance flags of docs/rebalance.md §6 (built in one place,
`rebalance_flags()`), and whose collection is created with a chosen HNSW
shape (m, ef_construction) so 100k points load in seconds:

    with RebalanceCluster(nodes=2, replicas=2, shards=12, auto_rebalance=True) as c:
        base = c.load_base(100000)            # fixed points (Writer.load)
        w, s = ... rp.Writer(c, offset=FAR), rp.Searcher(c, w, min_coverage=1.0)
        mw = MoveWatcher(c).start()
        c.add_node(); c.add_node()
        c.wait_balanced(timeout=120)
        ... c.replica_counts(), mw.moves(), c.duplicates(w), c.recall(...)

Besides the shard entries (etcd, as repl_harness reads them) it reads the
controller's view through `ClusterStatus` on any live router: `moves()`,
`active_moves()`, `rebalance()`, `drain()`. `wait_settled()` polls until no
move is queued or running and every shard is healthy (repl_harness's
health_problems); `wait_balanced()` also until the per-node replica counts
over the eligible nodes (registered, not draining) differ by at most 1.

MoveWatcher is one thread polling ClusterStatus every `interval` s and
keeping, per move id, every state and step seen, when it was first seen
RUNNING and when terminal, the largest bytes_done and the last reason, so a
test can say which searches ran during which move.

Recall: `brute_force()` (numpy, exact L2) and `recall()` (searches at a
fixed ef and min_coverage 1.0 through a router). `duplicates()` checks that
each acknowledged id is returned once by Get and that the live points on
each shard's primary add up to the acknowledged count.

Threading: as repl_harness — MoveWatcher only makes gRPC calls and appends
under its own lock; processes are started and killed from the main thread.
"""
import json
import time

import grpc
import numpy as np

import repl_harness as rp
import router_harness as rh
from harness import HarnessError
from router_harness import vecshard_pb2

QUEUED = vecshard_pb2.MOVE_STATE_QUEUED
RUNNING = vecshard_pb2.MOVE_STATE_RUNNING
DONE = vecshard_pb2.MOVE_STATE_DONE
FAILED = vecshard_pb2.MOVE_STATE_FAILED
CANCELLED = vecshard_pb2.MOVE_STATE_CANCELLED
ACTIVE = (QUEUED, RUNNING)
TERMINAL = (DONE, FAILED, CANCELLED)
STATE_NAME = {v: k for k, v in vecshard_pb2.MoveState.items()}


def rebalance_flags(auto_rebalance=True, max_moves=2, move_timeout_ms=60000, settle_ms=1000):
    """Router arguments: every rebalance flag of docs/rebalance.md §6 the
    tests pass, in one place."""
    return ["--auto-rebalance", "on" if auto_rebalance else "off",
            "--max-moves", str(max_moves),
            "--move-timeout-ms", str(move_timeout_ms),
            "--rebalance-settle-ms", str(settle_ms)]


def move_str(m):
    """One line describing a ReplicaMove."""
    return "%s %s/%d %s->%s %s%s%s%s" % (
        m.id or "-", m.collection, m.shard, m.from_node, m.to_node, m.kind or "replica",
        " primary" if m.primary else "", " " + STATE_NAME.get(m.state, str(m.state)),
        (" step=" + m.step if m.step else "") + (" reason=%r" % m.reason if m.reason else ""))


class RebalanceCluster(rp.ReplCluster):
    """ReplCluster + the rebalance flags + an HNSW shape for the collection."""

    def __init__(self, auto_rebalance=True, max_moves=2, move_timeout_ms=60000, settle_ms=1000,
                 m=12, ef_construction=64, router_args=(), **kw):
        self.m = m
        self.ef_construction = ef_construction
        self.auto_rebalance = auto_rebalance
        self._move_seq = 0
        flags = rebalance_flags(auto_rebalance, max_moves, move_timeout_ms, settle_ms)
        super().__init__(router_args=flags + list(router_args), **kw)

    def create(self, name, dim, shards, replicas, timeout=60):
        self.stub().CreateCollection(rh.create_request(
            name, dim, shards=shards, replication_factor=replicas, m=self.m,
            ef_construction=self.ef_construction), timeout=30)
        return self.wait_healthy(name, replicas=replicas, timeout=timeout)

    # --- data
    def load_base(self, n, batch=2000, seed=1):
        """Loads n fixed points (Writer.load, recorded as acknowledged);
        returns the Writer holding them (not started: its threads are not
        meant to run)."""
        return rp.Writer(self, threads=1, seed=seed).load(n, batch=batch)

    # --- the controller's view
    def live_routers(self):
        return [r for r in self.routers if r.proc.alive() and r not in self.paused]

    def cluster_status(self, router=None, timeout=10):
        """ClusterStatus from `router` or the first live router that answers."""
        last = None
        for r in [router] if router else self.live_routers():
            try:
                return r.stub().ClusterStatus(vecshard_pb2.ClusterStatusRequest(),
                                              timeout=timeout)
            except grpc.RpcError as e:
                last = e
        raise HarnessError("no router answered ClusterStatus: %s" % last)

    def moves(self, router=None):
        return list(self.cluster_status(router).moves)

    def active_moves(self, router=None):
        return [m for m in self.moves(router) if m.state in ACTIVE]

    def rebalance(self, dry_run=False, collection="", router=None, timeout=30):
        r = router or self.live_routers()[0]
        return r.stub().Rebalance(vecshard_pb2.RebalanceRequest(
            dry_run=dry_run, collection=collection), timeout=timeout)

    def drain(self, node_id, undrain=False, router=None, timeout=30):
        r = router or self.live_routers()[0]
        return r.stub().Drain(vecshard_pb2.DrainRequest(node_id=node_id, undrain=undrain),
                              timeout=timeout)

    def queue_move(self, shard, frm, to, kind="replica", primary=None, collection=None):
        """Puts one queued move document into etcd, in the layout moves_queue
        writes (common/cluster move_doc.c), so a test picks the exact move
        (e.g. of a primary) instead of the planner; returns its id."""
        collection = collection or self.collection
        if primary is None:
            primary = kind == "replica" and self.entry(shard, collection)["primary"] == frm
        self._move_seq += 1
        now = int(time.time() * 1000)
        mid = "%013d-%05d" % (now, self._move_seq % 100000)
        doc = {"id": mid, "collection": collection, "shard": shard, "from": frm, "to": to,
               "kind": kind, "primary": primary, "state": "queued", "step": "", "attempts": 0,
               "reason": "", "origin": "manual", "bytes_total": 0, "created_at": now,
               "started_at": 0, "finished_at": 0}
        self.etcd.put("%s/moves/%s" % (self.prefix, mid), json.dumps(doc))
        return mid

    def move_doc(self, mid):
        """The move document of id mid from etcd (dict), or None."""
        return self.etcd.get_json("%s/moves/%s" % (self.prefix, mid))

    def wait_move_final(self, mid, timeout=120):
        """Polls the document until done, failed or cancelled; returns it."""
        def final():
            m = self.move_doc(mid)
            return m if m and m["state"] in ("done", "failed", "cancelled") else None
        return rp.wait_for(final, timeout, "move %s finished (last %r)" % (mid, self.move_doc(mid)),
                           interval=0.1)

    def stray_replicas(self, collection=None):
        """Replicas a live node serves although no shard entry names it there
        ([] if none)."""
        collection = collection or self.collection
        entries = self.entries(collection)
        out = []
        for n in self.nodes:
            if not n.proc.alive() or n.node_id not in self.registered():
                continue
            try:
                st = self.status(n, collection, timeout=5)
            except grpc.RpcError as e:
                out.append("%s: ShardStatus %s" % (n.node_id, e.code()))
                continue
            out += ["%s serves shard %d" % (n.node_id, s) for s in st
                    if n.node_id not in entries.get(s, {}).get("replicas", [])]
        return out

    def draining(self):
        """Node ids with a drain mark in etcd (<prefix>/drain/<node>)."""
        return {kv["key"].rsplit("/", 1)[1]
                for kv in self.etcd.range_prefix(self.prefix + "/drain/")}

    def eligible(self):
        """Registered nodes without a drain mark."""
        return self.registered() - self.draining()

    # --- placement
    def replica_counts(self, collection=None, nodes=None):
        """{node_id: replicas of the collection on it} over `nodes` (default:
        the eligible nodes), from the shard entries; nodes named by an entry
        but outside `nodes` are counted too."""
        counts = {n: 0 for n in (self.eligible() if nodes is None else nodes)}
        for e in self.entries(collection).values():
            for n in e["replicas"]:
                counts[n] = counts.get(n, 0) + 1
        return counts

    def primary_counts(self, collection=None, nodes=None):
        counts = {n: 0 for n in (self.eligible() if nodes is None else nodes)}
        for e in self.entries(collection).values():
            counts[e["primary"]] = counts.get(e["primary"], 0) + 1
        return counts

    def placement_problems(self, collection=None):
        """Entries with two copies of a shard on one node, or a replica on a
        node that is not registered ([] if none)."""
        live = self.registered()
        out = []
        for s, e in sorted(self.entries(collection).items()):
            if len(set(e["replicas"])) != len(e["replicas"]):
                out.append("shard %d: two copies on one node: %r" % (s, e["replicas"]))
            out += ["shard %d: replica on unregistered %s" % (s, n)
                    for n in e["replicas"] if n not in live]
        return out

    def imbalance(self, collection=None):
        """max - min of the replica counts over the eligible nodes (nodes
        outside them must hold none: they count as +inf)."""
        el = self.eligible()
        counts = self.replica_counts(collection)
        if any(n not in el and c for n, c in counts.items()):
            return float("inf")
        vals = [c for n, c in counts.items() if n in el]
        return max(vals) - min(vals) if vals else 0

    # --- waiting
    def settle_problems(self, collection=None):
        """Why the cluster is not settled ([] if it is): a move queued or
        running, or repl_harness's health problems."""
        try:
            active = self.active_moves()
        except HarnessError as e:
            return [str(e)]
        out = ["move %s" % move_str(m) for m in active]
        return out + self.health_problems(collection)

    def wait_settled(self, timeout=120, collection=None, pred=None, what="settled"):
        """Polls until settle_problems() is empty and pred() (if any) is true."""
        deadline = time.monotonic() + timeout
        last = []
        while time.monotonic() < deadline:
            last = self.settle_problems(collection)
            if not last and pred is not None and not pred():
                last = ["%s: not yet" % what]
            if not last:
                return self.entries(collection)
            time.sleep(0.2)
        raise HarnessError("%s not reached within %.0f s: %s; counts %r" % (
            what, timeout, "; ".join(last[:12]), self.replica_counts(collection)))

    def wait_balanced(self, timeout=120, collection=None):
        """wait_settled() with replica counts over the eligible nodes at most 1 apart."""
        return self.wait_settled(timeout, collection, lambda: self.imbalance(collection) <= 1,
                                 "balanced (max - min <= 1)")

    def wait_move(self, pred, timeout, what):
        """The first move (polled from ClusterStatus) for which pred(m) holds."""
        def find():
            try:
                return next((m for m in self.moves() if pred(m)), None)
            except HarnessError:
                return None
        return rp.wait_for(find, timeout, what, interval=0.05)

    # --- checks
    def duplicates(self, writers, collection=None):
        """Problems ([] if none) over the writers' acknowledged ids (all of
        one collection): an id returned twice by one Get, or live points on
        the shards' primaries that do not add up to the acknowledged ids
        (only checked when no write is uncertain)."""
        collection = collection or writers[0].collection
        want = {}
        for w in writers:
            want.update(w.expected()[0])
        ids = sorted(want)
        out = []
        routers = self.live_routers()
        for lo in range(0, len(ids), 2000):
            chunk = ids[lo:lo + 2000]
            r = routers[(lo // 2000) % len(routers)].stub().Get(vecshard_pb2.GetRequest(
                collection=collection, ids=chunk), timeout=30)
            got = [p.id for p in r.points]
            if len(got) != len(set(got)):
                seen = set()
                twice = sorted({i for i in got if i in seen or seen.add(i)})
                out.append("Get returned ids twice: %r" % twice[:10])
        total = 0
        for s, e in sorted(self.entries(collection).items()):
            st = self.status(self.node(e["primary"]), collection).get(s)
            total += st.count if st is not None else 0
        if total != len(want) and not any(w.uncertain for w in writers):
            out.append("primaries hold %d live points, %d acknowledged" % (total, len(want)))
        return out

    def search(self, queries, k=10, ef=64, router=None, batch=50):
        """Hit ids per query (list of lists), min_coverage 1.0, a fixed ef."""
        r = router or self.live_routers()[0]
        out = []
        for lo in range(0, len(queries), batch):
            resp = r.stub().Search(rh.search_request(
                self.collection, queries[lo:lo + batch], k=k, ef=ef, min_coverage=1.0),
                timeout=60)
            out += [[h.id for h in q.hits] for q in resp.results]
        return out

    def recall(self, queries, truth, k=10, ef=64, router=None):
        """Mean recall@k of searches at `ef` against `truth` (ids per query)."""
        got = self.search(queries, k, ef, router)
        return float(np.mean([len(set(g[:k]) & set(t[:k])) / float(k)
                              for g, t in zip(got, truth)]))


def brute_force(ids, vectors, queries, k=10):
    """Exact L2 top-k ids per query (numpy): ids (n), vectors (n x d) float32."""
    ids = np.asarray(ids, dtype=np.uint64)
    x = np.asarray(vectors, dtype=np.float32)
    xx = (x * x).sum(axis=1)
    out = []
    for q in np.asarray(queries, dtype=np.float32):
        d = xx - 2.0 * x.dot(q)
        top = np.argpartition(d, k)[:k]
        out.append([int(i) for i in ids[top[np.argsort(d[top])]]])
    return out


def base_arrays(writer):
    """(ids, vectors n x d) of a writer's acknowledged points."""
    want, _ = writer.expected()
    ids = sorted(want)
    return ids, np.frombuffer(b"".join(want[i][0] for i in ids), dtype=np.float32).reshape(
        len(ids), writer.dim)


def queries_near(vectors, n, seed=5, noise=0.01):
    """n queries: random base vectors plus a little noise."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(vectors), n, replace=False)
    return (vectors[pick] + rng.normal(0, noise, (n, vectors.shape[1]))).astype(np.float32)


class MoveWatcher(rp.LoadThreads):
    """One thread polling ClusterStatus; `seen` keeps per move id a dict:
    move (the last ReplicaMove), states and steps seen, t_running (first
    seen RUNNING), t_end (first seen terminal), max_bytes_done."""

    name = "move-watcher"

    def __init__(self, cluster, interval=0.1):
        self.cluster = cluster
        self.interval = interval
        self.timeout = 5
        self._init_threads(1)
        self.seen = {}
        self.errors = 0

    def _run(self, _t):
        while not self.stop_event.is_set():
            try:
                moves = self.cluster.moves()
            except (HarnessError, ValueError, IndexError):
                self.errors += 1
                moves = []
            now = time.monotonic()
            with self.lock:
                for m in moves:
                    if not m.id:
                        continue
                    d = self.seen.setdefault(m.id, {"states": set(), "steps": set(),
                                                    "t_first": now, "t_running": None,
                                                    "t_end": None, "max_bytes_done": 0})
                    d["move"] = m
                    d["states"].add(m.state)
                    if m.step:
                        d["steps"].add(m.step)
                    if m.state == RUNNING and d["t_running"] is None:
                        d["t_running"] = now
                    if m.state in TERMINAL and d["t_end"] is None:
                        d["t_end"] = now
                    d["max_bytes_done"] = max(d["max_bytes_done"], m.bytes_done)
            self.stop_event.wait(self.interval)

    def moves(self):
        with self.lock:
            return {k: dict(v) for k, v in self.seen.items()}

    def running_intervals(self):
        """[(move id, t_running, t_end)] of every move seen RUNNING."""
        now = time.monotonic()
        return [(k, v["t_running"], v["t_end"] or now) for k, v in sorted(self.moves().items())
                if v["t_running"] is not None]


def calls_during(calls, t0, t1, kind=None):
    """Calls (repl_harness.Calls) of `kind` that started in [t0, t1)."""
    return calls.select(since=t0, until=t1, kind=kind)


class RebalanceTestCase(rp.ReplTestCase):
    """unittest base: one RebalanceCluster per test, and the checks of a
    rebalance under load."""

    def start_cluster(self, **kw):
        self.cluster = RebalanceCluster(**kw).start()
        self.addCleanup(self.cluster.close)
        return self.cluster

    def watch_moves(self):
        mw = MoveWatcher(self.cluster).start()
        self.addCleanup(mw.stop)
        return mw

    def assert_searched_through_moves(self, watcher, searcher):
        """Every move seen RUNNING had full-coverage searches started while it
        ran, and none of the searcher's calls (searches and Gets) failed."""
        iv = watcher.running_intervals()
        self.assertGreater(len(iv), 0, "no move was seen running")
        for mid, t0, t1 in iv:
            n = len(calls_during(searcher.calls, t0, t1, "search"))
            self.assertGreater(n, 0, "no search ran during move %s (%.2f s)" % (mid, t1 - t0))
        fails = searcher.calls.failures()
        self.assertEqual(fails, [], "searches or Gets failed during the moves")
        self.measured("searches during moves", sum(
            len(calls_during(searcher.calls, t0, t1, "search")) for _, t0, t1 in iv))

    def assert_placement(self, collection=None):
        self.assertEqual(self.cluster.placement_problems(collection), [])

    def assert_no_duplicates(self, *writers):
        self.assertEqual(self.cluster.duplicates(list(writers)), [], "duplicated ids")


def wait_registered(cluster, node, timeout=30):
    """Waits until node's key is in etcd."""
    rp.wait_for(lambda: node.node_id in cluster.registered(), timeout,
                "%s registered" % node.node_id)

