"""bench_security.py — what TLS and API keys cost a search (make bench-security).

Two clusters side by side in one run (tests/integration router_harness.py:
real etcd, 2 vecshard-node and 1 vecshard-router processes each, stopped by
pid however the run ends):

  plain    no TLS, no keys (the default)
  keys     no TLS, --api-keys with a read key sent by the client (what the
           key check alone costs)
  secure   TLS on every hop (the router's public port, mTLS router -> node,
           certificates from scripts/dev_certs.sh) and --api-keys with a
           read key sent by the client

All three hold the same --n x --dim synthetic points in a 2-shard collection.
`vecshard search --json` (the CLI, --concurrency clients, one query per
call) runs against each in turn, --rounds times, alternating; the median
QPS and p50/p99 of each and the ratios secure/plain are printed, then one
JSON line. Not a test: the figures depend on the machine. Target (issue 12):
secure QPS >= 0.9 x plain.

Usage: bench_security.py [--n 20000] [--dim 128] [--queries 2000]
                         [--concurrency 4] [--rounds 3]
"""
import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import numpy as np  # noqa: E402

import harness  # noqa: E402
import router_harness as rh  # noqa: E402

KEY = "vs_bench_read_key_0123456789abcdef"


def write_fvecs(path, x):
    with open(path, "wb") as f:
        for row in x:
            f.write(np.int32(len(row)).tobytes())
            f.write(row.astype(np.float32).tobytes())


def search(cluster, queries, args, extra):
    r = rh.run([rh.CLI_BIN, "--router", cluster.routers[0].addr] + extra +
               ["search", "b", "--query", queries, "--queries", str(args.queries),
                "--concurrency", str(args.concurrency), "--k", "10", "--json"], check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="vs-bench-sec-")
    clusters = []
    try:
        certs = harness.dev_certs(os.path.join(tmp, "certs"), "node", "router", "client")
        keys = os.path.join(tmp, "keys")
        with open(keys, "w") as f:
            f.write("bench read sha256:%s\n" % hashlib.sha256(KEY.encode()).hexdigest())
            f.write("loader admin sha256:%s\n" % hashlib.sha256(b"loader-" + KEY.encode())
                    .hexdigest())
        rng = np.random.default_rng(7)
        base = rng.random((args.n, args.dim), dtype=np.float32)
        queries = os.path.join(tmp, "q.fvecs")
        write_fvecs(queries, rng.random((args.queries, args.dim), dtype=np.float32))

        plain = rh.RouterCluster(nodes=2, routers=1).start()
        clusters.append(plain)
        keyed = rh.RouterCluster(nodes=2, routers=1, router_args=["--api-keys", keys],
                                 client_md=[("authorization", "Bearer " + KEY)]).start()
        clusters.append(keyed)
        secure = rh.RouterCluster(
            nodes=2, routers=1, node_args=harness.tls_args(certs["node"]),
            router_args=harness.tls_args(certs["router"]) + ["--api-keys", keys],
            client_tls=certs["client"], client_md=[("authorization", "Bearer " + KEY)]).start()
        clusters.append(secure)
        admin_md = [("authorization", "Bearer loader-" + KEY)]
        for c, md in ((plain, None), (keyed, admin_md), (secure, admin_md)):
            stub = c.stub()
            stub.CreateCollection(rh.create_request("b", args.dim, shards=2), timeout=30,
                                  metadata=md)
            for lo in range(0, args.n, 1000):
                stub.Upsert(rh.upsert_request("b", list(range(lo + 1, min(lo + 1000, args.n) + 1)),
                                              base[lo:lo + 1000]), timeout=120, metadata=md)

        runs = {"plain": [], "keys": [], "secure": []}
        sec_flags = ["--tls-ca", certs["router"]["ca"], "--api-key", KEY]
        search(plain, queries, args, [])  # warm-up: both caches and connections
        search(keyed, queries, args, ["--api-key", KEY])
        search(secure, queries, args, sec_flags)
        for i in range(args.rounds):
            for name, c, extra in (("plain", plain, []), ("keys", keyed, ["--api-key", KEY]),
                                   ("secure", secure, sec_flags)):
                j = search(c, queries, args, extra)
                runs[name].append(j)
                print("round %d %-6s qps %8.0f  p50 %6.3f ms  p99 %6.3f ms" %
                      (i + 1, name, j["qps"], j["p50_ms"], j["p99_ms"]), flush=True)
        med = {n: {m: statistics.median(r[m] for r in runs[n]) for m in ("qps", "p50_ms",
                                                                          "p99_ms")}
               for n in runs}
        ratio_qps = med["secure"]["qps"] / med["plain"]["qps"]
        ratio_p50 = med["secure"]["p50_ms"] / med["plain"]["p50_ms"]
        print("\n%-8s %10s %10s %10s" % ("", "QPS", "p50 ms", "p99 ms"))
        for n in ("plain", "keys", "secure"):
            print("%-8s %10.0f %10.3f %10.3f" % (n, med[n]["qps"], med[n]["p50_ms"],
                                                 med[n]["p99_ms"]))
        print("keys/plain: QPS %.3f x, p50 %.3f x" % (med["keys"]["qps"] / med["plain"]["qps"],
                                                      med["keys"]["p50_ms"] / med["plain"]["p50_ms"]))
        print("secure/plain: QPS %.3f x, p50 %.3f x  (target QPS >= 0.9 x: %s)" %
              (ratio_qps, ratio_p50, "PASS" if ratio_qps >= 0.9 else "FAIL"))
        print(json.dumps({"n": args.n, "dim": args.dim, "concurrency": args.concurrency,
                          "plain": med["plain"], "keys": med["keys"], "secure": med["secure"],
                          "ratio_qps": ratio_qps, "ratio_p50": ratio_p50}))
    finally:
        for c in clusters:
            c.close(check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
