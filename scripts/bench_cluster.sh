#!/usr/bin/env bash
# bench_cluster.sh [BUILD_DIR] — what the cluster costs over the engine, on
# MNIST (BUILD_DIR/data/mnist; `make data`):
#
#   1 node      a 1-shard collection (on one node of a 3-node local cluster,
#               cluster.sh), searched with `vecshard search` through the router
#   3 nodes     the same data as a 3-shard collection, one shard per node
#   engine      build/vecshard-bench: the HNSW engine in-process, same M,
#               ef_construction and ef: one query at a time on one thread
#               (latency, CPU per query), then 2 threads over one index
#               (throughput)
#
# The cluster rows are measured with 1 and 8 concurrent clients, one query
# per call, and with 1 client and 100 queries per call; latency is per call
# as the client sees it. Each row runs the 1,000 queries BENCH_RUNS times
# (default 3) after a warm-up; the CPU time (utime + stime from
# /proc/<pid>/stat) of the router and of every node around those runs,
# divided by the queries, is the CPU per query of the row. Client and
# servers share the machine's cores.
#
# Prints the table and the targets of docs/benchmarks.md ("Cluster"), each
# with PASS or FAIL and the ratio. It is a report: the exit status is 0
# whatever the figures (non-zero only when something could not run). The
# cluster is always stopped.
#
# Environment: BENCH_EF (default 40), BENCH_M (16), BENCH_EFC (200),
# BENCH_RUNS (3), PYTHON (default /usr/bin/python3).
set -euo pipefail

BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
CLUSTER="$HERE/../deploy/local/cluster.sh"
CLI="$BUILD/vecshard"
BENCH="$BUILD/vecshard-bench"
DATA="$BUILD/data/mnist"
PYTHON=${PYTHON:-/usr/bin/python3}
EF=${BENCH_EF:-40}
M=${BENCH_M:-16}
EFC=${BENCH_EFC:-200}
RUNS=${BENCH_RUNS:-3}
TCK=$(getconf CLK_TCK)

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
    --M "$M" --efc "$EFC" --threads 2 --search-threads 2 --ef "$EF" --k 10 --json |
    sed 's/^{/{"setup":"engine",/' >"$OUT"

echo "bench_cluster: starting a 3-node local cluster in $DIR ..." >&2
ROUTER=$("$CLUSTER" start --nodes 3 --dir "$DIR" --build "$BUILD" --coordinators)
export VECSHARD_ROUTER=$ROUTER

for setup in 3:nodes3 1:node1; do
    shards=${setup%%:*}
    name=${setup##*:}
    "$CLI" create "$name" --dim "$(head -c 4 "$DATA/base.fvecs" | od -An -tu4 | tr -d ' ')" \
        --shards "$shards" --M "$M" --ef-construction "$EFC" --ef "$EF" >&2
    echo "bench_cluster: loading MNIST into $name ($shards shard(s)) ..." >&2
    "$CLI" load "$name" "$DATA/base.fvecs" --batch 1000 --concurrency 3 >&2
done
# cpu_json: {"<name>": <utime+stime ticks>, ...} of the router and the nodes
# (DIR/procs: name pid starttime addr).
cpu_json() {
    local name pid st addr sep=""
    printf '{'
    while read -r name pid st addr; do
        case $name in router* | node*) ;; *) continue ;; esac
        printf '%s"%s":%s' "$sep" "$name" "$(awk '{print $14 + $15}' "/proc/$pid/stat")"
        sep=,
    done <"$DIR/procs"
    printf '}'
}

