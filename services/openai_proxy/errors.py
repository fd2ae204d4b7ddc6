"""Upstream failures mapped onto the error table of DESIGN.md, with the API key scrubbed from every message.

An upstream 401 or 403 is about the proxy's own key, set by the operator, not about the caller's credentials:
answering UNAUTHENTICATED / PERMISSION_DENIED would tell a caller with valid credentials that theirs are bad.
So a 401 is UNAVAILABLE (reason UPSTREAM_UNAUTHENTICATED: this backend is unusable until its key is fixed, and
the gateway may retry another backend), and a 403 is FAILED_PRECONDITION (reason UPSTREAM_PERMISSION_DENIED: the
key may not use this model, and repeating the call will not help until the operator changes it).
"""

from __future__ import annotations

import email.utils
import time

import openai

from forgeway.core.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    ForgewayError,
    Internal,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)

MAX_MESSAGE = 500

# Upstream request fields -> the Forgeway request fields they came from (for BadRequest field violations).
FIELDS = {
    "max_tokens": "sampling.max_tokens",
    "max_completion_tokens": "sampling.max_tokens",
    "temperature": "sampling.temperature",
    "top_p": "sampling.top_p",
    "top_k": "sampling.top_k",
    "min_p": "sampling.min_p",
    "repetition_penalty": "sampling.repetition_penalty",
    "presence_penalty": "sampling.presence_penalty",
    "frequency_penalty": "sampling.frequency_penalty",
    "seed": "sampling.seed",
    "stop": "sampling.stop",
    "response_format": "structured_output",
    "grammar": "structured_output.grammar",
    "reasoning_effort": "thinking",
    "chat_template_kwargs": "thinking",
}  # tools, tool_choice, parallel_tool_calls and messages keep their names (tools[0].function.parameters)


def scrub(text: str, secret: str) -> str:
    """text without the secret, cut to a readable length."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "..."


def upstream_message(exc: openai.APIStatusError) -> str:
    """The upstream's own explanation: OpenAI's error.message, FastAPI's detail, or the raw body."""
    body = exc.body
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            if body.get(key):
                return str(body[key])
    return str(body) if body else exc.message


def retry_after(headers) -> float | None:
    """Seconds to wait from retry-after-ms or retry-after (seconds or an HTTP date), if the upstream said."""
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def upstream_error(exc: openai.OpenAIError, *, model: str, secret: str, timeout: float) -> ForgewayError:
    """The table's error for an upstream failure during a call for model."""
    if isinstance(exc, openai.APITimeoutError):
        return DeadlineExceeded(f"the upstream did not answer within {timeout:g}s")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return Unavailable(scrub(f"upstream unreachable: {type(cause).__name__}: {cause}", secret), retry_after=1.0)
    if not isinstance(exc, openai.APIStatusError):
        return Internal(scrub(f"unexpected answer from the upstream: {exc}", secret))
    status, said = exc.status_code, scrub(upstream_message(exc), secret)
    wait = retry_after(exc.response.headers)
    if status in (400, 413, 422):
        param = getattr(exc, "param", None) or "request"
        return InvalidArgument(FIELDS.get(param, param), f"rejected by the upstream: {said}")
    if status == 401:  # never echo it: OpenAI's message quotes part of the key
        return Unavailable(
            "the upstream rejected the proxy's API key (HTTP 401); the operator must set a valid "
            "FORGEWAY_OPENAI_API_KEY or api_key_file", retry_after=wait or 30.0, reason="UPSTREAM_UNAUTHENTICATED",
        )
    if status == 403:
        return FailedPrecondition(
            f"the proxy's API key may not use model {model!r} (HTTP 403): {said}", reason="UPSTREAM_PERMISSION_DENIED"
        )
    if status == 404:
        error = NotFound("model", model)
        error.message = f"{error.message} at the upstream: {said}"
        return error
    if status == 408:
        return DeadlineExceeded(f"the upstream timed out: {said}")
    if status == 429:
        quota = "upstream quota" if getattr(exc, "code", None) == "insufficient_quota" else ""
        return ResourceExhausted(f"the upstream is rate limiting: {said}", retry_after=wait or 1.0, quota=quota)
    if status >= 500:
        return Unavailable(f"the upstream failed (HTTP {status}): {said}", retry_after=wait or 1.0)
    return Internal(f"unexpected upstream answer HTTP {status}: {said}")
