"""DownloadModel: a store entry's folder or a job's checkpoint, as a manifest of sha256 per file, then <=1 MiB chunks."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

from forgeway.core.errors import InvalidArgument, NotFound
from forgeway.core.modelstore import ModelStore, entry_name
from forgeway.v1 import models_pb2

CHUNK_BYTES = 1 << 20
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def job_checkpoints(job_dir: Path) -> list[Path]:
    """A job's checkpoint folders (checkpoints/checkpoint-N), oldest step first."""
    folder = job_dir / "checkpoints"
    found = [p for p in folder.iterdir() if p.is_dir() and CHECKPOINT.match(p.name)] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(CHECKPOINT.match(p.name).group(1)))


def checkpoint_folder(home: Path, job_id: str, checkpoint: str, field: str = "checkpoint") -> Path:
    """The folder of a job's checkpoint ("" = its latest); NOT_FOUND listing the job's checkpoints."""
    if not job_id:
        raise InvalidArgument(f"{field}.job_id", "required")
    if not JOB_ID.match(job_id):
        raise InvalidArgument(f"{field}.job_id", f"{job_id!r} is not a job id")
    if checkpoint and not CHECKPOINT.match(checkpoint):
        raise InvalidArgument(f"{field}.checkpoint", f"{checkpoint!r} is not a checkpoint name (checkpoint-STEP)")
    job_dir = home / "jobs" / job_id
    if not job_dir.is_dir():
        raise NotFound("job", job_id)
    known = job_checkpoints(job_dir)
    if checkpoint:
        match = [p for p in known if p.name == checkpoint]
        if not match:
            raise NotFound("checkpoint", f"{job_id}/{checkpoint}", [p.name for p in known])
        return match[0]
    if not known:
        raise NotFound("checkpoint", f"{job_id} (latest)", [])
    return known[-1]


def download_folder(store: ModelStore, home: Path, request: models_pb2.DownloadModelRequest) -> Path:
    """What a DownloadModelRequest names: a job's checkpoint folder, or a store entry's folder."""
    if request.HasField("checkpoint"):
        if request.name:
            raise InvalidArgument("name", "give a store entry or a checkpoint, not both")
        return checkpoint_folder(home, request.checkpoint.job_id, request.checkpoint.checkpoint)
    entry = store.get(entry_name(request.name, "name"))
    if entry is None:
        raise NotFound("model", request.name, store.names())
    return entry.path


def manifest(folder: Path) -> list[models_pb2.DownloadedFile]:
    """Every regular file under folder (links that leave it skipped), "/"-relative paths, sizes and sha256."""
    root = folder.resolve()
    files = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or not path.resolve().is_relative_to(root):
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as data:
            for block in iter(lambda: data.read(CHUNK_BYTES), b""):
                digest.update(block)
        files.append(models_pb2.DownloadedFile(path=path.relative_to(folder).as_posix(),
                                               size_bytes=path.stat().st_size, sha256=digest.hexdigest()))
    return files


def chunks(folder: Path, files: list[models_pb2.DownloadedFile]) -> Iterator[models_pb2.DownloadModelChunk]:
    """The manifest first, then each file's bytes in order (an empty file sends one empty chunk)."""
    yield models_pb2.DownloadModelChunk(files=files)
    for item in files:
        with open(folder / item.path, "rb") as data:
            offset = 0
            while True:
                block = data.read(CHUNK_BYTES)
                if not block and offset:
                    break
                yield models_pb2.DownloadModelChunk(path=item.path, offset=offset, data=block)
                offset += len(block)
                if not block:
                    break
