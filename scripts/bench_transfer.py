"""bench_transfer.py — the rate of a full replica copy (TransferShard, docs/replication.md §6).

Starts a throw-away etcd and two nodes (tests/integration/harness.py: stopped
by pid and its temp dir removed however the run ends), loads N x DIM points
into one shard whose replicas are node-0 (primary) and node-1, snapshots
(--snapshot-wal-records), writes a WAL tail after the snapshot, then tells
node-1 to pull a full copy (Replicate, action TRANSFER) and measures the
stream (bytes received and the time until they are durable in the staging
folder, from the receiver's `transfer installed` log line: MB/s) and the
time from the call until node-1 reports the copy installed (READY,
transfers_completed 1: includes opening the copy and replaying its WAL
tail); checks that the digests of both replicas are equal.

Prints one line per measurement and a JSON line at the end. Not a test: the
figures depend on the machine.

Usage: bench_transfer.py [--points 200000] [--dim 128] [--efc 100] [--mbps 0]
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import harness  # noqa: E402
from harness import READY, common_pb2, shard_node_pb2  # noqa: E402

import numpy as np  # noqa: E402

COLL = "xferbench"


def status(node, digest=False):
    return node.stub().ShardStatus(shard_node_pb2.ShardStatusRequest(
        collection=COLL, shards=[0], with_digest=digest), timeout=120).shards[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=200000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--efc", type=int, default=100)
    ap.add_argument("--mbps", type=int, default=0, help="--transfer-max-mbps of the sender")
    a = ap.parse_args()
    batches = (a.points + 4999) // 5000
    # One background snapshot two batches before the end: the copy is a snapshot plus a WAL tail.
    args = ["--snapshot-wal-records", str(max(batches - 2, 1)), "--snapshot-max-age-s", "0",
            "--snapshot-wal-bytes", "1024GiB", "--transfer-max-mbps", str(a.mbps)]
    with harness.Cluster(nodes=2, fsync="none", node_args=args) as cl:
        prim, back = cl.nodes
        cl.create_collection(COLL, a.dim, ef_construction=a.efc, shards=1, replication_factor=2,
                             placement=[["node-0", "node-1"]])
        for n in cl.nodes:
            cl.wait_shards(n, COLL, [0])
        rng = np.random.default_rng(1)
        stub = prim.stub()
        t0 = time.monotonic()
        for start in range(0, a.points, 5000):
            ids = range(start, min(a.points, start + 5000))
            vecs = rng.random((len(ids), a.dim), dtype=np.float32)
            stub.Write(harness.write_request(COLL, 0, 1, harness.points(ids, vecs)), timeout=600)
        while status(prim).snapshot_lsn == 0:
            time.sleep(0.1)
        print("loaded %d x %d in %.1f s" % (a.points, a.dim, time.monotonic() - t0), flush=True)
        t1 = time.monotonic()
        back.stub().Replicate(shard_node_pb2.ReplicateRequest(
            collection=COLL, shard=0, epoch=1, primary=prim.node_id, primary_addr=prim.addr,
            action=shard_node_pb2.REPLICATE_ACTION_TRANSFER), timeout=10)
        while True:
            s = status(back)
            if s.transfers_completed == 1 and s.state == READY:
                break
            time.sleep(0.05)
        secs = time.monotonic() - t1
        with open(back.proc.log_path, encoding="utf-8", errors="replace") as f:
            line = [x for x in f if 'msg="transfer installed"' in x][-1]
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        total = int(fields["bytes"])
        stream = float(fields["stream_seconds"])
        print("receiver's log: %s" % line.strip(), flush=True)
        ps, bs = status(prim, True), status(back, True)
        disk = ps.disk_bytes
        ok = ps.digest == bs.digest and ps.count == bs.count == a.points
        print("transfer: %.1f MB received (primary on disk %.1f MB) in %.2f s = %.1f MB/s; "
              "READY after %.2f s (open + replay of the WAL tail); digests equal: %s" % (
                  total / 1e6, disk / 1e6, stream, total / 1e6 / stream, secs, ok), flush=True)
        print(json.dumps({"points": a.points, "dim": a.dim, "stream_seconds": stream,
                          "ready_seconds": round(secs, 3), "bytes": total,
                          "mb_per_s": round(total / 1e6 / stream, 1),
                          "digest_equal": ok, "max_mbps": a.mbps}))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
