"""Dataset uploads: a local file or bytes as DatasetService.UploadDataset messages (header, then 1 MiB chunks)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from forgeway.core.enums import DATASET_FORMAT
from forgeway.v1 import datasets_pb2

from .errors import invalid_argument
from .requests import named

CHUNK_BYTES = 1 << 20  # the contract's largest upload chunk


@dataclass(frozen=True)
class Upload:
    """A dataset file to upload, from a local path or bytes: header (size, SHA-256) and 1 MiB chunks, re-readable
    so an UNAVAILABLE upload can be retried."""

    filename: str
    data: bytes | None = None
    path: Path | None = None
    format: str = ""
    purpose: str = "fine-tune"

    @classmethod
    def of(cls, source: str | Path | bytes, filename: str | None, format: str, purpose: str) -> Upload:
        if isinstance(source, bytes):
            if not filename:
                raise invalid_argument("header.filename", "required when uploading bytes")
            return cls(filename, data=source, format=format, purpose=purpose)
        path = Path(source).expanduser()
        if not path.is_file():
            raise invalid_argument("file", f"{path} is not a file")
        return cls(filename or path.name, path=path, format=format, purpose=purpose)

    def _chunks(self) -> Iterator[bytes]:
        if self.data is not None:
            for start in range(0, len(self.data), CHUNK_BYTES):
                yield self.data[start:start + CHUNK_BYTES]
            return
        with open(self.path, "rb") as handle:  # type: ignore[arg-type]
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk

    def header(self) -> datasets_pb2.DatasetHeader:
        digest, size = hashlib.sha256(), 0
        for chunk in self._chunks():
            digest.update(chunk)
            size += len(chunk)
        fmt = named(DATASET_FORMAT, self.format, "header.format") if self.format else 0
        return datasets_pb2.DatasetHeader(filename=self.filename, format=fmt, size_bytes=size,
                                          sha256=digest.hexdigest(), purpose=self.purpose)

    def parts(self, header: datasets_pb2.DatasetHeader) -> Iterator[datasets_pb2.UploadDatasetRequest]:
        yield datasets_pb2.UploadDatasetRequest(header=header)
        for chunk in self._chunks():
            yield datasets_pb2.UploadDatasetRequest(chunk=chunk)
