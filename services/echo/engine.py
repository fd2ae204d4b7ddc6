"""An engine that streams its input back word by word: deterministic, model-free, honest about what it lacks."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

from pydantic import Field

from forgeway.server import metrics
from forgeway.core.embeddings import EmbeddingRequest, EmbeddingResult, RerankRequest, RerankResult
from forgeway.core.errors import InvalidArgument
from forgeway.services.runtime.engine import Features, InferenceEngine, LoadInfo, ModelInfo
from forgeway.core.generation import (
    Completion,
    Delta,
    FinishReason,
    GenerationRequest,
    GenerationResult,
    Task,
    apply_stop,
    held_back,
)
from forgeway.server.settings import ServiceSettings

from . import vectors

WORD = re.compile(r"\s*\S+")


class EchoSettings(ServiceSettings):
    """Settings of the echo backend."""

    model_name: str = Field("echo", description="Name the echo model answers to.")
    token_delay: float = Field(0.0, ge=0, le=10, description="Seconds between tokens (simulates decoding).")
    context_length: int = Field(4096, ge=1, description="Largest prompt, in words.")
    embedding_model: str = Field("", description="Name of an embedding model to serve (hashed bags of words, e.g. "
                                                 "echo-embed); empty serves none.")
    rerank_model: str = Field("", description="Name of a rerank model to serve (cosine of bags of words, e.g. "
                                              "echo-rerank); empty serves none.")
    dimensions: int = Field(32, ge=4, le=4096, description="Length of its vectors; halves and quarters are its "
                                                           "Matryoshka lengths.")
    max_input_words: int = Field(512, ge=1, description="Longest embedding or rerank input, in words.")


class EchoEngine(InferenceEngine):
    """Streams the prompt (or the last message) back one word per token: once through, or cycling until max_tokens."""

    kind = "echo"
    retrieval_rpcs = ("Embed", "Rerank")
    Settings = EchoSettings
    settings: EchoSettings

    def __init__(self, settings: EchoSettings):
        super().__init__(settings)
        self.in_flight = 0

    async def start(self) -> None:
        pass

    def models(self) -> list[ModelInfo]:
        s = self.settings
        models = [ModelInfo(name=s.model_name, context_length=s.context_length, chat=True, source="echo")]
        if s.embedding_model:
            models.append(ModelInfo(name=s.embedding_model, task=Task.EMBEDDING, context_length=s.max_input_words,
                                    source="echo", dimensions=s.dimensions,
                                    matryoshka=[s.dimensions // 4, s.dimensions // 2], pooling="sum"))
        if s.rerank_model:
            models.append(ModelInfo(name=s.rerank_model, task=Task.RERANK, context_length=s.max_input_words,
                                    source="echo"))
        return models

    async def embed(self, request: EmbeddingRequest, model: ModelInfo) -> EmbeddingResult:
        embeddings = vectors.embed(request, self.settings.dimensions, self.settings.max_input_words)
        return EmbeddingResult(request.model, embeddings, served_by=f"{self.kind}/{self.settings.instance_id}")

    async def rerank(self, request: RerankRequest, model: ModelInfo) -> RerankResult:
        scores, tokens = vectors.scores(request, self.settings.dimensions, self.settings.max_input_words)
        return RerankResult(request.model, scores, tokens, served_by=f"{self.kind}/{self.settings.instance_id}",
                            request=request)

    def features(self) -> Features:
        return Features(stop=True, seed=True, multiple_choices=True)

    def load(self) -> LoadInfo:
        return LoadInfo(in_flight=self.in_flight)

    async def generate(self, request: GenerationRequest, model: ModelInfo) -> AsyncIterator[Delta | GenerationResult]:
        start = time.perf_counter()
        text = request.prompt if request.prompt is not None else request.messages[-1].content
        words = WORD.findall(text) or [" "]
        if len(words) > self.settings.context_length:
            raise InvalidArgument("prompt", f"{len(words)} words exceed the context length {self.settings.context_length}")
        limit = request.sampling.max_tokens or len(words)
        stops = request.sampling.stop
        texts = [""] * request.n
        sent = [0] * request.n
        reasons: list[FinishReason | None] = [None] * request.n
        counted = [0] * request.n
        first_token = 0.0
        tokens = metrics.TOKENS.labels(self.kind, request.model, "completion")
        self.in_flight += 1
        try:
            for step in range(limit):
                if self.settings.token_delay:
                    await asyncio.sleep(self.settings.token_delay)
                else:
                    await asyncio.sleep(0)
                first_token = first_token or time.perf_counter()
                for i in range(request.n):
                    if reasons[i]:
                        continue
                    texts[i] += words[step % len(words)]
                    counted[i] += 1
                    tokens.inc()
                    cut, stopped = apply_stop(texts[i], stops)
                    if stopped:
                        texts[i], reasons[i] = cut, FinishReason.STOP_SEQUENCE
                    end = len(texts[i]) if reasons[i] else len(texts[i]) - held_back(texts[i], stops)
                    if end > sent[i]:
                        yield Delta(i, texts[i][sent[i]:end])
                        sent[i] = end
                if all(reasons):
                    break
        finally:
            self.in_flight -= 1
        default = FinishReason.LENGTH if request.sampling.max_tokens else FinishReason.STOP
        for i in range(request.n):
            if sent[i] < len(texts[i]):
                yield Delta(i, texts[i][sent[i]:])
        done = time.perf_counter()
        yield GenerationResult(
            model=request.model,
            choices=[Completion(i, texts[i], reasons[i] or default, completion_tokens=counted[i]) for i in range(request.n)],
            prompt_tokens=len(words),
            time_to_first_token_ms=(first_token - start) * 1000 if first_token else 0.0,
            total_ms=(done - start) * 1000,
            served_by=f"{self.kind}/{self.settings.instance_id}",
        )
