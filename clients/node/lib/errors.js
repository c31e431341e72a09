// errors.js — the exception hierarchy of the vecshard Node client.
//
// Every failure a client method reports is a VecshardError: one subclass per
// gRPC status code (InvalidArgument, NotFound, AlreadyExists, Unavailable,
// ...), so callers can `catch (e) { if (e instanceof NotFound) ... }`. The
// error's `message` is the server's message unchanged (it names the bad
// field, docs/router.md); `code` is the numeric gRPC code and `codeName` its
// name. Checks the client makes before sending anything (a ragged vector
// array, an id that is not a uint64) throw InvalidArgument too, so one catch
// covers both.
'use strict';

const CODE_NAMES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
];

// Base class: a failed vecshard call (server status or client-side check).
class VecshardError extends Error {
  constructor(message, code = 2, metadata = null) {
    super(message);
    this.name = this.constructor.name;
    this.code = code;
    this.codeName = CODE_NAMES[code] || 'UNKNOWN';
    this.metadata = metadata;
  }
}

const byCode = new Map();

// Defines the subclass for one gRPC code.
function define(name, code) {
  const cls = {
    [name]: class extends VecshardError {
      constructor(message, metadata = null) {
        super(message, code, metadata);
      }
    },
  }[name];
  byCode.set(code, cls);
  return cls;
}

const classes = {
  Cancelled: define('Cancelled', 1),
  Unknown: define('Unknown', 2),
  InvalidArgument: define('InvalidArgument', 3),
  DeadlineExceeded: define('DeadlineExceeded', 4),
  NotFound: define('NotFound', 5),
  AlreadyExists: define('AlreadyExists', 6),
  PermissionDenied: define('PermissionDenied', 7),
  ResourceExhausted: define('ResourceExhausted', 8),
  FailedPrecondition: define('FailedPrecondition', 9),
  Aborted: define('Aborted', 10),
  OutOfRange: define('OutOfRange', 11),
  Unimplemented: define('Unimplemented', 12),
  Internal: define('Internal', 13),
  Unavailable: define('Unavailable', 14),
  DataLoss: define('DataLoss', 15),
  Unauthenticated: define('Unauthenticated', 16),
};

// Turns a grpc-js ServiceError into the VecshardError subclass of its code,
// keeping the server's message (grpc-js's `details`) and trailing metadata.
function fromGrpcError(err) {
  const cls = byCode.get(err.code);
  const message = err.details !== undefined ? err.details : err.message;
  if (!cls) return new VecshardError(message, 2, err.metadata || null);
  return new cls(message, err.metadata || null);
}

module.exports = { VecshardError, CODE_NAMES, fromGrpcError, ...classes };
