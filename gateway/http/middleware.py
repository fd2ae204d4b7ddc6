"""The ASGI guard in front of every route: request ids, content types (415), body sizes (413) and metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forgeway.server.logs import REQUEST_ID

from .errors import OpenAIHTTPError
from .metrics import HTTP_LATENCY, HTTP_REQUESTS
from .settings import HttpSettings

log = logging.getLogger("forgeway.http")
REQUEST_ID_HEADER = "x-request-id"
SCOPE_REQUEST_ID = "forgeway.request_id"
_SAFE_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
UPLOAD_PATH = "/v1/files"
API_PREFIXES = ("/v1/", "/v2/", "/rerank", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc")


def is_api_path(path: str) -> bool:
    """Whether a path is the HTTP API's (OpenAI's routes, probes, metrics, its OpenAPI document and docs pages); the
    console (if mounted) has the rest."""
    return path == "/v1" or path.startswith(API_PREFIXES)


def expected_media_type(method: str, path: str) -> str | None:
    """The media type a request body must have on this route; None where any body is read as raw."""
    if method != "POST" or not is_api_path(path):
        return None
    return "multipart/form-data" if path == UPLOAD_PATH else "application/json"


def media_type_matches(content_type: str, expected: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    if expected == "application/json":
        return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))
    return media == expected


class RequestGuard:
    """Checks a request before any route sees it, buffers its bounded body, and tags the response."""

    def __init__(self, app: ASGIApp, settings: HttpSettings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get(REQUEST_ID_HEADER, "")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        scope[SCOPE_REQUEST_ID] = request_id
        token = REQUEST_ID.set(request_id)
        start = time.perf_counter()
        status = [0]

        async def tagged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            error, body_receive = await self._check(scope, headers, receive)
            if error is not None:
                await error.response()(scope, receive, tagged_send)
            elif body_receive is not None:
                await self.app(scope, body_receive, tagged_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if status[0]:
                raise  # the response began: all that is left is to drop the connection
            error = OpenAIHTTPError(500, f"internal error (request id {request_id})", code="internal_error")
            await error.response()(scope, receive, tagged_send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            HTTP_REQUESTS.labels(route, scope["method"], str(status[0] or 499)).inc()
            HTTP_LATENCY.labels(route, scope["method"]).observe(time.perf_counter() - start)
            REQUEST_ID.reset(token)

    async def _check(self, scope: Scope, headers: dict[str, str], receive: Receive):
        """(error to answer, receive to pass on); (None, None) when the client left while sending."""
        method, path = scope["method"], scope["path"]
        if not is_api_path(path):  # the console's routes: Gradio bounds its own uploads (max_upload_bytes)
            return None, receive
        limit = self.settings.max_upload_bytes if path == UPLOAD_PATH else self.settings.max_body_bytes
        has_body = headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in headers
        expected = expected_media_type(method, path)
        if has_body and expected and not media_type_matches(headers.get("content-type", ""), expected):
            got = headers.get("content-type") or "none"
            why = f"Content-Type must be {expected}, got {got}"
            return OpenAIHTTPError(415, why, code="unsupported_media_type"), None
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return self._too_large(limit), None
        if not has_body:
            return None, receive
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, None
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                return self._too_large(limit), None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return None, replay

    @staticmethod
    def _too_large(limit: int) -> OpenAIHTTPError:
        return OpenAIHTTPError(413, f"request body larger than {limit} bytes", code="request_too_large")
