"""Errors in OpenAI's JSON shape, with HTTP statuses taken from the runtime's one error table."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from forgeway.core.errors import HTTP_STATUS, RemoteError, from_rpc_error
from forgeway.server.logs import REQUEST_ID

log = logging.getLogger("forgeway.http")

# OpenAI's error "type" by HTTP status.
ERROR_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    499: "cancelled_error",
    500: "server_error",
    501: "not_implemented_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}

# ErrorInfo reasons whose OpenAI code differs from the reason in lower case.
CODE_OF_REASON = {"UNSUPPORTED": "unsupported_parameter", "INVALID_ARGUMENT": "invalid_value"}

ParamOf = Callable[[str], str | None]


class OpenAIHTTPError(Exception):
    """What the shim answers in OpenAI's shape, {"error": {"message", "type", "param", "code"}}, with an HTTP status.

    (The SDK's `forgeway.client.errors.APIError` is the client's side of a failed call; this is the shim's answer.)"""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.retry_after = retry_after

    def body(self) -> dict:
        kind = ERROR_TYPE.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(max(1, round(self.retry_after)))} if self.retry_after is not None else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def identity_param(field: str) -> str | None:
    return field or None


def from_grpc(error: grpc.RpcError, param_of: ParamOf = identity_param) -> OpenAIHTTPError:
    """The OpenAIHTTPError of a gRPC failure: status by the table, param from BadRequest or ErrorInfo, code from the
    reason."""
    remote: RemoteError = from_rpc_error(error)
    status = HTTP_STATUS.get(remote.code, 500)
    info = remote.error_info
    field = remote.field_violations[0][0] if remote.field_violations else ""
    if not field and info is not None:
        field = info.metadata.get("field", "")
    reason = info.reason if info else ""
    if not field and reason.endswith("_NOT_FOUND") and info is not None and len(info.metadata) == 1:
        field = next(iter(info.metadata))  # NotFound("model", name) names the kind: the parameter that held it
    code = CODE_OF_REASON.get(reason, reason.lower() or remote.code.name.lower())
    message = remote.message or remote.code.name.lower()
    param = param_of(field) if field else None
    if status == 500:  # details stay in the log, as at the gRPC edge
        log.error("upstream internal error: %s %s", remote.code.name, message)
        message = f"internal error (request id {REQUEST_ID.get() or 'unknown'})"
    elif reason == "UNSUPPORTED" and param and param != field:
        # the contract names the feature ("reasoning"); the caller knows the parameter that asked for it
        message = f"Unsupported parameter {param!r}: {message}"
    return OpenAIHTTPError(status, message, param=param, code=code, retry_after=remote.retry_after)


@cache
def body_field_names() -> frozenset[str]:
    """Every field name and alias of the request bodies: a location's other parts are union tags, not parameters."""
    from pydantic import BaseModel

    from . import schemas, schemas_embeddings, schemas_tuning

    names: set[str] = {"file", "purpose"}  # the multipart form of POST /v1/files
    for module in (schemas, schemas_embeddings, schemas_tuning):
        for model in vars(module).values():
            if isinstance(model, type) and issubclass(model, BaseModel):
                for name, info in model.model_fields.items():
                    names.update(n for n in (name, info.alias) if n)
    return frozenset(names)


def param_from_loc(loc: tuple | list) -> str | None:
    """OpenAI's spelling of a pydantic location: ("body", "messages", 0, "content") -> "messages[0].content"."""
    parts: list = []
    if loc and loc[0] == "body":
        for part in loc[1:]:
            if isinstance(part, int) or part in body_field_names():
                if not parts or part != parts[-1] or isinstance(part, int):
                    parts.append(part)  # a discriminated union repeats its tag; the tag is dropped
    else:
        parts = [p for p in loc[1:]] if loc and loc[0] in ("query", "path", "header") else list(loc)
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or None


def from_validation(exc: RequestValidationError) -> OpenAIHTTPError:
    """400 naming the first bad parameter; malformed JSON names the line, column and character position."""
    first = exc.errors()[0]
    kind, loc, ctx = first.get("type", ""), first.get("loc", ()), first.get("ctx") or {}
    if kind == "json_invalid":
        pos = loc[-1] if loc and isinstance(loc[-1], int) else 0
        doc = exc.body if isinstance(exc.body, str) else ""
        line = doc.count("\n", 0, pos) + 1
        column = pos - (doc.rfind("\n", 0, pos) + 1) + 1
        message = f"malformed JSON: {ctx.get('error', 'invalid')} at line {line} column {column} (char {pos})"
        return OpenAIHTTPError(400, message, code="invalid_json")
    param = param_from_loc(loc)
    if kind in ("unsupported_parameter", "invalid_parameter"):
        named = ".".join(p for p in (param, ctx.get("param")) if p) or None
        code = "unsupported_parameter" if kind == "unsupported_parameter" else "invalid_value"
        message = first["msg"]
        if "what" in ctx:
            message = f"Unsupported parameter {named!r}: {ctx['what']} is not supported by Forgeway"
        return OpenAIHTTPError(400, message, param=named, code=code)
    if kind == "extra_forbidden":  # the last part is the unknown name itself
        param = ".".join(p for p in (param_from_loc(loc[:-1]), str(loc[-1])) if p)
        return OpenAIHTTPError(400, f"Unrecognized request argument supplied: {param}", param=param,
                               code="unknown_parameter")
    if kind == "missing":
        return OpenAIHTTPError(400, f"Missing required parameter: {param!r}", param=param,
                               code="missing_required_parameter")
    if kind in ("model_type", "model_attributes_type", "dict_type") and param is None:
        return OpenAIHTTPError(400, "the request body must be a JSON object", code="invalid_request_body")
    message = first.get("msg", "invalid value")
    return OpenAIHTTPError(400, f"Invalid value for {param!r}: {message}" if param else message, param=param,
                    code="invalid_value")


def install_error_handlers(app: FastAPI) -> None:
    """Every error the app answers comes out in OpenAI's shape."""

    @app.exception_handler(OpenAIHTTPError)
    async def _openai_http_error(request: Request, exc: OpenAIHTTPError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return from_validation(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        response = OpenAIHTTPError(exc.status_code, message).response()
        response.headers.update(exc.headers or {})  # 405 keeps its Allow header
        return response

    @app.exception_handler(grpc.RpcError)
    async def _rpc(request: Request, exc: grpc.RpcError) -> JSONResponse:
        return from_grpc(exc).response()



def checked_text(value: str, param: str) -> str:
    """A path or query value fit for a protobuf string (valid UTF-8), else 400 naming it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise OpenAIHTTPError(400, f"{param} must be valid UTF-8", param=param, code="invalid_value") from None
    return value
