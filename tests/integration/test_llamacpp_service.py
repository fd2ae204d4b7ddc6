"""The llama.cpp service on the tiny GGUF: chat, logprobs, whole characters, grammar, seeds, several choices, errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest


from forgeway.services.runtime.service import serving
from forgeway.services.llamacpp.settings import LlamaCppSettings  # noqa: E402
from forgeway.services.llamacpp.engine import LlamaCppEngine  # noqa: E402
from forgeway.core.errors import from_rpc_error  # noqa: E402
from forgeway.server.server import RunningServer, start_server  # noqa: E402
from forgeway.testing import build_tiny_gguf, build_tiny_llama  # noqa: E402
from forgeway.v1 import backend_pb2_grpc, generate_pb2  # noqa: E402

pytestmark = pytest.mark.llamacpp

FINISH = generate_pb2.FinishReason
PROMPT = "The quick brown fox"


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = build_tiny_llama(tmp_path_factory.mktemp("llamacpp") / "tiny", seed=0)
    return build_tiny_gguf(model_dir, model_dir / "model.gguf")


@pytest.fixture(scope="module")
async def server(tiny_gguf: Path) -> AsyncIterator[RunningServer]:
    settings = LlamaCppSettings(
        host="127.0.0.1", port=0, metrics_port=-1, home=tiny_gguf.parent.parent,
        models=[{"name": "tiny", "source": str(tiny_gguf), "n_ctx": 512, "n_threads": 1, "aliases": ["tiny-alias"]}],
    )
    running = await start_server(serving(LlamaCppEngine(settings)))
    await running.startup
    assert running.service.ready, running.service.failure
    yield running
    await running.drain(0)


@pytest.fixture
async def backend(server: RunningServer) -> AsyncIterator[backend_pb2_grpc.BackendServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield backend_pb2_grpc.BackendServiceStub(channel)


def request(**fields) -> generate_pb2.GenerateRequest:
    sampling = fields.pop("sampling", {})
    fields.setdefault("model", "tiny")
    if "messages" not in fields:
        fields.setdefault("prompt", PROMPT)
    return generate_pb2.GenerateRequest(sampling=generate_pb2.SamplingParams(**sampling), **fields)


async def streamed(backend, req) -> tuple[list[generate_pb2.GenerateDelta], generate_pb2.GenerateResponse]:
    messages = [m async for m in backend.GenerateStream(req, timeout=30)]
    return [m.delta for m in messages[:-1]], messages[-1].final


async def failure(call):
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return from_rpc_error(exc)
    raise AssertionError("expected an error")


async def test_chat_messages_go_through_the_gguf_chat_template(backend, tiny_gguf):
    from transformers import AutoTokenizer

    chat = [generate_pb2.Message(role="user", content="Hello there")]
    reply = await backend.Generate(request(messages=chat, sampling={"max_tokens": 8}), timeout=30)
    # llama.cpp always gives the template its thinking switch; unset, the service sends it off
    rendered = AutoTokenizer.from_pretrained(tiny_gguf.parent).apply_chat_template(
        [{"role": "user", "content": "Hello there"}], add_generation_prompt=True, enable_thinking=False, tokenize=False)
    assert rendered.startswith("<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n")
    plain = await backend.Generate(request(prompt=rendered, sampling={"max_tokens": 8}), timeout=30)
    assert reply.usage.prompt_tokens == plain.usage.prompt_tokens
    assert reply.choices[0].text == plain.choices[0].text


async def test_the_alias_serves_the_same_model(backend):
    by_name = await backend.Generate(request(sampling={"max_tokens": 6}), timeout=30)
    by_alias = await backend.Generate(request(model="tiny-alias", sampling={"max_tokens": 6}), timeout=30)
    assert by_alias.choices[0].text == by_name.choices[0].text and by_alias.model == "tiny"


async def test_stream_carries_whole_characters_and_logprobs_match_the_bytes(backend):
    req = request(logprobs=True, top_logprobs=3, sampling={"max_tokens": 48})
    deltas, final = await streamed(backend, req)
    choice = final.choices[0]
    token_bytes = [lp.token_bytes for lp in choice.logprobs]
    assert any(_partial(b) for b in token_bytes), "the tiny model's output should split a character across tokens"
    assert "".join(d.text for d in deltas) == choice.text
    assert b"".join(token_bytes).decode("utf-8", "replace") == choice.text
    assert [lp.token_bytes for d in deltas for lp in d.logprobs] == token_bytes
    # llama-server sends a token once its text ends on a whole character: a character split over tokens arrives as
    # one entry (the last token's log probability, all its bytes), so there may be fewer entries than tokens.
    assert 0 < len(choice.logprobs) <= final.usage.completion_tokens == 48
    for lp in choice.logprobs:
        tops = [t.logprob for t in lp.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True) and tops[0] <= 0
        assert lp.logprob == pytest.approx(tops[0])  # greedy picks the most likely token


def _partial(piece: bytes) -> bool:
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


async def test_gbnf_grammar_constrains_the_output(backend):
    req = request(structured_output=generate_pb2.StructuredOutput(grammar='root ::= "yes" | "no"'),
                  sampling={"max_tokens": 16})
    reply = await backend.Generate(req, timeout=30)
    assert reply.choices[0].text in ("yes", "no")
    assert reply.choices[0].finish_reason == FINISH.FINISH_REASON_STOP


async def test_json_schema_output_parses_and_follows_the_schema(backend):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"}},
              "required": ["ok", "n"], "additionalProperties": False}
    req = request(structured_output=generate_pb2.StructuredOutput(json_schema=json.dumps(schema)),
                  sampling={"max_tokens": 400})
    reply = await backend.Generate(req, timeout=30)
    # llama.cpp's schema grammar allows whitespace between tokens, which a random model spends freely: room for it
    assert reply.choices[0].finish_reason == FINISH.FINISH_REASON_STOP, reply.choices[0].text
    value = json.loads(reply.choices[0].text)
    assert set(value) == {"ok", "n"} and isinstance(value["ok"], bool) and isinstance(value["n"], int)
    obj = await backend.Generate(request(structured_output=generate_pb2.StructuredOutput(json_object=True),
                                         sampling={"max_tokens": 8}), timeout=30)
    assert obj.choices[0].text.startswith("{")


@pytest.mark.parametrize(("structured", "field"), [
    ({"grammar": "root ::= undefined_rule"}, "structured_output.grammar"),
    ({"grammar": 'start ::= "x"'}, "structured_output.grammar"),
    ({"json_schema": '{"type": "no-such-type"}'}, "structured_output.json_schema"),
])
async def test_invalid_grammar_or_schema_is_invalid_argument(backend, structured, field):
    req = request(structured_output=generate_pb2.StructuredOutput(**structured), sampling={"max_tokens": 4})
    error = await failure(backend.Generate(req, timeout=30))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in {f for f, _ in error.field_violations}


async def test_a_seed_repeats_a_sampled_completion_and_another_seed_changes_it(backend):
    def sampled(seed):
        return request(sampling={"max_tokens": 16, "temperature": 1.0, "seed": seed})

    first = await backend.Generate(sampled(7), timeout=30)
    again = await backend.Generate(sampled(7), timeout=30)
    other = await backend.Generate(sampled(8), timeout=30)
    assert first.choices[0].text == again.choices[0].text
    assert other.choices[0].text != first.choices[0].text


async def test_several_choices_stream_by_index_and_add_up_in_usage(backend):
    req = request(n=3, sampling={"max_tokens": 12, "temperature": 1.0, "seed": 3})
    deltas, final = await streamed(backend, req)
    assert [c.index for c in final.choices] == [0, 1, 2]
    for choice in final.choices:
        assert "".join(d.text for d in deltas if d.index == choice.index) == choice.text
    assert final.usage.completion_tokens == 36
    assert len({c.text for c in final.choices}) > 1
    unary = await backend.Generate(req, timeout=30)
    assert [c.text for c in unary.choices] == [c.text for c in final.choices]


async def test_usage_and_timings_are_reported(backend):
    reply = await backend.Generate(request(sampling={"max_tokens": 5}), timeout=30)
    assert reply.usage.prompt_tokens == 9 and reply.usage.completion_tokens == 5
    assert reply.timings.total_ms >= reply.timings.time_to_first_token_ms > 0
    assert reply.served_by.startswith("llamacpp/")
