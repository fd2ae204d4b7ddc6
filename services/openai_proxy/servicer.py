"""The BackendService over the proxy: the runtime's adapter, with unary calls unary upstream and deadlines passed on."""

from __future__ import annotations

import contextlib

from forgeway.services.runtime.generation import GenerationRequest, GenerationResult
from forgeway.services.runtime.servicers import BackendServicer, inference_servicers
from forgeway.v1 import generate_pb2


class ProxyBackendServicer(BackendServicer):
    """Generate makes one non-streaming upstream call (exact usage, no SSE); both pass the caller's deadline on."""

    async def Generate(self, request, context) -> generate_pb2.GenerateResponse:
        generation = GenerationRequest.from_proto(request)
        self.engine.admit(generation)
        result = await self.engine.complete(generation, deadline=context.time_remaining())
        return result.to_proto()

    async def GenerateStream(self, request, context):
        generation = GenerationRequest.from_proto(request)
        self.engine.admit(generation)
        # Closed with this handler (the interceptor closes it when the caller leaves): that closes the upstream stream.
        async with contextlib.aclosing(self.engine.generate(generation, deadline=context.time_remaining())) as events:
            async for event in events:
                if isinstance(event, GenerationResult):
                    yield generate_pb2.GenerateStreamResponse(final=event.to_proto())
                else:
                    yield event.to_proto()


def proxy_servicers(engine) -> list[tuple[object, object, str]]:
    """The runtime's servicers, with BackendService replaced by the proxy's."""
    return [
        (add, ProxyBackendServicer(engine, servicer.rpcs) if isinstance(servicer, BackendServicer) else servicer, name)
        for add, servicer, name in inference_servicers(engine)
    ]
