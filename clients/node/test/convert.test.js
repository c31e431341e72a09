// convert.test.js — the client's conversions and error mapping, no cluster:
// id and vector checks (exact messages), the wire forms they produce, and
// grpc-js errors turned into the right VecshardError subclass.
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const grpc = require('@grpc/grpc-js');
const cv = require('../lib/convert');
const { fromGrpcError } = require('../lib/errors');
const vs = require('..');

// Asserts that fn throws InvalidArgument with message msg.
function throwsInvalid(fn, msg) {
  assert.throws(fn, (e) => e instanceof vs.InvalidArgument && e.code === 3 && e.message === msg);
}

describe('ids', () => {
  it('accepts numbers, bigints, strings and integer typed arrays up to 2^64-1', () => {
    assert.deepEqual(cv.idStrings([0, 7n, '18446744073709551615', 2 ** 53 - 1], 'ids'), [
      '0',
      '7',
      '18446744073709551615',
      '9007199254740991',
    ]);
    assert.deepEqual(cv.idStrings(new BigUint64Array([1n, cv.UINT64_MAX]), 'ids'), ['1', '18446744073709551615']);
    assert.deepEqual(cv.idStrings(new Uint32Array([4294967295]), 'ids'), ['4294967295']);
  });

  it('refuses what is not a uint64, naming the index', () => {
    throwsInvalid(() => cv.idStrings([1, -1], 'ids'), 'ids[1] must be an integer in 0..2^64-1, got -1');
    throwsInvalid(() => cv.idStrings([1.5], 'ids'), 'ids[0] must be an integer in 0..2^64-1, got 1.5');
    throwsInvalid(() => cv.idStrings([2 ** 53], 'ids'), 'ids[0] must be an integer in 0..2^64-1, got 9007199254740992');
    throwsInvalid(() => cv.idStrings([1n << 64n], 'ids'), 'ids[0] must be an integer in 0..2^64-1, got 18446744073709551616');
    throwsInvalid(() => cv.idStrings(['18446744073709551616'], 'ids'), 'ids[0] must be an integer in 0..2^64-1, got 18446744073709551616');
    throwsInvalid(() => cv.idStrings(['12a'], 'ids'), 'ids[0] must be an integer in 0..2^64-1, got 12a');
    throwsInvalid(() => cv.idStrings('123', 'ids'), 'ids must be an array or typed array of ids');
    throwsInvalid(() => cv.idStrings(5, 'ids'), 'ids must be an array or typed array of ids');
  });
});

describe('vectors', () => {
  it('cuts a flat buffer into rows by count or by dim', () => {
    assert.deepEqual(cv.vectorRows(new Float32Array([1, 2, 3, 4, 5, 6]), 2, null, 'v'), [
      [1, 2, 3],
      [4, 5, 6],
    ]);
    assert.deepEqual(cv.vectorRows([1, 2, 3, 4], null, 2, 'q'), [
      [1, 2],
      [3, 4],
    ]);
    assert.deepEqual(cv.vectorRows([new Float64Array([0.5, 1]), [2, 3]], null, null, 'q'), [
      [0.5, 1],
      [2, 3],
    ]);
  });

  it('refuses ragged or mis-sized input, naming the field', () => {
    throwsInvalid(() => cv.vectorRows(new Float32Array(5), 2, null, 'vectors'), 'vectors has 5 floats, not a multiple of 2 vectors');
    throwsInvalid(() => cv.vectorRows(new Float32Array(5), null, 2, 'queries'), 'queries has 5 floats, not a multiple of the collection dim 2');
    throwsInvalid(() => cv.vectorRows([[1, 2], [3]], null, null, 'queries'), 'queries[1] has 1 floats, queries[0] has 2');
    throwsInvalid(() => cv.vectorRows([[1, 2]], 2, null, 'vectors'), 'vectors has 1 vectors, ids has 2');
    throwsInvalid(() => cv.vectorRows([[1, 2], 'ab'], null, null, 'queries'), 'queries[1] must be a Float32Array or an array of numbers');
    throwsInvalid(() => cv.vectorRows(null, 1, null, 'vectors'), 'vectors must be a Float32Array or an array of vectors');
  });

  it('payloads: strings as UTF-8, bytes as they are, null as empty', () => {
    assert.deepEqual(cv.payloadBuffer('é', 'p'), Buffer.from([0xc3, 0xa9]));
    assert.deepEqual(cv.payloadBuffer(new Uint8Array([1, 2]), 'p'), Buffer.from([1, 2]));
    assert.deepEqual(cv.payloadBuffer(null, 'p'), Buffer.alloc(0));
    throwsInvalid(() => cv.payloadBuffer(5, 'payloads[2]'), 'payloads[2] must be a Buffer, Uint8Array or string');
  });

  it('metrics by name, any case', () => {
    assert.equal(cv.metricEnum('COSINE'), 'METRIC_COSINE');
    assert.equal(cv.metricEnum('ip'), 'METRIC_IP');
    throwsInvalid(() => cv.metricEnum('dot'), 'metric must be "l2", "ip" or "cosine", got "dot"');
  });
});