# measure SETUP CLIENTS BATCH [VIA ADDR]: a warm-up pass (connections, page
# cache), then the measured ones, with the CPU ticks of every process around
# them; VIA names the path ("router", or "coord" for a node's coordinator
# port at ADDR).
measure() {
    local setup=$1 c=$2 b=$3 via=${4:-router} addr=${5:-$ROUTER} before after line run
    echo "bench_cluster: vecshard search $setup --concurrency $c --batch $b (via $via) ..." >&2
    "$CLI" --router "$addr" search "$setup" --query "$DATA/query.fvecs" --k 10 --ef "$EF" \
        --concurrency "$c" --batch "$b" --queries 200 --json >/dev/null
    before=$(cpu_json)
    for run in $(seq "$RUNS"); do
        line=$("$CLI" --router "$addr" search "$setup" --query "$DATA/query.fvecs" \
            --gt "$DATA/gt.ivecs" --k 10 --ef "$EF" --concurrency "$c" --batch "$b" --json |
            tail -n 1)
        echo "{\"setup\":\"$setup\",\"via\":\"$via\",\"clients\":$c,\"batch\":$b,\"run\":$run,${line#\{}" >>"$OUT"
    done
    after=$(cpu_json)
    echo "{\"setup\":\"$setup\",\"via\":\"$via\",\"clients\":$c,\"batch\":$b,\"cpu_before\":$before,\"cpu_after\":$after}" >>"$OUT"
}

for setup in node1 nodes3; do
    for c in 1 8; do
        measure "$setup" "$c" 1
    done
    measure "$setup" 1 100
