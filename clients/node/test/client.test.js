// client.test.js — the vecshard Node client against a real local cluster
// (test/cluster.js: etcd, 2 vecshard-node, 1 vecshard-router): every method,
// the exact error class, code and server message of each failure, batching
// and retries of upsert, recall@10 against brute force on 5,000 points,
// exact distances of each metric, concurrent calls, and partial coverage
// with a node stopped.
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const vs = require('..');
const { startCluster, startRouter, stopProcess, freePort } = require('./cluster');

// mulberry32: a seeded PRNG, so every run uses the same data.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// n x dim uniform floats in [0, 1), flat.
function randomVectors(n, dim, seed) {
  const r = rng(seed);
  const out = new Float32Array(n * dim);
  for (let i = 0; i < out.length; i++) out[i] = r();
  return out;
}

// Exact top-k ids (ascending squared L2, ties by id) of each query.
function bruteForce(base, n, queries, nq, dim, k) {
  const out = [];
  for (let q = 0; q < nq; q++) {
    const d = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < dim; j++) {
        const x = base[i * dim + j] - queries[q * dim + j];
        s += x * x;
      }
      d[i] = s;
    }
    const idx = Array.from({ length: n }, (_, i) => i);
    idx.sort((a, b) => d[a] - d[b] || a - b);
    out.push({ ids: idx.slice(0, k), dist: d });
  }
  return out;
}

// Asserts that `promise` rejects with exactly class `cls` and message `msg`
// (a string for equality, a RegExp to match).
async function rejectsWith(promise, cls, msg) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.constructor, cls, `expected ${cls.name}, got ${err.constructor.name}: ${err.message}`);
    assert.ok(err instanceof vs.VecshardError);
    if (msg instanceof RegExp) assert.match(err.message, msg);
    else assert.equal(err.message, msg);
    return true;
  });
}

let cluster;
let client;

before(() => {
  cluster = startCluster(2);
  client = new vs.Client(cluster.router);
});

after(() => {
  if (client) client.close();
  if (cluster) cluster.stop();
});

