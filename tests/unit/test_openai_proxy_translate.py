"""The OpenAI proxy's pure parts: requests to upstream calls, answers back, and upstream errors to the table."""

from __future__ import annotations

import email.utils
import time

import grpc
import httpx2
import openai
import pytest
from openai.types import CompletionChoice
from openai.types.completion_choice import Logprobs

from forgeway.services.openai_proxy.errors import retry_after, scrub, upstream_error
from forgeway.services.openai_proxy.settings import OpenAIProxySettings, UpstreamModel
from forgeway.services.openai_proxy.translate import build_call, completion_logprobs, finish_reason
from forgeway.core.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
    Unsupported,
)
from forgeway.core.generation import ChatMessage, FinishReason, GenerationRequest, Sampling

KEY = "sk-test-4f2b9c0e8d7a6b5c"
MODEL = UpstreamModel(name="friendly", upstream="gpt-upstream")


def settings(**values) -> OpenAIProxySettings:
    return OpenAIProxySettings(port=0, **values)


def test_a_prompt_becomes_a_greedy_completion_call_for_the_upstream_name():
    call = build_call(GenerationRequest(model="friendly", prompt="Hi", sampling=Sampling(max_tokens=5)), MODEL,
                      settings())  # fmt: skip
    assert not call.chat
    assert call.kwargs == {"model": "gpt-upstream", "prompt": "Hi", "temperature": 0.0, "max_tokens": 5}


