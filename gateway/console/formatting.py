"""How the console writes sizes, times and small protos in its tables."""

from __future__ import annotations

from google.protobuf.json_format import MessageToDict


def size(n: int) -> str:
    """Bytes as "1.5 GiB"; "" for 0 (unknown)."""
    if not n:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def when(timestamp) -> str:
    """A google.protobuf.Timestamp as "2026-12-04 20:55:30 UTC"; "" when unset."""
    if timestamp is None or not (timestamp.seconds or timestamp.nanos):
        return ""
    return timestamp.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC")


def fields(message) -> str:
    """The fields a message sets, as "name=value, ..." in the proto's field names."""
    if message is None:
        return ""
    values = MessageToDict(message, preserving_proto_field_name=True)
    return ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in values.items())
