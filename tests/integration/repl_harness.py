"""repl_harness.py — replicated clusters under load, and the checks of issue 8.

ReplCluster is a router_harness.RouterCluster (real etcd, vecshard-node and
vecshard-router processes, all stopped by pid on success and failure) that
starts with the replication flags of docs/replication.md §12 and creates one
collection through a router with R copies per shard:

    with ReplCluster(nodes=3, routers=2, replicas=2, shards=3) as c:
        w = Writer(c).start(); s = Searcher(c, w).start()
        victim = c.primary_of(0); victim.kill9()
        ...
        w.stop(); s.stop()
        c.wait_healthy(); assert not c.acked_lost(w); c.assert_digests_equal()

The flags every replicated test passes are built in one place,
`repl_flags()`, so they can be adjusted there alone.

Writer threads upsert (and optionally delete) through a random router per
call; a failed call is retried with the same ids on UNAVAILABLE,
FAILED_PRECONDITION and DEADLINE_EXCEEDED. Every call is recorded (start,
end, shard, code) and every acknowledged point kept (id -> exact float32
vector bytes and payload), so `ReplCluster.acked_lost()` can check that each
one is present, exact, through a router AND on every in-sync replica's node
directly, and that every acknowledged delete is absent everywhere. Each call
targets one shard (ids are chosen by the routing hash), so recovery times
are measured per shard. A Searcher runs full-coverage searches and Gets of
already acknowledged ids through the routers: a Get that misses an
acknowledged point, or returns other bytes, is a replica served before it
held every acknowledged write.

Threading: Writer and Searcher threads only make gRPC calls and append to
their own lists under their object's lock; every process is started,
signalled and stopped from the main thread (harness.py: PDEATHSIG follows the
forking thread).

Environment: VS_REPL_LONG=1 selects the long variants of the scenario tests
(`make chaos` sets it); harness.py's and router_harness.py's variables apply.
"""
import os
import random
import re
import signal
import sys
import threading
import time

import grpc
import numpy as np

import harness
import router_harness as rh
from harness import HarnessError, shard_node_pb2
from router_harness import vecshard_pb2

LONG = os.environ.get("VS_REPL_LONG") == "1"
RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION,
               grpc.StatusCode.DEADLINE_EXCEEDED)
ROLE_PRIMARY = shard_node_pb2.SHARD_ROLE_PRIMARY
ROLE_BACKUP = shard_node_pb2.SHARD_ROLE_BACKUP
RECOVERING = shard_node_pb2.REPLICA_STATE_RECOVERING
LOAD_THREAD = 255   # the id range of Writer.load (writer threads use 1..254)
FOREIGN_IDS = 1 << 63  # ids no Writer produces (for probes the tests send themselves)


def repl_flags(replicate_timeout_ms=1000, transfer_max_mbps=0, controller_ttl=2,
               replace_after_ms=60000):
    """(node_args, router_args): every replication flag of docs/replication.md
    §12 that the tests pass, in one place."""
    node = ["--replicate-timeout-ms", str(replicate_timeout_ms)]
    if transfer_max_mbps:
        node += ["--transfer-max-mbps", str(transfer_max_mbps)]
    router = ["--controller", "on", "--controller-ttl", str(controller_ttl),
              "--replace-after-ms", str(replace_after_ms)]
    return node, router


def vector_of(point_id, dim, version=0):
    """The deterministic float32 vector of (id, version)."""
    rng = np.random.default_rng((int(point_id) * 1000003 + version) & ((1 << 63) - 1))
    return rng.random(dim, dtype=np.float32)


def payload_of(point_id, version=0):
    return b"pt-%d-v%d" % (point_id, version)


def as_f32(values):
    return np.array(values, dtype=np.float32).tobytes()


def pct(values, q):
    """The q-th percentile of values (nan if empty)."""
    return float(np.percentile(values, q)) if len(values) else float("nan")


