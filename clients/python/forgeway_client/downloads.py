"""DownloadModel and EvaluateModel requests, and writing a download to disk: a scratch folder beside the destination,
every sha256 checked, then renamed into place; a failed download leaves nothing behind."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path, PurePosixPath

from forgeway.v1 import models_pb2, train_pb2

from .errors import invalid_argument
from .requests import DatasetSource


class DownloadError(Exception):
    """A download that arrived incomplete or corrupted (a checksum or size that does not match its manifest)."""


def download_request(name: str, checkpoint: tuple[str, str] | None) -> models_pb2.DownloadModelRequest:
    """A store entry by name, or (job id, checkpoint name; "" for the job's latest) instead."""
    if checkpoint is None:
        if not name:
            raise invalid_argument("name", "required")
        return models_pb2.DownloadModelRequest(name=name)
    job_id, step = checkpoint
    if not job_id:
        raise invalid_argument("checkpoint.job_id", "required")
    return models_pb2.DownloadModelRequest(name=name, checkpoint=train_pb2.CheckpointRef(job_id=job_id,
                                                                                           checkpoint=step))


def evaluate_request(name: str, dataset, generate_samples: int, max_new_tokens: int) -> models_pb2.EvaluateModelRequest:
    """EvaluateModel's request: a store entry and a dataset as train takes it (path, hub name, upload, rows)."""
    if not name:
        raise invalid_argument("name", "required")
    if generate_samples < 0:
        raise invalid_argument("generate_samples", "must not be negative")
    if max_new_tokens < 1:
        raise invalid_argument("max_new_tokens", "must be at least 1")
    return models_pb2.EvaluateModelRequest(name=name, dataset=DatasetSource.of(dataset).to_proto(),
                                           generate_samples=generate_samples, max_new_tokens=max_new_tokens)


class DownloadWriter:
    """Receives the chunks of one download (`add`), then `finish()` checks it and moves it under `dest`: renamed
    there when dest does not exist, else its files replace those of the same names. `abort()` removes the scratch."""

    def __init__(self, dest: str | Path):
        self.dest = Path(dest).expanduser().absolute()
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.scratch = self.dest.parent / f".{self.dest.name}.download-{uuid.uuid4().hex[:8]}"
        self.scratch.mkdir()
        self.files: dict[str, models_pb2.DownloadedFile] | None = None
        self.written: dict[str, int] = {}
        self.digests: dict[str, hashlib._Hash] = {}

    def add(self, chunk: models_pb2.DownloadModelChunk) -> None:
        if self.files is None:
            self.files = {_relative(f.path): f for f in chunk.files}
            if not chunk.files:
                raise DownloadError("the download's first message lists no files")
            return
        path = _relative(chunk.path)
        if path not in self.files:
            raise DownloadError(f"{chunk.path!r} is not in the download's manifest")
        if chunk.offset != self.written.get(path, 0):
            raise DownloadError(f"{path}: chunk at offset {chunk.offset}, expected {self.written.get(path, 0)}")
        target = self.scratch / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "ab" if chunk.offset else "wb") as out:
            out.write(chunk.data)
        self.written[path] = chunk.offset + len(chunk.data)
        self.digests.setdefault(path, hashlib.sha256()).update(chunk.data)

    def finish(self) -> Path:
        """Check every file's size and sha256 against the manifest, then move the files into place."""
        if self.files is None:
            raise DownloadError("the download ended before its manifest")
        for path, item in self.files.items():
            size = self.written.get(path)
            if size is None:
                raise DownloadError(f"{path}: listed in the manifest but never sent")
            if size != item.size_bytes:
                raise DownloadError(f"{path}: {size} bytes received, the manifest says {item.size_bytes}")
            if self.digests.get(path, hashlib.sha256()).hexdigest() != item.sha256:
                raise DownloadError(f"{path}: sha256 mismatch (expected {item.sha256})")
        if not self.dest.exists():
            os.replace(self.scratch, self.dest)
            return self.dest
        if not self.dest.is_dir():
            raise DownloadError(f"{self.dest} exists and is not a folder")
        for path in self.files:
            (self.dest / path).parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.scratch / path, self.dest / path)
        shutil.rmtree(self.scratch, ignore_errors=True)
        return self.dest

    def abort(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


def _relative(path: str) -> str:
    """A manifest path, if it stays inside the download (relative, no "..")."""
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise DownloadError(f"{path!r} is not a relative path inside the download")
    return pure.as_posix()
