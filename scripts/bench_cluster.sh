#!/usr/bin/env bash
# bench_cluster.sh [BUILD_DIR] — what the cluster costs over the engine, on
# MNIST (BUILD_DIR/data/mnist; `make data`):
#
#   3 nodes     a 3-shard collection on a 3-node local cluster (cluster.sh),
#               searched with `vecshard search` through the router
#   1 node      the same data as a 1-shard collection (one node) behind the
#               same router
#   engine      build/vecshard-bench: the HNSW engine in-process, same M,
#               ef_construction and ef, one query at a time on one thread
#
# The cluster rows are measured with 1 and 8 concurrent clients (calls in
# flight, one query per call); latency is per call as the client sees it.
# Prints a table and the targets, each with PASS or FAIL:
#   - 3-node p50 (1 client) <= engine single-query p50 + 1 ms
#   - 3-node recall@10 >= the engine's at the same ef
# It is a report: the exit status is 0 whatever the figures (non-zero only
# when something could not run). The cluster is always stopped.
#
# Environment: BENCH_EF (default 64), BENCH_M (16), BENCH_EFC (200),
# PYTHON (default /usr/bin/python3).
set -euo pipefail

BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
CLUSTER="$HERE/../deploy/local/cluster.sh"
CLI="$BUILD/vecshard"
BENCH="$BUILD/vecshard-bench"
DATA="$BUILD/data/mnist"
PYTHON=${PYTHON:-/usr/bin/python3}
EF=${BENCH_EF:-64}
M=${BENCH_M:-16}
EFC=${BENCH_EFC:-200}

for f in "$CLI" "$BENCH" "$BUILD/vecshard-router" "$BUILD/vecshard-node" \
    "$DATA/base.fvecs" "$DATA/query.fvecs" "$DATA/gt.ivecs"; do
    if [ ! -e "$f" ]; then
        echo "bench_cluster: $f is missing (run: make all data)" >&2
        exit 1
    fi
done

DIR=$(mktemp -d "$BUILD/bench-cluster.XXXXXX")
OUT="$DIR/results.jsonl"
cleanup() {
    local rc=$?
    "$CLUSTER" stop --dir "$DIR" >/dev/null || true
    if [ $rc -eq 0 ]; then
        rm -rf "$DIR"
    else
        echo "bench_cluster: failed; the cluster was stopped, its logs are in $DIR" >&2
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

echo "bench_cluster: engine in-process (vecshard-bench, M $M, efC $EFC, ef $EF) ..." >&2
"$BENCH" --base "$DATA/base.fvecs" --query "$DATA/query.fvecs" --gt "$DATA/gt.ivecs" \
    --M "$M" --efc "$EFC" --threads 2 --ef "$EF" --k 10 --json |
    sed 's/^{/{"setup":"engine",/' >"$OUT"

echo "bench_cluster: starting a 3-node local cluster in $DIR ..." >&2
ROUTER=$("$CLUSTER" start --nodes 3 --dir "$DIR" --build "$BUILD")
export VECSHARD_ROUTER=$ROUTER

for setup in 3:nodes3 1:node1; do
    shards=${setup%%:*}
    name=${setup##*:}
    "$CLI" create "$name" --dim "$(head -c 4 "$DATA/base.fvecs" | od -An -tu4 | tr -d ' ')" \
        --shards "$shards" --M "$M" --ef-construction "$EFC" --ef "$EF" >&2
    echo "bench_cluster: loading MNIST into $name ($shards shard(s)) ..." >&2
    "$CLI" load "$name" "$DATA/base.fvecs" --batch 1000 --concurrency 3 >&2
done
for setup in nodes3 node1; do
    for c in 1 8; do
        echo "bench_cluster: vecshard search $setup --concurrency $c ..." >&2
        # a warm-up pass (connections, page cache), then the measured one
        "$CLI" search "$setup" --query "$DATA/query.fvecs" --k 10 --ef "$EF" \
            --concurrency "$c" --queries 200 --json >/dev/null
        "$CLI" search "$setup" --query "$DATA/query.fvecs" --gt "$DATA/gt.ivecs" --k 10 \
            --ef "$EF" --concurrency "$c" --json | tail -n 1 |
            sed "s/^{/{\"setup\":\"$setup\",\"clients\":$c,/" >>"$OUT"
    done
done

"$PYTHON" - "$OUT" "$EF" "$(nproc)" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ef = int(sys.argv[2])
eng = [r for r in rows if r["setup"] == "engine" and r.get("phase") == "search"][0]
build = [r for r in rows if r["setup"] == "engine" and r.get("phase") == "build"][0]
get = {(r["setup"], r["clients"]): r for r in rows if r["setup"] != "engine"}
print()
print("MNIST: %d x %d, 1,000 queries, k 10, ef %d (engine index built in %.2f s, %s kernel)"
      % (build["n"], build["dim"], ef, build["seconds"], build["kernel"]))
print()
print("  %-34s %7s   %8s   %9s   %9s   %9s" % ("setup", "clients", "recall", "QPS",
                                              "p50 ms", "p99 ms"))
print("  %-34s %7d   %8.4f   %9.0f   %9.3f   %9.3f" % (
    "engine in-process (vecshard-bench)", 1, eng["recall"], eng["qps"], eng["p50_us"] / 1000,
    eng["p99_us"] / 1000))
labels = {"nodes3": "3 nodes, 3 shards, via router", "node1": "1 node, 1 shard, via router"}
for setup in ("nodes3", "node1"):
    for c in (1, 8):
        r = get[(setup, c)]
        print("  %-34s %7d   %8.4f   %9.0f   %9.3f   %9.3f" % (
            labels[setup], c, r["recall"], r["qps"], r["p50_ms"], r["p99_ms"]))
print()
three = get[("nodes3", 1)]
limit = eng["p50_us"] / 1000 + 1.0
ok_lat = three["p50_ms"] <= limit
ok_rec = three["recall"] >= eng["recall"]
print("targets:")
print("  3-node p50 %.3f ms <= engine single-query p50 + 1 ms = %.3f ms: %s"
      % (three["p50_ms"], limit, "PASS" if ok_lat else "FAIL"))
print("  3-node recall@10 %.4f >= engine recall@10 %.4f at ef %d: %s (%+d of %d neighbours)"
      % (three["recall"], eng["recall"], ef, "PASS" if ok_rec else "FAIL",
         round((three["recall"] - eng["recall"]) * three["n"] * three["k"]),
         three["n"] * three["k"]))
print()
print("The engine searches one query at a time on one thread (no 8-client row); the")
print("cluster rows are `vecshard search` calls (one query each) through the router,")
print("with client, router, nodes and etcd on the same machine (%s cores)." % sys.argv[3])
PY
