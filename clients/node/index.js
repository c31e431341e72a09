// index.js — the vecshard package: Client, SearchResult, UINT64_MAX (the
// padding id of short search rows) and the error classes (lib/client.js,
// lib/errors.js). index.d.ts declares the types.
'use strict';

const { Client, SearchResult } = require('./lib/client');
const { UINT64_MAX } = require('./lib/convert');
const errors = require('./lib/errors');

const exported = { Client, SearchResult, UINT64_MAX, VecshardError: errors.VecshardError, CODE_NAMES: errors.CODE_NAMES };
for (const [name, cls] of Object.entries(errors)) {
  if (typeof cls === 'function' && cls.prototype instanceof errors.VecshardError) exported[name] = cls;
}

module.exports = exported;
