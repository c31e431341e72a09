// convert.js — JavaScript values to and from the VecShard wire messages.
//
// Ids are uint64 on the wire; JavaScript numbers hold integers exactly only
// up to 2^53, so ids go out as decimal strings (from numbers, BigInts,
// strings or any integer typed array) and come back as BigInt in
// BigUint64Array. Vectors go out from Float32Array / Float64Array (flat,
// row-major) or from arrays of rows, and come back as Float32Array. Every
// check names the argument and index that is wrong and throws
// InvalidArgument before anything is sent.
'use strict';

const { InvalidArgument } = require('./errors');

const UINT64_MAX = (1n << 64n) - 1n;

// One id as a decimal string; `where` names it in the error ("ids[3]").
function idString(v, where) {
  if (typeof v === 'bigint') {
    if (v >= 0n && v <= UINT64_MAX) return v.toString();
  } else if (typeof v === 'number') {
    if (Number.isSafeInteger(v) && v >= 0) return String(v);
  } else if (typeof v === 'string') {
    if (/^[0-9]{1,20}$/.test(v) && BigInt(v) <= UINT64_MAX) return BigInt(v).toString();
  }
  throw new InvalidArgument(`${where} must be an integer in 0..2^64-1, got ${String(v)}`);
}

// An id list (array, typed array) as decimal strings.
function idStrings(ids, field) {
  if (ids === null || ids === undefined || typeof ids.length !== 'number' || typeof ids === 'string') {
    throw new InvalidArgument(`${field} must be an array or typed array of ids`);
  }
  const out = new Array(ids.length);
  for (let i = 0; i < ids.length; i++) out[i] = idString(ids[i], `${field}[${i}]`);
  return out;
}

// A wire id (decimal string) as BigInt.
function idBig(s) {
  return BigInt(s);
}

// True for the numeric typed arrays (not DataView, not BigInt arrays).
function isNumberTypedArray(v) {
  return ArrayBuffer.isView(v) && !(v instanceof DataView) && typeof v[0] !== 'bigint';
}

// True when `v` is one flat vector buffer: a numeric typed array or an
// array of numbers (or empty).
function isFlat(v) {
  return isNumberTypedArray(v) || (Array.isArray(v) && (v.length === 0 || typeof v[0] === 'number'));
}

// Splits vectors into `rows` plain arrays of numbers (what the protobuf
// encoder takes). A flat buffer is cut into `rows` equal parts, or into
// parts of `dim` when `rows` is null; an array of rows must have `rows`
// entries (when given) of one length.
function vectorRows(vectors, rows, dim, field) {
  if (vectors === null || vectors === undefined || typeof vectors.length !== 'number') {
    throw new InvalidArgument(`${field} must be a Float32Array or an array of vectors`);
  }
  if (isFlat(vectors)) {
    const n = vectors.length;
    if (rows === null) {
      if (!dim || n === 0 || n % dim !== 0) {
        throw new InvalidArgument(`${field} has ${n} floats, not a multiple of the collection dim ${dim}`);
      }
      rows = n / dim;
    } else if (rows === 0 || n % rows !== 0) {
      throw new InvalidArgument(`${field} has ${n} floats, not a multiple of ${rows} vectors`);
    }
    const d = n / rows;
    const out = new Array(rows);
    for (let r = 0; r < rows; r++) out[r] = Array.from(vectors.slice(r * d, (r + 1) * d));
    return out;
  }
  if (rows !== null && vectors.length !== rows) {
    throw new InvalidArgument(`${field} has ${vectors.length} vectors, ids has ${rows}`);
  }
  const out = new Array(vectors.length);
  for (let r = 0; r < vectors.length; r++) {
    const v = vectors[r];
    if (!isFlat(v)) throw new InvalidArgument(`${field}[${r}] must be a Float32Array or an array of numbers`);
    if (r > 0 && v.length !== out[0].length) {
      throw new InvalidArgument(`${field}[${r}] has ${v.length} floats, ${field}[0] has ${out[0].length}`);
    }
    out[r] = Array.from(v);
  }
  return out;
}

// A payload (Buffer, Uint8Array, string as UTF-8, null/undefined = none) as
// a Buffer.
function payloadBuffer(p, where) {
  if (p === null || p === undefined) return Buffer.alloc(0);
  if (typeof p === 'string') return Buffer.from(p, 'utf8');
  if (p instanceof Uint8Array) return Buffer.from(p.buffer, p.byteOffset, p.byteLength);
  throw new InvalidArgument(`${where} must be a Buffer, Uint8Array or string`);
}

const METRICS = { l2: 'METRIC_L2', ip: 'METRIC_IP', cosine: 'METRIC_COSINE' };
const METRIC_NAMES = { METRIC_L2: 'l2', METRIC_IP: 'ip', METRIC_COSINE: 'cosine' };

// "l2" | "ip" | "cosine" (any case) as the wire enum name.
function metricEnum(m) {
  const e = typeof m === 'string' ? METRICS[m.toLowerCase()] : undefined;
  if (!e) throw new InvalidArgument(`metric must be "l2", "ip" or "cosine", got ${JSON.stringify(m)}`);
  return e;
}

const QUANTIZATIONS = { none: 'QUANTIZATION_NONE', sq8: 'QUANTIZATION_SQ8' };
const QUANTIZATION_NAMES = { QUANTIZATION_NONE: 'none', QUANTIZATION_SQ8: 'sq8' };

// "none" | "sq8" as the wire enum name.
function quantizationEnum(q) {
  const e = typeof q === 'string' ? QUANTIZATIONS[q.toLowerCase()] : undefined;
  if (!e) throw new InvalidArgument(`quantization must be "none" or "sq8", got ${JSON.stringify(q)}`);
  return e;
}

// A wire CollectionConfig as the client's CollectionConfig object.
function configOut(c) {
  return {
    name: c.name,
    dim: c.dim,
    metric: METRIC_NAMES[c.metric] || c.metric,
    M: c.m,
    efConstruction: c.efConstruction,
    efSearch: c.efSearch,
    shards: c.shards,
    replicas: c.replicationFactor,
    createdAt: Number(c.createdAt),
    quantization: QUANTIZATION_NAMES[c.quantization] || 'none',
  };
}

// A wire ShardInfo with its epoch and lsn as BigInt.
function shardOut(s) {
  return {
    collection: s.collection,
    shard: s.shard,
    epoch: BigInt(s.epoch),
    primary: s.primary,
    replicas: s.replicas,
    inSync: s.inSync,
    recovering: s.recovering,
    lsn: BigInt(s.lsn),
    primaryState: s.primaryState,
    primaryStateReason: s.primaryStateReason,
  };
}

module.exports = {
  UINT64_MAX,
  idStrings,
  idBig,
  isFlat,
  vectorRows,
  payloadBuffer,
  metricEnum,
  quantizationEnum,
  configOut,
  shardOut,
};
