"""Forwarding: one call tried on each route in turn until one answers; retries only before the first streamed chunk."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc

from forgeway.core.errors import DeadlineExceeded, ForgewayError, RemoteError, Unavailable, from_rpc_error
from forgeway.server.interceptor import REQUEST_ID_KEY
from forgeway.server.logs import REQUEST_ID

from . import metrics
from .endpoint import Endpoint
from .router import Route

log = logging.getLogger("forgeway.gateway.forward")

# Answered before any output: safe to try the next endpoint.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
# What counts against an endpoint's breaker; other codes mean it answered (the request was wrong, or it was busy).
FAILURES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
                      grpc.StatusCode.DATA_LOSS})

Invoke = Callable[[Route, float | None, tuple], Any]


def remaining(context: grpc.aio.ServicerContext | None) -> float | None:
    """Seconds left of the caller's deadline (None: no deadline). Raises DeadlineExceeded when it has passed."""
    left = context.time_remaining() if context is not None else None
    if left is not None and left <= 0.001:
        raise DeadlineExceeded("the caller's deadline passed in the gateway")
    return left


def call_metadata(extra: Sequence[tuple[str, str]] = ()) -> tuple:
    request_id = REQUEST_ID.get()
    return ((REQUEST_ID_KEY, request_id), *extra) if request_id else tuple(extra)


def cancel_with(context, call) -> None:
    """End the backend call when the caller's RPC ends, however it ends: a caller that goes away while the server
    is writing leaves the handler suspended rather than cancelled, so the handler cannot be relied on to do it."""
    if context is not None and hasattr(context, "add_done_callback"):
        context.add_done_callback(lambda _: call.cancel())


def translate(error: grpc.aio.AioRpcError, endpoint: Endpoint, started: bool = False) -> ForgewayError:
    """A backend's error status as a typed error the interceptor passes on with its code and details."""
    code = error.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"deadline exceeded waiting for {endpoint.key}")
    remote = from_rpc_error(error)
    if started:
        remote.message = f"{endpoint.key} failed after the stream started: {code.name}: {remote.message}"
    elif code in FAILURES:
        remote.message = f"{endpoint.key}: {remote.message}"
    remote.args = (remote.message,)
    return remote


def _exhausted(attempts: list[tuple[Endpoint, grpc.aio.AioRpcError]], skipped: list[str]) -> ForgewayError:
    if not attempts:
        return Unavailable(f"no endpoint could take the call ({'; '.join(skipped) or 'none left'})", retry_after=1.0)
    last_endpoint, last = attempts[-1]
    remote = translate(last, last_endpoint)
    tried = "; ".join(f"{e.key}: {err.code().name} {err.details()}" for e, err in attempts)
    remote.message = f"all {len(attempts)} attempts failed ({tried})"
    remote.args = (remote.message,)
    return remote


class Attempt:
    """The bookkeeping of one call to one endpoint: breaker permission, in-flight count, outcome and metrics."""

    def __init__(self, route: Route, method: str):
        self.route, self.endpoint, self.method = route, route.endpoint, method
        self.settled = False

    def begin(self) -> bool:
        if not self.endpoint.breaker.acquire():
            return False
        self.endpoint.started_call()
        return True

    def end(self, code: grpc.StatusCode | None) -> None:
        """code None: the caller went away; neither a success nor a failure of the endpoint."""
        if self.settled:
            return
        self.settled = True
        self.endpoint.ended_call()
        breaker = self.endpoint.breaker
        if code is None or code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                     grpc.StatusCode.DEADLINE_EXCEEDED):
            breaker.release()
        elif code in FAILURES:
            breaker.record_failure()
        else:
            breaker.record_success()
        label = "CANCELLED" if code is None else code.name
        metrics.REQUESTS.labels(self.endpoint.key, self.route.model, self.method, label).inc()


