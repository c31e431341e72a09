#!/bin/sh
# bench_node.sh [BUILD_DIR] — one vecshard-node against the engine it wraps:
# starts a throw-away etcd and one node on free loopback ports (through
# tests/integration/harness.py, which stops both by pid and removes their
# temp dir however the run ends), creates an empty collection matching the
# data, and runs BUILD_DIR/vecshard-bench-node on it: gRPC ingest vs
# hnsw_insert_batch, search QPS over gRPC (1 and 32 queries per call) vs
# in-process, and the per-call overhead. Prints the table and JSON lines.
#
# Environment: NODE_BENCH_DATA=N,DIM,CLUSTERS,SEED (default 50000,128,100,42),
# NODE_BENCH_FSYNC (always|batch|none, default always), NODE_BENCH_ARGS (extra
# vecshard-bench-node flags), PYTHON (default /usr/bin/python3).
set -eu

BUILD=${1:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
DATA=${NODE_BENCH_DATA:-50000,128,100,42}
FSYNC=${NODE_BENCH_FSYNC:-always}
DIM=$(echo "$DATA" | cut -d, -f2)

for f in "$BUILD/vecshard-node" "$BUILD/vecshard-bench-node"; do
    if [ ! -x "$f" ]; then
        echo "bench_node: $f is missing (run: make $f)" >&2
        exit 1
    fi
done

# shellcheck disable=SC2086  # NODE_BENCH_ARGS is a list of flags
VS_BUILD="$BUILD" exec "$PYTHON" "$(dirname "$0")/../tests/integration/harness.py" run \
    --nodes 1 --fsync "$FSYNC" --threads 8 --collection "bench,$DIM,l2,16,200,64" -- \
    "$BUILD/vecshard-bench-node" --addr '{addr}' --collection '{collection}' --epoch '{epoch}' \
    --synthetic "$DATA" --queries 1000 --M 16 --efc 200 --k 10 --ef 64 \
    --batch 1000 --writers 2 --engine-threads 2 --clients 4 --per-call 32 --seconds 3 \
    --fsync "$FSYNC" ${NODE_BENCH_ARGS:-}