# ------------------------------------------------------------------ cluster
class ReplCluster(rh.RouterCluster):
    """RouterCluster + the replication flags + one collection of `shards`
    shards with `replicas` copies each, created through router-0."""

    def __init__(self, nodes=3, routers=2, replicas=2, shards=3, lease_ttl=3, controller_ttl=2,
                 replace_after_ms=60000, replicate_timeout_ms=1000, transfer_max_mbps=0,
                 collection="repl", dim=16, fsync="batch", node_args=(), router_args=(), **kw):
        n_args, r_args = repl_flags(replicate_timeout_ms, transfer_max_mbps, controller_ttl,
                                    replace_after_ms)
        super().__init__(nodes=nodes, routers=routers, lease_ttl=lease_ttl, fsync=fsync,
                         node_args=n_args + list(node_args), router_args=r_args + list(router_args),
                         **kw)
        self.replicas = replicas
        self.n_shards = shards
        self.controller_ttl = controller_ttl
        self.replace_after_ms = replace_after_ms
        self.replicate_timeout_ms = replicate_timeout_ms
        self.collection = collection
        self.dim = dim
        self.paused = set()

    def start(self):
        super().start()
        try:
            if self.collection:
                self.create(self.collection, self.dim, self.n_shards, self.replicas)
        except BaseException:
            self.print_tails()
            self.close(check=False)
            raise
        return self

    def create(self, name, dim, shards, replicas, timeout=60):
        """Creates a collection through router-0 and waits until every shard
        has `replicas` in-sync copies READY on their nodes."""
        self.stub().CreateCollection(rh.create_request(name, dim, shards=shards,
                                                       replication_factor=replicas), timeout=30)
        return self.wait_healthy(name, replicas=replicas, timeout=timeout)

    def close(self, check=True):
        for s in list(self.paused):  # a stopped process would not see SIGTERM
            self.resume(s)
        super().close(check=check)

    # --- processes
    def node(self, node_id):
        return next(n for n in self.nodes if n.node_id == node_id)

    def pause(self, server):
        """SIGSTOP (the process keeps its sockets and its etcd lease runs out)."""
        os.kill(server.proc.pid, signal.SIGSTOP)
        self.paused.add(server)

    def resume(self, server):
        """SIGCONT."""
        if server.proc.alive():
            os.kill(server.proc.pid, signal.SIGCONT)
        self.paused.discard(server)

    def stop_etcd(self):
        self.etcd.stop()

    def start_etcd(self):
        """Starts etcd again on the same ports and data after stop_etcd()."""
        self.etcd.start_again()

    # --- etcd
    def entries(self, collection=None):
        """{shard: entry dict (+ "mod_revision")} of a collection's shard entries."""
        collection = collection or self.collection
        out = {}
        for kv in self.etcd.range_prefix("%s/shards/%s/" % (self.prefix, collection)):
            e = harness.json.loads(kv["value"])
            e["mod_revision"] = kv["mod_revision"]
            out[int(kv["key"].rsplit("/", 1)[1])] = e
        return out

    def entry(self, shard, collection=None):
        return self.entries(collection)[shard]

    def registered(self):
        """Node ids with a live key under <prefix>/nodes/."""
        return {kv["key"].rsplit("/", 1)[1]
                for kv in self.etcd.range_prefix(self.prefix + "/nodes/")}

    def primary_of(self, shard, collection=None):
        return self.node(self.entry(shard, collection)["primary"])

    def shards_led_by(self, node_id, collection=None):
        return sorted(s for s, e in self.entries(collection).items() if e["primary"] == node_id)

    def backup_only_shards(self, node_id, collection=None):
        """Shards where node_id is an in-sync backup and not the primary."""
        return sorted(s for s, e in self.entries(collection).items()
                      if node_id in e["in_sync"] and e["primary"] != node_id)

    # --- status
    def status(self, node, collection=None, with_digest=False, timeout=30):
        """{shard: ShardReplicaStatus} of one node's replicas of a collection."""
        r = node.stub().ShardStatus(shard_node_pb2.ShardStatusRequest(
            collection=collection or self.collection, with_digest=with_digest), timeout=timeout)
        return {s.shard: s for s in r.shards}

    def health_problems(self, collection=None, replicas=None):
        """Why the collection is not fully healthy ([] if it is): every shard
        has `replicas` copies, all in in_sync (nothing recovering), the primary
        among them, every member registered and READY on its node."""
        collection = collection or self.collection
        replicas = replicas or self.replicas
        live = self.registered()
        problems = []
        entries = self.entries(collection)
        if len(entries) == 0:
            return ["no shard entries for %s" % collection]
        statuses = {}
        for s, e in sorted(entries.items()):
            members = e["in_sync"]
            if (len(set(members)) != replicas or sorted(members) != sorted(e["replicas"]) or
                    e["primary"] not in members):
                problems.append("shard %d: %r" % (s, {k: e[k] for k in
                                                      ("primary", "replicas", "in_sync")}))
                continue
            for m in members:
                if m not in live:
                    problems.append("shard %d: member %s not registered" % (s, m))
                    continue
                if m not in statuses:
                    try:
                        statuses[m] = self.status(self.node(m), collection, timeout=3)
                    except grpc.RpcError as ex:
                        statuses[m] = ex
                st = statuses[m]
                if isinstance(st, grpc.RpcError):
                    problems.append("%s: ShardStatus %s" % (m, st.code()))
                elif s not in st or st[s].state != harness.READY:
                    problems.append("shard %d on %s: %s" % (s, m, st.get(s)))
        return problems

    def wait_healthy(self, collection=None, replicas=None, timeout=60):
        """Waits until health_problems() is empty; returns the shard entries."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.health_problems(collection, replicas)
            if not last:
                return self.entries(collection)
            time.sleep(0.2)
        raise HarnessError("%s not healthy within %.0f s: %s" % (
            collection or self.collection, timeout, "; ".join(last)))

    def digests(self, collection=None):
        """{shard: {node_id: digest}} over each shard's in_sync members."""
        collection = collection or self.collection
        by_node = {}
        out = {}
        for s, e in sorted(self.entries(collection).items()):
            out[s] = {}
            for m in e["in_sync"]:
                if m not in by_node:
                    by_node[m] = self.status(self.node(m), collection, with_digest=True,
                                             timeout=120)
                st = by_node[m].get(s)
                out[s][m] = st.digest if st is not None else None
        return out

    def assert_digests_equal(self, collection=None):
        """Raises AssertionError unless every shard's in-sync replicas report
        one non-empty digest. Returns the digests."""
        d = self.digests(collection)
        bad = {s: per for s, per in d.items()
               if len(set(per.values())) != 1 or not next(iter(per.values()))}
        if bad:
            raise AssertionError("digests differ or are missing: %r" % bad)
        return d

    def acked_lost(self, writer, routers=None, max_report=20):
        """Problems with the writer's acknowledged state ([] if none): every
        acknowledged point must be returned with its exact vector and
        payload, and every acknowledged delete must be absent, through a router
        and on each in-sync replica's node directly."""
        collection = writer.collection
        want, gone = writer.expected()
        problems = []
        routers = routers or [r for r in self.routers if r.proc.alive()]
        ids = sorted(want) + sorted(gone)
        entries = self.entries(collection)
        for lo in range(0, len(ids), 1000):
            chunk = ids[lo:lo + 1000]
            r = random.choice(routers).stub().Get(vecshard_pb2.GetRequest(
                collection=collection, ids=chunk, with_payload=True, with_vector=True),
                timeout=30)
            problems += _compare("router", chunk, r.points, want, gone)
        per_shard = {}
        for i in ids:
            per_shard.setdefault(rh.shard_of(i, len(entries)), []).append(i)
        for s, sids in sorted(per_shard.items()):
            for m in entries[s]["in_sync"]:
                stub = self.node(m).stub()
                for lo in range(0, len(sids), 1000):
                    chunk = sids[lo:lo + 1000]
                    r = stub.Get(shard_node_pb2.NodeGetRequest(
                        collection=collection, shard=s, ids=chunk, with_payload=True,
                        with_vector=True), timeout=30)
                    problems += _compare("%s shard %d" % (m, s), chunk, r.points, want, gone)
        if problems:
            problems = problems[:max_report] + (
                ["... %d more" % (len(problems) - max_report)] if len(problems) > max_report
                else [])
        return problems

    def controller_router(self, timeout=None):
        """The Router whose id ClusterStatus.controller names (asked of every
        live router; the id is matched against the router's address or name,
        or has its port or pid as one of its numbers)."""
        timeout = timeout or (self.controller_ttl + 10)
        deadline = time.monotonic() + timeout
        ids = []
        while time.monotonic() < deadline:
            ids = []
            for r in self.routers:
                if not r.proc.alive() or r in self.paused:
                    continue
                try:
                    ids.append(r.stub().ClusterStatus(vecshard_pb2.ClusterStatusRequest(),
                                                      timeout=2).controller)
                except grpc.RpcError:
                    pass
            for cid in ids:
                r = self.router_by_id(cid)
                if r is not None and r.proc.alive():
                    return r
            time.sleep(0.1)
        raise HarnessError("no live router holds the controller election within %.0f s "
                           "(ClusterStatus.controller: %r)" % (timeout, ids))

    def router_by_id(self, cid):
        """The Router a controller id names, or None."""
        if not cid:
            return None
        numbers = re.findall(r"\d+", cid)
        for r in self.routers:
            if cid in (r.addr, r.name) or str(r.port) in numbers or str(r.proc.pid) in numbers:
                return r
        raise HarnessError("controller id %r names none of the routers %r (adjust "
                           "ReplCluster.router_by_id)" % (cid, [(r.name, r.addr, r.proc.pid)
                                                                for r in self.routers]))


