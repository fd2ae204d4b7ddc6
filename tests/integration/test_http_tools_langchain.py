"""LangChain's ChatOpenAI against the gateway's OpenAI-compatible API: bind_tools with a tool_choice gets a parsed
tool call (whole and streamed), and the tool's result goes back as a ToolMessage for the model's answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Literal

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import Field
from tools_harness import ASK, TOOLS, ToolsStack, check_call, tools_stack

pytestmark = [pytest.mark.hf, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[ToolsStack]:
    with tools_stack(tmp_path_factory.mktemp("langchain-tools")) as running:
        yield running


@pytest.fixture(scope="module")
def llm(stack) -> ChatOpenAI:
    return ChatOpenAI(base_url=stack.base_url, api_key="unused", model="tiny", max_tokens=64, max_retries=0)


@tool
def get_weather(city: Literal["Oslo", "Rome", "Lima"], days: Annotated[int, Field(ge=1, le=7)]) -> str:
    """The forecast for a city."""
    return f"sunny in {city} for {days} days"


def test_bind_tools_with_a_named_choice_gets_a_parsed_call(llm):
    message = llm.bind_tools([get_weather], tool_choice="get_weather").invoke(ASK[0]["content"])
    (call,) = message.tool_calls
    assert call["name"] == "get_weather" and call["id"].startswith("call_") and call["type"] == "tool_call"
    assert call["args"]["city"] in ("Oslo", "Rome", "Lima") and 1 <= call["args"]["days"] <= 7
    assert not message.invalid_tool_calls and message.response_metadata["system_fingerprint"].startswith("hf/")


def test_openai_tool_dicts_and_required_choice(llm):
    message = llm.bind_tools(TOOLS, tool_choice="required", parallel_tool_calls=False).invoke(ASK)
    (call,) = message.tool_calls
    assert call["name"] in ("get_weather", "get_time") and not message.invalid_tool_calls


def test_streamed_chunks_add_up_to_the_call(llm):
    bound = llm.bind_tools([get_weather], tool_choice="get_weather")
    whole = bound.invoke(ASK)
    merged = None
    for chunk in bound.stream(ASK):
        merged = chunk if merged is None else merged + chunk
    (call,) = merged.tool_calls
    assert (call["name"], call["args"]) == (whole.tool_calls[0]["name"], whole.tool_calls[0]["args"])


def test_a_tool_message_continues_the_conversation(llm):
    question = HumanMessage(ASK[0]["content"])
    asked = llm.bind_tools([get_weather], tool_choice="get_weather").invoke([question])
    check_call("get_weather", json.dumps(asked.tool_calls[0]["args"]))
    result = get_weather.invoke(asked.tool_calls[0])  # a ToolMessage answering the call's id
    answer = llm.bind_tools([get_weather], tool_choice="none").invoke([question, asked, result])
    assert isinstance(answer.content, str) and not answer.tool_calls
    assert answer.response_metadata["finish_reason"] in ("stop", "length")
