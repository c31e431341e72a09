#!/bin/sh
# demo_engine.sh BUILD_DIR — the engine alone (no cluster) on MNIST: builds an HNSW index over the 9,000
# MNIST digits (BUILD_DIR/data/mnist, made by `make data`) with M 16, efC 200
# and 2 threads, searches the 1,000 held-out digits at four search widths and
# prints recall@10 and queries per second for each. Exits non-zero if the data
# set is missing or the benchmark fails.
set -eu

BUILD=${1:-build}
BENCH="$BUILD/vecshard-bench"
DATA="$BUILD/data/mnist"
PYTHON=${PYTHON:-/usr/bin/python3}

for f in "$BENCH" "$DATA/base.fvecs" "$DATA/query.fvecs" "$DATA/gt.ivecs"; do
    if [ ! -e "$f" ]; then
        echo "demo: $f is missing (run: make all data)" >&2
        exit 1
    fi
done

out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "demo: indexing MNIST ($DATA) and searching it ..."
"$BENCH" --base "$DATA/base.fvecs" --query "$DATA/query.fvecs" --gt "$DATA/gt.ivecs" \
    --M 16 --efc 200 --threads 2 --ef 16,32,64,128 --k 10 --json >"$out"

"$PYTHON" - "$out" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
b = [r for r in recs if r["phase"] == "build"][0]
s = [r for r in recs if r["phase"] == "search"]
if not s:
    sys.exit("demo: the benchmark printed no search results")
print()
print("MNIST: %d digits of %d pixels, index built in %.2f s with %d threads (%s kernel)"
      % (b["n"], b["dim"], b["seconds"], b["threads"], b["kernel"]))
print("index memory %.1f MB (%.0f bytes per vector)" % (b["bytes"] / 1e6, b["bytes"] / b["n"]))
print()
print("  search width (ef)   recall@10   queries/second   p99 latency")
for r in s:
    print("  %17d   %9.3f   %14.0f   %8.0f us" % (r["ef"], r["recall"], r["qps"], r["p99_us"]))
print()
print("recall@10: share of the true 10 nearest digits found; one thread searching.")
PY
