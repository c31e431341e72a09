"""clientenv.py — puts the client and the integration harness on sys.path.

The tests run the package from the source tree (clients/python) with the
stubs from $VS_BUILD/gen/python, the PYTHONPATH way docs/clients.md
describes, against real etcd, node and router processes started by
tests/integration/router_harness.py. Import this module before vecshard.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(PKG))
for p in (os.path.join(REPO, "tests", "integration"), PKG):
    if p not in sys.path:
        sys.path.insert(0, p)

import router_harness as rh  # noqa: E402,F401

RECALL_K = 10


def recall(found, truth):
    """Mean fraction of each truth row found in the same row of found."""
    return sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth)) / truth.size


def brute_force(base, queries, k, metric="l2"):
    """Exact top-k row indices of base for each query under metric."""
    import numpy as np
    if metric == "l2":
        d = (queries ** 2).sum(1)[:, None] - 2 * queries @ base.T + (base ** 2).sum(1)[None, :]
    elif metric == "ip":
        d = 1 - queries @ base.T
    else:
        bn = base / np.linalg.norm(base, axis=1, keepdims=True)
        qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        d = 1 - qn @ bn.T
    return np.argsort(d, axis=1, kind="stable")[:, :k]
