"""vecshard._common — what the blocking and the asyncio clients share.

Argument checking (numpy or lists in), request building, batching under the
router's limits, and turning replies into numpy results. Both clients call
these pure functions and differ only in how they send the requests, so a
batch is cut and a reply decoded the same way in either.

Limits mirror the router's defaults (proto/vecshard/v1/common.proto): a
64 MiB message, 100,000 points or ids per write/read, 10,000 queries per
search. A batch is cut by count and by an upper bound of its encoded size,
so one call never exceeds the message limit whatever the dimension.
"""
import dataclasses
import os
import sys

import grpc
import numpy as np

from vecshard.errors import InvalidArgument
from vecshard import filters as flt
from vecshard.v1 import common_pb2, vecshard_pb2, vecshard_pb2_grpc

MAX_MESSAGE = 64 << 20
MAX_POINTS = 100_000
MAX_QUERIES = 10_000
METRICS = {"l2": common_pb2.METRIC_L2, "ip": common_pb2.METRIC_IP,
           "cosine": common_pb2.METRIC_COSINE}
METRIC_NAMES = {v: k for k, v in METRICS.items()}
QUANTIZATIONS = {"none": common_pb2.QUANTIZATION_NONE, "sq8": common_pb2.QUANTIZATION_SQ8}
QUANTIZATION_NAMES = {v: k for k, v in QUANTIZATIONS.items()}
# Upper bound of the per-point framing: id, tags and length varints of the
# point, its vector and payload, and the point's own tag and length.
POINT_OVERHEAD = 32


def router_address(address):
    """The explicit address, else $VECSHARD_ROUTER; InvalidArgument if neither."""
    address = address or os.environ.get("VECSHARD_ROUTER")
    if not address:
        raise InvalidArgument("address: none given and $VECSHARD_ROUTER is not set")
    return address


def channel_options(max_message):
    return [("grpc.max_send_message_length", max_message),
            ("grpc.max_receive_message_length", max_message)]


def metadata(api_key):
    return (("authorization", "Bearer " + api_key),) if api_key else None


def call_metadata(base, request_id):
    """The client's metadata plus x-request-id when request_id is given (the
    router uses it when it is 1..64 printable ASCII characters without spaces,
    else makes its own; docs/router.md, "Request ids")."""
    if not request_id:
        return base
    return tuple(base or ()) + (("x-request-id", str(request_id)),)


def connect(client, channels, address, timeout, api_key, tls, retries, backoff, max_message):
    """Sets up the connection fields of a Client or aio.Client; `channels` is
    the grpc module whose channel constructors to use (grpc or grpc.aio)."""
    client.address = router_address(address)
    client.timeout, client.retries, client.backoff = timeout, retries, backoff
    client.max_message = max_message
    client._metadata = metadata(api_key or os.environ.get("VECSHARD_API_KEY") or None)
    opts = channel_options(max_message)
    if tls:
        creds = tls if isinstance(tls, grpc.ChannelCredentials) else \
            grpc.ssl_channel_credentials()
        client._channel = channels.secure_channel(client.address, creds, options=opts)
    else:
        client._channel = channels.insecure_channel(client.address, options=opts)
    client._stub = vecshard_pb2_grpc.VecShardStub(client._channel)
    client._dims = {}


def as_matrix(vectors, what):
    """vectors as a C-contiguous float32 (N, dim) array; a 1-D input is one row."""
    a = np.asarray(vectors, dtype=np.float32)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2:
        raise InvalidArgument("%s: expected a 1-D or 2-D array, got %d dimensions" %
                              (what, a.ndim))
    return np.ascontiguousarray(a)


def as_ids(ids, what="ids"):
    """ids as a uint64 1-D array (a scalar is one id); negative ids are refused."""
    a = np.asarray(ids)
    if a.ndim == 0:
        a = a.reshape(1)
    if a.ndim != 1:
        raise InvalidArgument("%s: expected a 1-D sequence, got %d dimensions" % (what, a.ndim))
    if a.size and a.dtype.kind == "i" and a.min() < 0:
        raise InvalidArgument("%s: ids are unsigned, got %d" % (what, int(a.min())))
    if a.size and a.dtype.kind not in "iu":
        raise InvalidArgument("%s: expected integers, got dtype %s" % (what, a.dtype))
    return a.astype(np.uint64)


def as_payloads(payloads, n):
    """A list of n bytes objects (str is UTF-8 encoded, None is empty)."""
    if payloads is None:
        return None
    out = [b"" if p is None else (p.encode() if isinstance(p, str) else bytes(p))
           for p in payloads]
    if len(out) != n:
        raise InvalidArgument("payloads: %d given for %d ids" % (len(out), n))
    return out