describe('collections', () => {
  it('create returns the stored config with defaults filled in', async () => {
    const c = await client.createCollection('cfg', 8, { metric: 'cosine', shards: 2, M: 24 });
    assert.deepEqual({ ...c, createdAt: 0 }, {
      name: 'cfg',
      dim: 8,
      metric: 'cosine',
      M: 24,
      efConstruction: 200,
      efSearch: 64,
      shards: 2,
      replicas: 1,
      createdAt: 0,
      quantization: 'none',
    });
    assert.ok(Math.abs(c.createdAt - Date.now()) < 60000, `createdAt ${c.createdAt}`);
    const q = await client.createCollection('cfgq', 8, { quantization: 'sq8' });
    assert.equal(q.quantization, 'sq8');
    assert.equal((await client.describe('cfgq')).config.quantization, 'sq8');
    await rejectsWith(client.createCollection('x', 8, { quantization: 'pq' }), vs.InvalidArgument, 'quantization must be "none" or "sq8", got "pq"');
    await client.dropCollection('cfgq');
  });

  it('list is sorted by name, exists and describe agree, drop removes', async () => {
    await client.createCollection('aaa', 3);
    const names = (await client.listCollections()).map((c) => c.name);
    assert.deepEqual(
      names.filter((n) => n === 'aaa' || n === 'cfg'),
      ['aaa', 'cfg'],
    );
    assert.deepEqual(names, [...names].sort());
    assert.equal(await client.collectionExists('aaa'), true);
    assert.equal(await client.collectionExists('zzz'), false);
    const d = await client.describe('cfg');
    assert.equal(d.config.dim, 8);
    assert.equal(d.count, 0);
    assert.equal(d.shards.length, 2);
    assert.deepEqual(
      d.shards.map((s) => [s.shard, s.primaryState, s.epoch > 0n]),
      [
        [0, 'READY', true],
        [1, 'READY', true],
      ],
    );
    await client.dropCollection('aaa');
    assert.equal(await client.collectionExists('aaa'), false);
  });

  it('errors carry the class, code and the server message', async () => {
    await rejectsWith(client.createCollection('cfg', 8), vs.AlreadyExists, 'collection "cfg" already exists');
    await rejectsWith(client.describe('nope'), vs.NotFound, 'collection "nope" not found');
    await rejectsWith(client.dropCollection('nope'), vs.NotFound, 'collection "nope" not found');
    await rejectsWith(
      client.createCollection('bad name', 4),
      vs.InvalidArgument,
      'config.name "bad name" is not a valid name ([A-Za-z0-9_-]{1,64})',
    );
    await rejectsWith(client.createCollection('x', 0), vs.InvalidArgument, 'config.dim is 0; it is required (1..65536)');
    await rejectsWith(client.createCollection('x', 4, { M: 1 }), vs.InvalidArgument, 'config.m is 1, must be 2..128');
    await rejectsWith(
      client.createCollection('x', 4, { replicas: 3 }),
      vs.FailedPrecondition,
      'cannot place collection "x": replication_factor 3 needs 3 healthy nodes, 2 are (node-0, node-1)',
    );
    await rejectsWith(client.createCollection('x', 4, { metric: 'hamming' }), vs.InvalidArgument, 'metric must be "l2", "ip" or "cosine", got "hamming"');
    try {
      await client.describe('nope');
    } catch (e) {
      assert.equal(e.code, 5);
      assert.equal(e.codeName, 'NOT_FOUND');
      assert.equal(e.name, 'NotFound');
    }
  });

  it('an unreachable router is Unavailable, an expired deadline DeadlineExceeded', async () => {
    const port = await freePort();
    const dead = new vs.Client(`127.0.0.1:${port}`);
    await rejectsWith(dead.listCollections(), vs.Unavailable, /ECONNREFUSED|No connection established/);
    dead.close();
    await rejectsWith(client.listCollections({ timeoutMs: 0 }), vs.DeadlineExceeded, /Deadline exceeded/);
  });

  it('the address defaults to $VECSHARD_ROUTER; none at all is InvalidArgument', async () => {
    const saved = process.env.VECSHARD_ROUTER;
    try {
      delete process.env.VECSHARD_ROUTER;
      assert.throws(() => new vs.Client(), (e) => e instanceof vs.InvalidArgument && /VECSHARD_ROUTER/.test(e.message));
      process.env.VECSHARD_ROUTER = cluster.router;
      const c = new vs.Client({ timeoutMs: 5000 });
      assert.equal(await c.collectionExists('cfg'), true);
      c.close();
    } finally {
      if (saved === undefined) delete process.env.VECSHARD_ROUTER;
      else process.env.VECSHARD_ROUTER = saved;
    }
  });

  it('status lists both nodes alive and the shards of one collection', async () => {
    const s = await client.status('cfg');
    assert.deepEqual(
      s.nodes.map((n) => [n.id, n.alive]),
      [
        ['node-0', true],
        ['node-1', true],
      ],
    );
    assert.deepEqual(
      s.shards.map((x) => [x.collection, x.shard]),
      [
        ['cfg', 0],
        ['cfg', 1],
      ],
    );
    assert.ok(s.revision > 0n);
    await rejectsWith(client.status('nope'), vs.NotFound, 'collection "nope" not found');
  });
});