describe('errors', () => {
  it('each gRPC code maps to its class with the server message', () => {
    const cases = [
      [grpc.status.INVALID_ARGUMENT, vs.InvalidArgument, 'INVALID_ARGUMENT'],
      [grpc.status.NOT_FOUND, vs.NotFound, 'NOT_FOUND'],
      [grpc.status.ALREADY_EXISTS, vs.AlreadyExists, 'ALREADY_EXISTS'],
      [grpc.status.FAILED_PRECONDITION, vs.FailedPrecondition, 'FAILED_PRECONDITION'],
      [grpc.status.RESOURCE_EXHAUSTED, vs.ResourceExhausted, 'RESOURCE_EXHAUSTED'],
      [grpc.status.UNAVAILABLE, vs.Unavailable, 'UNAVAILABLE'],
      [grpc.status.DEADLINE_EXCEEDED, vs.DeadlineExceeded, 'DEADLINE_EXCEEDED'],
      [grpc.status.DATA_LOSS, vs.DataLoss, 'DATA_LOSS'],
      [grpc.status.UNIMPLEMENTED, vs.Unimplemented, 'UNIMPLEMENTED'],
      [grpc.status.UNAUTHENTICATED, vs.Unauthenticated, 'UNAUTHENTICATED'],
      [grpc.status.PERMISSION_DENIED, vs.PermissionDenied, 'PERMISSION_DENIED'],
    ];
    for (const [code, cls, name] of cases) {
      const e = fromGrpcError({ code, details: 'shard 1 failed', message: `${code} ${name}: shard 1 failed` });
      assert.equal(e.constructor, cls);
      assert.ok(e instanceof vs.VecshardError && e instanceof Error);
      assert.equal(e.code, code);
      assert.equal(e.codeName, name);
      assert.equal(e.name, cls.name);
      assert.equal(e.message, 'shard 1 failed');
    }
    const odd = fromGrpcError({ code: 99, details: 'x' });
    assert.equal(odd.constructor, vs.VecshardError);
    assert.equal(odd.codeName, 'UNKNOWN');
  });
});

describe('SearchResult', () => {
  it('pads short rows with UINT64_MAX / Infinity and hits() stops at counts', () => {
    const r = new vs.SearchResult(2, 3);
    r.ids[0] = 5n;
    r.distances[0] = 0.5;
    r.counts[0] = 1;
    assert.deepEqual(Array.from(r.ids), [5n, vs.UINT64_MAX, vs.UINT64_MAX, vs.UINT64_MAX, vs.UINT64_MAX, vs.UINT64_MAX]);
    assert.deepEqual(Array.from(r.distances.subarray(1)), [Infinity, Infinity, Infinity, Infinity, Infinity]);
    assert.deepEqual(r.hits(0), [{ id: 5n, distance: 0.5 }]);
    assert.deepEqual(r.hits(1), []);
  });
});
