"""POST /v1/chat/completions and POST /v1/completions, whole or streamed as server-sent events."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator

import grpc
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from . import convert, task_inputs
from .errors import ParamOf, from_grpc
from .responses import ChatCompletion, ChatCompletionChunk, TextCompletion, documented
from .schemas import ChatCompletionRequest, CompletionRequest
from .sse import DONE, HEADERS, GenerationStream, event
from .upstream import Upstream, answers, call_metadata, upstream

log = logging.getLogger("forgeway.http")
router = APIRouter(tags=["generation"])


@router.post("/v1/chat/completions", response_model=None,
             responses=documented(ChatCompletion, stream=ChatCompletionChunk))
async def chat_completions(body: ChatCompletionRequest, request: Request,
                           target: Upstream = Depends(upstream)) -> JSONResponse | StreamingResponse:
    """Chat completion over the model's chat template; `stream: true` answers server-sent chunks."""
    param_of = convert.param_mapper(body)
    proto = convert.chat_request(body)
    task_inputs.chat_input(proto, body, await task_inputs.model_task(body.model, request, target))
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    metadata, timeout = call_metadata(request), target.settings.generation_timeout_seconds
    if body.stream:
        stream = await GenerationStream.open(target.backend, [proto], metadata, timeout, param_of)
        return StreamingResponse(chat_events(stream, body, param_of, completion_id, created),
                                 media_type="text/event-stream", headers=HEADERS)
    call = target.backend.Generate(proto, metadata=metadata, timeout=timeout)
    (response,) = await answers(request, [call], param_of)
    return JSONResponse(convert.chat_completion(response, completion_id, created))


@router.post("/v1/completions", response_model=None, responses=documented(TextCompletion, stream=TextCompletion))
async def completions(body: CompletionRequest, request: Request,
                      target: Upstream = Depends(upstream)) -> JSONResponse | StreamingResponse:
    """Text completion of a prompt (or of each prompt in a list); `stream: true` answers server-sent events."""
    param_of = convert.param_mapper(body)
    protos = convert.completion_requests(body)
    task = await task_inputs.model_task(body.model, request, target)
    for proto in protos:
        task_inputs.completion_input(proto, body.model, task)
    completion_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    metadata, timeout = call_metadata(request), target.settings.generation_timeout_seconds
    if body.stream:
        stream = await GenerationStream.open(target.backend, protos, metadata, timeout, param_of)
        return StreamingResponse(completion_events(stream, body, param_of, completion_id, created),
                                 media_type="text/event-stream", headers=HEADERS)
    calls = [target.backend.Generate(p, metadata=metadata, timeout=timeout) for p in protos]
    responses = await answers(request, calls, param_of)
    return JSONResponse(convert.text_completion(responses, body.n or 1, completion_id, created))


async def chat_events(stream: GenerationStream, body: ChatCompletionRequest, param_of: ParamOf,
                      completion_id: str, created: int) -> AsyncIterator[bytes]:
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    head = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": body.model,
            "system_fingerprint": None}

    def chunk(index: int, delta: dict, finish_reason: int | None = None, logprobs=None, extra=None) -> bytes:
        reasons = convert.finish_reasons(finish_reason) if finish_reason is not None else {"finish_reason": None}
        choice = {"index": index, "delta": delta, "logprobs": logprobs, **reasons, **(extra or {})}
        return event({**head, "choices": [choice], **({"usage": None} if include_usage else {})})

    sent = convert.StreamedChat()
    try:
        for index in range(body.n or 1):
            yield chunk(index, {"role": "assistant", "content": ""})
        async for _, message in stream.messages():
            if message.HasField("delta"):
                delta = message.delta
                yield chunk(delta.index, sent.add(delta), logprobs=convert.chat_logprobs(delta.logprobs))
                continue
            final = message.final
            head["system_fingerprint"] = final.served_by or None
            for choice in final.choices:
                yield chunk(choice.index, sent.rest(choice), choice.finish_reason,
                            extra=task_inputs.answer_field(choice))
            if include_usage:
                usage = convert.usage(final.usage.prompt_tokens, final.usage.completion_tokens)
                yield event({**head, "choices": [], "usage": usage})
        yield DONE
    except grpc.RpcError as error:
        log.info("stream failed after it began: %s", error.code().name)
        yield event(from_grpc(error, param_of).body())
        yield DONE
    finally:
        stream.cancel()


async def completion_events(stream: GenerationStream, body: CompletionRequest, param_of: ParamOf,
                            completion_id: str, created: int) -> AsyncIterator[bytes]:
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    n = body.n or 1
    head = {"id": completion_id, "object": "text_completion", "created": created, "model": body.model,
            "system_fingerprint": None}

    def chunk(index: int, text: str, finish_reason: int | None = None, logprobs=None) -> bytes:
        reasons = convert.finish_reasons(finish_reason) if finish_reason is not None else {"finish_reason": None}
        choice = {"index": index, "text": text, "logprobs": logprobs, **reasons}
        return event({**head, "choices": [choice], **({"usage": None} if include_usage else {})})

    sent: dict[int, str] = {}
    finals = []
    try:
        async for prompt, message in stream.messages():
            if message.HasField("delta"):
                index = prompt * n + message.delta.index
                before = sent.get(index, "")
                sent[index] = before + message.delta.text
                yield chunk(index, message.delta.text,
                            logprobs=convert.completion_logprobs(message.delta.logprobs, len(before)))
                continue
            finals.append(message.final)
            head["system_fingerprint"] = message.final.served_by or None
            for choice in message.final.choices:
                index = prompt * n + choice.index
                yield chunk(index, convert.unsent(choice.text, sent.get(index, "")), choice.finish_reason)
        if include_usage and finals:
            yield event({**head, "choices": [], "usage": convert.sum_usage(finals)})
        yield DONE
    except grpc.RpcError as error:
        log.info("stream failed after it began: %s", error.code().name)
        yield event(from_grpc(error, param_of).body())
        yield DONE
    finally:
        stream.cancel()
