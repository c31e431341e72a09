"""vecshard.hnswlib — hnswlib's Python API on a vecshard cluster.

    import vecshard.hnswlib as hnswlib       # instead of: import hnswlib
    index = hnswlib.Index(space="cosine", dim=dim)
    index.init_index(max_elements=1000, ef_construction=200, M=16)
    index.add_items(embeddings, np.arange(len(embeddings)))
    labels, distances = index.knn_query(query_embedding, k=2)

Each Index is one collection (init_index creates it). The cluster is
$VECSHARD_ROUTER, or the address given to connect(); shards and replicas
come from Index(..., shards=, replicas=) or $VECSHARD_HNSWLIB_SHARDS /
$VECSHARD_HNSWLIB_REPLICAS (default 1). An automatically named collection
("hnswlib-<16 hex>") lives as long as the Index object, as an hnswlib index
lives in memory: it is dropped when the Index is garbage collected or the
interpreter exits. One named with collection="..." is kept (keep=False
drops it too).

What hnswlib keeps in its own memory and the cluster has no call for is
kept here, in the Index object: the set of labels (get_ids_list, capacity,
element_count) and the vectors of mark_deleted elements (deleted points are
removed from the collection, so search never returns them, and re-upserted
by unmark_deleted). Capacity (max_elements) is therefore this object's
rule, checked before anything is written, and a second process cannot
attach to a collection's labels: it loads a save_index file instead.

save_index writes a portable file, not hnswlib's memory image: an npz (no
pickles) of the parameters, the live labels and vectors and the deleted
ones, written to a temp file and renamed; load_index re-creates the points
in a new collection, of this or any other cluster. Messages of the
RuntimeErrors are hnswlib 0.6's; docs/clients.md lists every difference.
"""
import os
import uuid
import weakref

import numpy as np

from vecshard.client import Client

FILE_MAGIC = "vecshard-hnswlib"
FILE_VERSION = 1
_SPACES = ("l2", "ip", "cosine")
_FEWER_THAN_K = "Cannot return the results in a contigious 2D array. Probably ef or M is too small"
_client = None


def connect(address=None, **kwargs):
    """Points every later Index at this router (default $VECSHARD_ROUTER);
    kwargs go to vecshard.Client. Returns the client."""
    global _client
    _client = Client(address, **kwargs)
    return _client


def _default_client():
    return _client if _client is not None else connect()


def _drop(client, name):
    """Finalizer of an Index whose collection is not kept."""
    try:
        client.drop_collection(name)
    except Exception:  # the cluster may be gone at exit; nothing to report to
        pass


def _rows(data, dim):
    """data as float32 (N, dim), with hnswlib's errors for a bad shape."""
    a = np.asarray(data, dtype=np.float32)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2:
        raise RuntimeError("Input vector data wrong shape. Number of dimensions %d. Data must be "
                           "a 1D or 2D array." % a.ndim)
    if a.shape[1] != dim:
        raise RuntimeError("wrong dimensionality of the vectors")
    return a