describe('points', () => {
  before(async () => {
    await client.createCollection('pts', 4, { shards: 3 });
  });

  it('upsert, get and search round-trip exact vectors, payloads and uint64 ids', async () => {
    const big = (1n << 64n) - 7n;
    const n = await client.upsert(
      'pts',
      [1, 2n, big],
      new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0.25, 0.5, 0.75, 1]),
      { payloads: ['one', null, Buffer.from([0, 255])] },
    );
    assert.equal(n, 3);
    const g = await client.get('pts', [big, 42, 1, 2]);
    assert.deepEqual(
      g.points.map((p) => [p.id, Array.from(p.vector), Array.from(p.payload)]),
      [
        [big, [0.25, 0.5, 0.75, 1], [0, 255]],
        [1n, [1, 0, 0, 0], [...Buffer.from('one')]],
        [2n, [0, 1, 0, 0], []],
      ],
    );
    assert.deepEqual(Array.from(g.missingIds), [42n]);
    const noVec = await client.get('pts', [1], { withVector: false, withPayload: false });
    assert.deepEqual(noVec.points, [{ id: 1n, vector: null, payload: null }]);

    const r = await client.search('pts', [[1, 0, 0, 0], new Float32Array([0.25, 0.5, 0.75, 1])], 4, {
      withPayload: true,
      withVector: true,
    });
    assert.equal(r.ids.constructor, BigUint64Array);
    assert.equal(r.distances.constructor, Float32Array);
    assert.deepEqual(Array.from(r.counts), [3, 3]);
    // squared L2: |(1,0,0,0)-(0,1,0,0)|^2 = 2; |(1,0,0,0)-(.25,.5,.75,1)|^2 = 2.375;
    // |(0,1,0,0)-(.25,.5,.75,1)|^2 = 1.875
    assert.deepEqual(Array.from(r.ids), [1n, 2n, big, vs.UINT64_MAX, big, 2n, 1n, vs.UINT64_MAX]);
    assert.deepEqual(Array.from(r.distances), [0, 2, 2.375, Infinity, 0, 1.875, 2.375, Infinity]);
    assert.deepEqual(r.hits(0)[0].payload, Buffer.from('one'));
    assert.deepEqual(Array.from(r.hits(1)[0].vector), [0.25, 0.5, 0.75, 1]);
    assert.equal(r.payloads[3], null);
    assert.deepEqual(r.coverage, { shardsTotal: 3, shardsOk: 3, missingShards: [], partial: false });
    assert.equal(r.autoEf, null);
    const auto = await client.search('pts', [[1, 0, 0, 0]], 2, { targetRecall: 0.9 });
    assert.deepEqual(Array.from(auto.ids), [1n, 2n]);
    assert.ok(auto.autoEf.ef >= 2 && auto.autoEf.estimatedRecall > 0, JSON.stringify(auto.autoEf));
    await rejectsWith(client.search('pts', [[1, 0, 0, 0]], 2, { targetRecall: 2 }), vs.InvalidArgument, 'targetRecall must be in (0, 1], got 2');
    // A flat buffer is cut by the collection's dim (looked up by a new client).
    const fresh = new vs.Client(cluster.router);
    const flat = await fresh.search('pts', new Float32Array([1, 0, 0, 0, 0, 1, 0, 0]), 1);
    assert.deepEqual(Array.from(flat.ids), [1n, 2n]);
    await rejectsWith(fresh.search('pts', new Float32Array(6), 1), vs.InvalidArgument, 'queries has 6 floats, not a multiple of the collection dim 4');
    await rejectsWith(fresh.search('nope', new Float32Array(4), 1), vs.NotFound, 'collection "nope" not found');
    fresh.close();
  });

  it('delete removes points from get, search and count', async () => {
    await client.upsert('pts', [10, 11, 12], [
      [5, 5, 5, 5],
      [5, 5, 5, 6],
      [5, 5, 5, 7],
    ]);
    assert.equal(await client.count('pts'), 6);
    assert.equal(await client.delete('pts', [11, 999]), 2);
    assert.equal(await client.count('pts'), 5);
    const g = await client.get('pts', [10, 11, 12]);
    assert.deepEqual(Array.from(g.missingIds), [11n]);
    const r = await client.search('pts', [[5, 5, 5, 6]], 2);
    assert.deepEqual(Array.from(r.ids), [10n, 12n]);
  });

  it('bad points are refused with the field named', async () => {
    await rejectsWith(client.upsert('pts', [1, 2], [[1, 2, 3, 4], [1, 2, 3]]), vs.InvalidArgument, 'vectors[1] has 3 floats, vectors[0] has 4');
    await rejectsWith(client.upsert('pts', [1, 2], new Float32Array(6)), vs.InvalidArgument, 'points[0].vector has 3 floats, collection dim is 4');
    await rejectsWith(client.upsert('pts', [1], [[NaN, 1, 2, 3]]), vs.InvalidArgument, 'points[0].vector[0] is NaN');
    await rejectsWith(client.upsert('pts', [1, -1], new Float32Array(8)), vs.InvalidArgument, 'ids[1] must be an integer in 0..2^64-1, got -1');
    await rejectsWith(client.upsert('pts', [1, 2], new Float32Array(8), { payloads: ['a'] }), vs.InvalidArgument, 'payloads has 1 entries, ids has 2');
    await rejectsWith(client.upsert('pts', [], []), vs.InvalidArgument, 'ids is empty');
    await rejectsWith(client.upsert('pts', [1], [[1, 2, 3, 4]], { parallel: 0 }), vs.InvalidArgument, 'parallel must be a positive integer, got 0');
    await rejectsWith(client.upsert('pts', [1], [[1, 2, 3, 4]], { batchSize: 0 }), vs.InvalidArgument, 'batchSize must be a positive integer, got 0');
    await rejectsWith(client.upsert('nope', [1], [[1, 2, 3, 4]]), vs.NotFound, 'collection "nope" not found');
    await rejectsWith(
      client.upsert('pts', [1], [[1, 2, 3, 4]], { payloads: [Buffer.alloc(65537)] }),
      vs.ResourceExhausted,
      'points[0].payload has 65537 bytes, the limit is 65536',
    );
    await rejectsWith(client.search('pts', [[1, 2, 3]], 3), vs.InvalidArgument, 'queries[0].vector has 3 floats, collection dim is 4');
    await rejectsWith(client.search('pts', [[1, 2, 3, 4]], 0), vs.InvalidArgument, 'k is 0, must be 1..10000');
    await rejectsWith(client.search('pts', [[1, 2, 3, 4]], 3, { minCoverage: 2 }), vs.InvalidArgument, 'min_coverage is 2, must be 0..1 (0 = 1.0)');
    await rejectsWith(client.get('pts', []), vs.InvalidArgument, 'ids is empty');
    // Nothing of the refused upserts was written.
    assert.equal(await client.count('pts'), 5);
  });

  it('cosine and inner product report 1 - cos and 1 - dot', async () => {
    await client.createCollection('cos', 2, { metric: 'cosine' });
    await client.createCollection('ip', 2, { metric: 'ip' });
    await client.upsert('cos', [1, 2], [[3, 0], [1, 1]]);
    await client.upsert('ip', [1, 2], [[0.5, 0], [0.5, 0.5]]);
    const c = await client.search('cos', [[2, 0]], 2, { withVector: true });
    assert.deepEqual(Array.from(c.ids), [1n, 2n]);
    assert.ok(Math.abs(c.distances[0]) < 1e-6);
    assert.ok(Math.abs(c.distances[1] - (1 - Math.SQRT1_2)) < 1e-6, `${c.distances[1]}`);
    assert.deepEqual(Array.from(c.vectors[0]), [1, 0]);
    const p = await client.search('ip', [[1, 1]], 2);
    assert.deepEqual(Array.from(p.ids), [2n, 1n]);
    // 1 - dot: (1,1).(0.5,0.5) = 1 -> 0; (1,1).(0.5,0) = 0.5 -> 0.5
    assert.deepEqual(Array.from(p.distances), [0, 0.5]);
  });
});