done
# Through a node's coordinator port: for 1 shard the node that holds it (its
# search runs in-process), for 3 shards node-0 (one shard local, two remote).
holder=$("$CLI" describe node1 | awk '$1 == "SHARD" {getline; print $3; exit}')
for setup in node1:$holder nodes3:node-0; do
    node=${setup##*:}
    for c in 1 8; do
        measure "${setup%%:*}" "$c" 1 coord "$(cat "$DIR/$node.coordinator")"
    done
done

"$PYTHON" - "$OUT" "$EF" "$(nproc)" "$TCK" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ef, cores, tck = int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
eng = [r for r in rows if r["setup"] == "engine" and r.get("phase") == "search"][0]
build = [r for r in rows if r["setup"] == "engine" and r.get("phase") == "build"][0]
runs, cpu = {}, {}
for r in rows:
    if r["setup"] == "engine":
        continue
    key = (r["setup"], r["clients"], r["batch"], r["via"])
    if "run" in r:
        runs.setdefault(key, []).append(r)
    else:
        cpu[key] = r


def row(key):
    rs = runs[key]
    nq = sum(r["n"] for r in rs)
    c = cpu[key]
    per = {}
    for name, t in c["cpu_after"].items():
        per[name] = (t - c["cpu_before"].get(name, t)) / tck / nq * 1e6  # us per query
    med = lambda f: sorted(r[f] for r in rs)[len(rs) // 2]
    return {"recall": sum(r["recall"] for r in rs) / len(rs), "qps": med("qps"),
            "client_us": med("client_cpu_us"),
            "p50": med("p50_ms"), "p99": med("p99_ms"),
            "router_us": sum(v for n, v in per.items() if n.startswith("router")),
            "nodes_us": sum(v for n, v in per.items() if n.startswith("node")), "per": per}


print()
print("MNIST: %d x %d, 1,000 queries, k 10, ef %d (engine index built in %.2f s, %s kernel)"
      % (build["n"], build["dim"], ef, build["seconds"], build["kernel"]))
print()
fmt = "  %-30s %7s %5s   %7s %8s %8s %8s   %9s %9s %9s %9s"
print(fmt % ("setup", "clients", "batch", "recall", "QPS", "p50 ms", "p99 ms",
             "router us", "nodes us", "total us", "client us"))
print(fmt % ("engine in-process", 1, 1, "%.4f" % eng["recall"], "%.0f" % eng["qps"],
             "%.3f" % (eng["p50_us"] / 1000), "%.3f" % (eng["p99_us"] / 1000), "-", "-",
             "%.1f" % eng["cpu_us"], "-"))
print(fmt % ("engine in-process", "%d thr" % eng["threads"], 1, "", "%.0f" % eng["qps_threads"],
             "", "", "", "", "", ""))
labels = {("nodes3", "router"): "3 nodes, 3 shards, via router",
          ("node1", "router"): "1 node, 1 shard, via router",
          ("nodes3", "coord"): "3 shards, via node coordinator",
          ("node1", "coord"): "1 shard, via node coordinator"}
got = {}
for key in sorted(runs, key=lambda k: (k[0] != "node1", k[3] != "router", k[2], k[1])):
    x = got[key] = row(key)
    print(fmt % (labels[key[0], key[3]], key[1], key[2], "%.4f" % x["recall"], "%.0f" % x["qps"],
                 "%.3f" % x["p50"], "%.3f" % x["p99"], "%.1f" % x["router_us"],
                 "%.1f" % x["nodes_us"], "%.1f" % (x["router_us"] + x["nodes_us"]),
                 "%.1f" % x["client_us"]))
print()
one, three = got[("node1", 1, 1, "router")], got[("nodes3", 1, 1, "router")]
eight = max(x["qps"] for k, x in got.items() if k[1] == 8)
one_co, three_co = got[("node1", 1, 1, "coord")], got[("nodes3", 1, 1, "coord")]
one_cpu = one["router_us"] + one["nodes_us"]
three_cpu = three["router_us"] + three["nodes_us"]


def verdict(ok):
    return "PASS" if ok else "FAIL"


print("targets:")
limit = eng["cpu_us"] + 150
print("  1 node, single-query: router + node CPU %.0f us/query <= engine %.0f us + 150 us = "
      "%.0f us: %s (%.2fx the limit)" % (one_cpu, eng["cpu_us"], limit, verdict(one_cpu <= limit),
                                          one_cpu / limit))
co_cpu = one_co["router_us"] + one_co["nodes_us"]
print("  1 node via its coordinator, single-query: node CPU %.0f us/query <= %.0f us: %s (%.2fx "
      "the limit)" % (co_cpu, limit, verdict(co_cpu <= limit), co_cpu / limit))
for name, co, rt in (("1 shard", one_co, one), ("3 shards", three_co, three)):
    print("  %s via a node's coordinator: %.0f QPS >= 1.3x the router path's %.0f = %.0f: "
          "%s (%.2fx)" % (name, co["qps"], rt["qps"], 1.3 * rt["qps"],
                          verdict(co["qps"] >= 1.3 * rt["qps"]), co["qps"] / rt["qps"]))
print("  3 shards: CPU %.0f us/query <= 1.5x the 1-shard %.0f us = %.0f us: %s (%.2fx)"
      % (three_cpu, one_cpu, 1.5 * one_cpu, verdict(three_cpu <= 1.5 * one_cpu),
         three_cpu / one_cpu))
print("  3 shards: recall@10 %.4f >= the engine's %.4f at ef %d: %s"
      % (three["recall"], eng["recall"], ef, verdict(three["recall"] >= eng["recall"])))
best8 = max((x for k, x in got.items() if k[1] == 8), key=lambda x: x["qps"])
per_q = best8["router_us"] + best8["nodes_us"] + best8["client_us"]
print("  8 clients, the best row: servers %.0f + client %.0f us of CPU per query on %s cores: "
      "at most %.0f QPS if the cores did nothing else"
      % (best8["router_us"] + best8["nodes_us"], best8["client_us"], cores,
         int(cores) * 1e6 / per_q))
print("  8 clients: %.0f QPS >= 0.8x the engine's %d-thread %.0f QPS = %.0f: %s (%.2fx)"
      % (eight, eng["threads"], eng["qps_threads"], 0.8 * eng["qps_threads"],
         verdict(eight >= 0.8 * eng["qps_threads"]), eight / eng["qps_threads"]))
print()
print("CPU per query is the utime + stime of each process over the row's queries")
print("(/proc/<pid>/stat, %d ticks/s); client, router, nodes and etcd share %s cores;"
      % (tck, cores))
print("the client's (the vecshard CLI's getrusage over its timed loop) is the median of its runs.")
for key, x in sorted(got.items()):
    print("  %s via %s %d client(s) batch %d: %s" % (key[0], key[3], key[1], key[2], ", ".join(
        "%s %.1f us" % (n, v) for n, v in sorted(x["per"].items()))))
PY
