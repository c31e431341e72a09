"""vsdata.py — deterministic test data for the integration tests (numpy only).

Clustered float32 vectors (a fixed seed gives the same bytes every run),
exact k-nearest neighbours by brute force under vecshard's distances
(l2 = squared Euclidean, ip = 1 - dot, cosine = 1 - cos), recall@k, and the
.fvecs / .ivecs files the C client reads (per row: int32 length, then the
values, little-endian).
"""
import numpy as np


def clustered(n, dim, clusters=32, seed=1, spread=0.08, n_queries=0):
    """n base rows (and n_queries query rows from the same distribution,
    drawn from a separate stream) around `clusters` uniform centres."""
    rng = np.random.default_rng(seed)
    centres = rng.random((clusters, dim), dtype=np.float32)

    def draw(count, r):
        which = r.integers(0, clusters, size=count)
        noise = r.normal(0.0, spread, size=(count, dim)).astype(np.float32)
        return (centres[which] + noise).astype(np.float32)

    base = draw(n, rng)
    if not n_queries:
        return base
    return base, draw(n_queries, np.random.default_rng(seed + 7919))


def distances(base, queries, metric="l2"):
    """(len(queries), len(base)) float64 distance matrix under metric."""
    b = base.astype(np.float64)
    q = queries.astype(np.float64)
    if metric == "l2":
        return (q * q).sum(1)[:, None] - 2.0 * (q @ b.T) + (b * b).sum(1)[None, :]
    if metric == "ip":
        return 1.0 - q @ b.T
    if metric == "cosine":
        bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-30)
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
        return 1.0 - qn @ bn.T
    raise ValueError("unknown metric %r" % metric)


def knn(base, queries, k, metric="l2"):
    """Exact top-k row numbers of base for every query, closest first
    (ties: lower row first)."""
    d = distances(base, queries, metric)
    part = np.argpartition(d, min(k, d.shape[1] - 1), axis=1)[:, :k + 1]
    out = np.empty((len(queries), k), dtype=np.int64)
    for i in range(len(queries)):
        cand = part[i]
        order = np.lexsort((cand, d[i, cand]))
        out[i] = cand[order][:k]
    return out


def recall(gt, found, k):
    """Mean over queries of |first k of gt ∩ found| / k."""
    hits = 0
    for g, f in zip(gt, found):
        hits += len(set(int(x) for x in g[:k]) & set(int(x) for x in f[:k]))
    return hits / (k * len(gt))


def write_fvecs(path, m):
    m = np.ascontiguousarray(m, dtype=np.float32)
    rows = np.empty((m.shape[0], m.shape[1] + 1), dtype=np.float32)
    rows[:, 0] = np.array([m.shape[1]], dtype=np.int32).view(np.float32)[0]
    rows[:, 1:] = m
    rows.astype("<f4").tofile(path)


def write_ivecs(path, m):
    m = np.ascontiguousarray(m, dtype=np.int32)
    rows = np.empty((m.shape[0], m.shape[1] + 1), dtype=np.int32)
    rows[:, 0] = m.shape[1]
    rows[:, 1:] = m
    rows.astype("<i4").tofile(path)
