"""Typed SDK errors, one class per row of the error table, carrying the server's field violations and retry delay."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from google.rpc import error_details_pb2

from forgeway.core.errors import RemoteError, from_rpc_error

if TYPE_CHECKING:
    from .types import Job


class APIError(RemoteError):
    """An error status from a Forgeway endpoint (or a request the SDK refused to send).

    `code` is the grpc.StatusCode, `reason` the ErrorInfo reason ("MODEL_NOT_FOUND", "UNSUPPORTED", ...),
    `field_violations` the (field, description) pairs of a BadRequest, `retry_after` the server's RetryInfo delay.
    """

    default_code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None, details: list | None = None,
                 reason: str = ""):
        super().__init__(code or self.default_code, message, list(details or ()), reason)
        info = self.error_info
        self.metadata = dict(info.metadata) if info is not None else {}

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(APIError):
    """A malformed or out-of-range field (HTTP 400); see field_violations."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class UnsupportedError(InvalidArgumentError):
    """A feature the chosen backend cannot honour (INVALID_ARGUMENT with reason UNSUPPORTED)."""


class UnimplementedError(APIError):
    """An RPC the endpoint does not serve (HTTP 501)."""

    default_code = grpc.StatusCode.UNIMPLEMENTED


class NotFoundError(APIError):
    """An unknown model, job or dataset (HTTP 404)."""

    default_code = grpc.StatusCode.NOT_FOUND


class FailedPreconditionError(APIError):
    """The right request in the wrong state: a finished job, a model not loaded (HTTP 409)."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class UnauthenticatedError(APIError):
    """A missing or bad API key (HTTP 401)."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(APIError):
    """A valid API key that may not do this (HTTP 403)."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(APIError):
    """Overloaded or over quota (HTTP 429); retry after `retry_after` seconds."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(APIError):
    """No healthy backend, or the endpoint cannot be reached (HTTP 503). Retried with backoff before it is raised."""

    default_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(APIError):
    """The call's deadline passed (HTTP 504)."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class RequestCancelledError(APIError):
    """The call was cancelled before it finished."""

    default_code = grpc.StatusCode.CANCELLED


class InternalError(APIError):
    """Anything else (HTTP 500); the details are in the server's log under the request id."""

    default_code = grpc.StatusCode.INTERNAL


class JobFailedError(Exception):
    """A training job ended FAILED or CANCELLED (not an RPC error: the job record says why)."""

    def __init__(self, job: Job):
        super().__init__(f"job {job.id} {job.state}" + (f": {job.error}" if job.error else ""))
        self.job = job


_BY_CODE: dict[grpc.StatusCode, type[APIError]] = {
    cls.default_code: cls
    for cls in (InvalidArgumentError, UnimplementedError, NotFoundError, FailedPreconditionError, UnauthenticatedError,
                PermissionDeniedError, ResourceExhaustedError, UnavailableError, DeadlineExceededError,
                RequestCancelledError, InternalError)
}


def error_class(code: grpc.StatusCode, reason: str = "") -> type[APIError]:
    if code == grpc.StatusCode.INVALID_ARGUMENT and reason == "UNSUPPORTED":
        return UnsupportedError
    return _BY_CODE.get(code, InternalError)


def from_grpc(error: grpc.RpcError) -> APIError:
    """The typed SDK error for a gRPC error, with its rich details (BadRequest, ErrorInfo, RetryInfo) decoded."""
    remote = from_rpc_error(error)
    message = " ".join((remote.message or remote.code.name).split())  # one line, whatever the transport wrote
    return error_class(remote.code, remote.reason)(message, code=remote.code, details=remote.details(),
                                                    reason=remote.reason)


def invalid_argument(field: str, description: str) -> InvalidArgumentError:
    """An error for a request the SDK will not send, shaped like the server's own (a BadRequest field violation)."""
    violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
    return InvalidArgumentError(f"{field}: {description}", details=[error_details_pb2.BadRequest(
        field_violations=[violation])], reason="INVALID_ARGUMENT")