class Index:
    """An hnswlib.Index whose points live in a vecshard collection."""

    def __init__(self, space, dim, *, collection=None, shards=None, replicas=None, keep=None,
                 client=None):
        if space not in _SPACES:
            raise RuntimeError("Space name must be one of l2, ip, or cosine.")
        self.space, self.dim = space, int(dim)
        self.collection = collection
        self.shards = int(shards or os.environ.get("VECSHARD_HNSWLIB_SHARDS") or 1)
        self.replicas = int(replicas or os.environ.get("VECSHARD_HNSWLIB_REPLICAS") or 1)
        self._keep = (collection is not None) if keep is None else keep
        self._client = client
        self._labels = set()
        self._deleted = {}
        self._max = 0
        self._M, self._efc, self.ef = 16, 200, 10
        self.num_threads = os.cpu_count() or 1
        self._allow_replace = False
        self._finalizer = None

    def __repr__(self):
        return "<vecshard.hnswlib.Index(space='%s', dim=%d, collection=%r)>" % (
            self.space, self.dim, self.collection)

    # ---------------------------------------------------------------- life cycle
    def _create(self, max_elements, M, ef_construction):
        """Creates this Index's collection."""
        if self._finalizer is not None:
            raise RuntimeError("The index is already initiated.")
        self._client = self._client or _default_client()
        self.collection = self.collection or "hnswlib-" + uuid.uuid4().hex[:16]
        self._client.create_collection(self.collection, self.dim, metric=self.space,
                                       shards=self.shards, replicas=self.replicas, M=M,
                                       ef_construction=ef_construction, ef_search=10)
        self._max, self._M, self._efc = int(max_elements), int(M), int(ef_construction)
        self._finalizer = weakref.finalize(self, _drop, self._client, self.collection)
        if self._keep:
            self._finalizer.detach()

    def _check_init(self):
        if self._finalizer is None:
            raise RuntimeError("Index not initialized: call init_index or load_index first")

    def init_index(self, max_elements, M=16, ef_construction=200, random_seed=100,
                   allow_replace_deleted=False):
        """Creates the collection (random_seed is not used: the nodes seed their graphs)."""
        self._create(max_elements, M, ef_construction)
        self._allow_replace = bool(allow_replace_deleted)

    def drop(self):
        """Drops the collection now (kept or not); the Index is unusable after."""
        self._check_init()
        self._finalizer.detach()
        self._client.drop_collection(self.collection)

    # ---------------------------------------------------------------- writes
    def add_items(self, data, ids=None, num_threads=-1, replace_deleted=False):
        """Inserts or updates points; all or nothing with respect to capacity."""
        self._check_init()
        rows = _rows(data, self.dim)
        if ids is None:
            labels = np.arange(self.element_count, self.element_count + len(rows),
                               dtype=np.uint64)
        else:
            labels = np.asarray(ids)
            if not ((labels.ndim == 1 and len(labels) == len(rows)) or
                    (labels.ndim == 0 and len(rows) == 1)):
                raise RuntimeError("wrong dimensionality of the labels")
            labels = labels.reshape(-1).astype(np.uint64)
        if replace_deleted and not self._allow_replace:
            raise RuntimeError("Replacement of deleted elements is disabled in constructor")
        keys = labels.tolist()
        new = {x for x in keys if x not in self._labels and x not in self._deleted}
        reuse = min(len(new), len(self._deleted)) if replace_deleted else 0
        if self.element_count + len(new) - reuse > self._max:
            raise RuntimeError("The number of elements exceeds the specified limit")
        if len(rows):
            self._client.upsert(self.collection, labels, rows, parallel=2)
        for x in keys:
            self._deleted.pop(x, None)
        if reuse:
            for x in list(self._deleted)[:reuse]:
                del self._deleted[x]
        self._labels.update(keys)

    def mark_deleted(self, label):
        """Removes the point from search results; unmark_deleted brings it back."""
        self._check_init()
        label = int(label)
        if label in self._deleted:
            raise RuntimeError("The requested to delete element is already deleted")
        if label not in self._labels:
            raise RuntimeError("Label not found")
        vec = self._client.get(self.collection, [label], with_payload=False).vectors[0]
        self._client.delete(self.collection, [label])
        self._labels.discard(label)
        self._deleted[label] = vec

    def unmark_deleted(self, label):
        """Re-inserts a point removed by mark_deleted."""
        self._check_init()
        label = int(label)
        if label in self._labels:
            raise RuntimeError("The requested to undelete element is not deleted")
        if label not in self._deleted:
            raise RuntimeError("Label not found")
        self._client.upsert(self.collection, [label], self._deleted[label][None, :])
        del self._deleted[label]
        self._labels.add(label)

    def resize_index(self, new_size):
        """Changes max_elements (no data moves: capacity is this object's rule)."""
        self._check_init()
        if new_size < self.element_count:
            raise RuntimeError("Cannot resize, max element is less than the current number of "
                               "elements")
        self._max = int(new_size)

    # ---------------------------------------------------------------- reads
    def knn_query(self, data, k=1, num_threads=-1, filter=None):
        """(labels uint64 (N,k), distances float32 (N,k)); RuntimeError if a
        query has fewer than k results. filter(label) -> bool keeps a hit."""
        self._check_init()
        rows = _rows(data, self.dim)
        k = int(k)
        if k == 0 or len(rows) == 0:
            return np.zeros((len(rows), k), np.uint64), np.zeros((len(rows), k), np.float32)
        if filter is None:
            res = self._client.search(self.collection, rows, k=k, ef=max(self.ef, k))
            if (res.counts < k).any():
                raise RuntimeError(_FEWER_THAN_K)
            return res.ids, res.distances
        return self._filtered(rows, k, filter)

    def _filtered(self, rows, k, keep):
        """knn_query with a filter: asks for 4x more hits until k pass or the
        collection is exhausted (the router has no filter)."""
        live, want = len(self._labels), k
        while True:
            ask = min(want, max(live, 1), 10000)
            res = self._client.search(self.collection, rows, k=ask, ef=max(self.ef, ask))
            labels = np.zeros((len(rows), k), np.uint64)
            dists = np.zeros((len(rows), k), np.float32)
            short = False
            for i in range(len(rows)):
                got = [j for j in range(res.counts[i]) if keep(int(res.ids[i, j]))][:k]
                short = short or len(got) < k
                labels[i, :len(got)] = res.ids[i, got]
                dists[i, :len(got)] = res.distances[i, got]
            if not short:
                return labels, dists
            if ask >= live or ask >= 10000:
                raise RuntimeError(_FEWER_THAN_K)
            want *= 4

    def get_items(self, ids, return_type="numpy"):
        """Vectors of live labels (normalised for cosine); RuntimeError
        "Label not found" for an absent or deleted one."""
        self._check_init()
        keys = [int(x) for x in np.asarray(ids).reshape(-1)]
        if any(x not in self._labels for x in keys):
            raise RuntimeError("Label not found")
        got = self._client.get(self.collection, keys, with_payload=False)
        pos = {int(x): i for i, x in enumerate(got.ids)}
        if any(x not in pos for x in keys):
            raise RuntimeError("Label not found")
        out = got.vectors[[pos[x] for x in keys]] if keys else \
            np.zeros((0, self.dim), np.float32)
        return out if return_type == "numpy" else out.tolist()

    def get_ids_list(self):
        """Every label, deleted ones included (as hnswlib), ascending."""
        return sorted(self._labels | set(self._deleted))

    # ---------------------------------------------------------------- parameters
    def set_ef(self, ef):
        self.ef = int(ef)

    def set_num_threads(self, num_threads):
        self.num_threads = int(num_threads)

    def get_max_elements(self):
        return self._max

    def get_current_count(self):
        return self.element_count

    @property
    def max_elements(self):
        return self._max

    @property
    def element_count(self):
        """Labels added, deleted ones included (hnswlib's cur_element_count)."""
        return len(self._labels) + len(self._deleted)

    @property
    def M(self):
        return self._M

    @property
    def ef_construction(self):
        return self._efc

    # ---------------------------------------------------------------- files
    def save_index(self, path):
        """Writes the portable file (see the module comment) atomically."""
        self._check_init()
        live = np.array(sorted(self._labels), dtype=np.uint64)
        vecs = self._client.get(self.collection, live, with_payload=False).vectors if len(live) \
            else np.zeros((0, self.dim), np.float32)
        dead = np.array(sorted(self._deleted), dtype=np.uint64)
        dead_vecs = np.array([self._deleted[int(x)] for x in dead], dtype=np.float32).reshape(
            -1, self.dim)
        tmp = "%s.tmp-%d" % (path, os.getpid())
        with open(tmp, "wb") as f:
            np.savez(f, magic=np.array(FILE_MAGIC), version=np.array(FILE_VERSION),
                     space=np.array(self.space), dim=np.array(self.dim),
                     M=np.array(self._M), ef_construction=np.array(self._efc),
                     max_elements=np.array(self._max), ids=live, vectors=vecs,
                     deleted_ids=dead, deleted_vectors=dead_vecs)
        os.replace(tmp, path)

    def load_index(self, path, max_elements=0, allow_replace_deleted=False):
        """Creates this Index's collection from a save_index file; max_elements
        below the file's element count keeps the file's capacity."""
        try:
            with np.load(path, allow_pickle=False) as z:
                f = {name: z[name] for name in z.files}
        except (OSError, ValueError) as e:
            raise RuntimeError("Cannot open file %s: %s" % (path, e)) from None
        if str(f.get("magic", "")) != FILE_MAGIC or int(f.get("version", 0)) != FILE_VERSION:
            raise RuntimeError("%s is not a vecshard.hnswlib index file (version %d)" %
                               (path, FILE_VERSION))
        if str(f["space"]) != self.space or int(f["dim"]) != self.dim:
            raise RuntimeError("%s holds a %s index of dim %d, this Index is %s of dim %d" % (
                path, f["space"], int(f["dim"]), self.space, self.dim))
        count = len(f["ids"]) + len(f["deleted_ids"])
        cap = int(max_elements) if max_elements >= count else int(f["max_elements"])
        self._create(cap, int(f["M"]), int(f["ef_construction"]))
        if len(f["ids"]):
            self._client.upsert(self.collection, f["ids"], f["vectors"], parallel=2)
        self._labels = set(f["ids"].tolist())
        self._deleted = {int(x): v for x, v in zip(f["deleted_ids"], f["deleted_vectors"])}
        self._allow_replace = bool(allow_replace_deleted)
        self.ef = 10
