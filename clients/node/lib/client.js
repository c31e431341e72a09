// client.js — vecshard.Client: the VecShard service as promise-returning
// methods with typed arrays in and out.
//
// One Client holds one grpc-js channel to a router (routers are stateless;
// any one will do). Each method is one call, except upsert, which cuts its
// points into batches (by count and by encoded size, under the router's
// message limit), sends up to `parallel` batches at once and retries a batch
// that failed with a transient code (UNAVAILABLE, ABORTED) after a doubling
// backoff: writes are idempotent (docs/router.md), so a resent batch is
// safe. Search returns row-major BigUint64Array ids and Float32Array
// distances of shape (queries, k). Every failure is a VecshardError
// subclass (lib/errors.js) carrying the server's message.
'use strict';

const grpc = require('@grpc/grpc-js');
const { vecshardService } = require('./proto');
const { fromGrpcError, InvalidArgument, NotFound, VecshardError } = require('./errors');
const cv = require('./convert');
const flt = require('./filters');

const DEFAULT_MESSAGE_BYTES = 64 * 1024 * 1024;
// Transient codes upsert retries: UNAVAILABLE (router or node not reachable,
// shard loading), ABORTED.
const RETRY_CODES = new Set([14, 10]);
// Longest wait between two tries of a write.
const MAX_BACKOFF_MS = 5000;

// The hits of one search batch: row-major (nq, k) arrays, padded when a
// query has fewer than k hits (id UINT64_MAX, distance Infinity).
class SearchResult {
  constructor(nq, k) {
    this.nq = nq;
    this.k = k;
    this.ids = new BigUint64Array(nq * k).fill(cv.UINT64_MAX);
    this.distances = new Float32Array(nq * k).fill(Infinity);
    this.counts = new Uint32Array(nq);
    this.payloads = null;
    this.vectors = null;
    this.attributes = null;
    this.coverage = null;
    this.autoEf = null;
  }

  // Query i's hits as objects {id, distance, payload?, vector?, attributes?}, best first.
  hits(i) {
    const out = [];
    for (let j = 0; j < this.counts[i]; j++) {
      const h = { id: this.ids[i * this.k + j], distance: this.distances[i * this.k + j] };
      if (this.payloads) h.payload = this.payloads[i * this.k + j];
      if (this.vectors) h.vector = this.vectors[i * this.k + j];
      if (this.attributes) h.attributes = this.attributes[i * this.k + j];
      out.push(h);
    }
    return out;
  }
}

// Resolves after ms milliseconds.
function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

class Client {
  // address "host:port" (default $VECSHARD_ROUTER); options: timeoutMs
  // (per call, default 30000), apiKey (sent as "authorization: Bearer"; default $VECSHARD_API_KEY),
  // tls (true, or {rootCerts, privateKey, certChain} Buffers), credentials
  // (a grpc.ChannelCredentials, overrides tls), maxMessageBytes (default
  // 64 MiB, the router's default), channelOptions (passed to grpc-js).
  constructor(address, options = {}) {
    if (address !== undefined && address !== null && typeof address === 'object') {
      options = address;
      address = undefined;
    }
    this.address = address || process.env.VECSHARD_ROUTER;
    if (!this.address) {
      throw new InvalidArgument('address is empty: pass "host:port" or set VECSHARD_ROUTER');
    }
    this.timeoutMs = options.timeoutMs ?? 30000;
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MESSAGE_BYTES;
    this.metadata = new grpc.Metadata();
    const apiKey = options.apiKey || process.env.VECSHARD_API_KEY;
    if (apiKey) this.metadata.set('authorization', `Bearer ${apiKey}`);
    let creds = options.credentials;
    if (!creds) {
      const tls = options.tls;
      if (tls) {
        const t = tls === true ? {} : tls;
        creds = grpc.credentials.createSsl(t.rootCerts || null, t.privateKey || null, t.certChain || null);
      } else {
        creds = grpc.credentials.createInsecure();
      }
    }
    const Service = vecshardService();
    this.stub = new Service(this.address, creds, {
      'grpc.max_receive_message_length': this.maxMessageBytes,
      'grpc.max_send_message_length': this.maxMessageBytes,
      ...(options.channelOptions || {}),
    });
    this.dims = new Map();
  }

  // Closes the channel; calls after close fail.
  close() {
    this.stub.close();
  }

