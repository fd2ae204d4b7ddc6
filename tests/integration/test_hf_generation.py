"""The hf service over real gRPC on the tiny Llama: prompts, chat, sampling, seeds, logprobs, n, JSON, errors."""

from __future__ import annotations

import json
import shutil

import grpc
import pytest

pytestmark = pytest.mark.hf

from forgeway.services.runtime.service import serving
from forgeway.core.errors import from_rpc_error  # noqa: E402
from forgeway.server.server import start_server  # noqa: E402
from forgeway.v1 import backend_pb2_grpc, generate_pb2  # noqa: E402

FINISH = generate_pb2.FinishReason
PROMPT = "The river carried the small boat past the old mill, under the stone bridge"


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    from forgeway.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("hf-gen")
    tiny = build_tiny_llama(root / "tiny")
    plain = shutil.copytree(tiny, root / "plain")  # the same model without a chat template
    (plain / "chat_template.jinja").unlink()
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    return root, tiny, plain


@pytest.fixture(scope="module")
async def stub(model_dirs):
    from forgeway.services.hf.engine import HFEngine
    from forgeway.services.hf.settings import HFSettings

    root, tiny, plain = model_dirs
    settings = HFSettings(host="127.0.0.1", port=0, metrics_port=-1, home=root / "home", torch_threads=1,
                          models=[{"name": "tiny", "path": str(tiny)}, {"name": "plain", "path": str(plain)}])
    running = await start_server(serving(HFEngine(settings)))
    await running.startup
    assert running.service.ready, running.service.failure
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield backend_pb2_grpc.BackendServiceStub(channel)
    await running.drain(0)


def request(max_tokens: int = 16, **fields) -> generate_pb2.GenerateRequest:
    sampling = fields.pop("sampling", {})
    fields.setdefault("model", "tiny")
    if "messages" not in fields:
        fields.setdefault("prompt", PROMPT)
    return generate_pb2.GenerateRequest(sampling=generate_pb2.SamplingParams(max_tokens=max_tokens, **sampling),
                                        **fields)


async def error_of(call) -> object:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return from_rpc_error(info.value)


async def test_greedy_text_usage_and_timings(stub):
    reply = await stub.Generate(request(12), timeout=30)
    again = await stub.Generate(request(12), timeout=30)
    choice = reply.choices[0]
    assert choice.text and choice.text == again.choices[0].text
    assert choice.finish_reason == FINISH.FINISH_REASON_LENGTH
    assert reply.usage.completion_tokens == 12 and reply.usage.prompt_tokens > 5
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 12
    t = reply.timings
    assert 0 <= t.queue_ms <= t.time_to_first_token_ms <= t.total_ms
    assert reply.served_by.startswith("hf/") and reply.model == "tiny"


async def test_stream_deltas_add_up_to_the_final_text(stub):
    messages = [m async for m in stub.GenerateStream(request(40), timeout=30)]
    deltas = [m.delta for m in messages[:-1]]
    final = messages[-1].final
    assert len(deltas) > 1 and all(m.WhichOneof("event") == "delta" for m in messages[:-1])
    assert "".join(d.text for d in deltas) == final.choices[0].text
    assert final.usage.completion_tokens == 40


async def test_chat_messages_use_the_chat_template(stub):
    chat = [generate_pb2.Message(role="system", content="Be brief."), generate_pb2.Message(role="user", content="Hi")]
    reply = await stub.Generate(request(8, messages=chat), timeout=30)
    assert reply.usage.completion_tokens >= 1
    # the template adds its role markers: more prompt tokens than the two contents alone
    bare = await stub.Generate(request(1, prompt="Be brief. Hi"), timeout=30)
    assert reply.usage.prompt_tokens > bare.usage.prompt_tokens + 4


async def test_messages_to_a_model_without_chat_template_name_the_field(stub):
    hi = [generate_pb2.Message(role="user", content="Hi")]
    error = await error_of(stub.Generate(request(4, model="plain", messages=hi)))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in error.field_violations] == ["messages"] and "chat template" in error.message


async def test_same_seed_same_sample_and_sampling_params_are_honoured(stub):
    sampling = {"temperature": 1.3, "top_p": 0.95, "top_k": 50, "min_p": 0.01, "seed": 11}
    a = await stub.Generate(request(24, sampling=sampling), timeout=30)
    b = await stub.Generate(request(24, sampling=sampling), timeout=30)
    c = await stub.Generate(request(24, sampling={**sampling, "seed": 12}), timeout=30)
    greedy = await stub.Generate(request(24), timeout=30)
    assert a.choices[0].text == b.choices[0].text
    assert a.choices[0].text != c.choices[0].text
    assert a.choices[0].text != greedy.choices[0].text


async def test_penalties_change_a_greedy_completion(stub):
    greedy = (await stub.Generate(request(48), timeout=30)).choices[0].text
    for sampling in ({"repetition_penalty": 1.8}, {"frequency_penalty": 2.0}, {"presence_penalty": 2.0}):
        penalised = (await stub.Generate(request(48, sampling=sampling), timeout=30)).choices[0].text
        assert penalised != greedy, sampling


