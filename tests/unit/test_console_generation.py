"""The Playground's requests from its forms' values, its errors naming the field, and its numbers line."""

from __future__ import annotations

import pytest

from forgeway.core.errors import InvalidArgument
from forgeway.gateway.console import generation
from forgeway.v1 import generate_pb2

DEFAULTS = (0.7, 1.0, 0, 64, "")  # temperature, top p, top k (0: off), max tokens, seed (empty: random)


def test_empty_settings_are_left_to_the_backend():
    sampling = generation.sampling(*DEFAULTS)
    assert sampling.max_tokens == 64 and sampling.temperature == pytest.approx(0.7)
    assert not sampling.HasField("top_k") and not sampling.HasField("seed")
    chosen = generation.sampling(0.0, 0.5, 40, 8, " 7 ")
    assert (chosen.top_k, chosen.seed, chosen.max_tokens) == (40, 7, 8) and chosen.HasField("temperature")


@pytest.mark.parametrize(("values", "field", "why"), [
    ((0.7, 1.0, 0, 0, ""), "sampling.max_tokens", "must be at least 1"),
    ((2.5, 1.0, 0, 8, ""), "sampling.temperature", "must be in [0, 2]"),
    ((0.7, 0.0, 0, 8, ""), "sampling.top_p", "must be in (0, 1]"),
    ((0.7, 1.0, -3, 8, ""), "sampling.top_k", "must be a whole number, 0 or more"),
    ((0.7, 1.0, 0, 2.5, ""), "sampling.max_tokens", "must be a whole number, 0 or more"),
    ((0.7, 1.0, 0, 8, "seven"), "sampling.seed", "must be a whole number, 0 or more"),
])
def test_a_bad_setting_names_its_field(values, field, why):
    with pytest.raises(InvalidArgument) as caught:
        generation.sampling(*values)
    assert caught.value.violations == [(field, why)]
    assert generation.problem(caught.value) == f"**Error:**\n\n`{field}: {why}`"


def test_chat_request_puts_the_system_prompt_first_and_reads_gradio_message_parts():
    turns = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]},
             {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
             {"role": "user", "content": "Where did the cat sit?"}]
    request = generation.chat_request("tiny", "cat-lora", "  Be terse. ", turns, DEFAULTS)
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "Be terse."), ("user", "Hi"), ("assistant", "Hello."), ("user", "Where did the cat sit?")]
    assert (request.model, request.adapter, request.sampling.max_tokens) == ("tiny", "cat-lora", 64)
    plain = generation.chat_request("tiny", generation.NO_ADAPTER, "", turns[-1:], DEFAULTS)
    assert plain.adapter == "" and [m.role for m in plain.messages] == ["user"]


def test_chat_request_needs_a_model_and_a_message():
    with pytest.raises(InvalidArgument) as no_model:
        generation.chat_request(None, None, "", [{"role": "user", "content": "hi"}], DEFAULTS)
    assert no_model.value.field == "model"
    with pytest.raises(InvalidArgument) as no_message:
        generation.chat_request("tiny", None, "", [{"role": "user", "content": "  "}], DEFAULTS)
    assert no_message.value.field == "message"


def test_task_requests_carry_their_input_and_qa_no_sampling():
    summary = generation.task_request("t5", None, DEFAULTS, summarize=generate_pb2.SummarizeInput(document="doc"))
    assert summary.summarize.document == "doc" and summary.HasField("sampling")
    qa = generation.task_request("qa", None, None, question_answer=generate_pb2.QuestionAnswerInput(
        context="The cat sat on the mat.", question="Where?"))
    assert qa.question_answer.question == "Where?" and not qa.HasField("sampling")


def test_the_numbers_line():
    final = generate_pb2.GenerateResponse(
        choices=[generate_pb2.Choice(finish_reason=generate_pb2.FINISH_REASON_LENGTH)],
        usage=generate_pb2.Usage(completion_tokens=10), served_by="hf/abc")
    assert generation.numbers(final, started=1.0, first=1.05, ended=3.0) == (
        "10 tokens · 5.0 tokens/s · time to first token 50 ms · finish: length · served by hf/abc")
    final.usage.completion_tokens = 1
    assert generation.numbers(final, started=0.0, first=None, ended=0.5).startswith("1 token · 2.0 tokens/s · finish")