describe('batched upsert', () => {
  it('cuts by batchSize and by message size, reports progress, writes everything', async () => {
    await client.createCollection('batch', 16, { shards: 2 });
    const n = 1000;
    const vecs = randomVectors(n, 16, 7);
    const seen = [];
    const got = await client.upsert('batch', BigUint64Array.from({ length: n }, (_, i) => BigInt(i)), vecs, {
      batchSize: 100,
      parallel: 3,
      progress: (done, total) => seen.push([done, total]),
    });
    assert.equal(got, n);
    assert.equal(seen.length, 10);
    assert.deepEqual(seen[9], [1000, 1000]);
    assert.deepEqual(seen.map((s) => s[0]), [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]);
    // 64 KiB messages: a batch holds at most 16 KiB of points (~180 of
    // 16 floats), so 1000 points need 6 batches although batchSize is 1000.
    const small = new vs.Client(cluster.router, { maxMessageBytes: 65536 });
    const calls = [];
    await small.upsert('batch', Array.from({ length: n }, (_, i) => n + i), vecs, {
      progress: (done) => calls.push(done),
    });
    assert.equal(calls.length, 6);
    small.close();
    assert.equal(await client.count('batch'), 2 * n);
    const g = await client.get('batch', [5, n + 5]);
    assert.deepEqual(Array.from(g.points[0].vector), Array.from(vecs.subarray(5 * 16, 6 * 16)));
    assert.deepEqual(Array.from(g.points[1].vector), Array.from(vecs.subarray(5 * 16, 6 * 16)));
  });

  it('a batch refused for good stops the upsert; pointOffset locates the server\'s points[i]', async () => {
    await client.createCollection('stop', 2);
    const vecs = Array.from({ length: 50 }, (_, i) => [i, 1]);
    vecs[25] = [NaN, 1];
    const seen = [];
    await assert.rejects(
      client.upsert('stop', Array.from({ length: 50 }, (_, i) => i), vecs, {
        batchSize: 10,
        parallel: 1,
        progress: (done) => seen.push(done),
      }),
      (err) => {
        assert.equal(err.constructor, vs.InvalidArgument);
        assert.equal(err.message, 'points[5].vector[0] is NaN');
        assert.equal(err.pointOffset, 20);
        return true;
      },
    );
    assert.deepEqual(seen, [10, 20]);
    assert.equal(await client.count('stop'), 20);
  });

  it('retries UNAVAILABLE until a router comes up; retries 0 fails at once', async () => {
    const port = await freePort();
    const opts = { channelOptions: { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 200 } };
    const c = new vs.Client(`127.0.0.1:${port}`, opts);
    await rejectsWith(c.upsert('batch', [5000], [new Float32Array(16).fill(0.5)], { retries: 0 }), vs.Unavailable, /ECONNREFUSED|No connection established/);
    let router = null;
    const retried = [];
    const n = await c.upsert('batch', [5000], [new Float32Array(16).fill(0.5)], {
      retries: 30,
      retryBackoffMs: 50,
      onRetry: async (err, attempt) => {
        retried.push([err.constructor.name, attempt]);
        if (attempt === 1) router = await startRouter(cluster, port);
      },
    });
    try {
      assert.equal(n, 1);
      assert.ok(retried.length >= 1);
      assert.deepEqual(retried[0], ['Unavailable', 1]);
      const g = await c.get('batch', [5000]);
      assert.deepEqual(Array.from(g.points[0].vector), new Array(16).fill(0.5));
    } finally {
      c.close();
      if (router) await router.stop();
    }
  });
});

