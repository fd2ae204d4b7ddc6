"""Generated forgeway.v1 protobuf and gRPC stubs (make protos)."""