  // One unary call of `method`; resolves to the reply object, rejects with
  // a VecshardError.
  call(method, request, timeoutMs) {
    const deadline = new Date(Date.now() + (timeoutMs ?? this.timeoutMs));
    return new Promise((resolve, reject) => {
      this.stub[method](request, this.metadata, { deadline }, (err, reply) => {
        if (err) reject(fromGrpcError(err));
        else resolve(reply);
      });
    });
  }

  // Creates a collection; resolves to its stored configuration.
  async createCollection(name, dim, options = {}) {
    const o = {
      metric: 'l2',
      shards: 1,
      replicas: 1,
      M: 16,
      efConstruction: 200,
      efSearch: 64,
      quantization: 'none',
      ...options,
    };
    const config = {
      name,
      dim,
      metric: cv.metricEnum(o.metric),
      m: o.M,
      efConstruction: o.efConstruction,
      efSearch: o.efSearch,
      shards: o.shards,
      replicationFactor: o.replicas,
      quantization: cv.quantizationEnum(o.quantization),
    };
    const reply = await this.call('CreateCollection', { config }, o.timeoutMs);
    const out = cv.configOut(reply.config);
    this.dims.set(out.name, out.dim);
    return out;
  }

  // Drops a collection (NotFound if it does not exist).
  async dropCollection(name, options = {}) {
    this.dims.delete(name);
    await this.call('DropCollection', { name }, options.timeoutMs);
  }

  // Every collection's configuration, sorted by name.
  async listCollections(options = {}) {
    const reply = await this.call('ListCollections', {}, options.timeoutMs);
    return reply.collections.map(cv.configOut);
  }

  // One collection's configuration, shards and live point count.
  async describe(name, options = {}) {
    const reply = await this.call('DescribeCollection', { name }, options.timeoutMs);
    const config = cv.configOut(reply.config);
    this.dims.set(config.name, config.dim);
    return { config, shards: reply.shards.map(cv.shardOut), count: Number(reply.count) };
  }

  // True when the collection exists.
  async collectionExists(name, options = {}) {
    const all = await this.listCollections(options);
    return all.some((c) => c.name === name);
  }

  // Points of a collection matching options.filter (a filter object,
  // docs/filtering.md; every point without one): the Count call, exact over
  // one in-sync replica per shard.
  async count(name, options = {}) {
    const request = { collection: name };
    if (options.filter !== undefined && options.filter !== null) request.filter = flt.toFilter(options.filter);
    return Number((await this.call('Count', request, options.timeoutMs)).count);
  }

  // The collection's dimension: from this client's cache or the router.
  async dimOf(name, timeoutMs) {
    if (this.dims.has(name)) return this.dims.get(name);
    const all = await this.listCollections({ timeoutMs });
    for (const c of all) this.dims.set(c.name, c.dim);
    if (!this.dims.has(name)) throw new NotFound(`collection "${name}" not found`);
    return this.dims.get(name);
  }

  // Inserts or replaces points; resolves to the number written. ids: any
  // id array; vectors: flat Float32Array (ids.length rows) or an array of
  // rows; options: payloads, attributes (an object per point,
  // docs/filtering.md), batchSize (1000), parallel (2), retries (3),
  // retryBackoffMs (100), progress (true: a bar on a terminal's stderr, or
  // a function (done, total)), onRetry (err, attempt), timeoutMs per batch.
  // A batch failing for good rejects the call with the index of its first
  // point in err.pointOffset; no further batch is sent (the ones written
  // stay written).
  async upsert(name, ids, vectors, options = {}) {
    const o = { batchSize: 1000, parallel: 2, retries: 3, retryBackoffMs: 100, ...options };
    if (!Number.isInteger(o.parallel) || o.parallel < 1) {
      throw new InvalidArgument(`parallel must be a positive integer, got ${o.parallel}`);
    }
    const idList = cv.idStrings(ids, 'ids');
    if (idList.length === 0) throw new InvalidArgument('ids is empty');
    const rows = cv.vectorRows(vectors, idList.length, null, 'vectors');
    const payloads = o.payloads ?? null;
    if (payloads !== null && payloads.length !== idList.length) {
      throw new InvalidArgument(`payloads has ${payloads.length} entries, ids has ${idList.length}`);
    }
    const attrs = o.attributes ?? null;
    if (attrs !== null && attrs.length !== idList.length) {
      throw new InvalidArgument(`attributes has ${attrs.length} entries, ids has ${idList.length}`);
    }
    const points = idList.map((id, i) => ({
      id,
      vector: rows[i],
      payload: payloads ? cv.payloadBuffer(payloads[i], `payloads[${i}]`) : Buffer.alloc(0),
      attributes: attrs ? flt.attributesIn(attrs[i], `attributes[${i}]`) : {},
    }));
    const batches = this.cutBatches(points, o.batchSize);
    const offsets = [];
    batches.reduce((at, batch) => (offsets.push(at), at + batch.length), 0);
    const progress = progressReporter(o.progress, points.length);
    let next = 0;
    let done = 0;
    let failed = false;
    // After one batch failed for good, the other workers send nothing more.
    const worker = async () => {
      while (next < batches.length && !failed) {
        const b = next++;
        const batch = batches[b];
        try {
          await this.writeWithRetry('Upsert', { collection: name, points: batch }, o);
        } catch (err) {
          failed = true;
          // The server's points[i] counts from the batch's first point.
          err.pointOffset = offsets[b];
          throw err;
        }
        done += batch.length;
        progress(done);
      }
    };
    const workers = [];
    for (let w = 0; w < Math.min(o.parallel, batches.length); w++) workers.push(worker());
    await Promise.all(workers);
    return done;
  }