describe('recall and concurrency', () => {
  const N = 5000;
  const DIM = 32;
  const NQ = 200;
  const K = 10;
  let base;
  let queries;

  before(async () => {
    base = randomVectors(N, DIM, 1);
    queries = randomVectors(NQ, DIM, 2);
    await client.createCollection('recall', DIM, { shards: 3 });
    await client.upsert('recall', Array.from({ length: N }, (_, i) => i), base, { batchSize: 1000, parallel: 3 });
  });

  it('recall@10 against brute force is at least 0.95 and distances are exact', async () => {
    const truth = bruteForce(base, N, queries, NQ, DIM, K);
    const r = await client.search('recall', queries, K);
    assert.equal(r.ids.length, NQ * K);
    let hit = 0;
    for (let q = 0; q < NQ; q++) {
      const want = new Set(truth[q].ids);
      for (let j = 0; j < K; j++) {
        const id = Number(r.ids[q * K + j]);
        if (want.has(id)) hit++;
        const exact = truth[q].dist[id];
        assert.ok(Math.abs(r.distances[q * K + j] - exact) <= 1e-4 * Math.max(1, exact), `query ${q} id ${id}: ${r.distances[q * K + j]} vs ${exact}`);
        if (j > 0) assert.ok(r.distances[q * K + j] >= r.distances[q * K + j - 1]);
      }
    }
    const recall = hit / (NQ * K);
    console.log(`recall@10 ${recall.toFixed(4)} (5000 x 32-d, 3 shards, ef_search 64)`);
    assert.ok(recall >= 0.95, `recall ${recall}`);
    assert.equal(await client.count('recall'), N);
  });

  it('64 concurrent single-query searches on two clients equal the batch search', async () => {
    const batch = await client.search('recall', queries.subarray(0, 64 * DIM), K);
    const other = new vs.Client(cluster.router);
    const rows = await Promise.all(
      Array.from({ length: 64 }, (_, q) => (q % 2 ? other : client).search('recall', [queries.subarray(q * DIM, (q + 1) * DIM)], K)),
    );
    other.close();
    rows.forEach((r, q) => {
      assert.deepEqual(Array.from(r.ids), Array.from(batch.ids.subarray(q * K, (q + 1) * K)));
      assert.deepEqual(Array.from(r.distances), Array.from(batch.distances.subarray(q * K, (q + 1) * K)));
    });
  });

  it('concurrent upserts of disjoint ranges all land', async () => {
    await client.createCollection('conc', 8, { shards: 2 });
    const vecs = randomVectors(2000, 8, 3);
    const counts = await Promise.all(
      [0, 1, 2, 3].map((w) =>
        client.upsert(
          'conc',
          Array.from({ length: 500 }, (_, i) => w * 500 + i),
          vecs.subarray(w * 500 * 8, (w + 1) * 500 * 8),
          { batchSize: 100, parallel: 2 },
        ),
      ),
    );
    assert.deepEqual(counts, [500, 500, 500, 500]);
    assert.equal(await client.count('conc'), 2000);
    const g = await client.get('conc', [0, 777, 1999]);
    assert.deepEqual(
      g.points.map((p) => Array.from(p.vector)),
      [0, 777, 1999].map((i) => Array.from(vecs.subarray(i * 8, (i + 1) * 8))),
    );
  });
});

