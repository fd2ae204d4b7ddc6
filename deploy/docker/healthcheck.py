"""Container health check: exit 0 when the service on FORGEWAY_PORT answers grpc.health.v1 Check("") SERVING."""

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> int:
    port = os.environ.get("FORGEWAY_PORT", "50051")
    service = sys.argv[1] if len(sys.argv) > 1 else ""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=4)
        except grpc.RpcError as exc:
            print(f"127.0.0.1:{port}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"127.0.0.1:{port} {service or '(server)'}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    raise SystemExit(main())
