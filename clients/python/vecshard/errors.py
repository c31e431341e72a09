"""vecshard.errors — the exception hierarchy of the vecshard client.

Every failure the client reports is a VecshardError; a gRPC status becomes
the subclass named after its code, carrying the server's message unchanged
(the router's messages name the bad field, docs/wire-api.md). Client-side
argument checks raise InvalidArgument too, so callers catch one class per
cause whether the router or the client found it. InvalidArgument is also a
ValueError and NotFound a LookupError, for code that catches the builtins.
"""
import grpc


class VecshardError(Exception):
    """A failed vecshard call: `code` (grpc.StatusCode) and `message`."""

    code = grpc.StatusCode.UNKNOWN

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self):
        return "%s: %s" % (self.code.name, self.message)


class Cancelled(VecshardError):
    code = grpc.StatusCode.CANCELLED


class Unknown(VecshardError):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(VecshardError, ValueError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(VecshardError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(VecshardError, LookupError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(VecshardError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(VecshardError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(VecshardError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(VecshardError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(VecshardError):
    code = grpc.StatusCode.ABORTED


class OutOfRange(VecshardError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(VecshardError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(VecshardError):
    code = grpc.StatusCode.INTERNAL


class Unavailable(VecshardError):
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(VecshardError):
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(VecshardError):
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE = {cls.code: cls for cls in (
    Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists,
    PermissionDenied, ResourceExhausted, FailedPrecondition, Aborted, OutOfRange,
    Unimplemented, Internal, Unavailable, DataLoss, Unauthenticated)}

# Codes after which repeating the same (idempotent) call may succeed: the
# router or a shard's primary is down or restarting. DEADLINE_EXCEEDED is not
# retried (the call may still be running and would double the wait), nor
# RESOURCE_EXHAUSTED (an over-limit message stays over the limit).
TRANSIENT = frozenset((grpc.StatusCode.UNAVAILABLE,))


def from_rpc_error(err):
    """The VecshardError subclass for a grpc.RpcError (or grpc.aio.AioRpcError)."""
    code = err.code()
    cls = _BY_CODE.get(code, VecshardError)
    return cls(err.details() or "", code)
