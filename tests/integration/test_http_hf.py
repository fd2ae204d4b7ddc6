"""The shim in front of a real hf process serving the tiny Llama, through the official `openai` client: sampling with
seeds, logprobs, JSON-schema output, streaming, and what the model cannot do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from forgeway.gateway.http.app import create_app
from forgeway.gateway.http.serve import BackgroundServer
from forgeway.testing import ServiceProcess

pytestmark = [pytest.mark.hf, pytest.mark.slow]

CHAT = [{"role": "user", "content": "Tell me about the river and the old mill."}]
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
          "properties": {"name": {"type": "string", "maxLength": 8},
                         "age": {"type": "integer", "minimum": 0, "maximum": 99}}}


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Iterator[openai.OpenAI]:
    from forgeway.testing import build_tiny_llama

    root: Path = tmp_path_factory.mktemp("http-hf")
    tiny = build_tiny_llama(root / "tiny")
    with ServiceProcess("hf", "--model", str(tiny), "--model-name", "tiny", "--torch-threads", "1",
                       "--grace-seconds", "1", timeout=180) as hf:
        with BackgroundServer(create_app(hf.address)) as shim:
            yield openai.OpenAI(base_url=f"{shim.url}/v1", api_key="k", max_retries=0)


def test_seed_reproducibility_with_sampling(client):
    def sample(seed: int) -> str:
        reply = client.chat.completions.create(model="tiny", messages=CHAT, temperature=1.0, top_p=0.95, seed=seed,
                                               max_tokens=12)
        return reply.choices[0].message.content

    assert sample(11) == sample(11)


def test_logprobs_with_alternatives(client):
    reply = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=6, logprobs=True, top_logprobs=2)
    tokens = reply.choices[0].logprobs.content
    assert len(tokens) == reply.usage.completion_tokens
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in tokens)
    text = client.completions.create(model="tiny", prompt="The river", max_tokens=4, logprobs=2)
    assert len(text.choices[0].logprobs.tokens) == 4 and len(text.choices[0].logprobs.top_logprobs[0]) == 2


def test_json_schema_output(client):
    for seed in (1, 2):
        reply = client.chat.completions.create(
            model="tiny", messages=CHAT, max_tokens=120, temperature=1.0, seed=seed,
            response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}})
        choice = reply.choices[0]
        assert choice.finish_reason == "stop", choice.message.content
        value = json.loads(choice.message.content)
        assert set(value) == {"name", "age"} and len(value["name"]) <= 8 and 0 <= value["age"] <= 99


def test_unsupported_schema_keyword_names_response_format(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="tiny", messages=CHAT, max_tokens=8,
            response_format={"type": "json_schema", "json_schema": {"name": "x",
                                                                    "schema": {"type": "array", "uniqueItems": True}}})
    assert info.value.body["param"] == "response_format" and info.value.body["code"] == "unsupported_parameter"


def test_stream_n_and_usage(client):
    texts: dict[int, str] = {}
    usage = None
    for chunk in client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=8, n=2, temperature=0.8,
                                                seed=5, stream=True, stream_options={"include_usage": True}):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
        usage = chunk.usage or usage
    whole = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=8, n=2, temperature=0.8, seed=5)
    assert sorted(texts) == [0, 1] and usage.completion_tokens == whole.usage.completion_tokens
    assert [texts[c.index] for c in whole.choices] == [c.message.content for c in whole.choices]
