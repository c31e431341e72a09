"""The hedged-search scenario shared by test_hedge.py and `make bench-hedge`
(scripts/bench_hedge.py): real etcd, 2 vecshard-node processes and 2 routers
(router-0 hedges with the default --hedge-max-ms, router-1 runs with
--hedge-max-ms 0), one collection with 2 shards x 2 replicas, so each node
holds a replica of every shard.

Single-query searches (k 10) are timed one after another from this process:
first with every node healthy, then while node-1 is made slow by SIGSTOP /
SIGCONT in 100 ms pulses, alternating between the hedging router and the
plain one query by query. The pulses are stopped (SIGCONT) whatever happens."""
import os
import signal
import threading
import time

import numpy as np

import harness
import router_harness as rh
import vsdata

DIM, N, K = 16, 4000, 10
PULSE_S = 0.1


class Pulser:
    """SIGSTOP / SIGCONT of pid in PULSE_S pulses on a thread, until stop()."""

    def __init__(self, pid):
        self.pid = pid
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            while not self.done.is_set():
                os.kill(self.pid, signal.SIGSTOP)
                self.done.wait(PULSE_S)
                os.kill(self.pid, signal.SIGCONT)
                self.done.wait(PULSE_S)
        finally:
            try:
                os.kill(self.pid, signal.SIGCONT)
            except OSError:
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


def percentile(xs, p):
    """Nearest-rank percentile of a list of seconds, in milliseconds."""
    s = sorted(xs)
    return 1e3 * s[max(0, min(len(s) - 1, int(np.ceil(p / 100.0 * len(s))) - 1))]


def timed(stub, queries):
    """Seconds per single-query search, one after another."""
    out = []
    for q in queries:
        t = time.perf_counter()
        stub.Search(rh.search_request("h", q[None, :], k=K), timeout=30)
        out.append(time.perf_counter() - t)
    return out


def run(n_queries):
    """Runs the scenario; returns {"healthy"|"hedged"|"plain": {"p50_ms", "p99_ms", "n"}}
    and the hedging router's vecshard_router_search_hedges_total by outcome."""
    c = rh.RouterCluster(nodes=2, routers=1, lease_ttl=10, router_http=True).start()
    try:
        plain = rh.Router(c, "router-1", extra_args=("--hedge-max-ms", "0"))
        c.routers.append(plain)
        plain.start()
        hedging, slow = c.stub(0), c.stub(1)
        base, queries = vsdata.clustered(N, DIM, clusters=16, seed=4, n_queries=n_queries)
        hedging.CreateCollection(rh.create_request("h", DIM, shards=2, replication_factor=2),
                                 timeout=30)
        rh.upsert_all(hedging, "h", list(range(N)), base, batch=2000)
        timed(hedging, queries[:100])  # warm-up: connections and the latency rings
        timed(slow, queries[:100])
        healthy = timed(hedging, queries)
        res = {"hedged": [], "plain": []}
        with Pulser(c.nodes[1].proc.pid):
            # One query through each router in turn, so both see the same pulses.
            for q in queries:
                res["hedged"] += timed(hedging, q[None, :])
                res["plain"] += timed(slow, q[None, :])
        out = {name: {"p50_ms": percentile(xs, 50), "p99_ms": percentile(xs, 99), "n": len(xs)}
               for name, xs in (("healthy", healthy), ("hedged", res["hedged"]),
                                ("plain", res["plain"]))}
        hedges = {}
        if c.routers[0].http:
            m = c.routers[0].metrics()
            for (name, labels), v in m.items():
                if name == "vecshard_router_search_hedges_total":
                    hedges[dict(labels)["outcome"]] = v
        return out, hedges
    finally:
        c.close()