  // Cuts points into batches of at most `size` points and about a quarter
  // of the message limit (so protobuf overhead never reaches it).
  cutBatches(points, size) {
    if (!Number.isInteger(size) || size < 1) throw new InvalidArgument(`batchSize must be a positive integer, got ${size}`);
    const budget = Math.floor(this.maxMessageBytes / 4);
    const out = [];
    let cur = [];
    let bytes = 0;
    for (const p of points) {
      const b = 16 + 5 * p.vector.length + p.payload.length + JSON.stringify(p.attributes).length;
      if (cur.length > 0 && (cur.length >= size || bytes + b > budget)) {
        out.push(cur);
        cur = [];
        bytes = 0;
      }
      cur.push(p);
      bytes += b;
    }
    if (cur.length > 0) out.push(cur);
    return out;
  }

  // One write call retried on transient codes with a doubling backoff.
  async writeWithRetry(method, request, o) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.call(method, request, o.timeoutMs);
      } catch (err) {
        if (!(err instanceof VecshardError) || !RETRY_CODES.has(err.code) || attempt >= o.retries) throw err;
        if (o.onRetry) o.onRetry(err, attempt + 1);
        await delay(Math.min(o.retryBackoffMs * 2 ** attempt, MAX_BACKOFF_MS));
      }
    }
  }

  // k-nearest-neighbour search of a batch of queries (flat Float32Array of
  // n*dim, or an array of vectors); resolves to a SearchResult. options:
  // ef, withPayload, withVector, withAttributes, filter (a filter object,
  // docs/filtering.md), minCoverage (1.0), targetRecall (automatic ef,
  // docs/engine.md; not with ef), timeoutMs.
  async search(name, queries, k = 10, options = {}) {
    const o = { ef: 0, withPayload: false, withVector: false, withAttributes: false, minCoverage: 1.0, ...options };
    if (o.targetRecall !== undefined && o.targetRecall !== null) {
      if (!(typeof o.targetRecall === 'number' && o.targetRecall > 0 && o.targetRecall <= 1)) {
        throw new InvalidArgument(`targetRecall must be in (0, 1], got ${JSON.stringify(o.targetRecall)}`);
      }
      if (o.ef) throw new InvalidArgument('set ef or targetRecall, not both');
    }
    let fromCache = false;
    let rows;
    if (cv.isFlat(queries)) {
      fromCache = this.dims.has(name);
      rows = cv.vectorRows(queries, null, await this.dimOf(name, o.timeoutMs), 'queries');
    } else {
      rows = cv.vectorRows(queries, null, null, 'queries');
    }
    if (rows.length === 0) throw new InvalidArgument('queries is empty');
    const request = {
      collection: name,
      queries: rows.map((vector) => ({ vector })),
      k,
      ef: o.ef ?? 0,
      minCoverage: o.minCoverage,
      withPayload: o.withPayload,
      withVector: o.withVector,
      withAttributes: o.withAttributes,
      targetRecall: o.targetRecall || 0,
    };
    if (o.filter !== undefined && o.filter !== null) request.filter = flt.toFilter(o.filter);
    let reply;
    try {
      reply = await this.call('Search', request, o.timeoutMs);
    } catch (err) {
      // A flat buffer cut by a cached dim of a since re-created collection.
      if (fromCache && err instanceof InvalidArgument) this.dims.delete(name);
      throw err;
    }
    const res = new SearchResult(rows.length, k);
    if (o.withPayload) res.payloads = new Array(rows.length * k).fill(null);
    if (o.withVector) res.vectors = new Array(rows.length * k).fill(null);
    if (o.withAttributes) res.attributes = new Array(rows.length * k).fill(null);
    reply.results.forEach((r, i) => {
      res.counts[i] = r.hits.length;
      r.hits.forEach((h, j) => {
        const at = i * k + j;
        res.ids[at] = cv.idBig(h.id);
        res.distances[at] = h.distance;
        if (res.payloads) res.payloads[at] = h.payload;
        if (res.vectors) res.vectors[at] = Float32Array.from(h.vector);
        if (res.attributes) res.attributes[at] = flt.attributesOut(h.attributes);
      });
    });
    const c = reply.coverage || { shardsTotal: 0, shardsOk: 0, missingShards: [], partial: false };
    res.coverage = {
      shardsTotal: c.shardsTotal,
      shardsOk: c.shardsOk,
      missingShards: c.missingShards,
      partial: c.partial,
    };
    if (reply.autoEf) res.autoEf = { ef: reply.autoEf.ef, estimatedRecall: reply.autoEf.estimatedRecall };
    return res;
  }

  // Fetches points by id; resolves to {points: [{id, vector, payload,
  // attributes (only withAttributes)}], missingIds}. options: withVector (true), withPayload
  // (true), withAttributes (false), timeoutMs.
  async get(name, ids, options = {}) {
    const o = { withVector: true, withPayload: true, withAttributes: false, ...options };
    const request = {
      collection: name,
      ids: cv.idStrings(ids, 'ids'),
      withPayload: o.withPayload,
      withVector: o.withVector,
      withAttributes: o.withAttributes,
    };
    const reply = await this.call('Get', request, o.timeoutMs);
    return {
      points: reply.points.map((p) => ({
        id: cv.idBig(p.id),
        vector: o.withVector ? Float32Array.from(p.vector) : null,
        payload: o.withPayload ? p.payload : null,
        ...(o.withAttributes ? { attributes: flt.attributesOut(p.attributes) } : {}),
      })),
      missingIds: BigUint64Array.from(reply.missingIds.map(cv.idBig)),
    };
  }

  // Deletes points by id (absent ids are not an error); resolves to the
  // number of ids processed. Retried like an upsert batch. With ids null and
  // options.filter (a filter object), deletes every matching point and
  // resolves to how many (not retried).
  async delete(name, ids, options = {}) {
    const o = { retries: 3, retryBackoffMs: 100, ...options };
    if (o.filter !== undefined && o.filter !== null) {
      if (ids !== null && ids !== undefined) throw new InvalidArgument('delete: give ids or options.filter, not both');
      const reply = await this.call('Delete', { collection: name, filter: flt.toFilter(o.filter) }, o.timeoutMs);
      return reply.deleted;
    }
    const reply = await this.writeWithRetry('Delete', { collection: name, ids: cv.idStrings(ids, 'ids') }, o);
    return reply.deleted;
  }

  // Nodes, collections and shards as the router sees them (restricted to
  // one collection's shards when `collection` is given).
  async status(collection = '', options = {}) {
    const reply = await this.call('ClusterStatus', { collection }, options.timeoutMs);
    return {
      nodes: reply.nodes.map((n) => ({
        id: n.id,
        addr: n.addr,
        alive: n.alive,
        replicas: n.replicas,
        primaries: n.primaries,
        version: n.version,
        startedAt: Number(n.startedAt),
      })),
      collections: reply.collections.map(cv.configOut),
      shards: reply.shards.map(cv.shardOut),
      controller: reply.controller,
      revision: BigInt(reply.revision),
    };
  }
}

// The progress callback of an upsert: a user function, a one-line bar on
// stderr when it is a terminal, or nothing.
function progressReporter(progress, total) {
  if (typeof progress === 'function') return (done) => progress(done, total);
  if (progress === true && process.stderr.isTTY) {
    return (done) => {
      const width = 30;
      const fill = Math.round((width * done) / total);
      process.stderr.write(`\rupsert [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${done}/${total}`);
      if (done === total) process.stderr.write('\n');
    };
  }
  return () => {};
}

module.exports = { Client, SearchResult };
