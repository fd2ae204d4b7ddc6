"""google.protobuf.Struct to plain Python values, with whole numbers as ints again (a Struct keeps every number as
a double, so an option sent as 3 would come back as 3.0)."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    return _plain(json_format.MessageToDict(struct))