class Forwarder:
    """Sends calls along a plan of routes, at most `max_attempts` of them, within the caller's deadline."""

    def __init__(self, max_attempts: int):
        self.max_attempts = max_attempts

    async def unary(self, routes: list[Route], invoke: Invoke, context, method: str,
                    extra_metadata: Sequence[tuple[str, str]] = ()) -> tuple[Any, Route, float]:
        """Returns (response, route that answered, seconds spent waiting on the backend)."""
        attempts: list[tuple[Endpoint, grpc.aio.AioRpcError]] = []
        skipped: list[str] = []
        metadata = call_metadata(extra_metadata)
        waited = 0.0
        for route, attempt, timeout in self._tries(routes, method, context, attempts, skipped):
            start = time.perf_counter()
            call = invoke(route, timeout, metadata)
            try:
                response = await call
            except grpc.aio.AioRpcError as error:
                waited += time.perf_counter() - start
                if self._retry(error, route, attempt, attempts, method, started=False):
                    continue
                raise translate(error, route.endpoint) from None
            except BaseException:  # cancelled by the caller: cancel the backend call too
                call.cancel()
                attempt.end(None)
                raise
            waited += time.perf_counter() - start
            attempt.end(grpc.StatusCode.OK)
            return response, route, waited
        raise _exhausted(attempts, skipped)

    def _tries(self, routes: list[Route], method: str, context, attempts: list, skipped: list[str]):
        """Each route in turn that its breaker lets through, begun as an Attempt with the caller's remaining
        time, until max_attempts calls have failed over."""
        for route in routes:
            if len(attempts) >= self.max_attempts:
                return
            timeout = remaining(context)
            attempt = Attempt(route, method)
            if not attempt.begin():
                skipped.append(f"{route.endpoint.key}: {route.endpoint.breaker.why_not()}")
                continue
            yield route, attempt, timeout

    @staticmethod
    def _retry(error: grpc.aio.AioRpcError, route: Route, attempt: Attempt, attempts: list, method: str,
               started: bool) -> bool:
        """Record a failed attempt; True when the call moves on to the next route (a retryable failure before any
        message reached the caller)."""
        attempt.end(error.code())
        if started or error.code() not in RETRYABLE:
            return False
        attempts.append((route.endpoint, error))
        metrics.RETRIES.labels(error.code().name).inc()
        log.info("%s on %s: %s %s; trying the next endpoint", method, route.endpoint.key,
                 error.code().name, error.details())
        return True

    async def stream(self, routes: list[Route], invoke: Invoke, context, method: str, on_first: Callable | None = None,
                     extra_metadata: Sequence[tuple[str, str]] = ()) -> AsyncIterator[tuple[Any, Route]]:
        """Yields (message, route); on_first(route, seconds the backend took) runs at the first message.

        Before the first message a retryable failure moves on to the next route; after it, any failure is raised
        as a typed error naming the endpoint."""
        attempts: list[tuple[Endpoint, grpc.aio.AioRpcError]] = []
        skipped: list[str] = []
        metadata = call_metadata(extra_metadata)
        for route, attempt, timeout in self._tries(routes, method, context, attempts, skipped):
            begun = time.perf_counter()
            call = invoke(route, timeout, metadata)
            cancel_with(context, call)
            started = False
            try:
                async for message in call:
                    if not started:
                        started = True
                        if on_first is not None:
                            on_first(route, time.perf_counter() - begun)
                    yield message, route
            except grpc.aio.AioRpcError as error:
                if self._retry(error, route, attempt, attempts, method, started):
                    continue
                raise translate(error, route.endpoint, started) from None
            except BaseException:  # the caller cancelled or stopped reading
                call.cancel()
                attempt.end(None)
                raise
            attempt.end(grpc.StatusCode.OK)
            return
        raise _exhausted(attempts, skipped)


def is_remote(error: BaseException, code: grpc.StatusCode) -> bool:
    return isinstance(error, RemoteError) and error.code == code
