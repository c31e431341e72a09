"""vecshard.client — the blocking client of the public VecShard service.

Client wraps one gRPC channel to a router (docs/router.md). Every method
takes numpy arrays or lists, cuts its work into batches under the router's
limits (vecshard._common), retries transient failures (UNAVAILABLE, see
vecshard.errors.TRANSIENT) with exponential backoff — every
VecShard call is idempotent except CreateCollection and DropCollection,
which are not retried — and raises vecshard.errors classes carrying the
router's message.
"""
import concurrent.futures
import time

import grpc

from vecshard import _common as c
from vecshard import filters as flt
from vecshard.errors import TRANSIENT, InvalidArgument, NotFound, from_rpc_error
from vecshard.v1 import vecshard_pb2


class Client:
    """A connection to one vecshard router.

    address: "host:port", default $VECSHARD_ROUTER. timeout: seconds per RPC.
    api_key: sent as "authorization: Bearer KEY" metadata. tls: False
    (plaintext), True (system roots) or a grpc.ChannelCredentials.
    retries/backoff: attempts after the first on a transient error, and the
    first pause in seconds (doubled each time). max_message: bytes per
    message, the router's limit.
    """

    def __init__(self, address=None, *, timeout=60.0, api_key=None, tls=False, retries=4,
                 backoff=0.2, max_message=c.MAX_MESSAGE):
        c.connect(self, grpc, address, timeout, api_key, tls, retries, backoff, max_message)

    def close(self):
        """Closes the channel."""
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, request, retry=True, request_id=None):
        """One RPC; transient errors retried when retry; errors as VecshardError."""
        pause = self.backoff
        md = c.call_metadata(self._metadata, request_id)
        for attempt in range(self.retries + 1):
            try:
                return getattr(self._stub, method)(request, timeout=self.timeout, metadata=md)
            except grpc.RpcError as e:
                if not retry or e.code() not in TRANSIENT or attempt == self.retries:
                    raise from_rpc_error(e) from None
            time.sleep(pause)
            pause *= 2

    def _dim(self, name):
        """The collection's dim (cached after the first describe)."""
        if name not in self._dims:
            self.describe(name)
        return self._dims[name]

    # ---------------------------------------------------------------- collections
    def create_collection(self, name, dim, metric="l2", shards=1, replicas=1, M=16,
                          ef_construction=200, ef_search=64, quantization="none"):
        """Creates a collection; returns its CollectionInfo (defaults filled).

        quantization: "none" or "sq8" (8-bit codes walk the graph, floats re-rank).
        """
        req = c.create_request(name, dim, metric, shards, replicas, M, ef_construction,
                               ef_search, quantization)
        info = c.collection_info(self._call("CreateCollection", req, retry=False).config)
        self._dims[name] = info.dim
        return info

    def drop_collection(self, name):
        """Drops a collection (NotFound if absent)."""
        self._dims.pop(name, None)
        self._call("DropCollection", vecshard_pb2.DropCollectionRequest(name=name), retry=False)

    def list_collections(self):
        """Names of all collections, sorted."""
        r = self._call("ListCollections", vecshard_pb2.ListCollectionsRequest())
        return [cfg.name for cfg in r.collections]

    def describe(self, name):
        """CollectionInfo with count, shard_info and nodes (this collection's
        replicas, primaries, bytes and points per node)."""
        r = self._call("DescribeCollection", vecshard_pb2.DescribeCollectionRequest(name=name))
        self._dims[name] = r.config.dim
        return c.collection_info(r.config, r.count, r.shards, r.nodes)

    def collection_exists(self, name):
        """True if the collection exists."""
        try:
            self.describe(name)
            return True
        except NotFound:
            return False

    def count(self, name, filter=None):
        """Points matching filter (a dict in the JSON form of docs/filtering.md;
        None: every point)."""
        req = vecshard_pb2.CountRequest(
            collection=name, filter=None if filter is None else flt.to_filter(filter))
        return self._call("Count", req).count

    def status(self):
        """Nodes (with draining, bytes, points), collections, shards,
        controller, revision and rebalance moves as dicts."""
        return c.status_dict(self._call("ClusterStatus", vecshard_pb2.ClusterStatusRequest()))

    def rebalance(self, dry_run=False, collection=""):
        """Plans replica moves that even out the nodes (docs/rebalance.md) and,
        unless dry_run, queues them: {"moves": [...], "started", "note"}.
        FailedPrecondition while moves are queued or running, Unavailable
        without a controller, NotFound for an unknown collection. A queued
        plan is not retried (a retry would find it in progress)."""
        req = vecshard_pb2.RebalanceRequest(dry_run=dry_run, collection=collection)
        return c.rebalance_dict(self._call("Rebalance", req, retry=dry_run))

    def drain(self, node_id):
        """Marks a node draining: it gets nothing new and its replicas move
        off. {"draining", "replicas_left", "empty", "note"}; empty means it
        can be stopped. NotFound for an unknown node."""
        req = vecshard_pb2.DrainRequest(node_id=node_id)
        return c.drain_dict(self._call("Drain", req))

    def undrain(self, node_id):
        """Removes a node's drain mark (queued drain moves are cancelled)."""
        req = vecshard_pb2.DrainRequest(node_id=node_id, undrain=True)
        return c.drain_dict(self._call("Drain", req))

    # ---------------------------------------------------------------- points
    def upsert(self, name, ids, vectors, payloads=None, *, attributes=None, batch_size=1000,
               parallel=2, progress=False):
        """Inserts or replaces points; returns the number written. Batches of
        batch_size points (fewer if the message limit needs it) go out
        parallel at a time; progress=True draws a bar on a terminal stderr
        (or pass a stream)."""
        ids, vectors, payloads, attributes = c.prepare_upsert(ids, vectors, payloads, attributes)
        if len(ids) == 0:
            return 0
        bar = c.Progress(progress, len(ids), "upsert %s" % name)
        batches = c.upsert_batches(name, ids, vectors, payloads, batch_size, self.max_message,
                                   attributes)
        total = 0
        if parallel <= 1:
            for req, n in batches:
                total += self._call("Upsert", req).upserted
                bar.advance(n)
            return total
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            pending = set()
            for req, n in batches:
                # At most 2*parallel requests built ahead of the senders.
                if len(pending) >= 2 * parallel:
                    done, pending = concurrent.futures.wait(
                        pending, return_when=concurrent.futures.FIRST_COMPLETED)
                    for f in done:
                        total += f.result()[0].upserted
                        bar.advance(f.result()[1])
                pending.add(pool.submit(lambda r=req, k=n: (self._call("Upsert", r), k)))
            for f in concurrent.futures.as_completed(pending):
                total += f.result()[0].upserted
                bar.advance(f.result()[1])
        return total

    def search(self, name, queries, k=10, ef=None, *, with_payload=False, with_vector=False,
               min_coverage=1.0, request_id=None, filter=None, with_attributes=False,
               target_recall=None):
        """k nearest neighbours of each query row: a SearchResult (ids uint64
        (N,k), distances float32 (N,k), counts, coverage, payloads, vectors).
        min_coverage 0 accepts any coverage. request_id: sent as x-request-id
        on every batch, to find the search in the router's and nodes' logs.
        target_recall (0, 1] instead of ef: automatic ef (docs/engine.md); the
        result's ef_used and estimated_recall say what the shards chose."""
        queries = c.as_matrix(queries, "queries")
        if k < 1:
            raise InvalidArgument("k: must be at least 1, got %d" % k)
        replies = [(lo, self._call("Search", req, request_id=request_id))
                   for lo, req in c.search_batches(
            name, queries, k, ef, min_coverage, with_payload, with_vector, queries.shape[1],
            self.max_message, filter, with_attributes, target_recall)]
        return c.search_result(replies, len(queries), k, with_payload, with_vector,
                               with_attributes)

    def get(self, name, ids, *, with_vector=True, with_payload=True, with_attributes=False):
        """Points by id: a GetResult (ids, vectors, payloads, missing_ids,
        attributes)."""
        ids = c.as_ids(ids)
        dim = self._dim(name)
        per = c.get_batch_size(dim, with_vector, with_payload or with_attributes,
                               self.max_message)
        replies = [self._call("Get", vecshard_pb2.GetRequest(
            collection=name, ids=b.tolist(), with_payload=with_payload, with_vector=with_vector,
            with_attributes=with_attributes))
            for b in c.id_batches(ids, per)]
        return c.get_result(replies, dim, with_payload, with_vector, with_attributes)

    def delete(self, name, ids=None, *, filter=None):
        """Deletes ids (absent ones are not an error), or every point matching
        filter; returns how many were processed (ids) or deleted (filter)."""
        if filter is not None:
            if ids is not None:
                raise InvalidArgument("delete: give ids or filter, not both")
            return self._call("Delete", vecshard_pb2.DeleteRequest(
                collection=name, filter=flt.to_filter(filter)), retry=False).deleted
        ids = c.as_ids(ids)
        return sum(self._call("Delete", vecshard_pb2.DeleteRequest(
            collection=name, ids=b.tolist())).deleted for b in c.id_batches(ids, c.MAX_POINTS))