def create_request(name, dim, metric, shards, replicas, M, ef_construction, ef_search,
                   quantization="none"):
    if metric not in METRICS:
        raise InvalidArgument("metric: %r is not one of l2, ip, cosine" % (metric,))
    if quantization not in QUANTIZATIONS:
        raise InvalidArgument("quantization: %r is not one of none, sq8" % (quantization,))
    return vecshard_pb2.CreateCollectionRequest(config=common_pb2.CollectionConfig(
        name=name, dim=dim, metric=METRICS[metric], m=M, ef_construction=ef_construction,
        ef_search=ef_search, shards=shards, replication_factor=replicas,
        quantization=QUANTIZATIONS[quantization]))


def prepare_upsert(ids, vectors, payloads, attributes=None):
    """Checked (ids, vectors, payloads, attributes); an id given twice keeps
    its last copy."""
    ids = as_ids(ids)
    vectors = as_matrix(vectors, "vectors")
    if len(vectors) != len(ids):
        raise InvalidArgument("vectors: %d rows for %d ids" % (len(vectors), len(ids)))
    payloads = as_payloads(payloads, len(ids))
    if attributes is not None:
        attributes = list(attributes)
        if len(attributes) != len(ids):
            raise InvalidArgument("attributes: %d given for %d ids" % (len(attributes), len(ids)))
    # Batches may be sent in parallel, so duplicates are resolved here, as the
    # server resolves them within one batch: the last copy wins.
    _, last = np.unique(ids[::-1], return_index=True)
    if len(last) != len(ids):
        keep = np.sort(len(ids) - 1 - last)
        ids, vectors = ids[keep], vectors[keep]
        payloads = None if payloads is None else [payloads[i] for i in keep]
        attributes = None if attributes is None else [attributes[i] for i in keep]
    return ids, vectors, payloads, attributes


def upsert_batches(name, ids, vectors, payloads, batch_size, max_message, attributes=None):
    """UpsertRequests of at most batch_size points whose encoded size stays
    under max_message; yields (request, number of points)."""
    batch_size = max(1, min(int(batch_size), MAX_POINTS))
    budget = max_message - len(name.encode()) - 64
    row_bytes = 4 * vectors.shape[1] + POINT_OVERHEAD
    lo, n = 0, len(ids)
    while lo < n:
        hi, size = lo, 0
        while hi < n and hi - lo < batch_size:
            cost = row_bytes + (len(payloads[hi]) if payloads else 0) + (
                attr_bytes(attributes[hi]) if attributes else 0)
            if hi > lo and size + cost > budget:
                break
            size += cost
            hi += 1
        rows, keys = vectors[lo:hi].tolist(), ids[lo:hi].tolist()
        points = [common_pb2.Point(id=keys[j], vector=rows[j],
                                   payload=payloads[lo + j] if payloads else b"")
                  for j in range(hi - lo)]
        for j in range(hi - lo) if attributes else ():
            flt.set_attributes(points[j].attributes, attributes[lo + j],
                               "attributes[%d]" % (lo + j))
        yield vecshard_pb2.UpsertRequest(collection=name, points=points), hi - lo
        lo = hi


def attr_bytes(attrs):
    """An upper bound of a point's encoded attributes."""
    return sum(16 + len(k) + len(str(v)) * 2 for k, v in (attrs or {}).items())


def id_batches(ids, per_batch):
    """Slices of ids of at most per_batch (and MAX_POINTS) ids."""
    step = max(1, min(per_batch, MAX_POINTS))
    return [ids[lo:lo + step] for lo in range(0, len(ids), step)]


