"""The playground's calls: GenerateRequests from the forms' values, the stream read into a growing text, and the
line of numbers each reply ends with (tokens, tokens/s, time to first token, finish reason, who served it)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

import grpc

from forgeway.core.enums import FINISH_REASON
from forgeway.core.errors import ForgewayError, InvalidArgument
from forgeway.core.generation import Sampling
from forgeway.v1 import generate_pb2

from .connection import Console

NO_ADAPTER = "(base model)"
UINT_FIELDS = ("top_k", "max_tokens", "seed")


def sampling(temperature: float | None, top_p: float | None, top_k: float | None, max_tokens: float | None,
             seed: str | None) -> generate_pb2.SamplingParams:
    """The form's sampling settings, checked with the services' own rules (Sampling.validate) before any call; an
    empty field, top k 0 and an empty seed are left unset, so the backend's default applies."""
    seed = (seed or "").strip()
    values = {"temperature": temperature, "top_p": top_p, "top_k": top_k or None, "max_tokens": max_tokens,
              "seed": int(seed) if seed.isdigit() else seed or None}
    for name in UINT_FIELDS:
        value = values[name]
        if value is not None and (not isinstance(value, int | float) or value < 0 or value != int(value)):
            raise InvalidArgument(f"sampling.{name}", "must be a whole number, 0 or more")
        values[name] = None if value is None else int(value)
    Sampling(**values).validate()
    return generate_pb2.SamplingParams(**{name: value for name, value in values.items() if value is not None})


def _common(model: str | None, adapter: str | None, values: Sequence | None) -> dict:
    if not model:
        raise InvalidArgument("model", "pick a model")
    common = {"model": model, "adapter": "" if adapter in (None, NO_ADAPTER) else adapter}
    return common if values is None else {**common, "sampling": sampling(*values)}


def chat_request(model: str | None, adapter: str | None, system: str, turns: list[dict],
                 values: Sequence) -> generate_pb2.GenerateRequest:
    """A chat request: the system prompt (when given), then the conversation as the chatbot holds it."""
    if not turns or not _text(turns[-1]["content"]).strip():
        raise InvalidArgument("message", "type a message")
    messages = [generate_pb2.Message(role="system", content=system.strip())] if system and system.strip() else []
    messages += [generate_pb2.Message(role=turn["role"], content=_text(turn["content"])) for turn in turns]
    return generate_pb2.GenerateRequest(messages=messages, **_common(model, adapter, values))


def task_request(model: str | None, adapter: str | None, values: Sequence | None,
                 **task_input) -> generate_pb2.GenerateRequest:
    """A summarization (summarize=SummarizeInput) or extractive-QA (question_answer=QuestionAnswerInput) request;
    `values` None sends no sampling (extractive QA has none)."""
    return generate_pb2.GenerateRequest(**task_input, **_common(model, adapter, values))


def _text(content) -> str:
    """A chatbot message's text: Gradio hands it back as a list of {"type": "text", "text": ...} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or "")
    return "".join(part.get("text") or "" for part in content if isinstance(part, dict))


async def stream(console: Console, request: generate_pb2.GenerateRequest,
                 session) -> AsyncIterator[tuple[str, str | None]]:
    """GenerateStream through the gateway: (text so far, None) per delta, then (whole text, the numbers line).
    Time to first token and tokens/s are measured here, as the person at the console sees them."""
    started = time.perf_counter()
    first: float | None = None
    text = ""
    call = console.backend.GenerateStream(request, metadata=console.metadata(session))
    async for event in call:
        if event.HasField("delta"):
            if event.delta.index == 0 and event.delta.text:
                first = first if first is not None else time.perf_counter()
                text += event.delta.text
                yield text, None
        elif event.HasField("final"):
            final = event.final
            text = final.choices[0].text if final.choices and final.choices[0].text else text
            yield text, numbers(final, started, first, time.perf_counter())


def numbers(final: generate_pb2.GenerateResponse, started: float, first: float | None, ended: float) -> str:
    """"12 tokens · 85.3 tokens/s · time to first token 45 ms · finish: length · served by hf/…"."""
    tokens = final.usage.completion_tokens
    elapsed = max(ended - started, 1e-9)
    parts = [f"{tokens} token{'' if tokens == 1 else 's'}", f"{tokens / elapsed:.1f} tokens/s"]
    if first is not None:
        parts.append(f"time to first token {(first - started) * 1000:.0f} ms")
    reason = FINISH_REASON.name(final.choices[0].finish_reason) if final.choices else ""
    if reason:
        parts.append(f"finish: {reason}")
    if final.served_by:
        parts.append(f"served by {final.served_by}")
    return " · ".join(parts)


async def answer(console: Console, request: generate_pb2.GenerateRequest, session) -> tuple[list, str]:
    """Extractive QA: the context with the answer's span marked (for gr.HighlightedText) and a line with the answer,
    its character offsets and its score."""
    started = time.perf_counter()
    response = await console.backend.Generate(request, metadata=console.metadata(session))
    ended = time.perf_counter()
    choice = response.choices[0]
    context = request.question_answer.context
    span = choice.answer_span
    marked = [(context[:span.start], None), (context[span.start:span.end], "answer"), (context[span.end:], None)]
    line = (f"answer: “{choice.text}” · characters {span.start}–{span.end} · score {span.score:.3f} · "
            f"{(ended - started) * 1000:.0f} ms")
    if response.served_by:
        line += f" · served by {response.served_by}"
    return [part for part in marked if part[0]], line


def problem(error: BaseException) -> str:
    """An error as the page shows it: field violations one per line ("field: why"), else the status and message."""
    if isinstance(error, grpc.RpcError):
        text = Console.error_text(error)
    elif isinstance(error, InvalidArgument):
        text = "\n".join(f"{field}: {why}" for field, why in error.violations)
    elif isinstance(error, ForgewayError):
        text = str(error)
    else:
        raise error
    return "**Error:**\n\n" + "\n\n".join(f"`{line}`" for line in text.splitlines())

