"""Hedged shard searches (docs/engine.md "Hedged searches"): with one
replica of each shard made slow by SIGSTOP / SIGCONT in 100 ms pulses, the
p99 of searches through a hedging router stays within 2x of the healthy
p99, and through a router with --hedge-max-ms 0 it does not; the hedging
router counts its hedges (tests/integration/hedge_harness.py runs the
scenario; `make bench-hedge` runs it longer)."""
import sys
import unittest

import harness
import hedge_harness


class Hedge(harness.ClusterTestCase):

    def test_hedging_bounds_p99(self):
        out, hedges = hedge_harness.run(800)
        print("\n  hedge: %s, hedges %s" % (out, hedges), file=sys.stderr)
        healthy = out["healthy"]["p99_ms"]
        self.assertLessEqual(out["hedged"]["p99_ms"], 2 * healthy, out)
        self.assertGreater(out["plain"]["p99_ms"], 2 * healthy, out)
        self.assertGreater(hedges.get("sent", 0), 0, hedges)
        self.assertGreater(hedges.get("won", 0), 0, hedges)


if __name__ == "__main__":
    unittest.main()
