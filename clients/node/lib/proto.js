// proto.js — loads the VecShard service definition for grpc-js.
//
// The .proto files are the repository's proto/ (the single source of the
// API); a packed npm package carries a copy in its own proto/ folder, made
// by scripts/copy-protos.js at `npm pack` time (and removed from the
// working tree after it). The package's copy wins when present, so an
// installed package never reaches outside itself; in the repository the
// client and its tests read proto/ itself.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// uint64 and int64 come back as decimal strings (exact; converted to BigInt
// by the client), enums as their names, absent fields as their defaults.
const LOADER_OPTIONS = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

// The folder holding vecshard/v1/*.proto: the package's copy or the repo's.
function protoRoot() {
  const packed = path.join(__dirname, '..', 'proto');
  if (fs.existsSync(path.join(packed, 'vecshard', 'v1', 'vecshard.proto'))) return packed;
  return path.join(__dirname, '..', '..', '..', 'proto');
}

let cached = null;

// The grpc-js client constructor of vecshard.v1.VecShard (loaded once).
function vecshardService() {
  if (cached) return cached;
  const root = protoRoot();
  const def = protoLoader.loadSync('vecshard/v1/vecshard.proto', {
    ...LOADER_OPTIONS,
    includeDirs: [root],
  });
  cached = grpc.loadPackageDefinition(def).vecshard.v1.VecShard;
  return cached;
}

module.exports = { vecshardService, protoRoot };
