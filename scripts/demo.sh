#!/usr/bin/env bash
# demo.sh BUILD_DIR — the cluster on MNIST, as a user would run it: starts a
# 3-node local cluster (deploy/local/cluster.sh: etcd + 3 vecshard-node + a
# vecshard-router on free loopback ports, everything under
# BUILD_DIR/demo-cluster.*), creates a 3-shard collection of 784-d vectors
# with the `vecshard` CLI, loads the 9,000 MNIST digits
# (BUILD_DIR/data/mnist, made by `make data`), searches the 1,000 held-out
# digits at four search widths and prints recall@10 against the exact
# neighbours, QPS and p50/p99 latency for each. The cluster is always
# stopped (also on failure or Ctrl-C); its dir is removed after a good run
# and kept, with the process logs, after a failed one.
#
# `make demo-engine` (scripts/demo_engine.sh) runs the engine alone.
# Environment: DEMO_CONCURRENCY (search calls in flight, default 4),
# PYTHON (default /usr/bin/python3).
set -euo pipefail

BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
CLUSTER="$HERE/../deploy/local/cluster.sh"
CLI="$BUILD/vecshard"
DATA="$BUILD/data/mnist"
PYTHON=${PYTHON:-/usr/bin/python3}
CONCURRENCY=${DEMO_CONCURRENCY:-4}

for f in "$CLI" "$BUILD/vecshard-router" "$BUILD/vecshard-node" \
    "$DATA/base.fvecs" "$DATA/query.fvecs" "$DATA/gt.ivecs"; do
    if [ ! -e "$f" ]; then
        echo "demo: $f is missing (run: make all data)" >&2
        exit 1
    fi
done

DIR=$(mktemp -d "$BUILD/demo-cluster.XXXXXX")
RESULTS="$DIR/results.jsonl"
cleanup() {
    local rc=$?
    "$CLUSTER" stop --dir "$DIR" >/dev/null || true
    if [ $rc -eq 0 ]; then
        rm -rf "$DIR"
    else
        echo "demo: failed; the cluster was stopped, its logs are in $DIR" >&2
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

echo "demo: starting a local cluster (etcd, 3 nodes, 1 router) in $DIR ..."
ROUTER=$("$CLUSTER" start --nodes 3 --dir "$DIR" --build "$BUILD")
export VECSHARD_ROUTER=$ROUTER
echo "demo: router at $ROUTER"
echo

echo "\$ vecshard create mnist --dim 784 --shards 3 --ef 64"
"$CLI" create mnist --dim 784 --shards 3 --M 16 --ef-construction 200 --ef 64
echo "\$ vecshard load mnist $DATA/base.fvecs"
"$CLI" load mnist "$DATA/base.fvecs" --batch 1000 --concurrency 3
echo "\$ vecshard status"
"$CLI" status
echo

: >"$RESULTS"
for ef in 16 32 64 128; do
    echo "\$ vecshard search mnist --query $DATA/query.fvecs --gt $DATA/gt.ivecs --k 10 --ef $ef --concurrency $CONCURRENCY --json"
    "$CLI" search mnist --query "$DATA/query.fvecs" --gt "$DATA/gt.ivecs" --k 10 --ef "$ef" \
        --concurrency "$CONCURRENCY" --json >"$DIR/search.out"
    tail -n 1 "$DIR/search.out" | tee -a "$RESULTS"
done

"$PYTHON" - "$RESULTS" "$CONCURRENCY" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
if not rows:
    sys.exit("demo: the searches printed no results")
print()
print("MNIST (9,000 digits, 784-d) in 3 shards on 3 nodes behind one router;")
print("1,000 held-out digits searched with %s calls in flight, one query per call." % sys.argv[2])
print()
print("  search width (ef)   recall@10   queries/second   p50 latency   p99 latency")
for r in rows:
    print("  %17d   %9.4f   %14.0f   %8.2f ms   %8.2f ms"
          % (r["ef"], r["recall"], r["qps"], r["p50_ms"], r["p99_ms"]))
print()
print("recall@10: share of the true 10 nearest digits found. Latency: one call,")
print("measured by the client, router fan-out and merge included.")
PY
