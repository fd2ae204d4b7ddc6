"""POST /v1/files (a fine-tuning jsonl, validated, streamed to DatasetService.UploadDataset) and GET /v1/files."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse

from forgeway.v1 import datasets_pb2

from .convert_tuning import file_object
from .datasets import validate_jsonl
from .errors import OpenAIHTTPError, checked_text
from .responses import documented
from .schemas_tuning import FileList, FileObject
from .upstream import Upstream, answer, call_metadata, upstream

router = APIRouter(tags=["files"])
PURPOSES = ("fine-tune",)
_HEADER_PARAM = {"size_bytes": "file", "sha256": "file", "filename": "file", "format": "file"}


def upload_messages(filename: str, content: bytes, purpose: str, chunk_bytes: int) -> AsyncIterator:
    """The client stream of UploadDataset: a header (size, sha256), then the content in chunks."""

    async def messages():
        header = datasets_pb2.DatasetHeader(
            filename=filename, format=datasets_pb2.DATASET_FORMAT_JSONL, size_bytes=len(content),
            sha256=hashlib.sha256(content).hexdigest(), purpose=purpose,
        )
        yield datasets_pb2.UploadDatasetRequest(header=header)
        for start in range(0, len(content), chunk_bytes):
            yield datasets_pb2.UploadDatasetRequest(chunk=content[start:start + chunk_bytes])

    return messages()


@router.post("/v1/files", response_model=None, responses=documented(FileObject))
async def upload_file(
    request: Request,
    file: Annotated[UploadFile, File(description="A JSON Lines file of training examples.")],
    purpose: Annotated[str, Form(description="Only fine-tune is accepted.")],
    target: Upstream = Depends(upstream),
) -> JSONResponse:
    """Upload a fine-tuning file; every line is checked (400 names the first bad one) before it is stored."""
    if purpose not in PURPOSES:
        raise OpenAIHTTPError(400, f"purpose must be one of {', '.join(PURPOSES)}; got {purpose!r}", param="purpose",
                       code="invalid_value")
    checked = validate_jsonl(await file.read())
    filename = (file.filename or "").rsplit("/", 1)[-1] or "training.jsonl"
    if not filename.isprintable() or len(filename) > 255:
        raise OpenAIHTTPError(400, "file name must be printable and at most 255 characters", param="file",
                       code="invalid_value")
    call = target.datasets.UploadDataset(
        upload_messages(filename, checked.content, purpose, target.settings.upload_chunk_bytes),
        metadata=call_metadata(request), timeout=target.settings.request_timeout_seconds,
    )
    reply = await answer(request, call, lambda field: _HEADER_PARAM.get(field.rsplit(".", 1)[-1], field or None))
    return JSONResponse(file_object(reply.dataset))


@router.get("/v1/files", response_model=None, responses=documented(FileList, statuses=(
    400, 401, 403, 429, 500, 501, 503, 504)))
async def list_files(request: Request, purpose: Annotated[str | None, Query(max_length=64)] = None,
                     target: Upstream = Depends(upstream)) -> JSONResponse:
    """Stored datasets, newest first (optionally only one purpose)."""
    call = target.datasets.ListDatasets(datasets_pb2.ListDatasetsRequest(), metadata=call_metadata(request),
                                        timeout=target.settings.request_timeout_seconds)
    reply = await answer(request, call)
    files = [file_object(d) for d in reply.datasets if purpose is None or (d.purpose or "fine-tune") == purpose]
    return JSONResponse({"object": "list", "data": files, "has_more": False})


@router.get("/v1/files/{file_id}", response_model=None, responses=documented(FileObject, statuses=(
    400, 401, 403, 404, 429, 500, 501, 503, 504)))
async def get_file(file_id: str, request: Request, target: Upstream = Depends(upstream)) -> JSONResponse:
    """One stored dataset."""
    call = target.datasets.GetDataset(datasets_pb2.GetDatasetRequest(dataset_id=checked_text(file_id, "file_id")),
                                      metadata=call_metadata(request), timeout=target.settings.request_timeout_seconds)
    reply = await answer(request, call, lambda field: "file_id" if field else None)
    return JSONResponse(file_object(reply.dataset))