def _compare(where, ids, points, want, gone):
    """Problems of one Get answer against the expected state."""
    got = {p.id: p for p in points}
    out = []
    for i in ids:
        p = got.get(i)
        if i in gone:
            if p is not None:
                out.append("%s: deleted id %d is present" % (where, i))
            continue
        vec, payload = want[i]
        if p is None:
            out.append("%s: acked id %d missing" % (where, i))
        elif as_f32(p.vector) != vec or p.payload != payload:
            out.append("%s: acked id %d differs (payload %r, want %r)" % (
                where, i, p.payload[:40], payload[:40]))
    return out


# ------------------------------------------------------------------ load
class Calls:
    """A thread-safe log of calls: (start, end, shard, kind, code name)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.log = []

    def add(self, t0, t1, shard, kind, code):
        with self.lock:
            self.log.append((t0, t1, shard, kind, code))

    def select(self, since=0.0, until=float("inf"), shard=None, kind=None, ok=None):
        """Calls that started in [since, until), optionally one shard / kind / outcome."""
        with self.lock:
            log = list(self.log)
        return [c for c in log if since <= c[0] < until and (shard is None or c[2] == shard) and
                (kind is None or c[3] == kind) and (ok is None or (c[4] == "OK") == ok)]

    def first_ok_after(self, t, shard=None, kind=None):
        """End time of the first successful call that started at or after t, or None."""
        oks = [c[1] for c in self.select(since=t, shard=shard, kind=kind, ok=True)]
        return min(oks) if oks else None

    def failures(self, since=0.0, until=float("inf"), shard=None, kind=None):
        return self.select(since, until, shard, kind, ok=False)


class LoadThreads:
    """The thread pool of a load generator: n_threads daemon threads named
    `<name>-<t>` running self._run(t) until stop(); stop() joins them for up
    to join_timeout() seconds each."""

    name = "load"

    def _init_threads(self, n_threads):
        self.n_threads = n_threads
        self.calls = Calls()
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = []

    def join_timeout(self):
        return self.timeout + 10

    def start(self):
        for t in range(self.n_threads):
            th = threading.Thread(target=self._run, args=(t,), daemon=True,
                                  name="%s-%d" % (self.name, t))
            th.start()
            self.threads.append(th)
        return self

    def stop(self):
        self.stop_event.set()
        for th in self.threads:
            th.join(timeout=self.join_timeout())
        return self


class Writer(LoadThreads):
    """Threads that upsert (and every `delete_every`-th call delete) through
    random live routers, retrying failed calls with the same ids for up to
    `give_up_s`. With at least one thread per shard (the default), thread t
    writes only shards[t % len(shards)], so a shard that is down does not
    hold back the others' calls; fewer threads take turns over
    shards[t::threads]. Ids of a call whose retries gave up are uncertain and left
    out of the checks. n_shards is the collection's shard count (default: read
    from etcd, which must then be up). `offset` is added to every component of
    the threads' vectors (not load()'s), so a test can keep them away from the
    queries it measures recall with."""

    def __init__(self, cluster, collection=None, threads=None, batch=5, dim=None, shards=None,
                 delete_every=0, timeout=5.0, give_up_s=60.0, retry=True, pause_s=0.0,
                 record=True, seed=1, n_shards=None, offset=0.0):
        self.cluster = cluster
        self.collection = collection or cluster.collection
        self.batch = batch
        self.dim = dim or cluster.dim
        self.n_shards = n_shards or len(cluster.entries(self.collection))
        self.shards = list(shards) if shards is not None else list(range(self.n_shards))
        self._init_threads(threads or len(self.shards))
        self.delete_every = delete_every
        self.timeout = timeout
        self.give_up_s = give_up_s
        self.retry = retry
        self.pause_s = pause_s
        self.record = record
        self.seed = seed
        self.offset = offset  # added to every component (keeps the writer's points apart)
        self.acked = {}      # id -> (vector bytes, payload)
        self.deleted = set()
        self.uncertain = set()
        self.acked_points = 0
        self.latencies = []  # seconds per successful call (first attempt to ack)

    name = "writer"

    def join_timeout(self):
        return self.give_up_s + self.timeout + 10

    def expected(self):
        """(acked id -> (vector bytes, payload), acked deleted ids), without
        uncertain ids."""
        with self.lock:
            return dict(self.acked), set(self.deleted) - self.uncertain

    def sample_acked(self, n, rng):
        """Up to n random acknowledged ids."""
        with self.lock:
            keys = list(self.acked)
        return rng.sample(keys, n) if len(keys) > n else keys

    def still_acked(self, i):
        with self.lock:
            return i in self.acked

    def load(self, n, batch=1000):
        """Upserts n new points synchronously (before start(); recorded as
        acknowledged), spread over every shard; a batch refused with a retry
        code is sent again (the router: retrying the whole call is safe)."""
        base = (self.seed << 48) + (LOAD_THREAD << 40) + len(self.acked)
        for lo in range(0, n, batch):
            ids = list(range(base + lo, base + min(n, lo + batch)))
            vecs = [vector_of(i, self.dim) for i in ids]
            pays = [payload_of(i) for i in ids]
            req = rh.upsert_request(self.collection, ids, vecs, pays)
            deadline = time.monotonic() + 60
            while True:  # right after a create the entries' epochs may still move
                try:
                    random.choice(self._routers()).stub().Upsert(req, timeout=120)
                    break
                except grpc.RpcError as e:
                    if e.code() not in RETRY_CODES or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            with self.lock:
                self.acked_points += len(ids)
                for i, v, p in zip(ids, vecs, pays):
                    self.acked[i] = (v.tobytes(), p)
        return self

    def _routers(self):
        live = [r for r in self.cluster.routers if r.proc.alive() and
                r not in self.cluster.paused]
        return live or self.cluster.routers

    def _call(self, shard, kind, fn_name, req):
        """One call with retries; True once acknowledged."""
        first = time.monotonic()
        while True:
            t0 = time.monotonic()
            try:
                getattr(random.choice(self._routers()).stub(), fn_name)(req, timeout=self.timeout)
                code = "OK"
            except grpc.RpcError as e:
                code = e.code().name
            except ValueError:  # a channel closed under us by a kill: retry
                code = "CLOSED"
            t1 = time.monotonic()
            self.calls.add(t0, t1, shard, kind, code)
            if code == "OK":
                with self.lock:
                    self.latencies.append(t1 - first)
                return True
            if not self.retry or t1 - first > self.give_up_s or \
                    code not in [c.name for c in RETRY_CODES] + ["CLOSED"]:
                return False
            time.sleep(0.02)

    def _run(self, t):
        rng = random.Random(self.seed * 7919 + t)
        next_id = (self.seed << 48) + ((t + 1) << 40)  # disjoint per (seed, thread)
        k = len(self.shards)
        mine = [self.shards[t % k]] if self.n_threads >= k else self.shards[t::self.n_threads]
        n = 0
        while not self.stop_event.is_set():
            shard = mine[n % len(mine)]
            n += 1
            if self.delete_every and n % self.delete_every == 0:
                self._delete(shard, rng)
            else:
                ids = []
                while len(ids) < self.batch:
                    next_id += 1
                    if rh.shard_of(next_id, self.n_shards) == shard:
                        ids.append(next_id)
                vecs = [vector_of(i, self.dim) + np.float32(self.offset) for i in ids]
                pays = [payload_of(i) for i in ids]
                req = rh.upsert_request(self.collection, ids, vecs, pays)
                ok = self._call(shard, "upsert", "Upsert", req)
                with self.lock:
                    if ok:
                        self.acked_points += len(ids)
                    if ok and self.record:
                        for i, v, p in zip(ids, vecs, pays):
                            self.acked[i] = (v.tobytes(), p)
                    elif not ok:
                        self.uncertain.update(ids)
            if self.pause_s:
                self.stop_event.wait(self.pause_s)

    def _delete(self, shard, rng):
        """Deletes up to `batch` of this writer's acked ids of one shard."""
        with self.lock:
            mine = [i for i in self.acked if rh.shard_of(i, self.n_shards) == shard]
            ids = rng.sample(mine, min(self.batch, len(mine)))
            for i in ids:
                del self.acked[i]  # out of `acked` before the call: readers skip it
        if not ids:
            return
        ok = self._call(shard, "delete", "Delete",
                        vecshard_pb2.DeleteRequest(collection=self.collection, ids=ids))
        with self.lock:
            (self.deleted if ok else self.uncertain).update(ids)


