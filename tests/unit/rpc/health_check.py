#!/usr/bin/python3
"""Python grpcio client against a common/rpc server (run by build/test_rpc).

Usage: health_check.py PORT  (PYTHONPATH must hold build/gen/python)
Checks that the generated Python stubs interoperate with the C framework:
Health/Check answers SERVING, and a ShardNode unary method registered by the
C test returns the message it built. Exit status 0 means both worked.
"""
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from vecshard.v1 import shard_node_pb2, shard_node_pb2_grpc


def main():
    target = "127.0.0.1:%d" % int(sys.argv[1])
    with grpc.insecure_channel(target) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        r = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        if r.status != health_pb2.HealthCheckResponse.SERVING:
            print("health: expected SERVING, got %s" % r.status)
            return 1
        try:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
            print("health: unknown service did not fail")
            return 1
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                print("health: unknown service gave %s" % e.code())
                return 1
        node = shard_node_pb2_grpc.ShardNodeStub(ch)
        s = node.NodeStatus(shard_node_pb2.NodeStatusRequest(), timeout=5,
                            metadata=(("authorization", "Bearer py"),))
        if s.node_id != "test-node" or s.addr != "Bearer py" or s.replicas != 3:
            print("NodeStatus: unexpected reply %r" % s)
            return 1
    print("python client: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
