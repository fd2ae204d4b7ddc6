"""One exception hierarchy for every service, and the one table mapping it to gRPC and HTTP."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

DOMAIN = "forgeway.dev"

# The error table of DESIGN.md: gRPC code -> HTTP status. The HTTP shim derives its codes from here.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNKNOWN: 500,
}


class ForgewayError(Exception):
    """Base of every error a service raises on purpose; the interceptor maps it to a status."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason
        self.metadata = dict(metadata or {})

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    def details(self) -> list:
        """google.rpc detail messages for this error."""
        return [error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata)]

    def to_status(self) -> status_pb2.Status:
        packed = []
        for detail in self.details():
            any_msg = any_pb2.Any()
            any_msg.Pack(detail)
            packed.append(any_msg)
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=packed)


class InvalidArgument(ForgewayError):
    """A malformed or out-of-range field; `field` names it (dotted path, as in BadRequest)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, description: str, *, more: list[tuple[str, str]] | None = None):
        self.violations = [(field, description), *(more or [])]
        message = "; ".join(f"{f}: {d}" for f, d in self.violations)
        super().__init__(message, metadata={"field": field})
        self.field = field

    def details(self) -> list:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in self.violations
            ]
        )
        return [bad_request, *super().details()]


class Unsupported(ForgewayError):
    """A feature this backend cannot honour: rejected, never ignored."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "UNSUPPORTED"

    def __init__(self, feature: str, backend: str, hint: str = ""):
        message = f"{feature} is not supported by the {backend} backend" + (f": {hint}" if hint else "")
        super().__init__(message, metadata={"feature": feature, "backend": backend, "field": feature})
        self.feature = feature


class Unimplemented(ForgewayError):
    """An RPC this endpoint does not serve."""

    code = grpc.StatusCode.UNIMPLEMENTED
    reason = "UNIMPLEMENTED"


class NotFound(ForgewayError):
    """An unknown model, adapter, job or dataset."""

    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"

    def __init__(self, kind: str, name: str, known: list[str] | None = None):
        message = f"{kind} {name!r} not found"
        if known is not None:
            message += f" (known: {', '.join(known) or 'none'})"
        super().__init__(message, reason=f"{kind.upper().replace(' ', '_')}_NOT_FOUND", metadata={kind: name})
        self.kind = kind
        self.name = name


class FailedPrecondition(ForgewayError):
    """The right request in the wrong state (job finished, model not loaded)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class Unauthenticated(ForgewayError):
    """Missing or bad credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"

    def details(self) -> list:
        return []


class PermissionDenied(ForgewayError):
    """Valid credentials, not allowed."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"

    def details(self) -> list:
        return []


class _Retryable(ForgewayError):
    def __init__(self, message: str, *, retry_after: float = 1.0, reason: str | None = None, metadata=None):
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after = retry_after

    def details(self) -> list:
        seconds = int(self.retry_after)
        delay = duration_pb2.Duration(seconds=seconds, nanos=int((self.retry_after - seconds) * 1e9))
        return [error_details_pb2.RetryInfo(retry_delay=delay), *super().details()]


class ResourceExhausted(_Retryable):
    """Overloaded or over quota; retry after `retry_after` seconds."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after: float = 1.0, quota: str = "", reason: str | None = None):
        super().__init__(message, retry_after=retry_after, reason=reason)
        self.quota = quota

    def details(self) -> list:
        details = super().details()
        if self.quota:
            violation = error_details_pb2.QuotaFailure.Violation(subject=self.quota, description=self.message)
            details.append(error_details_pb2.QuotaFailure(violations=[violation]))
        return details


class Unavailable(_Retryable):
    """No healthy backend, or this one is not ready or draining."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"


class DeadlineExceeded(ForgewayError):
    """The caller's deadline passed."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXCEEDED"

    def details(self) -> list:
        return []


class Internal(ForgewayError):
    """Anything else: a generic message to the caller, details in the log."""

    code = grpc.StatusCode.INTERNAL
    reason = "INTERNAL"


class RemoteError(ForgewayError):
    """An error status received from another Forgeway endpoint, kept with its code and details."""

    def __init__(self, code: grpc.StatusCode, message: str, details: list, reason: str = ""):
        super().__init__(message, reason=reason or code.name)
        self.code = code
        self._details = details

    def details(self) -> list:
        return list(self._details)

    @property
    def field_violations(self) -> list[tuple[str, str]]:
        return [
            (v.field, v.description)
            for d in self._details
            if isinstance(d, error_details_pb2.BadRequest)
            for v in d.field_violations
        ]

    @property
    def retry_after(self) -> float | None:
        for d in self._details:
            if isinstance(d, error_details_pb2.RetryInfo):
                return d.retry_delay.seconds + d.retry_delay.nanos / 1e9
        return None

    @property
    def error_info(self) -> error_details_pb2.ErrorInfo | None:
        for d in self._details:
            if isinstance(d, error_details_pb2.ErrorInfo):
                return d
        return None


_DETAIL_TYPES = (
    error_details_pb2.BadRequest,
    error_details_pb2.ErrorInfo,
    error_details_pb2.RetryInfo,
    error_details_pb2.QuotaFailure,
)


def from_rpc_error(error: grpc.RpcError) -> RemoteError:
    """Rebuild a typed error (code, message, rich details) from a gRPC error received as a client."""
    from grpc_status import rpc_status

    code = error.code()
    message = error.details() or ""
    details: list = []
    status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
    if status is not None:
        for any_msg in status.details:
            for cls in _DETAIL_TYPES:
                if any_msg.Is(cls.DESCRIPTOR):
                    msg = cls()
                    any_msg.Unpack(msg)
                    details.append(msg)
    reason = next((d.reason for d in details if isinstance(d, error_details_pb2.ErrorInfo)), "")
    return RemoteError(code, message, details, reason)

