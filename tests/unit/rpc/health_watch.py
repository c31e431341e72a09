#!/usr/bin/python3
"""Python grpcio client of grpc.health.v1.Health/Watch against a common/rpc
server (run by build/test_rpc).

Usage: health_watch.py PORT  (PYTHONPATH must hold build/gen/python)
The C test server registers /test.Echo/SetServing (raw bytes: non-empty =
serving, empty = not serving), so this script drives the status itself:
Watch answers SERVING at once, NOT_SERVING after SetServing(false), SERVING
again after SetServing(true); a watch of an unknown service gets
SERVICE_UNKNOWN; cancelling the stream ends it on the client side. Exit 0
means every step held.
"""
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

HC = health_pb2.HealthCheckResponse


def next_status(it):
    return next(it).status


def main():
    target = "127.0.0.1:%d" % int(sys.argv[1])
    with grpc.insecure_channel(target) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        set_serving = ch.unary_unary("/test.Echo/SetServing",
                                     request_serializer=lambda b: b,
                                     response_deserializer=lambda b: b)
        it = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=20)
        got = [next_status(it)]
        set_serving(b"", timeout=5)
        got.append(next_status(it))
        set_serving(b"\x01", timeout=5)
        got.append(next_status(it))
        want = [HC.SERVING, HC.NOT_SERVING, HC.SERVING]
        if got != want:
            print("watch: expected %s, got %s" % (want, got))
            return 1
        it.cancel()
        try:
            next(it)
            print("watch: stream went on after cancel")
            return 1
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                print("watch: cancel gave %s" % e.code())
                return 1
        unk = health.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=20)
        st = next_status(unk)
        if st != HC.SERVICE_UNKNOWN:
            print("watch: unknown service gave %s" % st)
            return 1
        unk.cancel()
        named = health.Watch(health_pb2.HealthCheckRequest(service="test.Echo"), timeout=20)
        st = next_status(named)
        if st != HC.SERVING:
            print("watch: test.Echo gave %s" % st)
            return 1
        named.cancel()
    print("python watch: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
