"""The one interceptor at the edge: request ids, metrics, and the error table applied to every RPC."""

from __future__ import annotations

import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from grpc_status import rpc_status

from . import metrics
from forgeway.core.errors import ForgewayError, Internal, Unavailable
from .logs import REQUEST_ID

log = logging.getLogger("forgeway.rpc")

REQUEST_ID_KEY = "x-request-id"


def request_id_of(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and value:
            return str(value)[:128]
    return uuid.uuid4().hex


class _Call:
    """Bookkeeping of one RPC: request id, timing, metrics and error mapping."""

    def __init__(self, interceptor: RuntimeInterceptor, method: str, context: grpc.aio.ServicerContext):
        self.interceptor, self.method, self.context = interceptor, method, context
        self.service = interceptor.service
        self.request_id = request_id_of(context)
        self.code = grpc.StatusCode.OK
        self.start = time.perf_counter()

    def __enter__(self) -> _Call:
        REQUEST_ID.set(self.request_id)  # each RPC runs in its own task and context: no reset needed
        self.interceptor.active += 1
        metrics.IN_FLIGHT.labels(self.service, self.method).inc()
        return self

    def __exit__(self, *exc) -> None:
        self.interceptor.active -= 1
        metrics.IN_FLIGHT.labels(self.service, self.method).dec()
        metrics.REQUESTS.labels(self.service, self.method, self.code.name).inc()
        metrics.LATENCY.labels(self.service, self.method).observe(time.perf_counter() - self.start)

    async def fail(self, exc: BaseException) -> None:
        """Map an exception to a status and abort the call with it. Always raises."""
        if isinstance(exc, grpc.aio.AbortError):  # the handler aborted itself; keep its status
            self.code = self.context.code() or grpc.StatusCode.UNKNOWN
            raise exc
        if not isinstance(exc, Exception):  # cancellation, generator close, interpreter exit
            self.code = grpc.StatusCode.CANCELLED
            raise exc
        if not isinstance(exc, ForgewayError):
            log.error("unhandled error in %s", self.method, exc_info=exc)
            exc = Internal(f"internal error (request id {self.request_id})")
        else:
            log.info("%s failed: %s %s", self.method, exc.code.name, exc.message)
        self.code = exc.code
        await self.context.abort_with_status(rpc_status.to_status(exc.to_status()))


class RuntimeInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler: sets the request id, counts and times the call, maps raised errors by the table."""

    def __init__(self, service: str):
        self.service = service
        self.active = 0  # calls being served (health and reflection aside): what a graceful drain waits for
        self.draining = False  # set by drain(): new calls are refused with UNAVAILABLE

    def refuse_if_draining(self) -> None:
        if self.draining:
            raise Unavailable("server is shutting down", retry_after=0.5)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(("/grpc.health", "/grpc.reflection")):
            return handler
        method = details.method.rsplit("/", 1)[-1]
        interceptor = self
        if handler.unary_unary or handler.stream_unary:
            inner = handler.unary_unary or handler.stream_unary

            async def unary(request, context):
                with _Call(interceptor, method, context) as call:
                    try:
                        interceptor.refuse_if_draining()
                        return await inner(request, context)
                    except BaseException as exc:
                        await call.fail(exc)

            factory = grpc.unary_unary_rpc_method_handler if handler.unary_unary else grpc.stream_unary_rpc_method_handler
            return factory(unary, handler.request_deserializer, handler.response_serializer)

        inner_stream = handler.unary_stream or handler.stream_stream

        async def streaming(request, context) -> AsyncIterator:
            with _Call(interceptor, method, context) as call:
                try:
                    interceptor.refuse_if_draining()
                    result = inner_stream(request, context)
                    if inspect.isasyncgen(result):
                        try:
                            async for item in result:
                                yield item
                        finally:  # a caller that left closes the handler now, so backends stop generating
                            await result.aclose()
                    else:
                        await result
                except BaseException as exc:
                    await call.fail(exc)

        factory = grpc.unary_stream_rpc_method_handler if handler.unary_stream else grpc.stream_stream_rpc_method_handler
        return factory(streaming, handler.request_deserializer, handler.response_serializer)
