"""Generation every BackendService honours: greedy agreement, one final message, stop, length, cancel, deadline."""

from __future__ import annotations

import grpc
import pytest

from forgeway.v1 import generate_pb2

from .calls import TIMEOUT, generate_request, rpc_error, stream, stream_error
from .endpoints import tokens_counted, tokens_settled

FINISH = generate_pb2.FinishReason


def usage(response: generate_pb2.GenerateResponse) -> tuple[int, int, int]:
    u = response.usage
    return u.prompt_tokens, u.completion_tokens, u.total_tokens


async def test_generate_and_stream_agree_under_greedy_decoding(endpoint, backend):
    request = generate_request(endpoint, max_tokens=endpoint.max_tokens)
    unary = await backend.Generate(request, timeout=TIMEOUT)
    streamed = await stream(backend, request)
    assert len(unary.choices) == 1 and unary.choices[0].text, f"empty completion: {unary}"
    assert streamed.text() == unary.choices[0].text
    assert streamed.final.choices[0].text == unary.choices[0].text
    assert streamed.final.choices[0].finish_reason == unary.choices[0].finish_reason
    assert usage(streamed.final) == usage(unary)
    assert streamed.final.model == unary.model


async def test_stream_ends_with_exactly_one_final_message(endpoint, backend):
    streamed = await stream(backend, generate_request(endpoint, max_tokens=endpoint.max_tokens))
    kinds = [m.WhichOneof("event") for m in streamed.messages]
    assert kinds.count("final") == 1, kinds
    assert kinds[-1] == "final", f"messages after the final one: {kinds}"
    assert set(kinds[:-1]) <= {"delta"}, kinds
    assert kinds.count("delta") >= 1
    final = streamed.final
    assert final.choices[0].finish_reason != FINISH.FINISH_REASON_UNSPECIFIED
    assert final.usage.prompt_tokens > 0
    assert final.usage.completion_tokens > 0
    assert final.usage.total_tokens == final.usage.prompt_tokens + final.usage.completion_tokens
    assert final.choices[0].text == streamed.text()


async def test_max_tokens_ends_with_length(endpoint, backend):
    max_tokens = 8
    request = generate_request(endpoint, max_tokens=max_tokens)
    unary = await backend.Generate(request, timeout=TIMEOUT)
    streamed = await stream(backend, request)
    for response in (unary, streamed.final):
        assert response.choices[0].finish_reason == FINISH.FINISH_REASON_LENGTH
        assert response.usage.completion_tokens == max_tokens


def pick_stop(text: str) -> tuple[str, str]:
    """A stop string taken from the second half of text, and the text expected before it."""
    for start in range(len(text) // 2, len(text) - 2):
        stop = text[start:start + 3]
        cut = text.find(stop)
        if cut > 0 and stop.strip():
            return stop, text[:cut]
    raise AssertionError(f"no usable stop string in {text!r}")


async def test_stop_sequence_ends_before_the_stop_text(endpoint, backend, capabilities):
    if not capabilities.generation.stop:
        pytest.skip(f"{endpoint.name} does not list stop sequences in its Capabilities")
    first = await backend.Generate(generate_request(endpoint, max_tokens=endpoint.max_tokens), timeout=TIMEOUT)
    stop, expected = pick_stop(first.choices[0].text)
    request = generate_request(endpoint, max_tokens=endpoint.max_tokens, stop=(stop,))
    unary = await backend.Generate(request, timeout=TIMEOUT)
    streamed = await stream(backend, request)
    for response in (unary, streamed.final):
        assert response.choices[0].text == expected, f"stop {stop!r}"
        assert response.choices[0].finish_reason == FINISH.FINISH_REASON_STOP_SEQUENCE
    assert streamed.text() == expected, f"streamed text leaked past stop {stop!r}"
    assert stop not in streamed.text()


async def test_cancelling_a_stream_stops_the_backend(endpoint, backend):
    before = await tokens_counted(endpoint)
    call = backend.GenerateStream(generate_request(endpoint, max_tokens=endpoint.long_max_tokens), timeout=TIMEOUT)
    received = 0
    async for message in call:
        assert message.WhichOneof("event") == "delta", "the generation ended before it could be cancelled"
        received += 1
        if received == 3:
            break
    at_cancel = await tokens_counted(endpoint)
    call.cancel()
    after = await tokens_settled(endpoint)
    assert at_cancel - before >= 1, "forgeway_tokens_total must count completion tokens as they are generated"
    assert after - at_cancel <= endpoint.cancel_slack, (
        f"{after - at_cancel:.0f} tokens generated after the cancel (allowed {endpoint.cancel_slack})"
    )
    assert after - before < endpoint.long_max_tokens
    assert await call.code() == grpc.StatusCode.CANCELLED


@pytest.mark.parametrize("rpc", ["Generate", "GenerateStream"])
async def test_expired_deadline_is_deadline_exceeded_and_stops_the_backend(endpoint, backend, rpc):
    before = await tokens_counted(endpoint)
    request = generate_request(endpoint, max_tokens=endpoint.long_max_tokens)
    if rpc == "Generate":
        error = await rpc_error(backend.Generate(request, timeout=endpoint.deadline_s))
    else:
        error = await stream_error(backend.GenerateStream(request, timeout=endpoint.deadline_s))
    assert error.code == grpc.StatusCode.DEADLINE_EXCEEDED, f"{error.code.name}: {error.message}"
    after = await tokens_settled(endpoint)
    assert after - before < endpoint.long_max_tokens, "the backend kept generating after the deadline"
