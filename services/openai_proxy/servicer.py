"""The BackendService over the proxy: the runtime's adapter, with unary calls unary upstream and deadlines passed on."""

from __future__ import annotations

import contextlib

from forgeway.core.embeddings import EmbeddingRequest, RerankRequest
from forgeway.core.generation import GenerationRequest, GenerationResult
from forgeway.services.runtime.service import InferenceService
from forgeway.services.runtime.servicers import BackendServicer, inference_servicers
from forgeway.v1 import generate_pb2

from .engine import OpenAIProxyEngine


class ProxyBackendServicer(BackendServicer):
    """Generate makes one non-streaming upstream call (exact usage, no SSE); every call passes the caller's deadline
    on."""

    async def Generate(self, request, context) -> generate_pb2.GenerateResponse:
        generation = GenerationRequest.from_proto(request)
        model = self.engine.admit(generation)
        result = await self.engine.complete(generation, model, deadline=context.time_remaining())
        return result.to_proto()

    async def GenerateStream(self, request, context):
        generation = GenerationRequest.from_proto(request)
        model = self.engine.admit(generation)
        # Closed with this handler (the interceptor closes it when the caller leaves): that closes the upstream stream.
        async with contextlib.aclosing(self.engine.generate(generation, model, deadline=context.time_remaining())) as events:
            async for event in events:
                if isinstance(event, GenerationResult):
                    yield generate_pb2.GenerateStreamResponse(final=event.to_proto())
                else:
                    yield event.to_proto()

    async def Embed(self, request, context):
        self._serves("Embed")
        embedding = EmbeddingRequest.from_proto(request)
        model = self.engine.admit(embedding)
        return (await self.engine.embed(embedding, model, deadline=context.time_remaining())).to_proto()

    async def Rerank(self, request, context):
        self._serves("Rerank")
        rerank = RerankRequest.from_proto(request)
        model = self.engine.admit(rerank)
        return (await self.engine.rerank(rerank, model, deadline=context.time_remaining())).to_proto()


class OpenAIProxyService(InferenceService):
    """`forgeway serve openai`: the runtime's servicers, with BackendService replaced by the proxy's."""

    Engine = OpenAIProxyEngine

    def servicers(self) -> list[tuple[object, object, str]]:
        return [
            (add, ProxyBackendServicer(self.engine, s.rpcs) if isinstance(s, BackendServicer) else s, name)
            for add, s, name in inference_servicers(self.engine)
        ]
