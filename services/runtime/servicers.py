"""Thin gRPC adapters over an inference engine: proto -> domain -> engine -> proto."""

from __future__ import annotations


from forgeway.v1 import backend_pb2_grpc, generate_pb2, models_pb2, models_pb2_grpc
from forgeway.core.embeddings import EmbeddingRequest, RerankRequest

from forgeway.core.capabilities import model_to_proto
from forgeway.core.enums import QUANTIZATION

from .capabilities import engine_capabilities
from .engine import InferenceEngine
from forgeway.core.errors import InvalidArgument, Unimplemented
from forgeway.core.generation import GenerationRequest, GenerationResult, Task


class BackendServicer(backend_pb2_grpc.BackendServiceServicer):
    """forgeway.v1.BackendService over an InferenceEngine."""

    def __init__(self, engine: InferenceEngine, rpcs: list[str]):
        self.engine = engine
        self.rpcs = rpcs

    async def Capabilities(self, request, context):
        return engine_capabilities(self.engine, self.rpcs)

    async def Generate(self, request, context) -> generate_pb2.GenerateResponse:
        generation = GenerationRequest.from_proto(request)
        model = self.engine.admit(generation)
        return (await self.engine.complete(generation, model)).to_proto()

    async def GenerateStream(self, request, context):
        generation = GenerationRequest.from_proto(request)
        model = self.engine.admit(generation)
        async for event in self.engine.generate(generation, model):
            if isinstance(event, GenerationResult):
                yield generate_pb2.GenerateStreamResponse(final=event.to_proto())
            else:
                yield event.to_proto()

    def _serves(self, rpc: str) -> None:
        if rpc not in self.engine.retrieval_rpcs:
            what = "embed" if rpc == "Embed" else "rerank"
            raise Unimplemented(f"the {self.engine.kind} backend does not {what}")

    async def Embed(self, request, context):
        self._serves("Embed")
        embedding = EmbeddingRequest.from_proto(request)
        model = self.engine.admit(embedding)
        return (await self.engine.embed(embedding, model)).to_proto()

    async def Rerank(self, request, context):
        self._serves("Rerank")
        rerank = RerankRequest.from_proto(request)
        model = self.engine.admit(rerank)
        return (await self.engine.rerank(rerank, model)).to_proto()

    async def Train(self, request, context):
        raise Unimplemented(f"the {self.engine.kind} backend does not train; use a trainer (trl, unsloth)")
        yield  # an async generator, as the streaming RPC expects

    async def CreateJob(self, request, context):
        raise Unimplemented(f"the {self.engine.kind} backend does not train; use a trainer (trl, unsloth)")


class ModelServicer(models_pb2_grpc.ModelServiceServicer):
    """forgeway.v1.ModelService over an InferenceEngine."""

    def __init__(self, engine: InferenceEngine):
        self.engine = engine

    async def ListModels(self, request, context):
        return models_pb2.ListModelsResponse(models=[model_to_proto(m, self.engine.kind) for m in self.engine.models()])

    async def LoadModel(self, request, context):
        if not request.name:
            raise InvalidArgument("name", "required")
        model = await self.engine.load_model(
            request.name,
            request.source,
            Task.from_proto(request.task),
            QUANTIZATION.name(request.quantization) or "none",
            request.base_model,
            dict(request.options),
        )
        return models_pb2.LoadModelResponse(model=model_to_proto(model, self.engine.kind))

    async def UnloadModel(self, request, context):
        if not request.name:
            raise InvalidArgument("name", "required")
        await self.engine.unload_model(request.name)
        return models_pb2.UnloadModelResponse()


def inference_servicers(engine: InferenceEngine) -> list[tuple[object, object, str]]:
    """(add_to_server function, servicer, full service name) for an inference engine."""
    backend_rpcs = [f"forgeway.v1.BackendService/{m}"
                    for m in ("Capabilities", "Generate", "GenerateStream", *engine.retrieval_rpcs)]
    model_rpcs = [f"forgeway.v1.ModelService/{m}" for m in ("ListModels", "LoadModel", "UnloadModel")]
    return [
        (backend_pb2_grpc.add_BackendServiceServicer_to_server, BackendServicer(engine, backend_rpcs + model_rpcs),
         "forgeway.v1.BackendService"),
        (models_pb2_grpc.add_ModelServiceServicer_to_server, ModelServicer(engine), "forgeway.v1.ModelService"),
    ]