class Searcher(LoadThreads):
    """Threads alternating a full-coverage Search and a Get of acknowledged
    ids through random live routers. A Get that misses an id still
    acknowledged after it returned, or returns other bytes, goes to `wrong`,
    and so does a search answer with an id twice or with partial coverage."""

    def __init__(self, cluster, writer, threads=1, k=10, get_ids=10, timeout=5.0, pause_s=0.02,
                 seed=3, min_coverage=0.0, ef=0):
        self.cluster = cluster
        self.writer = writer
        self._init_threads(threads)
        self.k = k
        self.min_coverage = min_coverage
        self.ef = ef
        self.get_ids = get_ids
        self.timeout = timeout
        self.pause_s = pause_s
        self.seed = seed
        self.wrong = []

    name = "searcher"

    def _run(self, t):
        rng = random.Random(self.seed * 104729 + t)
        w = self.writer
        n = 0
        while not self.stop_event.is_set():
            n += 1
            router = random.choice(w._routers())
            t0 = time.monotonic()
            if n % 2:
                q = np.array([rng.random() for _ in range(w.dim)], dtype=np.float32)
                kind = "search"
                try:
                    r = router.stub().Search(rh.search_request(
                        w.collection, [q], k=self.k, ef=self.ef, min_coverage=self.min_coverage),
                        timeout=self.timeout)
                    code = "OK"
                    ids = [h.id for h in r.results[0].hits]
                    problem = None
                    if len(set(ids)) != len(ids):
                        problem = "duplicate ids in a search: %r" % ids
                    elif r.coverage.partial or r.coverage.shards_ok != r.coverage.shards_total:
                        problem = "partial coverage: %s" % str(r.coverage).replace("\n", " ")
                    if problem:
                        with self.lock:
                            self.wrong.append((time.monotonic(), router.name, None, problem))
                except grpc.RpcError as e:
                    code = e.code().name
                except ValueError:
                    code = "CLOSED"
            else:
                kind = "get"
                ids = w.sample_acked(self.get_ids, rng)
                want, _ = w.expected() if ids else ({}, None)
                if not ids:
                    self.stop_event.wait(0.05)
                    continue
                try:
                    r = router.stub().Get(vecshard_pb2.GetRequest(
                        collection=w.collection, ids=ids, with_payload=True, with_vector=True),
                        timeout=self.timeout)
                    code = "OK"
                    got = {p.id: p for p in r.points}
                    for i in ids:
                        if i not in want or not w.still_acked(i):
                            continue
                        p = got.get(i)
                        if p is None or as_f32(p.vector) != want[i][0] or \
                                p.payload != want[i][1]:
                            with self.lock:
                                self.wrong.append((time.monotonic(), router.name, i,
                                                   "missing" if p is None else "differs"))
                except grpc.RpcError as e:
                    code = e.code().name
                except ValueError:
                    code = "CLOSED"
            self.calls.add(t0, time.monotonic(), None, kind, code)
            self.stop_event.wait(self.pause_s)


