"""vecshard.aio — the asyncio client: vecshard.Client's methods as coroutines.

Same arguments, batching, retries, results and exceptions as the blocking
client (both are built on vecshard._common); the calls go over grpc.aio,
and upsert keeps `parallel` batches in flight with asyncio tasks instead of
threads. Create the client inside a running event loop.
"""
import asyncio

import grpc
import grpc.aio

from vecshard import _common as c
from vecshard import filters as flt
from vecshard.errors import TRANSIENT, InvalidArgument, NotFound, from_rpc_error
from vecshard.v1 import vecshard_pb2


class Client:
    """An asyncio connection to one vecshard router (see vecshard.Client)."""

    def __init__(self, address=None, *, timeout=60.0, api_key=None, tls=False, retries=4,
                 backoff=0.2, max_message=c.MAX_MESSAGE):
        c.connect(self, grpc.aio, address, timeout, api_key, tls, retries, backoff, max_message)

    async def close(self):
        """Closes the channel."""
        await self._channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def _call(self, method, request, retry=True, request_id=None):
        """One RPC; transient errors retried when retry; errors as VecshardError."""
        pause = self.backoff
        md = c.call_metadata(self._metadata, request_id)
        for attempt in range(self.retries + 1):
            try:
                return await getattr(self._stub, method)(request, timeout=self.timeout,
                                                         metadata=md)
            except grpc.aio.AioRpcError as e:
                if not retry or e.code() not in TRANSIENT or attempt == self.retries:
                    raise from_rpc_error(e) from None
            await asyncio.sleep(pause)
            pause *= 2

    async def _dim(self, name):
        if name not in self._dims:
            await self.describe(name)
        return self._dims[name]

    async def create_collection(self, name, dim, metric="l2", shards=1, replicas=1, M=16,
                                ef_construction=200, ef_search=64, quantization="none"):
        """Creates a collection; returns its CollectionInfo."""
        req = c.create_request(name, dim, metric, shards, replicas, M, ef_construction,
                               ef_search, quantization)
        r = await self._call("CreateCollection", req, retry=False)
        self._dims[name] = r.config.dim
        return c.collection_info(r.config)

    async def drop_collection(self, name):
        """Drops a collection (NotFound if absent)."""
        self._dims.pop(name, None)
        await self._call("DropCollection", vecshard_pb2.DropCollectionRequest(name=name),
                         retry=False)

    async def list_collections(self):
        """Names of all collections, sorted."""
        r = await self._call("ListCollections", vecshard_pb2.ListCollectionsRequest())
        return [cfg.name for cfg in r.collections]

    async def describe(self, name):
        """CollectionInfo with count, shard_info and nodes (this collection's
        replicas, primaries, bytes and points per node)."""
        r = await self._call("DescribeCollection",
                             vecshard_pb2.DescribeCollectionRequest(name=name))
        self._dims[name] = r.config.dim
        return c.collection_info(r.config, r.count, r.shards, r.nodes)

    async def collection_exists(self, name):
        """True if the collection exists."""
        try:
            await self.describe(name)
            return True
        except NotFound:
            return False

    async def count(self, name, filter=None):
        """Points matching filter (a dict in the JSON form of docs/filtering.md;
        None: every point)."""
        req = vecshard_pb2.CountRequest(
            collection=name, filter=None if filter is None else flt.to_filter(filter))
        return (await self._call("Count", req)).count

    async def status(self):
        """Nodes (with draining, bytes, points), collections, shards,
        controller, revision and rebalance moves as dicts."""
        return c.status_dict(await self._call("ClusterStatus",
                                              vecshard_pb2.ClusterStatusRequest()))

    async def rebalance(self, dry_run=False, collection=""):
        """Plans replica moves that even out the nodes (docs/rebalance.md) and,
        unless dry_run, queues them: {"moves": [...], "started", "note"}.
        FailedPrecondition while moves are queued or running, Unavailable
        without a controller, NotFound for an unknown collection. A queued
        plan is not retried (a retry would find it in progress)."""
        req = vecshard_pb2.RebalanceRequest(dry_run=dry_run, collection=collection)
        return c.rebalance_dict(await self._call("Rebalance", req, retry=dry_run))

    async def drain(self, node_id):
        """Marks a node draining: it gets nothing new and its replicas move
        off. {"draining", "replicas_left", "empty", "note"}; empty means it
        can be stopped. NotFound for an unknown node."""
        req = vecshard_pb2.DrainRequest(node_id=node_id)
        return c.drain_dict(await self._call("Drain", req))

    async def undrain(self, node_id):
        """Removes a node's drain mark (queued drain moves are cancelled)."""
        req = vecshard_pb2.DrainRequest(node_id=node_id, undrain=True)
        return c.drain_dict(await self._call("Drain", req))

    async def upsert(self, name, ids, vectors, payloads=None, *, attributes=None,
                     batch_size=1000, parallel=2, progress=False):
        """Inserts or replaces points (attributes: a dict per point); returns
        the number written."""
        ids, vectors, payloads, attributes = c.prepare_upsert(ids, vectors, payloads, attributes)
        if len(ids) == 0:
            return 0
        bar = c.Progress(progress, len(ids), "upsert %s" % name)
        sem = asyncio.Semaphore(max(1, parallel))

        async def send(req, n):
            async with sem:
                r = await self._call("Upsert", req)
            bar.advance(n)
            return r.upserted
        tasks = [asyncio.ensure_future(send(req, n)) for req, n in c.upsert_batches(
            name, ids, vectors, payloads, batch_size, self.max_message, attributes)]
        try:
            return sum(await asyncio.gather(*tasks))
        finally:
            for t in tasks:
                t.cancel()

    async def search(self, name, queries, k=10, ef=None, *, with_payload=False,
                     with_vector=False, min_coverage=1.0, request_id=None, filter=None,
                     with_attributes=False, target_recall=None):
        """k nearest neighbours of each query row: a SearchResult (request_id as
        in Client.search)."""
        queries = c.as_matrix(queries, "queries")
        if k < 1:
            raise InvalidArgument("k: must be at least 1, got %d" % k)
        replies = [(lo, await self._call("Search", req, request_id=request_id))
                   for lo, req in c.search_batches(
            name, queries, k, ef, min_coverage, with_payload, with_vector, queries.shape[1],
            self.max_message, filter, with_attributes, target_recall)]
        return c.search_result(replies, len(queries), k, with_payload, with_vector,
                               with_attributes)

    async def get(self, name, ids, *, with_vector=True, with_payload=True,
                  with_attributes=False):
        """Points by id: a GetResult."""
        ids = c.as_ids(ids)
        dim = await self._dim(name)
        per = c.get_batch_size(dim, with_vector, with_payload or with_attributes,
                               self.max_message)
        replies = [await self._call("Get", vecshard_pb2.GetRequest(
            collection=name, ids=b.tolist(), with_payload=with_payload, with_vector=with_vector,
            with_attributes=with_attributes))
            for b in c.id_batches(ids, per)]
        return c.get_result(replies, dim, with_payload, with_vector, with_attributes)

    async def delete(self, name, ids=None, *, filter=None):
        """Deletes ids, or every point matching filter; returns how many were
        processed (ids) or deleted (filter)."""
        if filter is not None:
            if ids is not None:
                raise InvalidArgument("delete: give ids or filter, not both")
            return (await self._call("Delete", vecshard_pb2.DeleteRequest(
                collection=name, filter=flt.to_filter(filter)), retry=False)).deleted
        ids = c.as_ids(ids)
        total = 0
        for b in c.id_batches(ids, c.MAX_POINTS):
            total += (await self._call("Delete", vecshard_pb2.DeleteRequest(
                collection=name, ids=b.tolist()))).deleted
        return total
