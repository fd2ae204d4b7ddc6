from forgeway.v1 import capabilities_pb2 as _capabilities_pb2
from forgeway.v1 import embed_pb2 as _embed_pb2
from forgeway.v1 import generate_pb2 as _generate_pb2
from forgeway.v1 import train_pb2 as _train_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