async def test_n_completions_share_the_prompt(stub):
    reply = await stub.Generate(request(10, n=3, sampling={"temperature": 1.5, "seed": 5}), timeout=30)
    one = await stub.Generate(request(10, sampling={"temperature": 1.5, "seed": 5}), timeout=30)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert len({c.text for c in reply.choices}) == 3
    assert reply.choices[0].text == one.choices[0].text, "choice 0 draws with the request's own seed"
    assert reply.usage.prompt_tokens == one.usage.prompt_tokens, "the prompt is counted (and prefilled) once"
    assert reply.usage.completion_tokens == 30


async def test_logprobs_and_top_logprobs(stub):
    reply = await stub.Generate(request(6, logprobs=True, top_logprobs=3), timeout=30)
    logprobs = reply.choices[0].logprobs
    assert len(logprobs) == 6
    assert b"".join(lp.token_bytes for lp in logprobs).decode("utf-8", "replace").startswith(reply.choices[0].text[:1])
    for lp in logprobs:
        assert lp.logprob <= 0 and len(lp.top_logprobs) == 3
        values = [t.logprob for t in lp.top_logprobs]
        assert values == sorted(values, reverse=True)
        assert lp.logprob == pytest.approx(values[0]) and lp.token_bytes == lp.top_logprobs[0].token_bytes  # greedy


async def test_json_schema_output_parses_and_fits_the_schema(stub):
    schema = {"type": "object", "additionalProperties": False, "required": ["name", "age", "tags"],
              "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer", "minimum": 0,
                             "maximum": 99}, "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2}}}
    for seed in (1, 2, 3):
        r = request(120, structured_output=generate_pb2.StructuredOutput(json_schema=json.dumps(schema)),
                    sampling={"temperature": 1.0, "seed": seed})
        choice = (await stub.Generate(r, timeout=30)).choices[0]
        assert choice.finish_reason == FINISH.FINISH_REASON_STOP, choice.text
        value = json.loads(choice.text)
        assert set(value) == {"name", "age", "tags"} and len(value["name"]) <= 8 and 0 <= value["age"] <= 99


async def test_json_object_mode(stub):
    r = request(150, structured_output=generate_pb2.StructuredOutput(json_object=True),
                sampling={"seed": 3, "temperature": 0.7})
    choice = (await stub.Generate(r, timeout=30)).choices[0]
    if choice.finish_reason == FINISH.FINISH_REASON_STOP:
        assert isinstance(json.loads(choice.text), dict)
    else:
        assert choice.text.startswith("{")


async def test_unsupported_schema_keyword_is_rejected(stub):
    schema = '{"type": "array", "uniqueItems": true}'
    r = request(8, structured_output=generate_pb2.StructuredOutput(json_schema=schema))
    error = await error_of(stub.Generate(r, timeout=30))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.reason == "UNSUPPORTED"
    assert "uniqueItems" in error.message


async def test_grammar_is_unsupported(stub):
    r = request(8, structured_output=generate_pb2.StructuredOutput(grammar='root ::= "yes"'))
    error = await error_of(stub.Generate(r, timeout=30))
    assert error.reason == "UNSUPPORTED" and error.error_info.metadata["feature"] == "grammar"


async def test_prompt_longer_than_the_context_names_the_limit(stub):
    error = await error_of(stub.Generate(request(4, prompt="river boat " * 400), timeout=30))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in error.field_violations] == ["prompt"] and "512" in error.message


async def test_max_tokens_past_the_context_names_max_tokens_and_unset_is_capped(stub):
    error = await error_of(stub.Generate(request(100_000, prompt="river boat " * 150), timeout=60))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and [f for f, _ in error.field_violations] == ["max_tokens"]
    error = await error_of(stub.Generate(request(500, prompt="river boat " * 150), timeout=60))  # 500 < 512 alone
    assert [f for f, _ in error.field_violations] == ["max_tokens"] and "> 512" in error.message
    unset = generate_pb2.GenerateRequest(model="tiny", prompt="river boat " * 150)  # no max_tokens: what fits
    reply = await stub.Generate(unset, timeout=60)
    assert reply.usage.prompt_tokens + reply.usage.completion_tokens == 512
    assert reply.choices[0].finish_reason == FINISH.FINISH_REASON_LENGTH


@pytest.mark.parametrize("fields, code, field", [
    ({"model": "nope"}, grpc.StatusCode.NOT_FOUND, None),
    ({"adapter": "nope"}, grpc.StatusCode.NOT_FOUND, None),
    ({"prompt": "p", "messages": [generate_pb2.Message(role="user", content="x")]}, grpc.StatusCode.INVALID_ARGUMENT,
     "prompt"),
    ({"prompt": "", "summarize": generate_pb2.SummarizeInput(document="d")}, grpc.StatusCode.INVALID_ARGUMENT,
     "prompt"),
])
async def test_bad_requests_map_to_the_error_table(stub, fields, code, field):
    error = await error_of(stub.Generate(request(4, **fields), timeout=30))
    assert error.code == code, error.message
    if field:
        assert field in {f for f, _ in error.field_violations}