// Last: stops a node, so the cluster has one node left afterwards.
describe('attributes and filters', () => {
  it('attributes round-trip; every operator filters search and count; delete by filter', async () => {
    await client.createCollection('attrs', 4, { shards: 2 });
    const n = 400;
    const ids = Array.from({ length: n }, (_, i) => i);
    const vecs = randomVectors(n, 4, 11);
    const attrs = ids.map((i) => ({ n: i % 50, price: (i % 100) + 0.5, cat: `c${i % 4}`, ok: i % 2 === 0, tags: [`t${i % 8}`] }));
    assert.equal(await client.upsert('attrs', ids, vecs, { attributes: attrs }), n);
    const cases = [
      [{ eq: { cat: 'c1' } }, (a) => a.cat === 'c1'],
      [{ and: [{ eq: { ok: true } }, { range: { price: { lt: 10 } } }] }, (a) => a.ok && a.price < 10],
      [{ or: [{ eq: { n: 3 } }, { in: { n: [4, 5] } }] }, (a) => [3, 4, 5].includes(a.n)],
      [{ not: { any: { tags: ['t1', 't2'] } } }, (a) => !['t1', 't2'].includes(a.tags[0])],
      [{ all: { tags: ['t3'] } }, (a) => a.tags[0] === 't3'],
      [{ exists: 'cat' }, () => true],
      [{ exists: { cat: false } }, () => false],
    ];
    for (const [f, pred] of cases) {
      const match = new Set(ids.filter((i) => pred(attrs[i])));
      assert.equal(await client.count('attrs', { filter: f }), match.size, JSON.stringify(f));
      const r = await client.search('attrs', [vecs.subarray(0, 4)], 10, { filter: f, withAttributes: true });
      assert.equal(r.counts[0], Math.min(10, match.size), JSON.stringify(f));
      for (const h of r.hits(0)) {
        assert.ok(match.has(Number(h.id)), `${JSON.stringify(f)}: hit ${h.id} does not match`);
        assert.deepEqual(h.attributes, attrs[Number(h.id)]);
      }
    }
    const g = await client.get('attrs', [7], { withAttributes: true });
    assert.deepEqual(g.points[0].attributes, attrs[7]);
    await rejectsWith(client.search('attrs', [[0, 0, 0, 0]], 5, { filter: { range: { price: {} } } }),
      vs.InvalidArgument, /filter.condition range has no bound/);
    await rejectsWith(client.count('attrs', { filter: { near: { x: 1 } } }), vs.InvalidArgument, /unknown operator/);
    assert.equal(await client.delete('attrs', null, { filter: { eq: { cat: 'c2' } } }), n / 4);
    assert.equal(await client.count('attrs'), n - n / 4);
    assert.equal(await client.count('attrs', { filter: { eq: { cat: 'c2' } } }), 0);
  });
});

describe('a node down', () => {
  it('search fails Unavailable at minCoverage 1, is partial below; upsert gives up after its retries', async () => {
    await client.createCollection('half', 2, { shards: 2 });
    const ids = Array.from({ length: 40 }, (_, i) => i);
    await client.upsert('half', ids, ids.map((i) => [i, 1]));
    const d = await client.describe('half');
    const lost = d.shards.find((s) => s.primary === 'node-1').shard;
    await stopProcess(cluster, 'node-1');
    // node-1 revokes its lease on SIGTERM; poll until the router saw it go.
    const until = Date.now() + 20000;
    while ((await client.status()).nodes.some((n) => n.id === 'node-1' && n.alive)) {
      assert.ok(Date.now() < until, 'the router still lists node-1 alive after 20 s');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await rejectsWith(
      client.search('half', [[0, 1]], 5),
      vs.Unavailable,
      `search covered 1 of 2 shards, min_coverage 1 needs 2: missing shard ${lost} (no live in-sync replica: node-1 is not registered)`,
    );
    const r = await client.search('half', [[0, 1]], 40, { minCoverage: 0.5 });
    assert.deepEqual(r.coverage, { shardsTotal: 2, shardsOk: 1, missingShards: [lost], partial: true });
    assert.ok(r.counts[0] > 0 && r.counts[0] < 40, `${r.counts[0]} hits`);
    assert.equal(r.ids[r.counts[0]], vs.UINT64_MAX);
    const retried = [];
    await rejectsWith(
      client.upsert('half', ids, ids.map((i) => [i, 2]), { retries: 2, retryBackoffMs: 10, onRetry: (e, n) => retried.push(n) }),
      vs.Unavailable,
      /has no live primary \(node-1 is not registered\)/,
    );
    assert.deepEqual(retried, [1, 2]);
  });
});
