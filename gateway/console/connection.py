"""Console: the console's stubs of its own gateway's API, and each browser session's API key (server-side)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import grpc

from forgeway.core.errors import from_rpc_error
from forgeway.v1 import backend_pb2_grpc, datasets_pb2_grpc, jobs_pb2_grpc, models_pb2_grpc

from ..http.upstream import Upstream

SESSION_COOKIE = "forgeway-console-session"
SESSION_SECONDS = 12 * 3600  # a login lasts this long; then the login page asks for the key again


class Console:
    """What every console page calls: the contract's stubs over the gateway's public gRPC port.

    The stubs are the HTTP API's own (its Upstream: one channel to the gateway, opened and closed with the app).
    Page code passes `metadata=console.metadata(request)` on every call, so the gateway authenticates the session's
    API key as it would any client's; the key lives only in this object, never in a page.
    """

    def __init__(self, upstream: Callable[[], Upstream], *, keys_enabled: bool):
        self._upstream = upstream
        self.keys_enabled = keys_enabled
        self._sessions: dict[str, tuple[str, float]] = {}  # session id (HttpOnly cookie) -> (API key, expiry)

    @property
    def backend(self) -> backend_pb2_grpc.BackendServiceStub:
        return self._upstream().backend

    @property
    def jobs(self) -> jobs_pb2_grpc.JobServiceStub:
        return self._upstream().jobs

    @property
    def datasets(self) -> datasets_pb2_grpc.DatasetServiceStub:
        return self._upstream().datasets

    @property
    def models(self) -> models_pb2_grpc.ModelServiceStub:
        return self._upstream().models

    # sessions -------------------------------------------------------------------------------------------------

    def start_session(self, api_key: str) -> str:
        """A new session id holding `api_key` (already checked against the gateway) for SESSION_SECONDS."""
        now = time.monotonic()
        self._sessions = {k: v for k, v in self._sessions.items() if v[1] > now}  # forget expired ones
        session = secrets.token_urlsafe(32)
        self._sessions[session] = (api_key, now + SESSION_SECONDS)
        return session

    def end_session(self, session: str | None) -> None:
        self._sessions.pop(session or "", None)

    def session_of(self, cookies) -> str | None:
        """The session id in a request's cookies, when it is a live one this console started; None otherwise."""
        session = cookies.get(SESSION_COOKIE) if cookies else None
        held = self._sessions.get(session) if session else None
        return session if held is not None and held[1] > time.monotonic() else None

    def metadata(self, request) -> tuple:
        """The `authorization` metadata of the session behind a gr.Request (or a starlette Request); () without keys."""
        if not self.keys_enabled:
            return ()
        http = getattr(request, "request", request)  # gr.Request wraps the starlette request
        cookies = getattr(http, "cookies", None) or getattr(request, "cookies", None)
        session = self.session_of(cookies)
        return self.key_metadata(self._sessions[session][0]) if session else ()

    @staticmethod
    def key_metadata(api_key: str) -> tuple:
        return (("authorization", f"Bearer {api_key}"),)

    # errors ---------------------------------------------------------------------------------------------------

    @staticmethod
    def error_text(error: BaseException) -> str:
        """What a page shows for a failed call: the status's message, then each field violation "field: why"."""
        if isinstance(error, grpc.RpcError):
            remote = from_rpc_error(error)
            violations = remote.field_violations
            if violations:
                return "\n".join(f"{field}: {why}" for field, why in violations)
            return f"{remote.code.name}: {remote.message}" if remote.message else remote.code.name
        return str(error)