def test_chat_messages_and_sampling_are_forwarded():
    request = GenerationRequest(
        model="friendly", messages=(ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")), n=2,
        sampling=Sampling(temperature=0.7, top_p=0.9, presence_penalty=0.1, frequency_penalty=0.2, seed=4,
                          stop=("\n",)),
        logprobs=True, top_logprobs=3,
    )  # fmt: skip
    call = build_call(request, MODEL, settings())
    assert call.chat and call.stops and call.top_logprobs == 3
    assert call.kwargs["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    expected = {"temperature": 0.7, "top_p": 0.9, "presence_penalty": 0.1, "frequency_penalty": 0.2, "seed": 4,
                "stop": ["\n"], "n": 2, "logprobs": True, "top_logprobs": 3}  # fmt: skip
    assert {k: call.kwargs[k] for k in expected} == expected


def test_completion_logprobs_are_the_legacy_integer():
    call = build_call(GenerationRequest(model="m", prompt="Hi", logprobs=True), MODEL, settings())
    assert call.kwargs["logprobs"] == 0 and "top_logprobs" not in call.kwargs


def test_json_schema_in_each_upstream_style():
    schema = {"type": "object"}
    chat = GenerationRequest(model="m", messages=(ChatMessage("user", "x"),), json_schema=schema)
    openai_style = build_call(chat, MODEL, settings()).kwargs["response_format"]
    assert openai_style == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    llama_style = build_call(chat, MODEL, settings(structured_output="json_object_schema")).kwargs["response_format"]
    assert llama_style == {"type": "json_object", "schema": schema}
    prompt = GenerationRequest(model="m", prompt="x", json_object=True)
    assert build_call(prompt, MODEL, settings()).kwargs["extra_body"] == {"response_format": {"type": "json_object"}}
    with pytest.raises(Unsupported):  # llama-cpp-python's /v1/completions ignores response_format
        build_call(prompt, MODEL, settings(structured_output="json_object_schema"))


def test_extra_body_params_use_the_upstream_field_names():
    request = GenerationRequest(model="m", prompt="x", grammar="root ::= x",
                                sampling=Sampling(top_k=3, min_p=0.1, repetition_penalty=1.2))  # fmt: skip
    vllm_like = settings(extra_body_params={"top_k": "top_k", "repetition_penalty": "repeat_penalty",
                                            "grammar": "grammar", "min_p": "min_p"})  # fmt: skip
    extra = build_call(request, MODEL, vllm_like).kwargs["extra_body"]
    assert extra == {"top_k": 3, "min_p": 0.1, "repeat_penalty": 1.2, "grammar": "root ::= x"}
    assert "extra_body" not in build_call(GenerationRequest(model="m", prompt="x"), MODEL, vllm_like).kwargs


def test_prompts_to_a_chat_only_model_name_the_field():
    with pytest.raises(InvalidArgument) as caught:
        build_call(GenerationRequest(model="m", prompt="x"), UpstreamModel(name="m", prompt=False), settings())
    assert caught.value.field == "prompt"


def choice(reason: str, **extra) -> CompletionChoice:
    return CompletionChoice.model_validate({"index": 0, "text": "x", "finish_reason": reason, **extra})


def test_finish_reasons():
    assert finish_reason("length", choice("length"), stops=True) is FinishReason.LENGTH
    assert finish_reason("stop", choice("stop"), stops=False) is FinishReason.STOP
    assert finish_reason("stop", choice("stop"), stops=True) is FinishReason.STOP_SEQUENCE
    # vLLM says which: the matched stop string, or None for an end-of-sequence token
    assert finish_reason("stop", choice("stop", stop_reason="\n"), stops=True) is FinishReason.STOP_SEQUENCE
    assert finish_reason("stop", choice("stop", stop_reason=None), stops=True) is FinishReason.STOP
    assert finish_reason("content_filter", choice("content_filter"), stops=False) is FinishReason.STOP
    assert finish_reason(None, None, stops=False) is FinishReason.STOP


def test_legacy_logprobs_keep_the_top_alternatives_in_order():
    logprobs = Logprobs(tokens=["a", "b"], token_logprobs=[-0.5, -1.0], text_offset=[0, 1],
                        top_logprobs=[{"x": -2.0, "a": -0.5, "y": -1.0}, {"b": -1.0}])  # fmt: skip
    got = completion_logprobs(logprobs, top=2)
    assert [(lp.token, lp.logprob) for lp in got] == [("a", -0.5), ("b", -1.0)]
    assert [t for t, _, _ in got[0].top] == ["a", "y"] and got[0].token_bytes == b"a"
    assert completion_logprobs(logprobs, top=0)[0].top == []


URL = "https://upstream.example/v1/chat/completions"


def status_error(cls: type[openai.APIStatusError], status: int, body: object = None, headers: dict | None = None):
    response = httpx2.Response(status, headers=headers or {}, request=httpx2.Request("POST", URL))
    return cls(f"Error code: {status}", response=response, body=body)


def mapped(exc: openai.OpenAIError):
    return upstream_error(exc, model="friendly", secret=KEY, timeout=2.5)


def test_bad_requests_name_the_forgeway_field_and_keep_the_upstream_message():
    body = {"message": "temperature too high", "param": "temperature"}
    error = mapped(status_error(openai.BadRequestError, 400, body))
    assert isinstance(error, InvalidArgument) and error.field == "sampling.temperature"
    assert "temperature too high" in error.message
    unnamed = mapped(status_error(openai.UnprocessableEntityError, 422, {"detail": "bad body"}))
    assert isinstance(unnamed, InvalidArgument) and unnamed.field == "request" and "bad body" in unnamed.message


def test_an_upstream_401_is_unavailable_and_never_echoes_the_upstream_text():
    body = {"message": f"Incorrect API key provided: {KEY[:8]}****{KEY[-4:]}", "code": "invalid_api_key"}
    error = mapped(status_error(openai.AuthenticationError, 401, body))
    assert isinstance(error, Unavailable) and error.reason == "UPSTREAM_UNAUTHENTICATED"
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert KEY[:8] not in error.message and KEY[-4:] not in error.message


def test_an_upstream_403_is_a_failed_precondition_of_the_operator():
    error = mapped(status_error(openai.PermissionDeniedError, 403, {"message": "no access to model"}))
    assert isinstance(error, FailedPrecondition) and error.reason == "UPSTREAM_PERMISSION_DENIED"
    assert "friendly" in error.message and "no access" in error.message


def test_an_upstream_404_is_not_found_for_the_model():
    error = mapped(status_error(openai.NotFoundError, 404, {"message": "The model does not exist"}))
    assert isinstance(error, NotFound) and error.reason == "MODEL_NOT_FOUND"
    assert "'friendly'" in error.message and "does not exist" in error.message


def test_rate_limits_carry_retry_after_and_quota():
    error = mapped(status_error(openai.RateLimitError, 429, {"message": "slow down"}, {"retry-after": "3"}))
    assert isinstance(error, ResourceExhausted) and error.retry_after == 3.0 and not error.quota
    quota = mapped(status_error(openai.RateLimitError, 429, {"message": "pay up", "code": "insufficient_quota"}))
    assert quota.quota == "upstream quota" and quota.retry_after == 1.0
    assert any(type(d).__name__ == "QuotaFailure" for d in quota.details())


def test_retry_after_headers():
    assert retry_after(httpx2.Headers({"retry-after-ms": "1500"})) == 1.5
    assert retry_after(httpx2.Headers({"retry-after": "7"})) == 7.0
    later = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= retry_after(httpx2.Headers({"retry-after": later})) <= 61
    assert retry_after(httpx2.Headers({"retry-after": "soon"})) is None
    assert retry_after(httpx2.Headers({})) is None


def test_server_errors_connection_errors_and_timeouts():
    server = mapped(status_error(openai.InternalServerError, 503, {"message": "overloaded"}, {"retry-after": "2"}))
    assert isinstance(server, Unavailable) and server.retry_after == 2.0 and "503" in server.message
    request = httpx2.Request("POST", URL)
    down = mapped(openai.APIConnectionError(request=request))
    assert isinstance(down, Unavailable) and "unreachable" in down.message
    slow = mapped(openai.APITimeoutError(request=request))
    assert isinstance(slow, DeadlineExceeded) and "2.5s" in slow.message


def test_the_key_is_scrubbed_from_whatever_the_upstream_says():
    error = mapped(status_error(openai.BadRequestError, 400, {"message": f"bad header Bearer {KEY}"}))
    assert KEY not in error.message and "[redacted]" in error.message
    assert scrub("x" * 2000, KEY).endswith("...") and len(scrub("x" * 2000, KEY)) < 600