def get_batch_size(dim, with_vector, with_payload, max_message):
    """Ids per Get so that the reply stays under max_message (payloads are
    counted at the 64 KiB maximum)."""
    row = POINT_OVERHEAD + (4 * dim if with_vector else 0) + (65536 if with_payload else 0)
    return max(1, min(MAX_POINTS, (max_message - 1024) // row))


def search_batches(name, queries, k, ef, min_coverage, with_payload, with_vector, dim_hint,
                   max_message, filter=None, with_attributes=False, target_recall=None):
    """SearchRequests of at most MAX_QUERIES queries whose replies (k hits each,
    with vectors/payloads if asked) stay under max_message; yields (lo, request)."""
    hit = 24 + (4 * dim_hint if with_vector else 0) + (65536 if with_payload else 0) + (
        65536 if with_attributes else 0)
    filter = None if filter is None else flt.to_filter(filter)
    per_query = max(k * hit, 4 * queries.shape[1] + 16)
    step = max(1, min(MAX_QUERIES, (max_message - 1024) // per_query))
    # 0 means "unset = 1.0" on the wire; a caller's 0 means "any coverage".
    wire_cov = 1e-9 if min_coverage <= 0 else float(min_coverage)
    if target_recall is not None and not 0 < target_recall <= 1:
        raise InvalidArgument("target_recall: %r is not in (0, 1]" % (target_recall,))
    if target_recall is not None and ef:
        raise InvalidArgument("target_recall: set ef or target_recall, not both")
    for lo in range(0, len(queries), step):
        yield lo, vecshard_pb2.SearchRequest(
            collection=name, k=k, ef=ef or 0, min_coverage=wire_cov, with_payload=with_payload,
            with_vector=with_vector, filter=filter, with_attributes=with_attributes,
            target_recall=target_recall or 0,
            queries=[common_pb2.Query(vector=q) for q in queries[lo:lo + step].tolist()])


@dataclasses.dataclass
class Coverage:
    """Which shards answered a search (all of it when partial is False)."""
    shards_total: int
    shards_ok: int
    missing_shards: list
    partial: bool


@dataclasses.dataclass
class SearchResult:
    """Hits of N queries, padded to k columns.

    ids (uint64, (N, k)) and distances (float32, (N, k)) are sorted by
    ascending distance; a query with fewer than k hits has its row padded
    with id 2**64-1 and distance inf, and counts[i] says how many are real.
    payloads[i][j] (bytes), vectors (float32, (N, k, dim), NaN padding) and
    attributes[i][j] (dict) are set when asked for, else None.
    """
    ids: np.ndarray
    distances: np.ndarray
    counts: np.ndarray
    coverage: Coverage
    payloads: list = None
    vectors: np.ndarray = None
    attributes: list = None
    # With target_recall: the widest ef a shard used and the lowest recall estimate.
    ef_used: int = None
    estimated_recall: float = None

    def __len__(self):
        return len(self.ids)


PAD_ID = np.uint64(np.iinfo(np.uint64).max)


def search_result(replies, n, k, with_payload, with_vector, with_attributes=False):
    """One SearchResult from the (lo, SearchResponse) replies of search_batches."""
    attributes = [[] for _ in range(n)] if with_attributes else None
    ids = np.full((n, k), PAD_ID, dtype=np.uint64)
    dist = np.full((n, k), np.inf, dtype=np.float32)
    counts = np.zeros(n, dtype=np.int64)
    payloads = [[] for _ in range(n)] if with_payload else None
    vectors, missing, total, oks = None, set(), 0, []
    ef_used, est = None, None
    for lo, reply in replies:
        if reply.HasField("auto_ef"):
            ef_used = max(ef_used or 0, reply.auto_ef.ef)
            est = min(est if est is not None else 1.0, reply.auto_ef.estimated_recall)
        cov = reply.coverage
        total = cov.shards_total
        oks.append(cov.shards_ok)
        missing.update(cov.missing_shards)
        for qi, res in enumerate(reply.results):
            row, hits = lo + qi, res.hits
            counts[row] = len(hits)
            ids[row, :len(hits)] = [h.id for h in hits]
            dist[row, :len(hits)] = [h.distance for h in hits]
            if with_payload:
                payloads[row] = [h.payload for h in hits]
            if with_attributes:
                attributes[row] = [flt.attributes_dict(h.attributes) for h in hits]
            if with_vector and hits:
                if vectors is None:
                    vectors = np.full((n, k, len(hits[0].vector)), np.nan, dtype=np.float32)
                vectors[row, :len(hits)] = [h.vector for h in hits]
    # Several batches: the coverage of the worst one, every missing shard.
    cov = Coverage(total, min(oks, default=0), sorted(missing), bool(missing))
    return SearchResult(ids, dist, counts, cov, payloads, vectors, attributes, ef_used, est)


@dataclasses.dataclass
class GetResult:
    """Points found by get, in the order of their first occurrence in the ids
    asked for: ids (uint64, (n,)), vectors (float32, (n, dim)) or None,
    payloads (list of bytes) or None, missing_ids (uint64) not found, and
    attributes (list of dicts) or None."""
    ids: np.ndarray
    vectors: np.ndarray
    payloads: list
    missing_ids: np.ndarray
    attributes: list = None

    def __len__(self):
        return len(self.ids)


def get_result(replies, dim, with_payload, with_vector, with_attributes=False):
    """One GetResult from GetResponses (in request order)."""
    points = [p for r in replies for p in r.points]
    missing = [i for r in replies for i in r.missing_ids]
    vectors = None
    if with_vector:
        vectors = np.array([p.vector for p in points], dtype=np.float32).reshape(-1, dim)
    return GetResult(np.array([p.id for p in points], dtype=np.uint64), vectors,
                     [p.payload for p in points] if with_payload else None,
                     np.array(missing, dtype=np.uint64),
                     [flt.attributes_dict(p.attributes) for p in points]
                     if with_attributes else None)


@dataclasses.dataclass
class CollectionInfo:
    """A collection's configuration; count and shards only from describe."""
    name: str
    dim: int
    metric: str
    shards: int
    replicas: int
    M: int
    ef_construction: int
    ef_search: int
    created_at: int
    count: int = None
    quantization: str = "none"
    shard_info: list = None
    nodes: list = None  # describe: per node, this collection's replicas, bytes, points


def replica_dict(r):
    """One ReplicaInfo of ClusterStatus (docs/replication.md, "Status") as a dict."""
    return {"node_id": r.node_id, "alive": r.alive, "role": r.role, "state": r.state,
            "in_sync": r.in_sync, "lsn": r.lsn, "lag": r.lag, "recovery": r.recovery,
            "transfer_bytes_done": r.transfer_bytes_done,
            "transfer_bytes_total": r.transfer_bytes_total, "reason": r.reason,
            "bytes": r.bytes, "points": r.points}


def node_dict(n):
    """One NodeInfo as a dict: bytes and points are the sums over the replicas
    it reported (answered False: it did not answer, both 0)."""
    return {"id": n.id, "addr": n.addr, "alive": n.alive, "replicas": n.replicas,
            "primaries": n.primaries, "version": n.version, "started_at": n.started_at,
            "draining": n.draining, "bytes": n.bytes, "points": n.points,
            "answered": n.answered}


MOVE_STATES = {vecshard_pb2.MOVE_STATE_UNSPECIFIED: "planned",
               vecshard_pb2.MOVE_STATE_QUEUED: "queued",
               vecshard_pb2.MOVE_STATE_RUNNING: "running",
               vecshard_pb2.MOVE_STATE_DONE: "done",
               vecshard_pb2.MOVE_STATE_FAILED: "failed",
               vecshard_pb2.MOVE_STATE_CANCELLED: "cancelled"}


def move_dict(m):
    """One ReplicaMove (docs/rebalance.md §5) as a dict; state is "planned"
    (a dry-run plan), "queued", "running", "done", "failed" or "cancelled"."""
    return {"id": m.id, "collection": m.collection, "shard": m.shard,
            "from_node": m.from_node, "to_node": m.to_node, "primary": m.primary,
            "kind": m.kind, "state": MOVE_STATES.get(m.state, str(m.state)), "step": m.step,
            "bytes_total": m.bytes_total, "bytes_done": m.bytes_done, "eta_ms": m.eta_ms,
            "attempts": m.attempts, "reason": m.reason, "origin": m.origin,
            "created_at": m.created_at, "started_at": m.started_at,
            "finished_at": m.finished_at}


def rebalance_dict(r):
    """RebalanceResponse as {"moves", "started", "note"}."""
    return {"moves": [move_dict(m) for m in r.moves], "started": r.started, "note": r.note}


def drain_dict(r):
    """DrainResponse as {"draining", "replicas_left", "empty", "note"}."""
    return {"draining": r.draining, "replicas_left": r.replicas_left, "empty": r.empty,
            "note": r.note}


def collection_info(cfg, count=None, shards=None, nodes=None):
    info = CollectionInfo(cfg.name, cfg.dim, METRIC_NAMES.get(cfg.metric, str(cfg.metric)),
                          cfg.shards, cfg.replication_factor, cfg.m, cfg.ef_construction,
                          cfg.ef_search, cfg.created_at, count,
                          QUANTIZATION_NAMES.get(cfg.quantization, str(cfg.quantization)))
    if shards is not None:
        info.shard_info = [{"shard": s.shard, "epoch": s.epoch, "primary": s.primary,
                            "replicas": list(s.replicas), "in_sync": list(s.in_sync),
                            "recovering": list(s.recovering), "lsn": s.lsn,
                            "primary_state": s.primary_state,
                            "replica_status": [replica_dict(r) for r in s.replica_status]}
                           for s in shards]
    if nodes is not None:
        info.nodes = [node_dict(n) for n in nodes]
    return info


def status_dict(st):
    """ClusterStatusResponse as plain dicts and lists."""
    return {
        "nodes": [node_dict(n) for n in st.nodes],
        "collections": [dataclasses.asdict(collection_info(c)) for c in st.collections],
        "shards": collection_info(common_pb2.CollectionConfig(), shards=st.shards).shard_info,
        "controller": st.controller,
        "revision": st.revision,
        "moves": [move_dict(m) for m in st.moves],
    }


class Progress:
    """A one-line progress bar on a terminal; silent when the stream is not one."""

    def __init__(self, enabled, total, what):
        stream = sys.stderr if enabled is True else (enabled or None)
        self.stream = stream if stream is not None and stream.isatty() else None
        self.total, self.done, self.what = total, 0, what

    def advance(self, n):
        self.done += n
        if self.stream is None:
            return
        width = 30
        filled = width * self.done // max(1, self.total)
        self.stream.write("\r%s [%s%s] %d/%d" % (self.what, "#" * filled, "." * (width - filled),
                                                  self.done, self.total))
        if self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()
