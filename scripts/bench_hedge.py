#!/usr/bin/python3
"""make bench-hedge: the hedged-search scenario of tests/integration/
hedge_harness.py, longer. Two nodes hold a replica of each of 2 shards; node-1
is made slow by SIGSTOP / SIGCONT in 100 ms pulses while single-query
searches alternate between a router that hedges (--hedge-max-ms 50, the
default) and one that does not (--hedge-max-ms 0). Prints p50 / p99 per case
and the hedging router's hedge counters, then one JSON line. A report: exits 0
whatever the figures are.

usage: scripts/bench_hedge.py [--queries N]   (VS_BUILD: the build folder)
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import hedge_harness  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queries", type=int, default=3000, help="searches per case (default 3000)")
    args = ap.parse_args()
    out, hedges = hedge_harness.run(args.queries)
    print("%-40s %10s %10s" % ("", "p50 ms", "p99 ms"))
    for name, label in (("healthy", "healthy (hedging router)"),
                        ("hedged", "node-1 pulsed, hedging router"),
                        ("plain", "node-1 pulsed, --hedge-max-ms 0")):
        print("%-40s %10.3f %10.3f" % (label, out[name]["p50_ms"], out[name]["p99_ms"]))
    h = out["healthy"]["p99_ms"]
    print("p99 / healthy p99: hedged %.2fx, plain %.2fx" %
          (out["hedged"]["p99_ms"] / h, out["plain"]["p99_ms"] / h))
    print("hedges of the hedging router: %s" % json.dumps(hedges, sort_keys=True))
    print(json.dumps({"cases": out, "hedges": hedges}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
