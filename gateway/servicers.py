"""forgeway.v1.BackendService at the gateway: authenticate, validate, admit, route, forward, post-process."""

from __future__ import annotations

import contextlib
import time

from forgeway.core.embeddings import EmbeddingRequest, RerankRequest
from forgeway.core.generation import GenerationRequest
from forgeway.v1 import backend_pb2_grpc, generate_pb2

from . import metrics
from .auth import Principal
from .plugins import Pipeline
from .relay import coalesce, read_ahead
from .router import EMBED, GENERATE, GENERATE_STREAM, RERANK, Route
from .state import GatewayState
from .status import aggregate
from .training import TrainingDispatch


def _for_route(request, route: Route):
    """The request under the model name the route serves it by (an alias or group member resolved)."""
    if route.model == request.model:
        return request
    copy = type(request)()
    copy.CopyFrom(request)
    copy.model = route.model
    return copy


def _count_tokens(route: Route, usage: generate_pb2.Usage) -> None:
    metrics.TOKENS.labels(route.endpoint.key, route.model, "prompt").inc(usage.prompt_tokens)
    metrics.TOKENS.labels(route.endpoint.key, route.model, "completion").inc(usage.completion_tokens)


class GatewayBackend(backend_pb2_grpc.BackendServiceServicer):
    """Every BackendService RPC, served by forwarding to the endpoints behind the gateway."""

    def __init__(self, state: GatewayState):
        self.state = state
        self.training = TrainingDispatch(state)

    async def Capabilities(self, request, context):
        state = self.state
        if not state.settings.public_capabilities:
            state.keys.authenticate(context.invocation_metadata())
        return aggregate(list(state.pool), state.settings)

    async def _prepare(self, request: generate_pb2.GenerateRequest, context, rpc: str):
        """Auth, validation, admission, plugins and routing; nothing reaches a backend until all pass."""
        state = self.state
        principal: Principal = state.keys.authenticate(context.invocation_metadata())
        generation = GenerationRequest.from_proto(request)
        resolved = state.settings.resolve_alias(request.model)
        principal.check_model(request.model, resolved)
        ticket = state.admission.admit(principal)
        try:
            pipeline: Pipeline = state.plugins.for_model(request.model, resolved)
            if pipeline.pre:
                request = pipeline.preprocess(request)
                generation = GenerationRequest.from_proto(request)
            routes = await state.router.plan_fresh(generation, rpc)
        except BaseException:
            ticket.done()
            raise
        return request, pipeline, routes, ticket

    async def Generate(self, request, context):
        start = time.perf_counter()
        request, pipeline, routes, ticket = await self._prepare(request, context, GENERATE)
        tokens = 0
        try:
            response, route, waited = await self.state.forwarder.unary(
                routes, lambda r, t, m: r.endpoint.backend.Generate(_for_route(request, r), timeout=t, metadata=m),
                context, "Generate",
            )
            if pipeline.post:
                for choice in response.choices:
                    choice.text = pipeline.postprocess(choice.text)
            tokens = response.usage.total_tokens
            _count_tokens(route, response.usage)
            metrics.ADDED_LATENCY.labels("Generate").observe(max(time.perf_counter() - start - waited, 0.0))
            return response
        finally:
            ticket.done(tokens)

    async def GenerateStream(self, request, context):
        start = time.perf_counter()
        request, pipeline, routes, ticket = await self._prepare(request, context, GENERATE_STREAM)
        output = _StreamOutput(pipeline)

        def first_chunk(route: Route, backend_seconds: float) -> None:
            elapsed = time.perf_counter() - start
            metrics.TIME_TO_FIRST_TOKEN.labels(route.model).observe(elapsed)
            metrics.ADDED_LATENCY.labels("GenerateStream").observe(max(elapsed - backend_seconds, 0.0))

        source = self.state.forwarder.stream(
            routes, lambda r, t, m: r.endpoint.backend.GenerateStream(_for_route(request, r), timeout=t, metadata=m),
            context, "GenerateStream", on_first=first_chunk,
        )
        try:
            interval = self.state.settings.stream_interval_ms / 1000
            async with contextlib.aclosing(read_ahead(source, interval=interval)) as batches:
                async for batch in batches:
                    route = batch[-1][1]
                    for message in coalesce([message for message, _ in batch]):
                        for out in output.process(message, route):
                            yield out
        finally:
            ticket.done(output.tokens)

    async def Embed(self, request, context):
        return await self._retrieve(request, context, EmbeddingRequest.from_proto(request), EMBED)

    async def Rerank(self, request, context):
        return await self._retrieve(request, context, RerankRequest.from_proto(request), RERANK)

    async def _retrieve(self, request, context, parsed: EmbeddingRequest | RerankRequest, rpc: str):
        """Embed and Rerank: auth, validation, admission and routing as for generation (no plugins: they rewrite
        text), forwarded unary with retries on the next endpoint; prompt tokens count against the caller's quota."""
        state = self.state
        start = time.perf_counter()
        principal: Principal = state.keys.authenticate(context.invocation_metadata())
        principal.check_model(request.model, state.settings.resolve_alias(request.model))
        ticket = state.admission.admit(principal)
        tokens = 0
        method = rpc.rsplit("/", 1)[1]
        try:
            routes = await state.router.plan_fresh(parsed, rpc)
            response, route, waited = await state.forwarder.unary(
                routes, lambda r, t, m: getattr(r.endpoint.backend, method)(_for_route(request, r), timeout=t,
                                                                            metadata=m),
                context, method,
            )
            tokens = response.usage.total_tokens
            metrics.TOKENS.labels(route.endpoint.key, route.model, "prompt").inc(tokens)
            metrics.ADDED_LATENCY.labels(method).observe(max(time.perf_counter() - start - waited, 0.0))
            return response
        finally:
            ticket.done(tokens)

    async def Train(self, request, context):
        async for message in self.training.stream(self._trainer(context), request, context):
            yield message

    async def CreateJob(self, request, context):
        return await self.training.create(self._trainer(context), request.train, context,
                                          validate_only=request.validate_only)

    def _trainer(self, context) -> Principal:
        """The caller, if it may train."""
        principal = self.state.keys.authenticate(context.invocation_metadata())
        principal.check_train("train")
        return principal


class _StreamOutput:
    """Post-processing of one stream: deltas through each choice's plugin stream, the held-back rest before the
    final message, whose texts are post-processed whole. Plugins rewrite text only: tool calls and reasoning pass
    as the backend sent them."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.streams: dict = {}
        self.tokens = 0

    def process(self, message: generate_pb2.GenerateStreamResponse, route: Route) -> list:
        pipeline = self.pipeline
        if message.HasField("final"):
            self.tokens = message.final.usage.total_tokens
            _count_tokens(route, message.final.usage)
            if not pipeline.post:
                return [message]
            out = [generate_pb2.GenerateStreamResponse(delta=generate_pb2.GenerateDelta(index=index, text=rest))
                   for index, stream in sorted(self.streams.items()) if (rest := stream.flush())]
            for choice in message.final.choices:
                choice.text = pipeline.postprocess(choice.text)
            return [*out, message]
        if not pipeline.post:
            return [message]
        delta = message.delta
        stream = self.streams.get(delta.index) or self.streams.setdefault(delta.index, pipeline.stream())
        delta.text = stream.feed(delta.text)
        # text held back by a plugin leaves the rest of the delta (logprobs, tool-call pieces, reasoning) to go now
        return [message] if delta.text or delta.logprobs or delta.tool_calls or delta.reasoning else []
