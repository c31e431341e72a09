"""bench_restart.py — how long a vecshard-node takes to come back (make bench-restart).

Starts a throw-away etcd and one node (tests/integration/harness.py: stopped
by pid and its temp dir removed however the run ends), loads N x DIM points
into one collection over gRPC, then measures:

  (a) clean stop: SIGTERM (the node snapshots every replica with writes no
      snapshot holds), restart, time from spawn to the port, to Health/Check
      SERVING and to every replica READY with the exact count;
  (b) kill -9 with W MiB of WAL written since the last snapshot (background
      snapshots turned off for this phase), restart, the same times, for
      each W asked for.

Prints one line per measurement and a JSON line at the end. Not a test: the
figures depend on the machine.

Usage: bench_restart.py [--points 200000] [--dim 128] [--shards 1]
                        [--wal-mib 8,32] [--efc 100] [--fsync none]
"""
import argparse
import glob
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import harness  # noqa: E402
from harness import READY, common_pb2, shard_node_pb2  # noqa: E402
from grpc_health.v1 import health_pb2  # noqa: E402

import numpy as np  # noqa: E402

COLL = "restart"
NO_SNAPSHOTS = ["--snapshot-wal-bytes", "1024GiB", "--snapshot-wal-records", "0",
                "--snapshot-max-age-s", "0", "--shutdown-snapshot-timeout-ms", "0"]


def write(node, shard, first_id, n, dim, seed, batch=2000):
    """Writes n random points with ids first_id.. to shard; returns the seconds taken."""
    rng = np.random.default_rng(seed)
    stub = node.stub()
    t0 = time.monotonic()
    for lo in range(0, n, batch):
        k = min(batch, n - lo)
        vecs = rng.random((k, dim), dtype=np.float32)
        pts = [common_pb2.Point(id=first_id + lo + i, vector=vecs[i].tolist()) for i in range(k)]
        stub.Write(shard_node_pb2.WriteRequest(collection=COLL, shard=shard, epoch=1,
                                               batch=common_pb2.WriteBatch(upserts=pts)),
                   timeout=600)
    return time.monotonic() - t0


def wal_bytes(node):
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(node.data_dir, COLL, "*",
                                                                  "wal-*.log")))


def timed_start(node, shards, counts, timeout=900):
    """Spawns node; returns seconds to the port, to SERVING and to all READY with counts."""
    t0 = time.monotonic()
    node.proc.spawn(node.argv())
    t_port = t_serving = None
    while time.monotonic() - t0 < timeout:
        if not node.proc.alive():
            raise harness.HarnessError("node exited during start-up:\n" + node.proc.tail())
        if t_port is None:
            if node._port_open():
                t_port = time.monotonic() - t0
            else:
                time.sleep(0.005)
                continue
        if t_serving is None and node.health() == health_pb2.HealthCheckResponse.SERVING:
            t_serving = time.monotonic() - t0
        if t_serving is not None:
            st = list(node.shard_status(COLL))
            if (len(st) == shards and all(s.state == READY for s in st) and
                    [s.count for s in st] == counts):
                return t_port, t_serving, time.monotonic() - t0
        time.sleep(0.005)
    raise harness.HarnessError("node not READY within %d s:\n%s" % (timeout, node.proc.tail()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=200000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--wal-mib", default="8,32")
    ap.add_argument("--efc", type=int, default=100)
    ap.add_argument("--fsync", default="none")
    a = ap.parse_args()
    out = {"points": a.points, "dim": a.dim, "shards": a.shards, "fsync": a.fsync}
    with harness.Cluster(nodes=0, lease_ttl=5, fsync=a.fsync) as c:
        node = c.add_node("node-0")
        c.create_collection(COLL, dim=a.dim, shards=a.shards, ef_construction=a.efc,
                            placement=[["node-0"]] * a.shards)
        c.wait_shards(node, COLL, list(range(a.shards)))
        per = a.points // a.shards
        secs = sum(write(node, s, s * 10**9, per, a.dim, s) for s in range(a.shards))
        counts = [per] * a.shards
        print("loaded %d x %d-d points into %d shard(s) in %.1f s (%.0f points/s)" %
              (per * a.shards, a.dim, a.shards, secs, per * a.shards / secs))
        out["load_seconds"] = round(secs, 2)

        # (a) clean stop, restart.
        t0 = time.monotonic()
        rc = node.stop()
        t_stop = time.monotonic() - t0
        if rc != 0:
            raise harness.HarnessError("node exited %s on SIGTERM" % rc)
        node.extra_args = NO_SNAPSHOTS
        t_port, t_serving, t_ready = timed_start(node, a.shards, counts)
        print("clean stop: SIGTERM to exit %.2f s (shutdown snapshots); restart: port %.3f s, "
              "SERVING %.3f s, all READY %.3f s" % (t_stop, t_port, t_serving, t_ready))
        out["clean"] = {"stop_seconds": round(t_stop, 3), "port_seconds": round(t_port, 3),
                        "serving_seconds": round(t_serving, 3), "ready_seconds": round(t_ready, 3)}

        # (b) kill -9 with W MiB of WAL since the last snapshot (the one of the clean stop).
        out["kill9"] = []
        base = wal_bytes(node)
        next_id = 2 * 10**9
        for w in [float(x) for x in a.wal_mib.split(",") if x]:
            while wal_bytes(node) - base < w * 2**20:
                write(node, 0, next_id, 2000, a.dim, next_id)
                next_id += 2000
                counts[0] += 2000
            since = (wal_bytes(node) - base) / 2**20
            node.kill9()
            t_port, t_serving, t_ready = timed_start(node, a.shards, counts)
            print("kill -9 with %.1f MiB of WAL since the last snapshot: port %.3f s, "
                  "SERVING %.3f s, all READY %.3f s" % (since, t_port, t_serving, t_ready))
            out["kill9"].append({"wal_mib": round(since, 1), "port_seconds": round(t_port, 3),
                                 "serving_seconds": round(t_serving, 3),
                                 "ready_seconds": round(t_ready, 3)})
    print(json.dumps({"bench": "restart", **out}))


if __name__ == "__main__":
    main()
