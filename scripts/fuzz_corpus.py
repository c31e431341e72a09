"""fuzz_corpus.py BUILD — writes the seed corpus of tests/fuzz (docs/security.md §5).

Valid inputs for every target, made from the real formats: request messages
from the generated Python protobuf modules (BUILD/gen/python), cluster
documents and etcd replies as the processes write them, .fvecs/.ivecs/.npy
files, and a replica's WAL segment, snapshot and index files taken from a
real vecshard-node that held a few points (BUILD/vecshard-node). Run again
after a format changes; the output is committed under tests/fuzz/corpus/.
"""
import glob
import io
import json
import os
import shutil
import struct
import sys

import numpy as np

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(BUILD, "gen", "python"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
os.environ.setdefault("VS_BUILD", BUILD)
from vecshard.v1 import common_pb2, shard_node_pb2, vecshard_pb2  # noqa: E402

OUT = os.path.join(REPO, "tests", "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def requests():
    svcs = [vecshard_pb2.DESCRIPTOR.services_by_name["VecShard"],
            shard_node_pb2.DESCRIPTOR.services_by_name["ShardNode"]]
    methods = [m for s in svcs for m in s.methods]
    cfg = common_pb2.CollectionConfig(name="c", dim=4, shards=2, replication_factor=2)
    pts = [common_pb2.Point(id=i, vector=[0.1 * i] * 4, payload=b"p%d" % i) for i in range(3)]
    fill = {"collection": "c", "name": "c", "k": 3, "ef": 16, "node_id": "n1", "shard": 1}
    for i, m in enumerate(methods):
        msg = m.input_type._concrete_class()
        for f in m.input_type.fields:
            try:
                if f.name in fill and f.label != f.LABEL_REPEATED:
                    setattr(msg, f.name, fill[f.name])
                elif f.name == "config":
                    msg.config.CopyFrom(cfg)
                elif f.name == "points" and f.label == f.LABEL_REPEATED:
                    msg.points.extend(pts)
                elif f.name == "ids" and f.label == f.LABEL_REPEATED:
                    msg.ids.extend([1, 2])
                elif f.name == "queries" and f.label == f.LABEL_REPEATED:
                    msg.queries.add().vector.extend([0.5] * 4)
            except (TypeError, AttributeError, ValueError):
                pass
        put("requests", "%02d-%s" % (i, m.name), bytes([i]) + msg.SerializeToString())


def docs():
    node = {"id": "n1", "addr": "127.0.0.1:7400", "version": "0.1.0", "started_at": 1,
            "capacity": 0, "draining": False}
    coll = {"name": "c", "dim": 4, "metric": "l2", "M": 16, "ef_construction": 200,
            "ef_search": 64, "shards": 2, "replication_factor": 2, "created_at": 1}
    shard = {"epoch": 3, "primary": "n1", "replicas": ["n1", "n2"], "in_sync": ["n1", "n2"],
             "recovering": []}
    drain = {"node": "n1", "state": "running", "started_at": 1}
    move = {"id": "m1", "kind": "replica", "collection": "c", "shard": 0, "from": "n1",
            "to": "n2", "state": "queued", "created_at": 1}
    etcd = {"header": {"revision": "7"}, "kvs": [
        {"key": "L3ZlY3NoYXJkL25vZGVzL24x", "value": "e30=", "create_revision": "2",
         "mod_revision": "7", "version": "1", "lease": "9"}], "count": "1",
        "kv": {"key": "YQ==", "value": "Yg==", "mod_revision": "3"}}
    for sel, d in ((0, etcd), (1, node), (2, coll), (3, shard), (4, drain), (5, move)):
        put("docs", "%d-json" % sel, bytes([sel]) + json.dumps(d).encode())
    v = np.arange(12, dtype=np.float32).reshape(3, 4)
    fv = b"".join(struct.pack("<i", 4) + r.tobytes() for r in v)
    iv = b"".join(struct.pack("<i", 2) + np.array([i, i + 1], dtype=np.int32).tobytes()
                  for i in range(3))
    b = io.BytesIO()
    np.save(b, v)
    put("docs", "6-fvecs", bytes([6]) + fv)
    put("docs", "7-ivecs", bytes([7]) + iv)
    put("docs", "8-npy", bytes([8]) + b.getvalue())


def storage():
    """A real node's replica files: 40 points upserted, then SIGTERM (a
    shutdown snapshot) — the WAL segment before and the snapshot after."""
    import harness
    import router_harness as rh
    with harness.Cluster(nodes=1) as c:
        c.create_collection("c", 4)
        node = c.nodes[0]
        rng = np.random.default_rng(3)
        ids = list(range(1, 41))
        vecs = rng.random((40, 4), dtype=np.float32)
        rh.wait_until(lambda: len(node.shard_status("c")) == 1, 30, "the replica opened")
        for lo in range(0, 40, 10):
            node.stub().Write(shard_node_pb2.WriteRequest(
                collection="c", shard=0, epoch=1, batch=common_pb2.WriteBatch(
                    upserts=harness.points(ids[lo:lo + 10], vecs[lo:lo + 10]),
                    deletes=[ids[lo]] if lo else [])), timeout=10)
        wal = sorted(glob.glob(os.path.join(node.data_dir, "c", "0", "wal-*.log")))
        for i, p in enumerate(wal[:2]):
            with open(p, "rb") as f:
                data = f.read()
            put("wal", "segment-%d" % i, data)
            put("replica", "segment-%d" % i, data)
        node.stop()
        snaps = sorted(glob.glob(os.path.join(node.data_dir, "c", "0", "snapshot-*.vsx")))
        for i, p in enumerate(snaps[:1]):
            with open(p, "rb") as f:
                put("snapshot", "snapshot-%d" % i, f.read())
    del rh
    seed = os.path.join(BUILD, "hnsw_seed.idx")
    import subprocess
    subprocess.run([os.path.join(BUILD, "hnsw_seed"), seed], check=True)
    with open(seed, "rb") as f:
        put("hnsw_load", "index-40", f.read())
    os.unlink(seed)


if __name__ == "__main__":
    for t in ("requests", "docs", "wal", "replica", "snapshot", "hnsw_load"):
        shutil.rmtree(os.path.join(OUT, t), ignore_errors=True)
    requests()
    docs()
    storage()
    print("corpus in %s: %s" % (OUT, {t: len(os.listdir(os.path.join(OUT, t)))
                                      for t in sorted(os.listdir(OUT))}))
