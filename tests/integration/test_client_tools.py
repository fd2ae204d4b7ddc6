"""The SDK's tool calling against a real gateway in front of an hf process serving the tiny Llama (its chat template
renders Hermes tools): forced calls fit the schema, a stream rebuilds them, and run_tools runs local functions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import jsonschema
import pytest

from forgeway.client import AsyncClient, Client, function_tool
from forgeway.testing import ServiceProcess

pytestmark = [pytest.mark.hf, pytest.mark.slow]

QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


def get_weather(city: Annotated[str, {"maxLength": 12}], unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
    """Get the current weather in a city.

    Args:
        city: The city's name.
        unit: The temperature's unit.
    """
    return {"city": city, "sky": "sunny", "temperature": 21 if unit == "celsius" else 70}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    from forgeway.testing import build_tiny_llama

    tiny = build_tiny_llama(Path(tmp_path_factory.mktemp("client-tools")) / "tiny")
    with ServiceProcess("hf", "--model", str(tiny), "--model-name", "tiny", "--torch-threads", "1",
                        "--grace-seconds", "1", timeout=180) as hf:
        with ServiceProcess("gateway", "--http-port", "-1", env={"FORGEWAY_BACKENDS": json.dumps({"hf": hf.address})},
                            timeout=60) as process:
            yield process


@pytest.fixture
def client(gateway):
    with Client(gateway.address, timeout=120) as sdk:
        yield sdk


def test_a_forced_call_of_a_python_function_fits_its_schema(client):
    result = client.chat("tiny", QUESTION, tools=[get_weather], tool_choice="required", parallel_tool_calls=False,
                         max_tokens=128)  # a random model asked for several calls writes them until max_tokens
    assert result.finish_reason == "tool_calls", result
    (call,) = result.tool_calls
    assert call.name == "get_weather" and call.id
    jsonschema.validate(call.args, function_tool(get_weather)["function"]["parameters"])
    assert result.message["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": call.arguments}


def test_a_stream_rebuilds_the_calls_of_the_final_response(client):
    with client.stream("tiny", messages=QUESTION, tools=[get_weather], tool_choice="get_weather",
                       max_tokens=128) as stream:
        deltas = list(stream)
    assert any(d.tool_calls for d in deltas)
    assert stream.final.finish_reason == "tool_calls"
    assert stream.tool_calls() == stream.final.tool_calls and stream.tool_calls()[0].name == "get_weather"


def test_run_tools_calls_the_function_and_sends_its_result_back(client):
    asked: list[dict] = []

    def weather(city: Annotated[str, {"maxLength": 12}]) -> dict:
        """Get the current weather in a city."""
        asked.append({"city": city})
        return get_weather(city)

    run = client.run_tools("tiny", QUESTION, [weather], tool_choice=["weather", "none"], max_tokens=128)
    assert run.rounds == 1 and [r.call.name for r in run.results] == ["weather"] * len(asked) and asked
    assert [m["role"] for m in run.messages] == ["user", "assistant"] + ["tool"] * len(asked) + ["assistant"]
    first = run.results[0]
    assert first.error is None and json.loads(first.content) == get_weather(asked[0]["city"])
    assert run.messages[2] == {"role": "tool", "tool_call_id": first.call.id, "content": first.content}
    assert run.final.finish_reason in ("stop", "length") and not run.final.tool_calls
    assert run.messages[-1] == run.final.message and run.text == run.final.text


def test_an_error_in_a_function_goes_back_to_the_model_as_the_result(client):
    def get_weather(city: Annotated[str, {"maxLength": 12}]) -> str:
        """Get the current weather in a city."""
        raise RuntimeError(f"the weather service is down for {city}")

    run = client.run_tools("tiny", QUESTION, [get_weather], tool_choice="get_weather", max_rounds=1,
                           max_tokens=128)
    assert run.rounds == 1 and isinstance(run.results[0].error, RuntimeError)
    assert run.messages[2]["content"].startswith("Error: RuntimeError: the weather service is down for ")
    assert run.final.finish_reason in ("stop", "length") and not run.final.tool_calls  # the last round answers


def test_thinking_returns_reasoning_apart_from_the_content(client):
    # the template opens <think> for the model, which (being random) never closes it: all it writes is reasoning
    result = client.chat("tiny", QUESTION, thinking=True, max_tokens=8)
    assert result.reasoning and result.text == "" and result.message["reasoning"] == result.reasoning
    with client.stream("tiny", messages=QUESTION, thinking=True, max_tokens=8) as stream:
        pieces = [d.reasoning for d in stream]
    assert "".join(pieces) == stream.reasoning == stream.final.reasoning and stream.text == ""
    assert not client.chat("tiny", QUESTION, thinking=False, max_tokens=8).reasoning


async def test_the_async_loop_awaits_coroutine_functions(gateway):
    async def get_weather(city: Annotated[str, {"maxLength": 12}]) -> str:
        """Get the current weather in a city."""
        return f"sunny in {city}"

    async with AsyncClient(gateway.address, timeout=120) as sdk:
        run = await sdk.run_tools("tiny", QUESTION, [get_weather], tool_choice="get_weather", max_rounds=1,
                                  max_tokens=128)
    assert run.results[0].content.startswith("sunny in ") and run.results[0].error is None
    assert not run.final.tool_calls