def wait_for(pred, timeout, what, interval=0.05):
    """Polls pred() until truthy and returns its value; HarnessError naming
    `what` (and the last value) otherwise."""
    return rh.wait_until(pred, timeout, what, interval=interval)


# ------------------------------------------------------------------ test base
class ReplTestCase(harness.ClusterTestCase):
    """unittest base: one ReplCluster per test, load threads stopped before
    it is closed, and the end-of-scenario checks."""

    def start_cluster(self, **kw):
        self.cluster = ReplCluster(**kw).start()
        self.addCleanup(self.cluster.close)
        return self.cluster

    def start_load(self, collection=None, searcher=True, **writer_kw):
        """A started Writer (and Searcher) on a collection; stopped at cleanup."""
        w = Writer(self.cluster, collection, **writer_kw).start()
        self.addCleanup(w.stop)
        if not searcher:
            return w, None
        s = Searcher(self.cluster, w).start()
        self.addCleanup(s.stop)
        return w, s

    def finish(self, *loads, collection=None, replicas=None, timeout=90):
        """Stops the load, waits for full health, then: no acknowledged write
        lost or different anywhere, no Get served a stale replica, equal
        digests on every shard's in-sync replicas."""
        for x in loads:
            if x is not None:
                x.stop()
        self.cluster.wait_healthy(collection, replicas=replicas, timeout=timeout)
        for x in loads:
            if isinstance(x, Writer):
                self.assertEqual(self.cluster.acked_lost(x), [], "acknowledged writes lost")
                self.assertGreater(x.acked_points, 0, "the writer acknowledged nothing")
            elif isinstance(x, Searcher):
                self.assertEqual(x.wrong, [], "a Get served a replica missing acked writes")
        return self.cluster.assert_digests_equal(collection)

    def measured(self, what, value):
        """Prints one measured number (collected for the closing note)."""
        sys.stderr.write("\nmeasured: %s: %s\n" % (what, value))
        sys.stderr.flush()
