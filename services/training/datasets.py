"""DatasetStore: client-streamed uploads, checksummed and size-limited, kept under FORGEWAY_HOME/datasets/<id>/."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from google.protobuf import json_format, timestamp_pb2

from forgeway.core.errors import InvalidArgument, ResourceExhausted
from forgeway.v1 import datasets_pb2

from .errors import dataset_not_found

CHUNK_LIMIT = 1024 * 1024
RECORD = "dataset.json"
FORMATS = {
    ".jsonl": datasets_pb2.DATASET_FORMAT_JSONL,
    ".json": datasets_pb2.DATASET_FORMAT_JSON,
    ".csv": datasets_pb2.DATASET_FORMAT_CSV,
    ".parquet": datasets_pb2.DATASET_FORMAT_PARQUET,
}
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def count_rows(path: Path, fmt: int) -> int:
    """Parse the file enough to count its examples; a malformed one raises InvalidArgument naming the row."""
    if fmt == datasets_pb2.DATASET_FORMAT_JSONL:
        rows = 0
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidArgument("file", f"line {number}: not valid JSON: {exc.msg}") from None
                if not isinstance(value, dict):
                    raise InvalidArgument("file", f"line {number}: each line must be a JSON object")
                rows += 1
        return rows
    if fmt == datasets_pb2.DATASET_FORMAT_JSON:
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InvalidArgument("file", f"not valid JSON at line {exc.lineno}: {exc.msg}") from None
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise InvalidArgument("file", "a .json dataset must be an array of objects")
        return len(value)
    if fmt == datasets_pb2.DATASET_FORMAT_CSV:
        with path.open(encoding="utf-8", newline="") as fh:
            return sum(1 for _ in csv.DictReader(fh))
    import pyarrow.parquet as pq  # only for parquet uploads

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception as exc:
        raise InvalidArgument("file", f"not a readable parquet file: {exc}") from None


class DatasetStore:
    """Uploaded datasets by id."""

    def __init__(self, root: Path, max_bytes: int):
        self.root = Path(root)
        self.max_bytes = max_bytes

    def path(self, dataset_id: str) -> Path:
        """The data file of a dataset."""
        record = self.get(dataset_id)
        return self.root / record.id / record.filename

    def get(self, dataset_id: str) -> datasets_pb2.Dataset:
        if not re.fullmatch(r"ds-[0-9a-f]{16}", dataset_id) or not (self.root / dataset_id / RECORD).is_file():
            raise dataset_not_found(dataset_id)
        return _from_json((self.root / dataset_id / RECORD).read_text())

    def list(self) -> list[datasets_pb2.Dataset]:
        if not self.root.is_dir():
            return []
        records = [_from_json(p.read_text()) for p in self.root.glob(f"ds-*/{RECORD}")]
        return sorted(records, key=lambda d: d.created.ToNanoseconds(), reverse=True)

    async def upload(self, parts: AsyncIterator[datasets_pb2.UploadDatasetRequest]) -> datasets_pb2.Dataset:
        """Receive a header then chunks; verify size and sha256; store atomically."""
        first = await anext(aiter(parts), None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("header", "the first message of an upload must be the header")
        header = first.header
        filename = SAFE_NAME.sub("_", Path(header.filename).name) if header.filename else ""
        fmt = header.format or FORMATS.get(Path(filename).suffix.lower(), 0)
        if not fmt:
            raise InvalidArgument("header.format", f"unknown format; name a format or use one of {', '.join(FORMATS)}")
        if header.size_bytes > self.max_bytes:
            raise ResourceExhausted(f"dataset of {header.size_bytes} bytes exceeds the limit of {self.max_bytes}",
                                    quota="dataset_bytes", retry_after=0)
        if header.sha256 and not re.fullmatch(r"[0-9a-f]{64}", header.sha256):
            raise InvalidArgument("header.sha256", "must be 64 lowercase hex digits")
        dataset_id = f"ds-{uuid.uuid4().hex[:16]}"
        suffix = {v: k for k, v in FORMATS.items()}[fmt]
        filename = filename or f"data{suffix}"
        scratch = self.root / f".partial-{dataset_id}"
        scratch.mkdir(parents=True)
        try:
            digest, size = hashlib.sha256(), 0
            with (scratch / filename).open("wb") as out:
                async for part in parts:
                    if part.WhichOneof("part") != "chunk":
                        raise InvalidArgument("chunk", "only chunks may follow the header")
                    if len(part.chunk) > CHUNK_LIMIT:
                        raise InvalidArgument("chunk", f"chunks are at most {CHUNK_LIMIT} bytes")
                    size += len(part.chunk)
                    if size > self.max_bytes:
                        raise ResourceExhausted(f"upload exceeds the limit of {self.max_bytes} bytes",
                                                quota="dataset_bytes", retry_after=0)
                    digest.update(part.chunk)
                    out.write(part.chunk)
            if header.size_bytes and size != header.size_bytes:
                raise InvalidArgument("header.size_bytes", f"header says {header.size_bytes} bytes, received {size}")
            if header.sha256 and digest.hexdigest() != header.sha256:
                raise InvalidArgument("header.sha256", f"checksum mismatch: received data hashes to {digest.hexdigest()}")
            rows = count_rows(scratch / filename, fmt)
            if rows == 0:
                raise InvalidArgument("file", "the dataset has no rows")
            created = timestamp_pb2.Timestamp()
            created.FromNanoseconds(time.time_ns())
            record = datasets_pb2.Dataset(
                id=dataset_id, filename=filename, format=fmt, size_bytes=size, sha256=digest.hexdigest(),
                rows=rows, created=created, purpose=header.purpose,
            )
            (scratch / RECORD).write_text(_to_json(record))
            scratch.rename(self.root / dataset_id)
            return record
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)


def _to_json(record: datasets_pb2.Dataset) -> str:
    return json_format.MessageToJson(record)


def _from_json(text: str) -> datasets_pb2.Dataset:
    return json_format.Parse(text, datasets_pb2.Dataset())


