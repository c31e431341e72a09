// filters.js — typed attributes and filters (docs/filtering.md) for the
// Node client: plain objects in, the wire messages out, and back.
//
// Attributes: an object per point, values number (an integer within
// Number.MAX_SAFE_INTEGER becomes an int, others a double), bigint (int),
// string, boolean, or an array of strings (tags). Filters take the JSON form
// of the docs as objects: {and: [...]}, {or: [...]}, {not: F}, {eq: {k: v}},
// {in: {k: [v, ...]}}, {range: {k: {gt, gte, lt, lte}}}, {exists: 'k'} or
// {exists: {k: false}}, {any: {k: [tags]}}, {all: {k: [tags]}}.
'use strict';

const { InvalidArgument } = require('./errors');

const CONDITIONS = ['eq', 'in', 'range', 'exists', 'any', 'all'];

// The AttributeValue message of a JavaScript value.
function toValue(v, where) {
  if (typeof v === 'boolean') return { boolValue: v };
  if (typeof v === 'bigint') return { intValue: v.toString() };
  if (typeof v === 'number') {
    return Number.isSafeInteger(v) ? { intValue: String(v) } : { doubleValue: v };
  }
  if (typeof v === 'string') return { stringValue: v };
  if (Array.isArray(v) && v.every((t) => typeof t === 'string')) return { tags: { values: v } };
  throw new InvalidArgument(`${where}: ${JSON.stringify(v)} is not a number, bigint, string, boolean or array of strings`);
}

// The JavaScript value of an AttributeValue message (ints as numbers, or
// bigints beyond Number.MAX_SAFE_INTEGER).
function fromValue(av) {
  switch (av.kind) {
    case 'intValue': {
      const n = Number(av.intValue);
      return Number.isSafeInteger(n) ? n : BigInt(av.intValue);
    }
    case 'doubleValue': return av.doubleValue;
    case 'stringValue': return av.stringValue;
    case 'boolValue': return av.boolValue;
    case 'tags': return [...av.tags.values];
    default: return null;
  }
}

// The wire map of an attributes object (undefined / null: none).
function attributesIn(attrs, where) {
  const out = {};
  for (const [k, v] of Object.entries(attrs ?? {})) out[k] = toValue(v, `${where}[${JSON.stringify(k)}]`);
  return out;
}

// The attributes object of a wire map.
function attributesOut(map) {
  const out = {};
  for (const [k, v] of Object.entries(map ?? {})) out[k] = fromValue(v);
  return out;
}

// The Filter message of a filter object in the JSON form.
function toFilter(spec, where = 'filter') {
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec) || Object.keys(spec).length !== 1) {
    throw new InvalidArgument(`${where}: must be an object with one operator (and, or, not, ${CONDITIONS.join(', ')})`);
  }
  const [op, arg] = Object.entries(spec)[0];
  const sub = `${where}.${op}`;
  if (op === 'and' || op === 'or') {
    if (!Array.isArray(arg)) throw new InvalidArgument(`${sub}: must be an array of filters`);
    const list = { filters: arg.map((f, i) => toFilter(f, `${sub}[${i}]`)) };
    return op === 'and' ? { allOf: list } : { anyOf: list };
  }
  if (op === 'not') return { notFilter: toFilter(arg, sub) };
  if (!CONDITIONS.includes(op)) throw new InvalidArgument(`${where}: unknown operator ${JSON.stringify(op)}`);
  const body = op === 'exists' && typeof arg === 'string' ? { [arg]: true } : arg;
  if (body === null || typeof body !== 'object' || Object.keys(body).length !== 1) {
    throw new InvalidArgument(`${sub}: takes an object with one attribute name`);
  }
  const [key, v] = Object.entries(body)[0];
  const at = `${sub}.${key}`;
  const cond = { key };
  if (op === 'eq') cond.eq = toValue(v, at);
  else if (op === 'in') {
    if (!Array.isArray(v)) throw new InvalidArgument(`${at}: must be an array of values`);
    cond.inValues = { values: v.map((x, i) => toValue(x, `${at}[${i}]`)) };
  } else if (op === 'range') {
    if (v === null || typeof v !== 'object') throw new InvalidArgument(`${at}: a range takes gt, gte, lt, lte`);
    cond.range = {};
    for (const [b, x] of Object.entries(v)) {
      if (!['gt', 'gte', 'lt', 'lte'].includes(b) || typeof x !== 'number') {
        throw new InvalidArgument(`${at}: a range takes numbers gt, gte, lt, lte, got ${JSON.stringify(b)}`);
      }
      cond.range[b] = { value: x };
    }
  } else if (op === 'exists') cond.exists = { exists: Boolean(v) };
  else {
    if (!Array.isArray(v)) throw new InvalidArgument(`${at}: must be an array of strings`);
    cond[op === 'any' ? 'tagsAny' : 'tagsAll'] = { values: v.map(String) };
  }
  return { condition: cond };
}

module.exports = { toValue, fromValue, attributesIn, attributesOut, toFilter };
