"""The agent loop through the gateway's OpenAI-compatible API with the official `openai` client, on llama.cpp: the
tiny Llama's GGUF served by `forgeway serve llamacpp` (llama.cpp's own server, the GGUF's chat template), echo serving
the same name without tools beside it, a gateway in front."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest
from tools_harness import ASK, TOOLS, ToolsStack, check_call, llamacpp_stack

pytestmark = [pytest.mark.llamacpp, pytest.mark.slow]

NAMED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[ToolsStack]:
    with llamacpp_stack(tmp_path_factory.mktemp("http-tools-llamacpp")) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key="unused", max_retries=0)


def get_weather(city: str, days: int) -> str:
    return json.dumps({"city": city, "days": days, "forecast": "sunny", "celsius": 21})


def test_the_agent_loop_calls_the_tool_takes_its_result_and_answers(client):
    messages = list(ASK)
    reply = client.chat.completions.create(model="tiny", messages=messages, tools=TOOLS, tool_choice=NAMED,
                                           max_tokens=64)
    assert reply.system_fingerprint.startswith("llamacpp/")
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id and call.function.name == "get_weather"
    result = get_weather(**check_call(call.function.name, call.function.arguments))
    messages += [choice.message, {"role": "tool", "tool_call_id": call.id, "content": result}]
    final = client.chat.completions.create(model="tiny", messages=messages, tools=TOOLS, tool_choice="none",
                                           max_tokens=16)
    answer = final.choices[0]
    assert answer.finish_reason in ("stop", "length") and answer.message.content and not answer.message.tool_calls
    assert final.usage.prompt_tokens > reply.usage.prompt_tokens  # the call and its result were in the prompt


def test_required_gives_valid_calls_for_every_seed(client):
    for seed in range(20):
        reply = client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, tool_choice="required",
                                               parallel_tool_calls=False, max_tokens=64, seed=seed, temperature=1.0)
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls", (seed, choice.message)
        (call,) = choice.message.tool_calls
        check_call(call.function.name, call.function.arguments)


def test_strict_named_arguments_validate_for_every_seed(client):
    strict = [{**TOOLS[0], "function": {**TOOLS[0]["function"], "strict": True}}, TOOLS[1]]
    for seed in range(20):
        reply = client.chat.completions.create(model="tiny", messages=ASK, tools=strict, tool_choice=NAMED,
                                               max_tokens=64, seed=seed, temperature=1.0)
        (call,) = reply.choices[0].message.tool_calls
        assert call.function.name == "get_weather"
        check_call(call.function.name, call.function.arguments)


def test_streamed_tool_call_deltas_rebuild_the_unary_answer(client):
    unary = client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, tool_choice=NAMED,
                                           max_tokens=64).choices[0].message.tool_calls
    calls: dict[int, dict] = {}
    finish = None
    for chunk in client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, tool_choice=NAMED,
                                                max_tokens=64, stream=True):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for piece in choice.delta.tool_calls or ():
                call = calls.setdefault(piece.index, {"id": None, "name": None, "arguments": ""})
                if piece.id:
                    assert call["id"] is None, "id sent twice"
                    call["id"], call["name"] = piece.id, piece.function.name
                call["arguments"] += piece.function.arguments or ""
    assert finish == "tool_calls"
    assert [(c["name"], c["arguments"]) for c in calls.values()] == [(c.function.name, c.function.arguments)
                                                                      for c in unary]


def test_parallel_calls_come_back_as_several_valid_calls(client):
    """A random model under required + parallel writes calls until it stops or runs out of tokens: over 20 seeds some
    answers end with two or more whole calls, each valid; an answer cut by max_tokens says length, never tool_calls."""
    several = 0
    for seed in range(20):
        choice = client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, tool_choice="required",
                                                max_tokens=160, seed=seed, temperature=1.0).choices[0]
        if choice.finish_reason == "tool_calls":
            for call in choice.message.tool_calls:
                check_call(call.function.name, call.function.arguments)
            several += len(choice.message.tool_calls) >= 2
        else:
            assert choice.finish_reason == "length", choice
    assert several, "no seed gave two calls"
